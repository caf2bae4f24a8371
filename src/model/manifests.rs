//! Kubernetes manifests as `kubectl` takes them: YAML, `---`-separated documents, `kind: List`
//! flattened into its items. Each Kubernetes source picks its own kinds from the objects.

use serde_json::Value;

/// Manifest text that is not a list of objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}")]
    Yaml(String),
    #[error("kind: List with non-list items")]
    ListItems,
}

/// Every object of `text`, the items of a `kind: List` in place of the list.
pub fn objects(text: &str) -> Result<Vec<Value>, ManifestError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        ManifestError::Yaml(
            e.render_with_options(serde_saphyr::render_options! {
                snippets: serde_saphyr::SnippetMode::Off,
            })
            .to_string(),
        )
    })?;
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        let is_list = doc.get("kind").and_then(Value::as_str) == Some("List");
        if !is_list {
            out.push(doc);
            continue;
        }
        match doc.get("items") {
            Some(Value::Array(items)) => out.extend(items.iter().cloned()),
            None | Some(Value::Null) => {}
            Some(_) => return Err(ManifestError::ListItems),
        }
    }
    Ok(out)
}

/// Whether `obj` has this `apiVersion` and `kind`.
pub fn is_kind(obj: &Value, api_version: &str, kind: &str) -> bool {
    obj.get("apiVersion").and_then(Value::as_str) == Some(api_version)
        && obj.get("kind").and_then(Value::as_str) == Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_lists_flatten_in_order() {
        let text = "kind: A\n---\nkind: List\nitems: [{kind: B}, {kind: C}]\n---\nkind: List\n";
        let kinds: Vec<String> = objects(text)
            .unwrap()
            .iter()
            .map(|o| o["kind"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kinds, ["A", "B", "C"]);
        assert_eq!(objects("").unwrap(), Vec::<Value>::new());
        assert_eq!(
            objects("kind: List\nitems: 3\n"),
            Err(ManifestError::ListItems)
        );
        assert!(matches!(objects("a: ["), Err(ManifestError::Yaml(_))));
    }
}
