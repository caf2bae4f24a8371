//! Where a reload of 100,000 routes in one file goes: the phases the
//! reloader runs, called directly and timed one by one (every route new on
//! each of 8 rounds). `cargo run --release --example reload_phases`.
//!
//! fingerprint: the no-change check (read + hash); load: read, parse and
//! validate (`config::load_reusing`); build: the route table
//! (`RouteTable::build_reusing`); free: dropping the replaced table and
//! configuration (the reloader does that after publishing).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ch_edge_proxy::model::config;
use ch_edge_proxy::runtime::resolve::{Resolver, RouteTable};

const ROUTES: usize = 100_000;

fn routes_yaml(tag: &str, n: usize) -> String {
    let mut s = String::with_capacity(n * 72 + 16);
    s.push_str("routes:\n");
    for k in 0..n {
        let _ = writeln!(
            s,
            "  - sni: chi-{tag}-{k}.ch.test\n    upstream: \"10.{}.{}.{}:9440\"",
            (k >> 16) & 255,
            (k >> 8) & 255,
            k & 255
        );
    }
    s
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let routes_d = dir.path().join("routes.d");
    std::fs::create_dir(&routes_d).unwrap();
    let file = routes_d.join("routes.yaml");
    let main = dir.path().join("config.yaml");
    std::fs::write(
        &main,
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\ninclude: [routes.d]\n",
    )
    .unwrap();
    std::fs::write(&file, routes_yaml("start", ROUTES)).unwrap();
    let resolver = Resolver::new(Duration::from_secs(30));
    let mut live = config::load(&main).unwrap();
    let mut table = RouteTable::build_reusing(
        &live.routes,
        &live.defaults,
        &resolver,
        &RouteTable::default(),
    )
    .unwrap();
    // Generated up front: the bench's own buffers stay out of the timings.
    let texts: Vec<String> = (0..8)
        .map(|i| routes_yaml(&format!("g{i}"), ROUTES))
        .collect();
    for text in &texts {
        std::fs::write(&file, text).unwrap();
        let t0 = Instant::now();
        let hash = config::fingerprint(&main, &live.includes).unwrap();
        assert_ne!(hash, live.content_hash);
        let t1 = Instant::now();
        let next = config::load_reusing(&main, &live.route_files).unwrap();
        let t2 = Instant::now();
        let next_table =
            RouteTable::build_reusing(&next.routes, &next.defaults, &resolver, &table).unwrap();
        let t3 = Instant::now();
        drop(std::mem::replace(&mut table, next_table));
        drop(std::mem::replace(&mut live, next));
        let t4 = Instant::now();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "fingerprint {:6.1} ms  load {:6.1} ms  build {:6.1} ms  (to live {:6.1} ms)  free {:6.1} ms",
            ms(t1 - t0),
            ms(t2 - t1),
            ms(t3 - t2),
            ms(t3 - t0),
            ms(t4 - t3)
        );
    }
}
