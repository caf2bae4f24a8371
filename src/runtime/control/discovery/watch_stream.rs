//! One watch of one Kubernetes source, the same for every kind: kube's
//! watcher with bookmarks and a `timeoutSeconds` below the silence deadline
//! of [`kube_client`](super::kube_client), relisting after a watch request
//! answered `410 Gone`, retried with kube's default backoff; and what each
//! watcher error is called in logs and metrics.
//!
//! The bounds, with the deadline `D` (90 s, DESIGN.md "Watches"):
//! - the server ends a healthy watch after `timeoutSeconds` = `D` − 3 s (and
//!   sends bookmarks meanwhile), so a quiet watch is never taken for a
//!   stalled one; kube then watches again from the last resourceVersion;
//! - a watch (or any request) that sends nothing for `D` fails with
//!   [`Stalled`](super::kube_client::Stalled): logged, counted as `stalled`,
//!   watched again;
//! - kube's own idle timeout, `timeoutSeconds` + 5 s = `D` + 2 s, never
//!   fires first (it would restart silently).

use std::fmt::Debug;
use std::time::Duration;

use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use serde::de::DeserializeOwned;

use super::kube_client;
use crate::runtime::meters;

/// The silence deadline of DESIGN.md: nothing from the API server for this
/// long, not even a bookmark, and the connection is dropped.
pub(super) const SILENCE: Duration = Duration::from_secs(90);

/// The shortest deadline accepted from [`SILENCE_ENV`]: `timeoutSeconds`
/// must stay at least 1 s and below it.
const SILENCE_MIN: Duration = Duration::from_secs(2);

/// For tests only: overrides [`SILENCE`] (a humantime duration, at least
/// 2 s) so that a test need not wait 90 s for a stall.
pub(super) const SILENCE_ENV: &str = "CH_EDGE_PROXY_WATCH_STALL_TIMEOUT";

/// The deadline: [`SILENCE`], or the test override.
pub(super) fn silence() -> Duration {
    let Some(value) = std::env::var_os(SILENCE_ENV) else {
        return SILENCE;
    };
    match value.to_str().map(humantime::parse_duration) {
        Some(Ok(d)) if d >= SILENCE_MIN => d,
        _ => {
            tracing::warn!(
                variable = SILENCE_ENV,
                value = ?value,
                "kubernetes discovery: ignoring an invalid stall timeout (a duration of at least 2s)"
            );
            SILENCE
        }
    }
}

/// `timeoutSeconds` of every watch request under the deadline `silence`.
pub(super) fn watch_timeout(silence: Duration) -> u32 {
    let secs = u32::try_from(silence.as_secs()).unwrap_or(u32::MAX);
    secs.saturating_sub(3).max(1)
}

/// kube's watcher config for a deadline of `silence`: bookmarks (kube's
/// default) and `timeoutSeconds` per [`watch_timeout`].
pub(super) fn config(silence: Duration) -> watcher::Config {
    watcher::Config::default().timeout(watch_timeout(silence))
}

/// The events of `api` under `config`, errors included, with kube's default
/// backoff after each error. A watch request answered `410 Gone` starts over
/// with a list: kube 5.0 would retry the same resourceVersion forever
/// (kube-runtime `watcher.rs`, `State::InitListed`).
pub(super) fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let fresh = move || -> BoxStream<'static, watcher::Result<Event<K>>> {
        watcher::watcher(api.clone(), config.clone()).boxed()
    };
    // The backoff wraps the restarts, so a server answering 410 to every
    // watch is not asked in a loop.
    stream::unfold(fresh(), move |mut current| {
        let fresh = fresh.clone();
        async move {
            let item = current.next().await?;
            if matches!(&item, Err(e) if gone_on_watch_start(e)) {
                current = fresh();
            }
            Some((item, current))
        }
    })
    .default_backoff()
}

/// A watch request answered with HTTP status 410 (not the in-stream ERROR
/// event, which kube handles by relisting).
fn gone_on_watch_start(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchStartFailed(kube::Error::Api(s)) if s.code == 410)
}

/// Every `kind` label of [`meters::DISCOVERY_API_ERRORS`].
const ERROR_KINDS: [&str; 8] = [
    "client",
    "list",
    "watch_start",
    "watch",
    "watch_event",
    "no_resource_version",
    "stalled",
    // A Gateway API status patch refused (gateway_watch).
    "status",
];

/// Exports every kind at 0, so `increase(...)` sees the first error.
pub(super) fn export_error_kinds() {
    for kind in ERROR_KINDS {
        metrics::counter!(meters::DISCOVERY_API_ERRORS, "kind" => kind).increment(0);
    }
}

pub(super) fn count_error(kind: &'static str) {
    metrics::counter!(meters::DISCOVERY_API_ERRORS, "kind" => kind).increment(1);
}

/// Logs and counts a watcher error of the watch over `namespace` (`None`:
/// all namespaces). At most one line per error, and errors come at most
/// one per backoff step (stalls one per deadline).
pub(super) fn log_error(error: &watcher::Error, namespace: Option<&str>) {
    let kind = error_kind(error);
    count_error(kind);
    let namespace = namespace.unwrap_or("*");
    if kind == "stalled" {
        tracing::warn!(
            error = %error,
            namespace,
            "kubernetes discovery: watch stalled; dropped it, watching again"
        );
    } else if gone_on_watch_start(error) {
        tracing::warn!(
            error = %error,
            namespace,
            "kubernetes discovery: API error (watch request answered 410 Gone); relisting"
        );
    } else {
        tracing::warn!(
            error = %error,
            namespace,
            "kubernetes discovery: API error; keeping the last routes, retrying with backoff"
        );
    }
}

/// Metric label of a watcher error: `stalled` when the API server went
/// silent, whatever the request.
fn error_kind(error: &watcher::Error) -> &'static str {
    if kube_client::stalled(error).is_some() {
        return "stalled";
    }
    match error {
        watcher::Error::InitialListFailed(_) => "list",
        watcher::Error::WatchStartFailed(_) => "watch_start",
        watcher::Error::WatchError(_) => "watch_event",
        watcher::Error::WatchFailed(_) => "watch",
        watcher::Error::NoResourceVersion => "no_resource_version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_ends_a_watch_before_the_deadline_and_kube_never_first() {
        for secs in [2, 3, 4, 5, 10, 90, 600] {
            let t = u64::from(watch_timeout(Duration::from_secs(secs)));
            assert!(t >= 1 && t < secs, "{secs}: {t}");
            // kube's idle timeout: timeoutSeconds + 5 s.
            assert!(t + 5 > secs, "{secs}: {t}");
        }
        assert_eq!(watch_timeout(SILENCE), 87);
    }

    #[test]
    fn a_stall_is_found_through_kubes_wrapping() {
        let stall = || -> tower::BoxError { Box::new(kube_client::Stalled::for_tests()) };
        let body =
            watcher::Error::WatchFailed(kube::Error::ReadEvents(std::io::Error::other(stall())));
        let headers = watcher::Error::WatchStartFailed(kube::Error::Service(stall()));
        let list = watcher::Error::InitialListFailed(kube::Error::Service(stall()));
        for e in [&body, &headers, &list] {
            assert_eq!(error_kind(e), "stalled", "{e}");
        }
        let other = watcher::Error::WatchFailed(kube::Error::ReadEvents(std::io::Error::other(
            "connection reset",
        )));
        assert_eq!(error_kind(&other), "watch");
    }

    #[test]
    fn only_an_http_410_on_a_watch_request_relists_here() {
        let status = |code| {
            kube::core::Status::failure("too old resource version", "Expired")
                .with_code(code)
                .boxed()
        };
        assert!(gone_on_watch_start(&watcher::Error::WatchStartFailed(
            kube::Error::Api(status(410))
        )));
        assert!(!gone_on_watch_start(&watcher::Error::WatchStartFailed(
            kube::Error::Api(status(500))
        )));
        // In the stream kube relists by itself.
        assert!(!gone_on_watch_start(&watcher::Error::WatchError(status(
            410
        ))));
    }
}
