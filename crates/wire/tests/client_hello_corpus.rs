//! Replays the fuzz corpus (fuzz/corpus/client_hello, which includes every captured fixture)
//! through the parser in an ordinary test: no panic, and the invariants the fuzz target checks.

mod corpus_files;

use ch_edge_wire::client_hello::{parse, Peek, MAX_BUFFER};
use corpus_files::files;
use std::collections::BTreeSet;

fn check(name: &str, data: &[u8]) -> Peek {
    let answer = parse(data);
    match &answer {
        Peek::Hello(h) => {
            assert!(h.len <= data.len(), "{name}");
            assert_eq!(parse(&data[..h.len]), answer, "{name}");
        }
        Peek::Incomplete => assert!(data.len() < MAX_BUFFER, "{name}"),
        Peek::NotTls => assert!(data[0] != 0x16 || data[1] != 3 || data[2] > 4, "{name}"),
        Peek::Malformed(why) => assert!(!why.is_empty(), "{name}"),
    }
    // Every prefix is Incomplete or already has the final answer.
    for k in 0..data.len() {
        let early = parse(&data[..k]);
        assert!(
            early == Peek::Incomplete || early == answer,
            "{name}: prefix {k}"
        );
    }
    answer
}

#[test]
fn corpus_replays_without_panic_and_holds_invariants() {
    let corpus = files("fuzz/corpus/client_hello", None);
    assert!(!corpus.is_empty(), "empty fuzz corpus");
    for (name, data) in &corpus {
        check(name, data);
    }
    // The captured fixtures are part of the corpus, byte for byte, and parse to a hello.
    let contents: BTreeSet<&[u8]> = corpus.iter().map(|(_, d)| d.as_slice()).collect();
    let fixtures = files("tests/fixtures/client_hello", Some("bin"));
    assert!(fixtures.len() >= 7, "fixtures missing: {}", fixtures.len());
    for (name, data) in &fixtures {
        assert!(
            contents.contains(data.as_slice()),
            "fixture {name} not in the corpus"
        );
        assert!(matches!(check(name, data), Peek::Hello(_)), "{name}");
    }
}
