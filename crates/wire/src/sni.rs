//! Host names and SNI patterns: their syntax, their normal form, and the key a client's SNI is
//! looked up by. The router (model layer) matches on these; configuration, CHI derivation and
//! the ClientHello parser all agree on names through this one module.
//!
//! A name is dot-separated labels of ASCII letters, digits, `-` and `_`, at most 63 characters
//! each and 253 in all. A pattern is a name, `*.name` (any name under it, at any depth) or `*`
//! (everything, also no SNI). Matching is case-insensitive and ignores one trailing dot, so the
//! normal form is lower-case without it.

use std::borrow::Cow;

/// Longest name a lookup accepts: 253 characters, plus one trailing dot.
pub const MAX_NAME: usize = 255;

/// Why an SNI pattern or name is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternError {
    Empty,
    TooLong,
    EmptyLabel,
    LabelTooLong,
    NotAscii,
    BadChar(char),
    MisplacedWildcard,
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatternError::Empty => f.write_str("empty"),
            PatternError::TooLong => f.write_str("longer than 253 characters"),
            PatternError::EmptyLabel => {
                f.write_str("empty label (leading dot or two dots in a row)")
            }
            PatternError::LabelTooLong => f.write_str("a label is longer than 63 characters"),
            PatternError::NotAscii => {
                f.write_str("not ASCII (write internationalised names in their xn-- form)")
            }
            PatternError::BadChar(c) => write!(
                f,
                "invalid character {c:?} (names hold letters, digits, '-', '_' and '.')"
            ),
            PatternError::MisplacedWildcard => f.write_str(
                "'*' is allowed only alone or as the whole leftmost label (\"*.example.com\")",
            ),
        }
    }
}

impl std::error::Error for PatternError {}

/// Normalises an SNI pattern: lower-case, one trailing dot removed, then checked.
/// Borrows `raw` when it is already normal (the common case: no copy).
pub fn normalize_pattern(raw: &str) -> Result<Cow<'_, str>, PatternError> {
    let normal = !raw.ends_with('.') && !raw.bytes().any(|b| b.is_ascii_uppercase());
    let pattern = if normal {
        Cow::Borrowed(raw)
    } else {
        let mut s = raw.to_ascii_lowercase();
        if s.ends_with('.') {
            s.pop();
        }
        Cow::Owned(s)
    };
    if *pattern != *"*" {
        check_name(pattern.strip_prefix("*.").unwrap_or(&pattern))?;
    }
    Ok(pattern)
}

/// Checks a name without wildcard or trailing dot (either case).
pub fn check_name(name: &str) -> Result<(), PatternError> {
    if name.is_empty() {
        return Err(PatternError::Empty);
    }
    if name.len() > 253 {
        return Err(PatternError::TooLong);
    }
    // One pass over the bytes for the common, valid name (checked several times per route while
    // loading 100k routes); anything else takes the path below, which finds the exact problem.
    let mut label = 0usize;
    let mut plain = true;
    for &b in name.as_bytes() {
        match b {
            b'.' => {
                plain &= label > 0;
                label = 0;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => label += 1,
            _ => plain = false,
        }
        plain &= label <= 63;
    }
    if plain && label > 0 {
        return Ok(());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(PatternError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(PatternError::LabelTooLong);
        }
        if let Some(c) = label.chars().find(|c| !is_name_char(*c)) {
            return Err(match c {
                '*' => PatternError::MisplacedWildcard,
                c if !c.is_ascii() => PatternError::NotAscii,
                c => PatternError::BadChar(c),
            });
        }
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// The lookup key of a client's SNI: `raw` lower-cased into `buf` with one trailing dot
/// stripped, and its number of labels. `None` when it is not a plausible host name (empty,
/// too long, empty labels, bytes no name holds): such a name can match only `*`.
/// Allocation-free, and branch-free per byte.
pub fn lookup_key<'b>(raw: &[u8], buf: &'b mut [u8; MAX_NAME]) -> Option<(&'b str, usize)> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty() || raw.len() > buf.len() {
        return None;
    }
    // Problems are collected and checked once at the end.
    let mut bad = false;
    let mut prev_dot = true; // a leading dot is an empty label
    let mut labels = 1;
    for (dst, &b) in buf.iter_mut().zip(raw) {
        let m = NAME_BYTE[usize::from(b)];
        let dot = m == b'.';
        bad |= (m == 0) | (dot & prev_dot);
        labels += usize::from(dot);
        prev_dot = dot;
        *dst = m;
    }
    if bad || prev_dot {
        return None;
    }
    let name = std::str::from_utf8(buf.get(..raw.len())?).ok()?;
    Some((name, labels))
}

/// Byte → its lower-case form if it may appear in a host name, else 0.
static NAME_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            b'A'..=b'Z' => b + 32,
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => b,
            _ => 0,
        };
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pattern_rules() {
        assert_eq!(normalize_pattern("*").as_deref(), Ok("*"));
        assert_eq!(normalize_pattern("*.A.b.").as_deref(), Ok("*.a.b"));
        assert_eq!(
            normalize_pattern("chi-x_1.Ch.Example.com").as_deref(),
            Ok("chi-x_1.ch.example.com")
        );
        assert!(matches!(normalize_pattern("a.b"), Ok(Cow::Borrowed("a.b"))));
        for bad in ["a.*.b", "*a.b", "**"] {
            assert_eq!(normalize_pattern(bad), Err(PatternError::MisplacedWildcard));
        }
        assert_eq!(
            normalize_pattern("*.").as_deref(),
            Ok("*"),
            "one trailing dot is dropped"
        );
        assert_eq!(normalize_pattern("*.."), Err(PatternError::Empty));
        assert_eq!(normalize_pattern(""), Err(PatternError::Empty));
        assert_eq!(normalize_pattern("a..b"), Err(PatternError::EmptyLabel));
        assert_eq!(normalize_pattern(".a"), Err(PatternError::EmptyLabel));
        assert_eq!(normalize_pattern("a b"), Err(PatternError::BadChar(' ')));
        assert_eq!(normalize_pattern("dé.com"), Err(PatternError::NotAscii));
        assert_eq!(
            normalize_pattern(&"a".repeat(64)),
            Err(PatternError::LabelTooLong)
        );
        assert_eq!(
            normalize_pattern(&"a.".repeat(128)),
            Err(PatternError::TooLong)
        );
    }

    #[test]
    fn lookup_keys() {
        let mut buf = [0; MAX_NAME];
        assert_eq!(
            lookup_key(b"Demo.CH.test.", &mut buf),
            Some(("demo.ch.test", 3))
        );
        for bad in [&b""[..], b".", b"a..b", b".a", b"a b", b"\xff", b"a.b.."] {
            assert_eq!(lookup_key(bad, &mut buf), None, "{bad:?}");
        }
        let long = vec![b'a'; MAX_NAME];
        assert_eq!(lookup_key(&long, &mut buf).map(|k| k.1), Some(1));
        assert_eq!(lookup_key(&vec![b'a'; MAX_NAME + 1], &mut buf), None);
    }

    proptest! {
        /// Any bytes: no panic; a key is lower-case ASCII of valid labels, and a name the key
        /// accepts is a valid pattern with that same normal form.
        #[test]
        fn lookup_keys_of_any_bytes(raw in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            "[a-zA-Z0-9_.-]{0,80}\\.?".prop_map(String::into_bytes),
        ]) {
            let mut buf = [0; MAX_NAME];
            if let Some((key, labels)) = lookup_key(&raw, &mut buf) {
                prop_assert!(!key.bytes().any(|b| b.is_ascii_uppercase()));
                prop_assert_eq!(key.split('.').count(), labels);
                let text = std::str::from_utf8(&raw).expect("accepted names are ASCII");
                if key.len() <= 253 && key.split('.').all(|l| l.len() <= 63) {
                    let pattern = normalize_pattern(text);
                    prop_assert_eq!(pattern.as_deref(), Ok(key));
                }
            }
        }
    }
}
