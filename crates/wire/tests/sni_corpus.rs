//! Replays the SNI fuzz corpus (fuzz/corpus/sni) in an ordinary test, with the fuzz target's
//! checks: the lookup key is lower case with the label count it reports, and a valid exact
//! pattern is its own lookup key (configuration and lookup agree on names).

use std::fs;
use std::path::Path;

use ch_edge_wire::sni::{lookup_key, normalize_pattern, MAX_NAME};

#[test]
fn corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sni");
    let (mut files, mut keys, mut patterns) = (0, 0, 0);
    for entry in fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        let data = fs::read(&path).expect("corpus file");
        files += 1;
        let mut buf = [0u8; MAX_NAME];
        let key = lookup_key(&data, &mut buf).map(|(k, labels)| (k.to_owned(), labels));
        if let Some((key, labels)) = &key {
            keys += 1;
            assert_eq!(key.split('.').count(), *labels, "{path:?}");
            assert!(!key.bytes().any(|b| b.is_ascii_uppercase()), "{path:?}");
        }
        if let Ok(pattern) = std::str::from_utf8(&data).map(normalize_pattern) {
            let Ok(pattern) = pattern else { continue };
            patterns += 1;
            if !pattern.starts_with('*') {
                assert_eq!(
                    key.as_ref().map(|k| k.0.as_str()),
                    Some(&*pattern),
                    "{path:?}"
                );
            }
        }
    }
    assert!(files > 50, "corpus missing: {files} files");
    assert!(
        keys > 10 && patterns > 10,
        "{keys} keys, {patterns} patterns"
    );
}
