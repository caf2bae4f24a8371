//! Fuzzes the PostgreSQL start on a `postgres` listener: the classification of the first bytes,
//! what follows an answered request (the next start, the ClientHello), the upstream's one-byte
//! answer, and the ErrorResponse framing for any message text.
#![no_main]

use ch_edge_wire::client_hello;
use ch_edge_wire::postgres::{
    error_response, parse, parse_ssl_response, SslResponse, Start, DECIDING_LEN, GSSENC_REQUEST,
    SSL_REQUEST,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let answer = parse(data);
    match answer {
        // The caller never buffers more than DECIDING_LEN bytes for a decision.
        Start::NeedMore => assert!(data.len() < DECIDING_LEN),
        Start::DirectTls => assert_eq!(data[0], 0x16),
        Start::SslRequest => assert_eq!(data[..8], SSL_REQUEST),
        Start::GssEncRequest => assert_eq!(data[..8], GSSENC_REQUEST),
        Start::Startup { len, .. } => assert!((9..=10_000).contains(&len)),
        Start::CancelRequest { len } => assert!((16..=268).contains(&len)),
        Start::NotPostgres(why) => assert!(!why.is_empty()),
    }
    // Decided prefixes already have the whole input's answer; bytes past 8 never matter.
    for k in [1, 4, 5, 7, DECIDING_LEN, data.len()] {
        let early = parse(&data[..k.min(data.len())]);
        assert!(
            early == Start::NeedMore || early == answer,
            "{early:?} then {answer:?}"
        );
    }
    // What the proxy parses next on this connection.
    if let Some(consumed) = answer.consumed() {
        let rest = &data[consumed..];
        if answer == Start::GssEncRequest {
            let _ = parse(rest);
        }
        let _ = client_hello::parse(rest);
    }
    // The same bytes as an upstream's answer to our SSLRequest.
    let response = parse_ssl_response(data);
    match data {
        [] => assert_eq!(response, SslResponse::NeedMore),
        [b'S'] => assert_eq!(response, SslResponse::Accepted),
        [first, ..] => assert!(
            response != SslResponse::Accepted && response != SslResponse::NeedMore,
            "{first}"
        ),
    }
    // Any text as the refusal's message: framed, with exactly the five terminating NULs.
    let message = String::from_utf8_lossy(data);
    let msg = error_response(&message);
    assert_eq!(msg[0], b'E');
    let len = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]) as usize;
    assert_eq!(len, msg.len() - 1);
    assert_eq!(msg[5..].iter().filter(|&&b| b == 0).count(), 5);
    assert_eq!(msg.last(), Some(&0));
});
