//! One structured access-log line and one metric sample per connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use metrics::SharedString;
use tokio::time::Instant;

use crate::config::{AccessLogFormat, LogConfig};
use crate::outcome::Outcome;

/// Relayed connections seen, for sampling.
static RELAYED_SEEN: AtomicU64 = AtomicU64::new(0);

/// Deterministic sampling at `rate`: the `n`-th connection is logged when
/// `floor((n+1)·rate)` steps past `floor(n·rate)`, which logs exactly that
/// fraction over any long run, spread evenly, with no random source.
fn sampled(n: u64, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    ((n + 1) as f64 * rate).floor() > (n as f64 * rate).floor()
}

/// What we learnt about one connection, filled in phase by phase.
#[derive(Debug)]
pub struct Record {
    pub listener: Arc<str>,
    pub peer: SocketAddr,
    /// The real client: from a trusted PROXY header, else `peer`.
    pub client: Option<SocketAddr>,
    pub proxy_version: Option<u8>,
    pub vpce: Option<Box<str>>,
    /// Held on the heap at its exact size: the record lives as long as the
    /// connection, and an inline 255-byte name would sit in every idle one.
    pub sni: Option<Box<str>>,
    pub ech: bool,
    pub route: Option<Arc<str>>,
    pub upstream: Option<SocketAddr>,
    pub detail: Option<&'static str>,
    pub from_client: u64,
    pub from_upstream: u64,
    pub accepted: Instant,
    pub client_hello_us: Option<u64>,
    pub connect_us: Option<u64>,
}

impl Record {
    pub fn new(listener: Arc<str>, peer: SocketAddr) -> Self {
        Record {
            listener,
            peer,
            client: None,
            proxy_version: None,
            vpce: None,
            sni: None,
            ech: false,
            route: None,
            upstream: None,
            detail: None,
            from_client: 0,
            from_upstream: 0,
            accepted: Instant::now(),
            client_hello_us: None,
            connect_us: None,
        }
    }

    /// Counts the connection and writes its access-log line, as `log` asks:
    /// refusals always, relayed connections sampled at `log.sample`.
    pub fn finish(&self, outcome: Outcome, log: &LogConfig) {
        let route = match &self.route {
            Some(r) => SharedString::from_shared(r.clone()),
            None => SharedString::const_str(""),
        };
        metrics::counter!(
            crate::metrics::CONNECTIONS,
            "listener" => SharedString::from_shared(self.listener.clone()),
            "route" => route,
            "outcome" => outcome.label(),
        )
        .increment(1);
        let level_is_refusal = !outcome.relayed();
        if log.access == AccessLogFormat::Off
            || (!level_is_refusal
                && !sampled(RELAYED_SEEN.fetch_add(1, Ordering::Relaxed), log.sample))
        {
            return;
        }
        if log.access == AccessLogFormat::Text {
            self.text_line(outcome);
            return;
        }
        tracing::info!(
            target: "access",
            listener = &*self.listener,
            peer = %self.peer,
            client = %self.client.unwrap_or(self.peer),
            proxy_version = self.proxy_version,
            vpce = self.vpce.as_deref(),
            sni = self.sni.as_deref(),
            ech = self.ech,
            route = self.route.as_deref(),
            upstream = self.upstream.map(tracing::field::display),
            outcome = outcome.label(),
            refused = level_is_refusal,
            detail = self.detail,
            bytes_from_client = self.from_client,
            bytes_from_upstream = self.from_upstream,
            client_hello_us = self.client_hello_us,
            connect_us = self.connect_us,
            duration_ms = self.accepted.elapsed().as_millis() as u64,
        );
    }

    /// `client listener sni route upstream outcome bytes duration`, one line.
    fn text_line(&self, outcome: Outcome) {
        let dash = |s: Option<&str>| s.map(str::to_owned).unwrap_or_else(|| "-".to_owned());
        let line = format!(
            "{} via {} {} sni={} route={} upstream={} {} in={} out={} {}ms{}",
            self.client.unwrap_or(self.peer),
            self.peer,
            self.listener,
            dash(self.sni.as_deref()),
            dash(self.route.as_deref()),
            self.upstream
                .map(|u| u.to_string())
                .unwrap_or_else(|| "-".to_owned()),
            outcome.label(),
            self.from_client,
            self.from_upstream,
            self.accepted.elapsed().as_millis(),
            self.detail.map(|d| format!(" ({d})")).unwrap_or_default(),
        );
        tracing::info!(target: "access", "{line}");
    }
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
