//! What the log says about upstream name lookups, which run every 10 s per name: a line when a
//! name's state changes (its first failure, a different error, resolved again), and while the
//! same failure goes on, one line every [`REPEAT_EVERY`] with how many failures there were
//! since the last one; never one line per refresh. `ch_edge_proxy_dns_lookups_total` counts
//! every lookup either way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// While one error repeats, at most one line per name this often.
pub(crate) const REPEAT_EVERY: Duration = Duration::from_secs(300);

/// The failing names, each with its streak of failures.
#[derive(Debug, Default)]
pub(crate) struct LookupLog {
    failing: HashMap<Box<str>, Streak>,
}

#[derive(Debug)]
struct Streak {
    error: String,
    /// Failures in a row.
    failures: u64,
    /// Failures not told by a line yet.
    untold: u64,
    told_at: Instant,
}

/// A line to write about one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// The first failure, or a failure with another error than the last.
    Failed { failures: u64 },
    /// The same error for [`REPEAT_EVERY`] since the last line.
    StillFailing { failures: u64, since_last_line: u64 },
    /// A lookup succeeded after `failures` in a row.
    Resolved { failures: u64 },
}

impl LookupLog {
    /// A lookup of `host` failed with `error` at `now`: the line to write, if any.
    pub fn failed(&mut self, host: &str, error: &str, now: Instant) -> Option<Line> {
        let Some(streak) = self.failing.get_mut(host) else {
            self.failing.insert(
                host.into(),
                Streak {
                    error: error.to_owned(),
                    failures: 1,
                    untold: 0,
                    told_at: now,
                },
            );
            return Some(Line::Failed { failures: 1 });
        };
        streak.failures += 1;
        if streak.error != error {
            streak.error = error.to_owned();
            streak.untold = 0;
            streak.told_at = now;
            return Some(Line::Failed {
                failures: streak.failures,
            });
        }
        streak.untold += 1;
        if now.saturating_duration_since(streak.told_at) < REPEAT_EVERY {
            return None;
        }
        let since_last_line = std::mem::take(&mut streak.untold);
        streak.told_at = now;
        Some(Line::StillFailing {
            failures: streak.failures,
            since_last_line,
        })
    }

    /// A lookup of `host` succeeded: a line if it had been failing.
    pub fn resolved(&mut self, host: &str) -> Option<Line> {
        self.failing.remove(host).map(|s| Line::Resolved {
            failures: s.failures,
        })
    }

    /// Forgets the names no route table holds any more.
    pub fn retain(&mut self, mut live: impl FnMut(&str) -> bool) {
        self.failing.retain(|host, _| live(host));
    }
}

/// Writes `line` about `host`, whose addresses are now `known` (empty: none ever resolved).
pub(crate) fn write(host: &str, line: &Line, error: Option<&str>, known: &[IpAddr]) {
    let error = error.unwrap_or_default();
    match *line {
        Line::Failed { failures } if known.is_empty() => tracing::warn!(
            host,
            error,
            failures,
            "cannot resolve upstream; no address known yet, so it is skipped (a route with no other upstream refuses connections as upstream_unavailable)"
        ),
        Line::Failed { failures } => tracing::warn!(
            host,
            error,
            failures,
            kept = ?known,
            "cannot resolve upstream; keeping its last good addresses"
        ),
        Line::StillFailing {
            failures,
            since_last_line,
        } => tracing::warn!(
            host,
            error,
            failures,
            since_last_line,
            known = known.len(),
            "still cannot resolve upstream"
        ),
        Line::Resolved { failures } => tracing::info!(
            host,
            failures,
            addresses = ?known,
            "upstream resolved again"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::upstream::resolve::Resolver;

    const NX: &str = "failed to lookup address information: Name or service not known";
    const TIMEOUT: &str = "lookup timed out";

    #[test]
    fn a_line_per_change_and_one_per_repeat_interval() {
        let mut log = LookupLog::default();
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        let at = |n: u32| t0 + every * n;
        assert_eq!(
            log.failed("a", NX, at(0)),
            Some(Line::Failed { failures: 1 })
        );
        // Every refresh within the interval: nothing.
        for n in 1..30 {
            assert_eq!(log.failed("a", NX, at(n)), None, "refresh {n}");
        }
        // Five minutes after the first line: one, counting the failures not told.
        assert_eq!(
            log.failed("a", NX, at(30)),
            Some(Line::StillFailing {
                failures: 31,
                since_last_line: 30
            })
        );
        assert_eq!(log.failed("a", NX, at(31)), None);
        // Another error is news at once, and starts the interval again.
        assert_eq!(
            log.failed("a", TIMEOUT, at(32)),
            Some(Line::Failed { failures: 33 })
        );
        assert_eq!(log.failed("a", TIMEOUT, at(33)), None);
        // Other names have their own streaks.
        assert_eq!(
            log.failed("b", NX, at(33)),
            Some(Line::Failed { failures: 1 })
        );
        assert_eq!(log.resolved("a"), Some(Line::Resolved { failures: 34 }));
        // Resolved again: the next failure is a first one.
        assert_eq!(log.resolved("a"), None);
        assert_eq!(
            log.failed("a", NX, at(40)),
            Some(Line::Failed { failures: 1 })
        );
    }

    /// What a subscriber writes, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Through the resolver: a name that never resolved gets one plain line saying nothing is known, not one per
    /// refresh, and never "kept: []". (A current-thread runtime: the refresh logs on this
    /// thread, where the subscriber is the default.)
    #[tokio::test]
    async fn a_name_that_never_resolved_is_logged_once_not_per_refresh() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let r = Resolver::default();
        let _missing = r.handle(&"no-such-host.invalid".into());
        for _ in 0..3 {
            r.refresh(false).await;
        }
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("no-such-host.invalid").count(), 1, "{text}");
        assert!(
            text.contains("cannot resolve upstream; no address known yet"),
            "{text}"
        );
        assert!(!text.contains("kept"), "{text}");
    }

    #[test]
    fn names_no_table_holds_are_forgotten() {
        let mut log = LookupLog::default();
        let now = Instant::now();
        log.failed("gone", NX, now);
        log.failed("kept", NX, now);
        log.retain(|h| h == "kept");
        assert_eq!(log.resolved("gone"), None);
        assert_eq!(log.resolved("kept"), Some(Line::Resolved { failures: 1 }));
    }
}
