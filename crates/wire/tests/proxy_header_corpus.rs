//! Replays the fuzz corpus (fuzz/corpus/proxy_header) through parse/decide in an ordinary test run,
//! with the same checks as the fuzz target.

use std::fs;
use std::path::Path;

use ch_edge_wire::proxy_in::ProxyInMode;
use ch_edge_wire::proxy_in::{decide, parse, Decision, Parsed, MAX_HEADER_LEN};

#[test]
fn corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/proxy_header");
    let mut files = 0;
    let mut headers = 0;
    for entry in fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        let data = fs::read(&path).expect("corpus file");
        files += 1;
        let parsed = parse(&data);
        if let Parsed::Header(h) = &parsed {
            headers += 1;
            assert!(h.len <= data.len() && h.len <= MAX_HEADER_LEN, "{path:?}");
            assert_eq!(parse(&data[..h.len]), parsed, "{path:?}");
        }
        for mode in [
            ProxyInMode::Off,
            ProxyInMode::Optional,
            ProxyInMode::Required,
        ] {
            for trusted in [false, true] {
                if let Decision::Header(h) = decide(mode, trusted, &data) {
                    assert!(trusted, "{path:?}: header used from an untrusted peer");
                    assert_eq!(parsed, Parsed::Header(h), "{path:?}");
                }
            }
        }
    }
    assert!(files > 0, "empty corpus at {dir:?}");
    // The seeds include real headers; losing them all would make the replay meaningless.
    assert!(headers > 0, "no corpus file parses as a header");
}
