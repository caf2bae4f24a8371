//! Fuzzes the route-file reader (YAML and JSON through the same serde types): no panic on any
//! text, and a file that reads is written back and read again to the same routes.
#![no_main]

use ch_edge_proxy::model::config::{parse_routes_file, render_routes_file, Format};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let format = if selector % 2 == 0 { Format::Yaml } else { Format::Json };
    if let Ok(routes) = parse_routes_file(text, "fuzz", format) {
        for out in [Format::Yaml, Format::Json] {
            let written = render_routes_file(&routes, out).expect("routes always render");
            let back = parse_routes_file(&written, "fuzz", out)
                .unwrap_or_else(|e| panic!("rendered {out} does not read back: {e}\n{written}"));
            assert_eq!(back, routes, "{out} round trip");
        }
    }
});
