//! Route lookup at 10, 10k and 100k routes (should be flat), and the cost of
//! building (and parsing) a 100k-route table, which bounds reload time.

use std::hint::black_box;
use std::sync::Arc;

use ch_edge_proxy::model::config::{parse_routes_file, Format};
use ch_edge_proxy::model::route::{Defaults, RouteSpec, UpstreamAddr};
use ch_edge_proxy::runtime::resolve::{Resolver, RouteTable};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// Route `i`: every tenth a wildcard `*.t{i}.ch.example.com`, the rest
/// operator pod names `chi-demo{i}-cluster-0-0.ch.example.com`.
fn pattern(i: usize) -> String {
    if i.is_multiple_of(10) {
        format!("*.t{i}.ch.example.com")
    } else {
        format!("chi-demo{i}-cluster-0-0.ch.example.com")
    }
}

fn specs(n: usize) -> Vec<RouteSpec> {
    (0..n)
        .map(|i| RouteSpec {
            name: pattern(i).into(),
            sni: Arc::from([Arc::from(pattern(i))]),
            upstreams: Arc::from([UpstreamAddr {
                host: format!("chi-demo{i}-cluster-0-0.ns.svc.cluster.local").into(),
                port: None,
            }]),
            allow: None,
            proxy_protocol: None,
            balance: None,
            sticky: None,
            source: "bench.yaml".into(),
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let resolver = Resolver::default();
    let mut group = c.benchmark_group("lookup");
    for n in [10usize, 10_000, 100_000] {
        let table = RouteTable::build(&specs(n), &Defaults::default(), &resolver).unwrap();
        // Names near the end of the table, so nothing is warm by construction.
        let exact = format!("CHI-demo{}-cluster-0-0.ch.example.com", n - 1);
        let wild = format!("chi-x-cluster-1-2.t{}.ch.example.com", n - 10);
        let miss = "chi-nope-cluster-0-0.other.example.org";
        for (what, name) in [
            ("exact", exact.as_str()),
            ("wildcard", wild.as_str()),
            ("miss", miss),
        ] {
            assert!(
                table.lookup(Some(name.as_bytes())).is_ok() == (what != "miss"),
                "{what}"
            );
            group.bench_with_input(BenchmarkId::new(what, n), name.as_bytes(), |b, name| {
                b.iter(|| table.lookup(black_box(Some(name))).is_ok())
            });
        }
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    let specs = specs(100_000);
    let defaults = Defaults::default();
    let resolver = Resolver::default();
    // A reload: the running table holds the resolver handles while the new one is built.
    let running = RouteTable::build(&specs, &defaults, &resolver).unwrap();
    group.bench_function("table_100k", |b| {
        b.iter_with_large_drop(|| {
            RouteTable::build(black_box(&specs), &defaults, &resolver).unwrap()
        })
    });
    drop(running);

    let mut yaml = String::from("routes:\n");
    for s in &specs {
        yaml.push_str(&format!(
            "  - sni: \"{}\"\n    upstream: {}\n",
            s.sni[0], s.upstreams[0].host
        ));
    }
    group.bench_function("parse_routes_file_100k_yaml", |b| {
        b.iter_with_large_drop(|| {
            parse_routes_file(black_box(&yaml), "bench.yaml", Format::Yaml).unwrap()
        })
    });
    let json = ch_edge_proxy::model::config::render_routes_file(&specs, Format::Json).unwrap();
    group.bench_function("parse_routes_file_100k_json", |b| {
        b.iter_with_large_drop(|| {
            parse_routes_file(black_box(&json), "bench.json", Format::Json).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, lookup, build);
criterion_main!(benches);
