//! The metrics recorder, installed once per process, and the Prometheus text exposition.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::model::tls::CertStore;
use crate::runtime::meters;
use crate::runtime::upstream::endpoint::registry;

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
        // Exported at 0 from the start, so the alert on dropped lines has a series before
        // the first drop (the writer thread may start before this recorder exists).
        metrics::counter!(meters::LOG_LINES_DROPPED).increment(0);
        handle
    })
}

/// The Prometheus text exposition of every metric.
pub fn render_metrics() -> String {
    let handle = metrics_handle();
    process_collector().collect();
    record_limits();
    let mut text = handle.render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&per_address());
    text
}

/// The CPU and memory the process may use, next to what it uses (`process_*`), so a dashboard
/// and alerts can compare them: the cgroup's limits (v2, else v1) where set, else the machine's.
fn record_limits() {
    let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    let quota = read("/sys/fs/cgroup/cpu.max")
        .and_then(|max| cpu_quota(&max))
        .or_else(|| {
            let quota = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")?;
            let period = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")?;
            cpu_quota(&format!("{quota} {period}"))
        });
    metrics::gauge!(meters::CPU_LIMIT).set(quota.map_or(cores, |q| q.min(cores)));

    let machine = read("/proc/meminfo").and_then(|m| mem_total(&m));
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|s| s.parse::<f64>().ok());
    // v2 writes "max" for no limit, v1 a huge number: both end up as the machine's memory.
    let limit = match (cgroup, machine) {
        (Some(c), Some(m)) => Some(c.min(m)),
        (c, m) => c.or(m),
    };
    if let Some(limit) = limit {
        metrics::gauge!(meters::MEMORY_LIMIT).set(limit);
    }
}

/// Cores from "<quota> <period>" (cgroup v2 `cpu.max`, or v1's two files); `None` without a
/// quota ("max", or v1's -1).
fn cpu_quota(text: &str) -> Option<f64> {
    let (quota, period) = text.trim().split_once(' ')?;
    let (quota, period) = (quota.parse::<f64>().ok()?, period.parse::<f64>().ok()?);
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// Bytes of `MemTotal` in /proc/meminfo.
fn mem_total(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib = line.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
    Some(kib.trim().parse::<f64>().ok()? * 1024.0)
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

/// The per-address families ([`meters::PER_ADDRESS`]) in the text format, from every endpoint
/// alive now. Endpoints with the same labels (one IP literal in two routes) are added up.
fn per_address() -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;

    let mut rows: BTreeMap<(String, String), [u64; 4]> = BTreeMap::new();
    for (upstream, addr, s) in registry::snapshot() {
        let row = rows.entry((upstream, addr.to_string())).or_default();
        row[0] += s.failures_total;
        row[1] += u64::from(s.open);
        row[2] = row[2].max(u64::from(s.ejected_until.is_some()));
        row[3] += s.ejections_total;
    }
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    for (i, (name, kind, help)) in meters::PER_ADDRESS.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for ((upstream, address), values) in &rows {
            let _ = writeln!(
                out,
                "{name}{{upstream=\"{}\",address=\"{}\"}} {}",
                escape(upstream),
                escape(address),
                values[i]
            );
        }
        out.push('\n');
    }
    out
}

/// `ch_edge_proxy_tls_certificate_expiry_timestamp_seconds` of each live certificate, in the
/// text format (rendered from the live state, so a removed certificate's series goes away).
pub fn certificate_expiry(certificates: &CertStore) -> String {
    use std::fmt::Write;
    let name = meters::TLS_CERTIFICATE_EXPIRY;
    let mut out = String::new();
    let mut certs = certificates.iter().peekable();
    if certs.peek().is_none() {
        return out;
    }
    let _ = writeln!(
        out,
        "# HELP {name} When each served certificate expires (notAfter, Unix seconds), by certificate file.\n# TYPE {name} gauge"
    );
    for c in certs {
        let label = c.label();
        let _ = writeln!(
            out,
            "{name}{{certificate=\"{}\"}} {}",
            escape(&label),
            c.not_after
        );
    }
    out.push('\n');
    out
}

/// A label value in the text format (host names and addresses need none of it, but a label
/// is never trusted to be plain).
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains(['\\', '"', '\n']) {
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        value.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::upstream::endpoint::Endpoint;

    #[test]
    fn cgroup_cpu_quota_and_meminfo() {
        assert_eq!(cpu_quota("150000 100000"), Some(1.5));
        assert_eq!(cpu_quota("max 100000"), None);
        assert_eq!(cpu_quota("-1 100000"), None);
        assert_eq!(cpu_quota("garbage"), None);
        let meminfo = "MemTotal:       24684084 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(meminfo), Some(24684084.0 * 1024.0));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn per_address_families_follow_live_endpoints() {
        let host: std::sync::Arc<str> = "render.test".into();
        let a = Endpoint::new(&host, "10.9.9.1:9440".parse().unwrap());
        let twin = Endpoint::new(&host, "10.9.9.1:9440".parse().unwrap());
        let _open = (a.lease(), twin.lease());
        let text = per_address();
        let line = "ch_edge_proxy_upstream_open_connections{upstream=\"render.test:9440\",address=\"10.9.9.1:9440\"} 2";
        assert!(text.contains(line), "{text}");
        assert!(text.contains("# TYPE ch_edge_proxy_upstream_ejected gauge"));
        assert!(text.contains("# TYPE ch_edge_proxy_upstream_connect_failures_total counter"));
        drop((a, twin, _open));
        assert!(
            !per_address().contains("render.test"),
            "gone with the endpoint"
        );
        assert_eq!(escape("a\"b\\"), "a\\\"b\\\\");
    }
}
