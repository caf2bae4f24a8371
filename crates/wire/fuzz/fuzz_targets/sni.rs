//! Fuzzes what a client's SNI goes through before routing: the lookup key, and pattern
//! normalisation on the same text (configuration and lookup must agree on names).
#![no_main]

use ch_edge_wire::sni::{lookup_key, normalize_pattern, MAX_NAME};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut buf = [0u8; MAX_NAME];
    let key = lookup_key(data, &mut buf).map(|(k, labels)| (k.to_owned(), labels));
    if let Some((key, labels)) = &key {
        assert_eq!(key.split('.').count(), *labels);
        assert!(!key.bytes().any(|b| b.is_ascii_uppercase()));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(pattern) = normalize_pattern(text) {
            // A valid exact name is its own lookup key.
            if !pattern.starts_with('*') {
                assert_eq!(key.as_ref().map(|k| k.0.as_str()), Some(&*pattern));
            }
        }
    }
});
