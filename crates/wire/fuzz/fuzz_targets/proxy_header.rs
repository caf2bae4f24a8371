//! Fuzz the PROXY header parser and the trust policy on hostile first bytes of a connection.
#![no_main]

use ch_edge_wire::proxy_in::ProxyInMode;
use ch_edge_wire::proxy_in::{decide, parse, Decision, Parsed, MAX_HEADER_LEN};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    if let Parsed::Header(h) = &parsed {
        assert!(h.len <= data.len() && h.len <= MAX_HEADER_LEN);
        // A complete header is final: it does not depend on the bytes after it.
        assert_eq!(parse(&data[..h.len]), parsed);
    }
    for mode in [
        ProxyInMode::Off,
        ProxyInMode::Optional,
        ProxyInMode::Required,
    ] {
        for trusted in [false, true] {
            if let Decision::Header(h) = decide(mode, trusted, data) {
                assert!(trusted, "a header is only ever used from a trusted peer");
                assert_eq!(parsed, Parsed::Header(h));
            }
        }
    }
});
