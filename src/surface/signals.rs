//! The signals `run` handles (the same list is in `run --help` and the README's "Signals"):
//!
//! - `SIGHUP`: reload the configuration;
//! - `SIGTERM`/`SIGINT`: drain; a second one exits at once;
//! - `SIGUSR1`/`SIGUSR2`: ignored with a (rate-limited) line saying what the signals are —
//!   HAProxy users send USR1 for a soft stop, nginx users to reopen logs, and by default either
//!   would kill the process with no drain and no word;
//! - `SIGPIPE`: ignored (Rust's runtime sets that before `main`), so a write to a closed socket
//!   is an error on that connection, never the end of the process.

use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::runtime::control::server::Handle;

/// One "ignored" line per signal and this long; the rest are counted into the next line.
pub const IGNORED_LINE_EVERY: Duration = Duration::from_secs(60);

/// What an ignored signal's line tells the operator.
const WHAT_SIGNALS_DO: &str = "signal ignored: SIGHUP reloads the configuration, \
     SIGTERM/SIGINT drain and exit (a second one exits at once)";

/// Ignores SIGUSR1/SIGUSR2 from the first instruction of `run` on, before the handlers that log
/// them exist (they need the Tokio runtime).
pub fn ignore_user_signals() {
    for sig in [libc::SIGUSR1, libc::SIGUSR2] {
        // SAFETY: SIG_IGN installs no handler code; nothing else is touching signals yet.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}

/// SIGHUP's handler, installed before binding so a HUP during start-up does not kill us; it
/// starts requesting reloads once the proxy runs ([`Hangup::reload`]).
pub struct Hangup(std::io::Result<Signal>);

impl Hangup {
    pub fn install() -> Hangup {
        Hangup(signal(SignalKind::hangup()))
    }

    /// Each SIGHUP from now on asks `proxy` to reload.
    pub fn reload(self, proxy: Handle) {
        match self.0 {
            Ok(mut hangup) => {
                tokio::spawn(async move {
                    while hangup.recv().await.is_some() {
                        tracing::info!(signal = "SIGHUP", "reload requested");
                        proxy.request_reload();
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "cannot handle SIGHUP; reloading on file changes only")
            }
        }
    }
}

/// Logs SIGUSR1/SIGUSR2 as ignored (at most once per [`IGNORED_LINE_EVERY`] each).
pub fn log_user_signals() {
    for (kind, name) in [
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ] {
        let mut stream = match signal(kind) {
            Ok(s) => s,
            Err(error) => {
                // Still ignored (see `ignore_user_signals`), only not logged.
                tracing::warn!(signal = name, %error, "cannot handle the signal; ignoring it silently");
                continue;
            }
        };
        tokio::spawn(async move {
            let mut limit = LineLimit::default();
            while stream.recv().await.is_some() {
                if let Some(count) = limit.admit(Instant::now()) {
                    tracing::info!(signal = name, count, "{WHAT_SIGNALS_DO}");
                }
            }
        });
    }
}

/// At most one line per [`IGNORED_LINE_EVERY`]; each line carries how many signals it covers.
#[derive(Debug, Default)]
struct LineLimit {
    last: Option<Instant>,
    unlogged: u64,
}

impl LineLimit {
    /// Some(signals since the last line, this one included) when a line is due.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= IGNORED_LINE_EVERY);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// SIGTERM/SIGINT: the first resolves the returned future (the drain starts); each later one
/// arrives on the channel (exit at once).
pub fn termination() -> (impl std::future::Future<Output = ()>, mpsc::Receiver<()>) {
    let (first_tx, first_rx) = oneshot::channel();
    let (more_tx, more_rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        let mut first = Some(first_tx);
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            match first.take() {
                Some(tx) => {
                    tracing::info!(signal = name, "shutting down: draining connections");
                    let _ = tx.send(());
                }
                None => {
                    let _ = more_tx.try_send(());
                }
            }
        }
    });
    (
        async move {
            let _ = first_rx.await;
        },
        more_rx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_signals_are_logged_once_per_period_with_their_count() {
        let mut limit = LineLimit::default();
        let t0 = Instant::now();
        assert_eq!(limit.admit(t0), Some(1));
        assert_eq!(limit.admit(t0 + Duration::from_secs(1)), None);
        assert_eq!(limit.admit(t0 + Duration::from_secs(59)), None);
        assert_eq!(limit.admit(t0 + IGNORED_LINE_EVERY), Some(3));
        assert_eq!(limit.admit(t0 + IGNORED_LINE_EVERY), None);
    }
}
