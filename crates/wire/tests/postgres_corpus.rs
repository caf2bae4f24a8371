//! Replays the fuzz corpus (fuzz/corpus/postgres_start, which includes every captured fixture)
//! in an ordinary test, with the fuzz target's checks.

mod corpus_files;

use corpus_files::files;
use std::collections::BTreeSet;

use ch_edge_wire::client_hello::{self, Peek};
use ch_edge_wire::postgres::{
    error_response, parse, parse_ssl_response, SslResponse, Start, DECIDING_LEN, GSSENC_REQUEST,
    SSL_REQUEST,
};

fn check(name: &str, data: &[u8]) -> Start {
    let answer = parse(data);
    match answer {
        Start::NeedMore => assert!(data.len() < DECIDING_LEN, "{name}"),
        Start::DirectTls => assert_eq!(data[0], 0x16, "{name}"),
        Start::SslRequest => assert_eq!(data[..8], SSL_REQUEST, "{name}"),
        Start::GssEncRequest => assert_eq!(data[..8], GSSENC_REQUEST, "{name}"),
        Start::Startup { len, .. } => assert!((9..=10_000).contains(&len), "{name}"),
        Start::CancelRequest { len } => assert!((16..=268).contains(&len), "{name}"),
        Start::NotPostgres(why) => assert!(!why.is_empty(), "{name}"),
    }
    for k in 0..data.len() {
        let early = parse(&data[..k]);
        assert!(
            early == Start::NeedMore || early == answer,
            "{name}: prefix {k}"
        );
    }
    if let Some(consumed) = answer.consumed() {
        let _ = client_hello::parse(&data[consumed..]);
    }
    let response = parse_ssl_response(data);
    assert_eq!(response == SslResponse::Accepted, data == b"S", "{name}");
    let msg = error_response(&String::from_utf8_lossy(data));
    let len = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]) as usize;
    assert_eq!(len, msg.len() - 1, "{name}");
    assert_eq!(msg[5..].iter().filter(|&&b| b == 0).count(), 5, "{name}");
    answer
}

fn kind(start: Start) -> &'static str {
    match start {
        Start::NeedMore => "need more",
        Start::SslRequest => "ssl request",
        Start::GssEncRequest => "gssenc request",
        Start::DirectTls => "direct tls",
        Start::Startup { .. } => "startup",
        Start::CancelRequest { .. } => "cancel",
        Start::NotPostgres(_) => "not postgres",
    }
}

#[test]
fn corpus_replays_without_panic_and_holds_invariants() {
    let corpus = files("fuzz/corpus/postgres_start", None);
    assert!(corpus.len() >= 20, "corpus missing: {} files", corpus.len());
    let mut kinds = BTreeSet::new();
    for (name, data) in &corpus {
        kinds.insert(kind(check(name, data)));
    }
    // Every kind of start is among the seeds.
    assert_eq!(kinds.len(), 7, "kinds of start in the corpus: {kinds:?}");

    // The captured fixtures are part of the corpus, byte for byte.
    let contents: BTreeSet<&[u8]> = corpus.iter().map(|(_, d)| d.as_slice()).collect();
    let fixtures = files("tests/fixtures/postgres", Some("bin"));
    assert!(fixtures.len() >= 4, "fixtures missing: {}", fixtures.len());
    for (name, data) in &fixtures {
        assert!(
            contents.contains(data.as_slice()),
            "fixture {name} not in the corpus"
        );
        let answer = check(name, data);
        if let Some(consumed) = answer.consumed() {
            let hello = client_hello::parse(&data[consumed..]);
            assert!(matches!(hello, Peek::Hello(_)), "{name}: {hello:?}");
        }
    }
}
