//! Reload latency, in process with the real watcher: a route file replaced
//! (write + rename) → the new table live, for a small table and for 100k
//! routes; and the no-change re-check of 100k routes (hash only).
//!
//! `cargo bench --bench reload` prints percentiles; under `cargo test` it
//! runs a few small iterations as a smoke test. Nothing is asserted about time.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use ch_edge_proxy::config;
use ch_edge_proxy::reload::{Outcome, Status};
use ch_edge_proxy::server::Server;
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(60);

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

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn wait_for(
    status: &mut watch::Receiver<Status>,
    pred: impl FnMut(&Status) -> bool,
) -> Status {
    tokio::time::timeout(WAIT, status.wait_for(pred))
        .await
        .expect("reload in time")
        .expect("server running")
        .clone()
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().unwrap_or_default().as_secs_f64() * 1e3
    };
    println!(
        "{what}: n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}

/// Replaces the route file `iters` times with `routes` fresh routes each
/// time; returns write → live latencies.
async fn swaps(
    file: &Path,
    status: &mut watch::Receiver<Status>,
    iters: usize,
    routes: usize,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(iters);
    for i in 0..iters {
        let text = routes_yaml(&format!("g{i}-{routes}"), routes);
        let generation = status.borrow().generation;
        let started = Instant::now();
        write_atomic(file, &text);
        let s = wait_for(status, |s| {
            s.generation > generation || matches!(s.outcome, Outcome::Error(_))
        })
        .await;
        out.push(started.elapsed());
        assert_eq!(s.outcome, Outcome::Ok, "{s:?}");
    }
    out
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (small_iters, big_routes, big_iters) = if full {
        (300, 100_000, 10)
    } else {
        (3, 1_000, 2)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let routes_d = dir.path().join("routes.d");
        std::fs::create_dir(&routes_d).unwrap();
        let file = routes_d.join("routes.yaml");
        std::fs::write(&file, routes_yaml("start", 10)).unwrap();
        let main = dir.path().join("config.yaml");
        std::fs::write(
            &main,
            "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\ninclude: [routes.d]\n",
        )
        .unwrap();
        let server = Server::bind(config::load(&main).unwrap()).await.unwrap();
        let shared = server.shared();
        let mut status = shared.reload.subscribe();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        // The reloader answers a request once it runs.
        shared.request_reload();
        wait_for(&mut status, |s| s.trigger == ch_edge_proxy::reload::Trigger::Signal).await;

        report("file swap -> live, 10 routes", swaps(&file, &mut status, small_iters, 10).await);
        report(
            &format!("file swap -> live, {big_routes} routes"),
            swaps(&file, &mut status, big_iters, big_routes).await,
        );

        // Unchanged files: the hash decides, nothing is parsed.
        let mut rechecks = Vec::new();
        for _ in 0..big_iters {
            status.borrow_and_update();
            let started = Instant::now();
            shared.request_reload();
            tokio::time::timeout(WAIT, status.changed()).await.unwrap().unwrap();
            rechecks.push(started.elapsed());
        }
        report(&format!("re-check, unchanged, {big_routes} routes"), rechecks);

        let _ = stop.send(());
        let _ = running.await;
    });
}
