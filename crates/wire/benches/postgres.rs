//! PostgreSQL start cost per connection: classifying the first bytes of real clients (the call a
//! `postgres` listener makes after each read until decided, at most 8 bytes), the whole
//! SSLRequest-then-ClientHello peek, and encoding the ErrorResponse that refuses plain text.

use std::hint::black_box;

use ch_edge_wire::client_hello;
use ch_edge_wire::postgres::{encode_error_response, parse, Start, SSL_REQUEST, SSL_REQUIRED};
use criterion::{criterion_group, criterion_main, Criterion};

const PSQL_SSLREQUEST: &[u8] = include_bytes!("../tests/fixtures/postgres/psql_sslrequest.bin");
const PSQL_PLAINTEXT: &[u8] = include_bytes!("../tests/fixtures/postgres/psql_plaintext.bin");
const PSYCOPG_DIRECT: &[u8] = include_bytes!("../tests/fixtures/postgres/psycopg_direct.bin");

fn bench(c: &mut Criterion) {
    assert_eq!(parse(PSQL_SSLREQUEST), Start::SslRequest);
    assert_eq!(parse(PSYCOPG_DIRECT), Start::DirectTls);
    assert!(matches!(parse(PSQL_PLAINTEXT), Start::Startup { .. }));

    c.bench_function("postgres start: ssl request", |b| {
        b.iter(|| parse(black_box(&SSL_REQUEST)))
    });
    c.bench_function("postgres start: direct tls", |b| {
        b.iter(|| parse(black_box(PSYCOPG_DIRECT)))
    });
    c.bench_function("postgres start: plaintext startup", |b| {
        b.iter(|| parse(black_box(PSQL_PLAINTEXT)))
    });
    // What a connection does in all: the start, then the ClientHello after it.
    c.bench_function("postgres start: psql ssl request + client hello", |b| {
        b.iter(|| {
            let input = black_box(PSQL_SSLREQUEST);
            let consumed = parse(input).consumed().unwrap_or(0);
            client_hello::parse(&input[consumed..])
        })
    });
    c.bench_function("postgres error response", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            encode_error_response(black_box(SSL_REQUIRED), &mut out);
            out.len()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
