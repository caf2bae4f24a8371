//! The metrics recorder, installed once per process, and the Prometheus text exposition.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::runtime::meters;

/// Latency buckets in seconds: from sub-millisecond loopback to the 5 s default deadline.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Histogram samples are folded into buckets this often (bounds their memory).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global Prometheus recorder (first call) and returns its handle.
pub fn metrics_handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| b.install_recorder())
            .unwrap_or_else(|error| {
                // Another recorder was installed first (only possible in
                // tests); keep a detached one so rendering still works.
                tracing::warn!(%error, "metrics recorder not installed");
                PrometheusBuilder::new().build_recorder().handle()
            });
        meters::describe();
        handle
    })
}

/// The Prometheus text exposition of every metric.
pub fn render_metrics() -> String {
    let handle = metrics_handle();
    process_collector().collect();
    record_limits();
    handle.render()
}

/// The CPU and memory the process may use, next to what it uses (`process_*`), so a dashboard
/// and alerts can compare them: the cgroup's limits (v2, else v1) where set, else the machine's.
fn record_limits() {
    let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    let quota = read("/sys/fs/cgroup/cpu.max")
        .and_then(|s| {
            let (quota, period) = s.split_once(' ')?;
            Some((quota.parse::<f64>().ok()?, period.parse::<f64>().ok()?))
        })
        .or_else(|| {
            let quota = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")?
                .parse::<f64>()
                .ok()?;
            let period = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")?
                .parse::<f64>()
                .ok()?;
            Some((quota, period))
        })
        .filter(|(quota, period)| *quota > 0.0 && *period > 0.0)
        .map(|(quota, period)| quota / period);
    metrics::gauge!(meters::CPU_LIMIT).set(quota.map_or(cores, |q| q.min(cores)));

    let machine = read("/proc/meminfo").and_then(|s| {
        let kib = s.lines().next()?.strip_prefix("MemTotal:")?;
        Some(kib.trim().strip_suffix("kB")?.trim().parse::<f64>().ok()? * 1024.0)
    });
    // v2 writes "max" for no limit, v1 a huge number: both are over the machine's memory.
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|s| s.parse::<f64>().ok());
    let limit = match (cgroup, machine) {
        (Some(c), Some(m)) => Some(c.min(m)),
        (c, m) => c.or(m),
    };
    if let Some(limit) = limit {
        metrics::gauge!(meters::MEMORY_LIMIT).set(limit);
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Process metrics (CPU seconds, RSS, open fds…), refreshed on each scrape.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let c = metrics_process::Collector::default();
        c.describe();
        c
    })
}

/// Folds histogram samples into buckets every [`UPKEEP_EVERY`], forever.
pub async fn upkeep() {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    loop {
        every.tick().await;
        metrics_handle().run_upkeep();
    }
}
