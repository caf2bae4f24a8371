//! `allowedRoutes.namespaces.from: Selector`: a Kubernetes label selector (`matchLabels`,
//! `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`, as in apimachinery's
//! `LabelSelectorAsSelector`) over the labels of the route's Namespace.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The label every Namespace carries (set by the API server since Kubernetes 1.21): a
/// selector can name namespaces even where their objects are not known.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// `metav1.LabelSelector`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Requirement {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether `labels` satisfy every term (an empty selector matches everything, as in
    /// Kubernetes). `Err`: a term that is not valid (no namespace matches it).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> Result<bool, String> {
        let mut all = self
            .match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v));
        for r in &self.match_expressions {
            let value = labels.get(&r.key);
            let ok = match (r.operator.as_str(), r.values.is_empty()) {
                ("In", false) => value.is_some_and(|v| r.values.contains(v)),
                ("NotIn", false) => value.is_none_or(|v| !r.values.contains(v)),
                ("Exists", true) => value.is_some(),
                ("DoesNotExist", true) => value.is_none(),
                (op @ ("In" | "NotIn"), true) => {
                    return Err(format!("{op} on {:?} needs values", r.key))
                }
                (op @ ("Exists" | "DoesNotExist"), false) => {
                    return Err(format!("{op} on {:?} takes no values", r.key))
                }
                (op, _) => return Err(format!("unknown operator {op:?} on {:?}", r.key)),
            };
            all &= ok;
        }
        Ok(all)
    }
}
