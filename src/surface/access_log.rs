//! Logging: lines on stdout — one access-log line per connection, and the `tracing` events —
//! through one batched writer ([`super::log_sink`]), as JSON or text (`log.format`,
//! [`super::log_text`]; access lines as `log.access`, [`super::access_text`]); format and level
//! follow the configuration on every reload ([`AccessLog`] is the runtime's observer).
//!
//! Access lines are formatted by hand into a per-thread buffer (no `tracing` machinery per
//! connection). Refusals are always logged, but at most [`REFUSALS_PER_SECOND`] lines per outcome
//! each second: a flood is summed up in one line per outcome and second, while the metrics
//! still count every refusal.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use ch_edge_wire::postgres::ListenerProtocol;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use super::log_text::{self, EventFormat};
use super::{access_text, json_out, log_sink, reload_log};
use crate::model::config::{AccessLogFormat, LogConfig};
use crate::runtime::meters;
use crate::runtime::observe::{Observer, Record, Reloaded};
use crate::runtime::outcome::Outcome;

/// Refusal lines logged per outcome and second; the rest are counted and summed up.
pub const REFUSALS_PER_SECOND: u32 = 100;

/// Swaps the log filter when the config's `log.level` changes.
static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Lines on stdout, JSON until the configuration's `log.format` is applied; level from
/// `RUST_LOG`, else `info` until the configuration's `log.level` is applied (both by
/// [`AccessLog::configured`], at start and on every reload).
pub fn init_logging() {
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let (filter, handle) = reload::Layer::new(from_env.unwrap_or_else(|| EnvFilter::new("info")));
    let lines = tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(EventFormat::default())
        .with_writer(log_sink::Lines);
    if tracing_subscriber::registry()
        .with(filter)
        .with(lines)
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

/// The access log: one line per connection as `log:` asks — refusals always (up to
/// [`REFUSALS_PER_SECOND`] per outcome), relayed connections sampled at `log.sample`.
#[derive(Debug)]
pub struct AccessLog {
    /// The live `log:` settings, so a reload also covers connections opened before it.
    settings: ArcSwap<LogConfig>,
    /// Relayed connections seen, for sampling.
    relayed_seen: AtomicU64,
    refusals: [Window; Outcome::KEYWORDS.len()],
    started: Instant,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            settings: ArcSwap::default(),
            relayed_seen: AtomicU64::new(0),
            refusals: std::array::from_fn(|_| Window::default()),
            started: Instant::now(),
        }
    }
}

/// One outcome's refusal lines in the current second.
#[derive(Debug, Default)]
struct Window {
    second: AtomicU64,
    logged: AtomicU32,
    suppressed: AtomicU64,
}

impl Observer for AccessLog {
    fn connection(&self, record: &Record, outcome: Outcome) {
        let log = self.settings.load();
        if log.access == AccessLogFormat::Off {
            return;
        }
        let refused = !outcome.relayed();
        let logged = if refused {
            self.admit_refusal(outcome)
        } else {
            sampled(
                self.relayed_seen.fetch_add(1, Ordering::Relaxed),
                log.sample,
            )
        };
        if !logged {
            return;
        }
        SCRATCH.with(|scratch| {
            let mut line = scratch.borrow_mut();
            line.clear();
            match log.access {
                AccessLogFormat::Text => access_text::text_line(&mut line, record, outcome),
                _ => json_line(&mut line, record, outcome),
            }
            log_sink::append(&line);
        });
    }

    fn configured(&self, log: &LogConfig) {
        log_text::set_format(log.format);
        if **self.settings.load() != *log {
            self.settings.store(log.clone().into());
        }
        set_level(&log.level);
    }

    fn reloaded(&self, reload: &Reloaded<'_>) {
        reload_log::log(reload);
    }
}

impl AccessLog {
    /// Whether a refusal line for `outcome` may be written in this second.
    fn admit_refusal(&self, outcome: Outcome) -> bool {
        let Some(window) = self.refusals.get(outcome as usize) else {
            return true;
        };
        let now = self.started.elapsed().as_secs();
        let second = window.second.load(Ordering::Relaxed);
        if second != now
            && window
                .second
                .compare_exchange(second, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            window.logged.store(0, Ordering::Relaxed);
            report_suppressed(window, outcome);
        }
        if window.logged.fetch_add(1, Ordering::Relaxed) < REFUSALS_PER_SECOND {
            return true;
        }
        window.suppressed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(meters::LOG_LINES_SUPPRESSED, "outcome" => outcome.keyword())
            .increment(1);
        false
    }

    /// Sums up refusals suppressed in seconds that have ended (call about once a second, so a
    /// flood that stopped is still reported).
    pub fn tick(&self) {
        let now = self.started.elapsed().as_secs();
        self.report(|window| window.second.load(Ordering::Relaxed) < now);
    }

    /// Sums up every refusal suppressed so far (at exit).
    pub fn finish(&self) {
        self.report(|_| true);
    }

    fn report(&self, due: impl Fn(&Window) -> bool) {
        for (i, window) in self.refusals.iter().enumerate() {
            let outcome = Outcome::KEYWORDS
                .get(i)
                .and_then(|k| k.parse::<Outcome>().ok());
            if let (true, Some(outcome)) = (due(window), outcome) {
                report_suppressed(window, outcome);
            }
        }
    }
}

/// One line saying how many refusal lines of `outcome` were left out, if any.
fn report_suppressed(window: &Window, outcome: Outcome) {
    let n = window.suppressed.swap(0, Ordering::Relaxed);
    if n > 0 {
        tracing::warn!(
            target: "access",
            outcome = outcome.keyword(),
            suppressed = n,
            limit_per_second = REFUSALS_PER_SECOND,
            "refusal lines suppressed (every refusal is counted in ch_edge_proxy_connections_total)"
        );
    }
}

thread_local! {
    /// Where a worker formats its access lines: allocated once per thread.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
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

/// `{"timestamp":…,"level":"INFO",<fields>,"target":"access"}` — the shape of every other log
/// line, fields absent when unknown.
fn json_line(out: &mut Vec<u8>, r: &Record, outcome: Outcome) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    json_out::timestamp(out, SystemTime::now());
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"listener\":");
    json_out::string(out, &r.listener);
    out.extend_from_slice(b",\"peer\":\"");
    json_out::addr(out, r.peer.0);
    out.extend_from_slice(b"\",\"client\":\"");
    json_out::addr(out, r.client_or_peer());
    out.push(b'"');
    if let Some(v) = r.proxy_version {
        field_int(out, "proxy_version", v);
    }
    field_str(out, "vpce", r.vpce.as_deref());
    field_str(out, "sni", r.sni.as_deref());
    out.extend_from_slice(if r.ech {
        b",\"ech\":true"
    } else {
        b",\"ech\":false"
    });
    field_str(out, "route", r.route.as_deref());
    field_str(out, "sticky", r.sticky.as_deref());
    field_addr(out, "upstream", r.upstream.map(|u| u.0));
    field_addr(out, "upstream_failed", r.upstream_failed.map(|u| u.0));
    field_str(out, "outcome", Some(outcome.keyword()));
    out.extend_from_slice(match outcome.relayed() {
        true => b",\"refused\":false",
        false => b",\"refused\":true",
    });
    field_str(out, "detail", r.detail);
    field_int(out, "bytes_from_client", r.from_client);
    field_int(out, "bytes_from_upstream", r.from_upstream);
    if let Some(us) = r.client_hello_us {
        field_int(out, "client_hello_us", us);
    }
    if let Some(us) = r.connect_us {
        field_int(out, "connect_us", us);
    }
    if r.protocol != ListenerProtocol::Tls {
        field_str(out, "protocol", Some(r.protocol.keyword()));
    }
    if let Some(pg) = r.postgres {
        field_str(out, "negotiation", Some(pg.negotiation.keyword()));
    }
    if let Some(tls) = r.tls {
        field_str(out, "tls", Some(tls.mode.keyword()));
        if tls.version != 0 {
            out.extend_from_slice(b",\"tls_version\":\"1.");
            json_out::int(out, tls.version % 10);
            out.push(b'"');
            field_int(out, "handshake_us", tls.handshake_us);
        }
    }
    field_int(out, "duration_ms", r.accepted.elapsed().as_millis());
    out.extend_from_slice(b",\"target\":\"access\"}\n");
}

/// `,"key":` (keys are ours: nothing to escape).
fn key(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn field_str(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        key(out, name);
        json_out::string(out, v);
    }
}

fn field_int(out: &mut Vec<u8>, name: &str, value: impl itoa::Integer) {
    key(out, name);
    json_out::int(out, value);
}

fn field_addr(out: &mut Vec<u8>, name: &str, value: Option<std::net::SocketAddr>) {
    if let Some(a) = value {
        key(out, name);
        out.push(b'"');
        json_out::addr(out, a);
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn refusals_are_limited_per_outcome_and_second() {
        let log = AccessLog::default();
        let admitted = (0..3 * REFUSALS_PER_SECOND)
            .filter(|_| log.admit_refusal(Outcome::UnknownSni))
            .count();
        // Within one second (the test runs in far less), only the limit passes...
        assert!(admitted <= 2 * REFUSALS_PER_SECOND as usize, "{admitted}");
        // ...per outcome: another outcome has its own budget.
        assert!(log.admit_refusal(Outcome::NotTls));
        let suppressed = log.refusals[Outcome::UnknownSni as usize]
            .suppressed
            .load(Ordering::Relaxed);
        assert_eq!(suppressed + admitted as u64, 3 * REFUSALS_PER_SECOND as u64);
    }
}
