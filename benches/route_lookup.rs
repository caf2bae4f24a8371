//! Route lookup at 10, 10k and 100k routes (should be flat; sticky names included), choosing
//! an address for a connection, and the cost of building (and parsing) a 100k-route table,
//! which bounds reload time.

use std::hint::black_box;
use std::sync::Arc;

use ch_edge_proxy::model::config::{parse_routes_file, Format};
use ch_edge_proxy::model::route::balance::{choose, Choose, Node, Pool, Seen};
use ch_edge_proxy::model::route::{Balance, Defaults, RouteSpec, Tag, UpstreamAddr};
use ch_edge_proxy::runtime::table::RouteTable;
use ch_edge_proxy::runtime::upstream::resolve::Resolver;
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
            upstreams: Arc::from([UpstreamAddr::new(
                format!("chi-demo{i}-cluster-0-0.ns.svc.cluster.local"),
                None,
            )]),
            allow: None,
            proxy_protocol: None,
            balance: None,
            sticky: None,
            tls: None,
            postgres: None,
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
        // `<tag>.sticky.<exact name>`: one more probe after the exact miss.
        let sticky = format!(
            "session-42.sticky.chi-demo{}-cluster-0-0.ch.example.com",
            n - 1
        );
        for (what, name) in [
            ("exact", exact.as_str()),
            ("wildcard", wild.as_str()),
            ("miss", miss),
            ("sticky", sticky.as_str()),
        ] {
            assert!(
                table.find(Some(name.as_bytes())).is_ok() == (what != "miss"),
                "{what}"
            );
            group.bench_with_input(BenchmarkId::new(what, n), name.as_bytes(), |b, name| {
                b.iter(|| table.find(black_box(Some(name))).is_ok())
            });
        }
    }
    group.finish();
}

/// A route's addresses as the connect phase sees them (open counts, none ejected), with
/// weights when the second field is set (address `i` weighs `i % 4 + 1`).
struct Addresses(Vec<(String, u32)>, bool);

impl Pool for Addresses {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn seen(&self, i: usize) -> Option<Seen> {
        self.0.get(i).map(|(_, open)| Seen {
            open: *open,
            ejected: false,
        })
    }
    fn node(&self, i: usize) -> Node<'_> {
        Node {
            host: self.0.get(i).map_or("", |(h, _)| h),
            port: None,
            ip: None,
        }
    }
    fn weight(&self, i: usize) -> u32 {
        if self.1 {
            (i % 4 + 1) as u32
        } else {
            1
        }
    }
    fn uniform(&self) -> bool {
        !self.1
    }
}

/// Choosing an address for one connection: least_conn, round robin and a sticky tag, over a
/// cluster of 3 and of 30 replicas, with equal weights and (`weighted_*`) unequal ones.
fn choose_address(c: &mut Criterion) {
    let mut group = c.benchmark_group("choose");
    let tag = Tag::new("session-42").unwrap();
    for (n, weighted) in [(3usize, false), (30, false), (3, true), (30, true)] {
        let pool = Addresses(
            (0..n)
                .map(|i| {
                    (
                        format!("chi-demo-cluster-0-{i}.ns.svc.cluster.local"),
                        (i % 4) as u32,
                    )
                })
                .collect(),
            weighted,
        );
        let name = |what: &str| {
            if weighted {
                format!("weighted_{what}")
            } else {
                what.to_owned()
            }
        };
        group.bench_function(BenchmarkId::new(name("round_robin"), n), |b| {
            let mut rotation = 0usize;
            b.iter(|| {
                rotation += 1;
                choose(
                    black_box(&pool),
                    Choose::Balance(Balance::RoundRobin, rotation),
                )
            })
        });
        group.bench_function(BenchmarkId::new(name("least_conn"), n), |b| {
            let mut rotation = 0usize;
            b.iter(|| {
                rotation += 1;
                choose(
                    black_box(&pool),
                    Choose::Balance(Balance::LeastConn, rotation),
                )
            })
        });
        group.bench_function(BenchmarkId::new(name("sticky"), n), |b| {
            b.iter(|| choose(black_box(&pool), Choose::Sticky(&tag)))
        });
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

criterion_group!(benches, lookup, choose_address, build);
criterion_main!(benches);
