//! Where a reload of 100,000 routes in one route file goes: the phases the reloader runs,
//! called directly and timed one by one, in 8 rounds of every route new and 8 of one route
//! edited, for a JSON and a YAML file. `cargo run --release --example reload_phases [json|yaml]`.
//!
//! fingerprint: the no-change check (read + hash); load: read, parse and validate
//! (`config::load_reusing`); build: the route table (`RouteTable::build_reusing`); free:
//! dropping the replaced table and configuration (the reloader does that after publishing).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ch_edge_proxy::model::config::{self, Format};
use ch_edge_proxy::runtime::table::RouteTable;
use ch_edge_proxy::runtime::upstream::resolve::Resolver;

const ROUTES: usize = 100_000;

/// `n` routes tagged `tag`, route `edited` (if any) on port 9441.
fn routes(format: Format, tag: &str, n: usize, edited: Option<usize>) -> String {
    let mut s = String::with_capacity(n * 80 + 16);
    s.push_str(match format {
        Format::Yaml => "routes:\n",
        Format::Json => "{\"routes\": [\n",
    });
    for k in 0..n {
        let port = if edited == Some(k) { 9441 } else { 9440 };
        let (a, b, c) = ((k >> 16) & 255, (k >> 8) & 255, k & 255);
        let sep = if k == 0 { "" } else { "," };
        let _ = match format {
            Format::Yaml => writeln!(
                s,
                "  - sni: chi-{tag}-{k}.ch.test\n    upstream: \"10.{a}.{b}.{c}:{port}\""
            ),
            Format::Json => writeln!(
                s,
                "  {sep}{{\"sni\": \"chi-{tag}-{k}.ch.test\", \"upstream\": \"10.{a}.{b}.{c}:{port}\"}}"
            ),
        };
    }
    if format == Format::Json {
        s.push_str("]}\n");
    }
    s
}

fn main() {
    let format = match std::env::args().nth(1).as_deref() {
        Some("yaml") => Format::Yaml,
        _ => Format::Json,
    };
    let dir = tempfile::tempdir().unwrap();
    let routes_d = dir.path().join("routes.d");
    std::fs::create_dir(&routes_d).unwrap();
    let file = routes_d.join(format!("routes.{format}"));
    let main = dir.path().join("config.yaml");
    std::fs::write(
        &main,
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\ninclude: [routes.d]\n",
    )
    .unwrap();
    std::fs::write(&file, routes(format, "start", ROUTES, None)).unwrap();
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
    let mut texts: Vec<(&str, String)> = (0..8)
        .map(|i| ("all new", routes(format, &format!("g{i}"), ROUTES, None)))
        .collect();
    texts.extend((0..8).map(|i| ("one edit", routes(format, "g7", ROUTES, Some(i * 997)))));
    for (what, text) in &texts {
        std::fs::write(&file, text).unwrap();
        let t0 = Instant::now();
        let hash = config::fingerprint(&main, &live.includes, &live.tls_files).unwrap();
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
            "{format} {what:8}: fingerprint {:6.1} ms  load {:6.1} ms  build {:6.1} ms  (to live {:6.1} ms)  free {:6.1} ms",
            ms(t1 - t0),
            ms(t2 - t1),
            ms(t3 - t2),
            ms(t3 - t0),
            ms(t4 - t3)
        );
    }
}
