//! Reload latency, in process with the real watcher: a route file replaced
//! (write + rename) → the new table live, for a small table, for one file of
//! 100k routes (JSON and YAML), and for 100k routes over 1,000 files with one
//! file replaced; the no-change re-check of 100k routes (hash only); resident
//! memory. Each swap case also reports the reload's own duration
//! (`Status::took`: from the reload's start, after the 50 ms watch debounce,
//! until the new table is live, as `/routes` shows it).
//!
//! `cargo bench --bench reload` prints percentiles; under `cargo test` it
//! runs a few small iterations as a smoke test. Nothing is asserted about time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ch_edge_proxy::model::config::{self, Format};
use ch_edge_proxy::runtime::control::reload::{ReloadResult, Status, Trigger};
use ch_edge_proxy::runtime::control::server::{Handle, Server};
use ch_edge_proxy::runtime::observe::Silent;
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(120);

/// Routes `first..first + n` in `format` (distinct upstream addresses across files); route `k`
/// is `chi-{tag}-{k}.ch.test`, its port 9440 unless `edited` says otherwise.
fn routes_text(
    format: Format,
    tag: &str,
    first: usize,
    n: usize,
    edited: Option<(usize, u16)>,
) -> String {
    let mut s = String::with_capacity(n * 80 + 16);
    s.push_str(match format {
        Format::Yaml => "routes:\n",
        Format::Json => "{\"routes\": [\n",
    });
    for k in first..first + n {
        let port = match edited {
            Some((e, port)) if e == k => port,
            _ => 9440,
        };
        let (a, b, c) = ((k >> 16) & 255, (k >> 8) & 255, k & 255);
        let _ = match format {
            Format::Yaml => writeln!(
                s,
                "  - sni: chi-{tag}-{k}.ch.test\n    upstream: \"10.{a}.{b}.{c}:{port}\""
            ),
            Format::Json => writeln!(
                s,
                "  {}{{\"sni\": \"chi-{tag}-{k}.ch.test\", \"upstream\": \"10.{a}.{b}.{c}:{port}\"}}",
                if k == first { "" } else { "," }
            ),
        };
    }
    if format == Format::Json {
        s.push_str("]}\n");
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
    format: Format,
    status: &mut watch::Receiver<Status>,
    iters: usize,
    routes: usize,
) -> Vec<Swap> {
    let mut out = Vec::with_capacity(iters);
    for i in 0..iters {
        let text = routes_text(format, &format!("g{i}-{routes}"), 0, routes, None);
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

/// 100k routes as `files` JSON files in `routes_d`; each iteration replaces one
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
        let text = routes_text(Format::Json, &format!("m{i}"), f * per_file, per_file, None);
        let path = routes_d.join(format!("r{f:04}.json"));
        out.push(swap_live(&path, &text, status).await);
    }
    out
}

/// One big file in `format`: every route new, then one route edited, then unchanged
/// re-checks.
async fn one_big_file(
    routes_d: &Path,
    format: Format,
    proxy: &Handle,
    status: &mut watch::Receiver<Status>,
    iters: usize,
    routes: usize,
) {
    let file = routes_d.join(format!("big.{format}"));
    let what = format!("{routes} routes in one {format} file");
    // Untimed: the first big table grows the process (page faults for ~100 MB) once.
    swap_live(
        &file,
        &routes_text(format, "warm-up", 0, routes, None),
        status,
    )
    .await;
    report_swaps(
        &format!("{what}, all new"),
        swaps(&file, format, status, iters, routes).await,
    );
    println!("rss, {what}: {}", settled_rss(proxy, status).await);

    // The same file with one route edited: the other routes keep theirs.
    let tag = format!("g{}-{routes}", iters - 1);
    let mut edits = Vec::with_capacity(iters);
    for i in 0..iters {
        let edit = (i * 997 % routes, 9441 + i as u16);
        let text = routes_text(format, &tag, 0, routes, Some(edit));
        edits.push(swap_live(&file, &text, status).await);
    }
    report_swaps(&format!("{what}, one route edited"), edits);

    // Unchanged files: the hash decides, nothing is parsed.
    let mut rechecks = Vec::new();
    for _ in 0..iters {
        status.borrow_and_update();
        let started = Instant::now();
        proxy.request_reload();
        tokio::time::timeout(WAIT, status.changed())
            .await
            .unwrap()
            .unwrap();
        rechecks.push(started.elapsed());
    }
    report(&format!("re-check, unchanged, {what}"), rechecks);
    remove_and_reload(&file, proxy, status).await;
}

/// Removes `file` and waits until the table without it is live.
async fn remove_and_reload(file: &PathBuf, proxy: &Handle, status: &mut watch::Receiver<Status>) {
    std::fs::remove_file(file).unwrap();
    let generation = status.borrow().generation;
    proxy.request_reload();
    wait_for(status, |s| s.generation > generation).await;
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (small_iters, big_routes, big_iters) = if full {
        (300, 100_000, 20)
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
        std::fs::write(&file, routes_text(Format::Yaml, "start", 0, 10, None)).unwrap();
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

        report_swaps(
            "10 routes",
            swaps(&file, Format::Yaml, &mut status, small_iters, 10).await,
        );
        println!("rss, 10 routes: {}", settled_rss(&proxy, &mut status).await);
        remove_and_reload(&file, &proxy, &mut status).await;

        for format in [Format::Json, Format::Yaml] {
            one_big_file(&routes_d, format, &proxy, &mut status, big_iters, big_routes).await;
        }

        // The same number of routes over many files; one file replaced.
        let (files, per_file) = (1_000, big_routes / 1_000);
        for f in 0..files {
            let text = routes_text(Format::Json, "many", f * per_file, per_file, None);
            std::fs::write(routes_d.join(format!("r{f:04}.json")), text).unwrap();
        }
        let generation = status.borrow().generation;
        proxy.request_reload();
        wait_for(&mut status, |s| s.generation > generation).await;
        report_swaps(
            &format!("{big_routes} routes in {files} JSON files, one file replaced"),
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
