//! The parsers' errors in our words, each with its file and line: what `check` prints for a
//! file that cannot be read as the grammar ([`super::raw`]) says.

use super::error::Problem;

/// A YAML parser error of `file` (whose text is `text`).
pub(crate) fn describe_yaml(e: &serde_saphyr::Error, text: &str, file: &str) -> Problem {
    let msg = e.render_with_options(serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    });
    // The renderer appends " at line L, column C"; the line goes next to the file.
    let located = e.location().filter(|l| l.line() > 0).and_then(|l| {
        let suffix = format!(" at line {}, column {}", l.line(), l.column());
        msg.strip_suffix(suffix.as_str())
            .map(|m| (l.line(), m.to_owned()))
    });
    let (mut line, mut message) = match located {
        Some((line, m)) => (Some(line), m),
        None => (None, msg.clone()),
    };
    // A plain `*` starts a YAML alias: the parser's complaint names aliases or anchors.
    if msg.contains("alias") || msg.contains("anchor") {
        message
            .push_str(" (hint: quote values that start with '*', e.g. sni: \"*.ch.example.com\")");
    }
    // A section's derived reader refuses a repeated key at the start of its mapping.
    if let Some(key) = duplicate_key(&message) {
        line = line.map(|l| repeated_key_line(text, l, key).unwrap_or(l));
        message = format!("{key}: written twice in this section: keep one");
    }
    if let Some(m) = unknown_key(&message) {
        message = m;
    }
    Problem {
        line,
        message,
        ..Problem::in_file(file, "")
    }
}

/// A JSON parser error of `file`.
pub(crate) fn describe_json(e: &serde_json::Error, file: &str) -> Problem {
    let msg = e.to_string();
    // serde_json appends " at line L column C".
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let mut message = msg.strip_suffix(&suffix).unwrap_or(&msg).to_owned();
    if let Some(key) = duplicate_key(&message) {
        message = format!("{key}: written twice in this section: keep one");
    }
    if let Some(m) = unknown_key(&message) {
        message = m;
    }
    Problem {
        line: Some(e.line() as u64).filter(|l| *l > 0),
        message,
        ..Problem::in_file(file, "")
    }
}

/// The key of serde's "duplicate field `key`" message.
fn duplicate_key(message: &str) -> Option<&str> {
    message
        .strip_prefix("duplicate field `")
        .and_then(|rest| rest.strip_suffix('`'))
}

/// serde's "unknown field `key`, expected one of `a`, `b`" as route entries word it:
/// "key: unknown key (expected one of a, b; did you mean "a"?)".
fn unknown_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest.trim_start_matches(", ").replace('`', "");
    // The accepted keys, for a suggestion: "expected one of a, b" or "expected a".
    let words = expected
        .strip_prefix("expected one of ")
        .or_else(|| expected.strip_prefix("expected "))
        .unwrap_or("");
    let near = ch_edge_wire::keyword::closest(key, words.split(", ").filter(|w| !w.is_empty()));
    Some(match (expected.is_empty(), near) {
        (true, _) => format!("{key}: unknown key"),
        (false, None) => format!("{key}: unknown key ({expected})"),
        (false, Some(w)) => format!("{key}: unknown key ({expected}; did you mean {w:?}?)"),
    })
}

/// The line of the second `key:` of the block mapping whose first key is on line `start`
/// (1-based); `None` if it is not found there (a flow mapping, say).
pub(crate) fn repeated_key_line(text: &str, start: u64, key: &str) -> Option<u64> {
    let start = usize::try_from(start).ok()?.checked_sub(1)?;
    let mut lines = text.lines().enumerate().skip(start);
    let (_, first) = lines.next()?;
    // The mapping's keys sit at the column of its first key (after a `- ` that opens it).
    let column = key_column(first)?;
    let mut seen = is_key(&first[column..], key);
    for (i, l) in lines {
        let content = l.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = l.len() - content.len();
        if indent < column {
            return None;
        }
        if indent == column && is_key(content, key) {
            if seen {
                return u64::try_from(i + 1).ok();
            }
            seen = true;
        }
    }
    None
}

/// Column of the first key on `line`: after its indent and any `- ` list markers.
fn key_column(line: &str) -> Option<usize> {
    let mut rest = line.trim_start();
    while let Some(r) = rest.strip_prefix("- ") {
        rest = r.trim_start();
    }
    (!rest.is_empty()).then(|| line.len() - rest.len())
}

/// Whether `content` starts with `key:` (the key possibly quoted).
fn is_key(content: &str, key: &str) -> bool {
    [("", ""), ("\"", "\""), ("'", "'")]
        .iter()
        .any(|(open, close)| {
            content
                .strip_prefix(open)
                .and_then(|c| c.strip_prefix(key))
                .and_then(|c| c.strip_prefix(close))
                .is_some_and(|c| c.trim_start().starts_with(':'))
        })
}

#[cfg(test)]
mod tests {
    use super::repeated_key_line;

    #[test]
    fn finds_the_repeat_in_the_mapping_that_starts_on_the_line() {
        let text = "a:\n  - name: x\n    address: y\n    # note\n    name: z\nb:\n  name: w\n";
        assert_eq!(repeated_key_line(text, 2, "name"), Some(5));
        assert_eq!(repeated_key_line(text, 2, "address"), None);
        let text = "t:\n  connect: 3s\n  idle: 1h\n  \"connect\": 4s\n";
        assert_eq!(repeated_key_line(text, 2, "connect"), Some(4));
        // Not in this mapping: the next section is not searched.
        assert_eq!(repeated_key_line("t:\n  x: 1\nx: 2\n", 2, "x"), None);
    }
}
