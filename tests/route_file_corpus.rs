//! Replays the route-file fuzz corpus (`fuzz/corpus/route_file`, minimised with `cargo fuzz cmin`)
//! through the reader in an ordinary test, with the fuzz target's checks: no panic on any text,
//! and a file that reads is written back (YAML and JSON) and read again to the same routes.

use std::fs;
use std::path::Path;

use ch_edge_proxy::model::config::{parse_routes_file, render_routes_file, Format};

#[test]
fn corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/route_file");
    let (mut files, mut read) = (0, 0);
    for entry in fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        let data = fs::read(&path).expect("corpus file");
        files += 1;
        // As the target: the first byte picks the format, the rest is the file.
        let Some((&selector, text)) = data.split_first() else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(text) else {
            continue;
        };
        let format = if selector % 2 == 0 {
            Format::Yaml
        } else {
            Format::Json
        };
        let Ok(routes) = parse_routes_file(text, "corpus", format) else {
            continue;
        };
        read += 1;
        for out in [Format::Yaml, Format::Json] {
            let written = render_routes_file(&routes, out).expect("routes always render");
            let back = parse_routes_file(&written, "corpus", out)
                .unwrap_or_else(|e| panic!("{path:?}: rendered {out} does not read back: {e}"));
            assert_eq!(back, routes, "{path:?}: {out} round trip");
        }
    }
    assert!(files > 1000, "corpus missing: {files} files");
    // The corpus holds files that read (else the round trip above is never exercised).
    assert!(read > 100, "only {read} of {files} files read as routes");
}
