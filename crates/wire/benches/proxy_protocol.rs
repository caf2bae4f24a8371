//! PROXY protocol cost per connection: parsing what the NLB sends, encoding what we send upstream.

use std::hint::black_box;
use std::net::SocketAddr;

use ch_edge_wire::proxy_in::{parse, Parsed};
use ch_edge_wire::proxy_out::encode;
use ch_edge_wire::proxy_out::ProxyVersion;
use criterion::{criterion_group, criterion_main, Criterion};

/// Start of a TLS ClientHello, which follows the header in the same read.
const TLS: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
];

const VPCE_TLV: &[u8] = b"\x01vpce-08d2bf15fac5001c9";

fn addrs() -> (SocketAddr, SocketAddr) {
    (
        "198.51.100.7:40000".parse().unwrap(),
        "10.1.2.3:9440".parse().unwrap(),
    )
}

fn bench(c: &mut Criterion) {
    let (src, dst) = addrs();
    let mut v1 = Vec::new();
    encode(ProxyVersion::V1, src, dst, &[], &mut v1);
    v1.extend(TLS);
    // AWS NLB shape: addresses, CRC32C, VPC endpoint id, NOOP padding.
    let nlb_tlvs: &[(u8, &[u8])] = &[
        (0x03, &[0x5b, 0x1e, 0x77, 0x0a]),
        (0xEA, VPCE_TLV),
        (0x04, &[0; 7]),
    ];
    let mut v2 = Vec::new();
    encode(ProxyVersion::V2, src, dst, nlb_tlvs, &mut v2);
    v2.extend(TLS);
    assert!(matches!(parse(&v1), Parsed::Header(_)));
    assert!(matches!(parse(&v2), Parsed::Header(h) if h.aws_vpce_id().is_some()));

    c.bench_function("parse v1 tcp4", |b| b.iter(|| parse(black_box(&v1))));
    c.bench_function("parse v2 aws nlb tlvs", |b| {
        b.iter(|| parse(black_box(&v2)))
    });

    // What we forward upstream: the client's VPCE TLV and the SNI as authority.
    let out_tlvs: &[(u8, &[u8])] = &[(0xEA, VPCE_TLV), (0x02, b"demo.ch.example.com")];
    c.bench_function("encode v1", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            encode(
                ProxyVersion::V1,
                black_box(src),
                black_box(dst),
                &[],
                &mut out,
            );
            out
        })
    });
    c.bench_function("encode v2 with tlvs", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            encode(
                ProxyVersion::V2,
                black_box(src),
                black_box(dst),
                black_box(out_tlvs),
                &mut out,
            );
            out
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
