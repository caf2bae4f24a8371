//! ClientHello parser cost: real hellos in one piece, re-framed into 1-byte records, the worst
//! single call (a buffer just under MAX_BUFFER of 1-byte records), and whole 1-byte-segment
//! connections (one incremental `Parser` call per byte received, as the proxy does), the worst
//! of them being that 26 KiB buffer trickled in byte by byte.

use ch_edge_wire::client_hello::{parse, Parser, Peek, MAX_BUFFER, MAX_EMPTY_RECORDS};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

macro_rules! fixtures {
    ($($name:literal),*) => {
        [$(($name, include_bytes!(concat!("../tests/fixtures/client_hello/", $name, ".bin")) as &[u8])),*]
    };
}

const FIXTURES: [(&str, &[u8]); 7] = fixtures!(
    "curl_sni",
    "openssl_sni",
    "openssl_tls12",
    "openssl_nosni",
    "python_sni",
    "python_nosni",
    "rustls_pq"
);

/// The handshake message carried by a record sequence.
fn message_of(mut input: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    while let Some((header, rest)) = input.split_first_chunk::<5>() {
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        msg.extend(&rest[..len]);
        input = &rest[len..];
    }
    msg
}

fn one_byte_records(msg: &[u8]) -> Vec<u8> {
    msg.iter().flat_map(|&b| [0x16, 3, 1, 0, 1, b]).collect()
}

fn fixture(name: &str) -> &'static [u8] {
    FIXTURES.iter().find(|f| f.0 == name).unwrap().1
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("client_hello/whole");
    for (name, input) in FIXTURES {
        assert!(matches!(parse(input), Peek::Hello(_)), "{name}");
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| b.iter(|| parse(black_box(input))));
    }
    g.finish();

    let mut g = c.benchmark_group("client_hello/one_byte_records");
    for name in ["curl_sni", "rustls_pq"] {
        let input = one_byte_records(&message_of(fixture(name)));
        assert!(matches!(parse(&input), Peek::Hello(_)), "{name}");
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| b.iter(|| parse(black_box(&input))));
    }
    g.finish();

    // The most record headers one call can walk: all the empty records allowed, then an endless
    // hello in 1-byte records, cut just before it is refused.
    let mut endless = vec![1, 0, 0x40, 0];
    endless.resize(MAX_BUFFER, 0);
    let mut input: Vec<u8> = [0x16, 3, 1, 0, 0].repeat(MAX_EMPTY_RECORDS);
    input.extend(one_byte_records(&endless));
    let cut = (0..=MAX_BUFFER)
        .rev()
        .find(|&k| parse(&input[..k]) == Peek::Incomplete)
        .unwrap();
    c.bench_function("client_hello/worst_incomplete_call", |b| {
        b.iter(|| parse(black_box(&input[..cut])))
    });

    // The attacker's whole connection: that input one byte per read, through one Parser as the
    // proxy does. (A stateless re-parse per read would walk up to 2,080 records on each of the
    // ~27k calls.)
    c.bench_function("client_hello/worst_connection", |b| {
        b.iter(|| {
            let mut parser = Parser::default();
            (1..=cut)
                .map(|k| parser.parse(black_box(&input[..k])))
                .filter(|p| *p != Peek::Incomplete)
                .count()
        })
    });

    // Clients sending their hello in 1-byte TCP segments: one call per byte, until the hello.
    let mut g = c.benchmark_group("client_hello/one_call_per_byte");
    for name in ["curl_sni", "rustls_pq"] {
        for (shape, input) in [
            ("", fixture(name).to_vec()),
            (
                "_in_one_byte_records",
                one_byte_records(&message_of(fixture(name))),
            ),
        ] {
            g.bench_function(format!("{name}{shape}"), |b| {
                b.iter(|| {
                    let mut parser = Parser::default();
                    (1..=input.len())
                        .map(|k| parser.parse(black_box(&input[..k])))
                        .find(|p| *p != Peek::Incomplete)
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
