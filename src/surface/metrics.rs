//! The metrics recorder, installed once per process, and the Prometheus text exposition.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::runtime::endpoint::registry;
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
    let mut text = handle.render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&per_address());
    text
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
    use crate::runtime::endpoint::Endpoint;

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
