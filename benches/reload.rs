//! Reload latency, in process with the real watcher: a route file replaced
//! (write + rename) → the new table live, for a small table, for one file of
//! 100k routes, and for 100k routes over 1,000 files with one file replaced;
//! the no-change re-check of 100k routes (hash only); resident memory. Each
//! swap case also reports the reload's own duration (`Status::took`: from
//! the reload's start, after the 50 ms watch debounce, until the new table
//! is live).
//!
//! `cargo bench --bench reload` prints percentiles; under `cargo test` it
//! runs a few small iterations as a smoke test. Nothing is asserted about time.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::Arc;

use ch_edge_proxy::model::config;
use ch_edge_proxy::runtime::observe::Silent;
use ch_edge_proxy::runtime::reload::{ReloadResult, Status, Trigger};
use ch_edge_proxy::runtime::server::{Handle, Server};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(60);

fn routes_yaml(tag: &str, n: usize) -> String {
    routes_yaml_from(tag, 0, n)
}

/// Routes `first..first + n` (distinct upstream addresses across files).
fn routes_yaml_from(tag: &str, first: usize, n: usize) -> String {
    let mut s = String::with_capacity(n * 72 + 16);
    s.push_str("routes:\n");
    for k in first..first + n {
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

/// `routes_yaml(tag, n)` with route `edited`'s upstream port changed.
fn routes_yaml_edited(tag: &str, n: usize, edited: usize, port: u16) -> String {
    let text = routes_yaml(tag, n);
    let from = format!("chi-{tag}-{edited}.ch.test\n");
    let at = text.find(&from).expect("route present") + from.len();
    let end = at + text[at..].find('\n').expect("upstream line");
    let line = &text[at..end];
    let new_line = line.replace(":9440\"", &format!(":{port}\""));
    format!("{}{new_line}{}", &text[..at], &text[end..])
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

/// Latencies of one swap: write → live, and the reload's own duration.
type Swap = (Duration, Duration);

/// Writes `text` to `path` the way an editor or kubelet would and returns
/// how long until the next generation is live (a refused reload fails the bench).
async fn swap_live(path: &Path, text: &str, status: &mut watch::Receiver<Status>) -> Swap {
    let generation = status.borrow().generation;
    let started = Instant::now();
    write_atomic(path, text);
    let s = wait_for(status, |s| {
        s.generation > generation || matches!(s.result, ReloadResult::Error(_))
    })
    .await;
    let took = started.elapsed();
    assert_eq!(s.result, ReloadResult::Ok, "{s:?}");
    (took, s.took)
}

/// Reports write → live and the reloads' own durations.
fn report_swaps(what: &str, swaps: Vec<Swap>) {
    let (live, reload): (Vec<Duration>, Vec<Duration>) = swaps.into_iter().unzip();
    report(&format!("{what}: file swap -> live"), live);
    report(&format!("{what}: reload duration"), reload);
}

/// Replaces the route file `iters` times with `routes` fresh routes each
/// time; returns write → live latencies.
async fn swaps(
    file: &Path,
    status: &mut watch::Receiver<Status>,
    iters: usize,
    routes: usize,
) -> Vec<Swap> {
    let mut out = Vec::with_capacity(iters);
    for i in 0..iters {
        let text = routes_yaml(&format!("g{i}-{routes}"), routes);
        out.push(swap_live(file, &text, status).await);
    }
    out
}

/// [`rss`] once the last replaced table is freed: that happens after a
/// reload is published, before the next one starts, so one more (unchanged)
/// reload is waited for first.
async fn settled_rss(proxy: &Handle, status: &mut watch::Receiver<Status>) -> String {
    status.borrow_and_update();
    proxy.request_reload();
    tokio::time::timeout(WAIT, status.changed())
        .await
        .unwrap()
        .unwrap();
    rss()
}

/// Resident set size, MiB: as is, and after handing freed heap back to the
/// OS (the reloader does that after each reload; this also catches what the
/// bench itself freed).
fn rss() -> String {
    let before = rss_mib();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
    format!(
        "{before:.1} MiB ({:.1} MiB after malloc_trim; heap in use {:.1} MiB)",
        rss_mib(),
        heap_in_use_mib()
    )
}

/// Bytes the allocator has handed out and not yet had back (all arenas):
/// what the live table and configuration hold, free lists excluded.
fn heap_in_use_mib() -> f64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        (info.uordblks + info.hblkhd) as f64 / (1024.0 * 1024.0)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    0.0
}

/// Resident set size of this process, MiB (Linux; 0 elsewhere).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// 100k routes as `files` files in `routes_d`; each iteration replaces one
/// file (a different one each time) with routes of new names.
async fn swaps_one_of_many(
    routes_d: &Path,
    status: &mut watch::Receiver<Status>,
    iters: usize,
    files: usize,
    per_file: usize,
) -> Vec<Swap> {
    let mut out = Vec::with_capacity(iters);
    for i in 0..iters {
        let f = (i * 7919) % files;
        let text = routes_yaml_from(&format!("m{i}"), f * per_file, per_file);
        let path = routes_d.join(format!("r{f:04}.yaml"));
        out.push(swap_live(&path, &text, status).await);
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
        let server = Server::bind(config::load(&main).unwrap(), Arc::new(Silent))
            .await
            .unwrap();
        let proxy = server.handle();
        let mut status = proxy.reloads();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        // The reloader answers a request once it runs.
        proxy.request_reload();
        wait_for(&mut status, |s| s.trigger == Trigger::Signal).await;

        report_swaps("10 routes", swaps(&file, &mut status, small_iters, 10).await);
        println!("rss, 10 routes: {}", settled_rss(&proxy, &mut status).await);
        report_swaps(
            &format!("{big_routes} routes in one file, all new"),
            swaps(&file, &mut status, big_iters, big_routes).await,
        );
        println!(
            "rss, {big_routes} routes in one file: {}",
            settled_rss(&proxy, &mut status).await
        );

        // The same file with one route edited: the other routes keep theirs.
        let tag = format!("g{}-{big_routes}", big_iters - 1);
        let mut edits = Vec::with_capacity(big_iters);
        for i in 0..big_iters {
            let text = routes_yaml_edited(&tag, big_routes, i * 997 % big_routes, 9441 + i as u16);
            edits.push(swap_live(&file, &text, &mut status).await);
        }
        report_swaps(&format!("{big_routes} routes in one file, one route edited"), edits);

        // Unchanged files: the hash decides, nothing is parsed.
        let mut rechecks = Vec::new();
        for _ in 0..big_iters {
            status.borrow_and_update();
            let started = Instant::now();
            proxy.request_reload();
            tokio::time::timeout(WAIT, status.changed()).await.unwrap().unwrap();
            rechecks.push(started.elapsed());
        }
        report(&format!("re-check, unchanged, {big_routes} routes"), rechecks);

        // The same number of routes over many files; one file replaced.
        std::fs::remove_file(&file).unwrap();
        let (files, per_file) = (1_000, big_routes / 1_000);
        for f in 0..files {
            let text = routes_yaml_from("many", f * per_file, per_file);
            std::fs::write(routes_d.join(format!("r{f:04}.yaml")), text).unwrap();
        }
        let generation = status.borrow().generation;
        proxy.request_reload();
        wait_for(&mut status, |s| s.generation > generation).await;
        report_swaps(
            &format!("{big_routes} routes in {files} files, one file replaced"),
            swaps_one_of_many(&routes_d, &mut status, big_iters * 3, files, per_file).await,
        );
        println!(
            "rss, {big_routes} routes in {files} files: {}",
            settled_rss(&proxy, &mut status).await
        );

        let _ = stop.send(());
        let _ = running.await;
    });
}
