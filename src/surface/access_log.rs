//! Logging: JSON lines on stdout, one access-log line per connection, and the log level, which
//! follows the configuration on every reload ([`AccessLog`] is the runtime's observer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use arc_swap::ArcSwap;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::model::config::{AccessLogFormat, LogConfig};
use crate::runtime::observe::{Observer, Record};
use crate::runtime::outcome::Outcome;

/// Swaps the log filter when the config's `log.level` changes.
static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// JSON lines on stdout; level from `RUST_LOG`, else `info` until the configuration's
/// `log.level` is applied (by [`AccessLog::configured`]).
pub fn init_logging() {
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let (filter, handle) = reload::Layer::new(from_env.unwrap_or_else(|| EnvFilter::new("info")));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(std::io::stdout);
    if tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .try_init()
        .is_ok()
        && !fixed
    {
        let _ = LEVEL.set(handle);
    }
}

/// Applies `level` (a filter directive, validated by config) unless `RUST_LOG` set the level
/// at start.
fn set_level(level: &str) {
    if let (Some(handle), Ok(filter)) = (LEVEL.get(), EnvFilter::builder().parse(level)) {
        let _ = handle.reload(filter);
    }
}

/// The access log: one line per connection as `log:` asks, refusals always, relayed connections
/// sampled at `log.sample`.
#[derive(Debug, Default)]
pub struct AccessLog {
    /// The live `log:` settings, so a reload also covers connections opened before it.
    settings: ArcSwap<LogConfig>,
    /// Relayed connections seen, for sampling.
    relayed_seen: AtomicU64,
}

impl Observer for AccessLog {
    fn connection(&self, record: &Record, outcome: Outcome) {
        let log = self.settings.load();
        let refused = !outcome.relayed();
        if log.access == AccessLogFormat::Off
            || (!refused
                && !sampled(
                    self.relayed_seen.fetch_add(1, Ordering::Relaxed),
                    log.sample,
                ))
        {
            return;
        }
        if log.access == AccessLogFormat::Text {
            text_line(record, outcome);
            return;
        }
        tracing::info!(
            target: "access",
            listener = &*record.listener,
            peer = %record.peer,
            client = %record.client.unwrap_or(record.peer),
            proxy_version = record.proxy_version,
            vpce = record.vpce.as_deref(),
            sni = record.sni.as_deref(),
            ech = record.ech,
            route = record.route.as_deref(),
            sticky = record.sticky.as_deref(),
            upstream = record.upstream.map(tracing::field::display),
            upstream_failed = record.upstream_failed.map(tracing::field::display),
            outcome = outcome.keyword(),
            refused,
            detail = record.detail,
            bytes_from_client = record.from_client,
            bytes_from_upstream = record.from_upstream,
            client_hello_us = record.client_hello_us,
            connect_us = record.connect_us,
            duration_ms = record.accepted.elapsed().as_millis() as u64,
        );
    }

    fn configured(&self, log: &LogConfig) {
        if **self.settings.load() != *log {
            self.settings.store(log.clone().into());
        }
        set_level(&log.level);
    }
}

/// Deterministic sampling at `rate`: the `n`-th connection is logged when `floor((n+1)·rate)`
/// steps past `floor(n·rate)`, which logs exactly that fraction over any long run, spread
/// evenly, with no random source.
fn sampled(n: u64, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    ((n + 1) as f64 * rate).floor() > (n as f64 * rate).floor()
}

/// `client listener sni route upstream outcome bytes duration`, one line.
fn text_line(r: &Record, outcome: Outcome) {
    let dash = |s: Option<&str>| s.map(str::to_owned).unwrap_or_else(|| "-".to_owned());
    let line = format!(
        "{} via {} {} sni={} route={}{} upstream={}{} {} in={} out={} {}ms{}",
        r.client.unwrap_or(r.peer),
        r.peer,
        r.listener,
        dash(r.sni.as_deref()),
        dash(r.route.as_deref()),
        r.sticky
            .as_deref()
            .map(|t| format!(" sticky={t}"))
            .unwrap_or_default(),
        r.upstream
            .map(|u| u.to_string())
            .unwrap_or_else(|| "-".to_owned()),
        r.upstream_failed
            .map(|u| format!(" failed={u}"))
            .unwrap_or_default(),
        outcome.keyword(),
        r.from_client,
        r.from_upstream,
        r.accepted.elapsed().as_millis(),
        r.detail.map(|d| format!(" ({d})")).unwrap_or_default(),
    );
    tracing::info!(target: "access", "{line}");
}

#[cfg(test)]
mod tests {
    use super::sampled;

    fn count(rate: f64, n: u64) -> u64 {
        (0..n).filter(|i| sampled(*i, rate)).count() as u64
    }

    #[test]
    fn sampling_logs_the_configured_fraction() {
        assert_eq!(count(1.0, 1000), 1000);
        assert_eq!(count(0.0, 1000), 0);
        assert_eq!(count(0.5, 1000), 500);
        assert_eq!(count(0.01, 1000), 10);
        assert_eq!(count(0.25, 8), 2);
    }
}
