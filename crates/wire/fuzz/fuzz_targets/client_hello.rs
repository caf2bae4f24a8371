//! Fuzzes the ClientHello parser: no panic on any input, plus the invariants callers rely on.
#![no_main]

use ch_edge_wire::client_hello::{parse, Parser, Peek, MAX_BUFFER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let answer = parse(data);
    match &answer {
        Peek::Hello(h) => {
            // The hello lies within the input, and its own bytes give the same answer.
            assert!(h.len <= data.len());
            assert_eq!(parse(&data[..h.len]), answer);
            if let Some(name) = &h.sni {
                assert!(!name.as_bytes().is_empty() && name.as_bytes().len() <= 255);
            }
        }
        // The caller's buffer bound: never asked to wait beyond MAX_BUFFER bytes.
        Peek::Incomplete => assert!(data.len() < MAX_BUFFER),
        Peek::NotTls => assert!(data[0] != 0x16 || data[1] != 3 || data[2] > 4),
        Peek::Malformed(why) => assert!(!why.is_empty()),
    }
    // Answers never change as bytes arrive: a decided prefix has the answer of the whole. The
    // incremental parser, fed the same prefixes as a connection would be, agrees at each step.
    let mut parser = Parser::default();
    for k in [data.len() / 3, data.len() / 2, data.len().saturating_sub(1), data.len()] {
        let early = parse(&data[..k]);
        assert!(
            early == Peek::Incomplete || early == answer,
            "{early:?} then {answer:?}"
        );
        assert_eq!(parser.parse(&data[..k]), early);
        if early != Peek::Incomplete {
            break;
        }
    }
});
