//! The reload lines: one per reload attempt, as the control plane reports it
//! ([`Reloaded`]) — `{"message":"reload","generation":N,"result":"ok"|"error"|"unchanged",…}`.
//! Which kind of news an attempt is was decided there; here it is only worded.

use crate::runtime::observe::{ReloadNews, Reloaded};

/// The lines' target, where they were logged from before the control plane had a room of its
/// own: operators filter on it (`log.level: "info,ch_edge_proxy::runtime::reload=debug"`).
const TARGET: &str = "ch_edge_proxy::runtime::reload";

/// Logs `reload`: at info, an unchanged attempt nobody asked for at debug, a refusal at error.
pub fn log(reload: &Reloaded<'_>) {
    let Reloaded {
        generation,
        result: label,
        trigger,
        news,
    } = *reload;
    match news {
        ReloadNews::Live {
            config_hash,
            routes,
            took,
        } => tracing::info!(
            target: TARGET,
            generation,
            result = label,
            trigger = %trigger,
            config_hash = format!("{config_hash:016x}"),
            routes,
            duration_ms = took.as_secs_f64() * 1e3,
            "reload"
        ),
        ReloadNews::Refused { error, took } => {
            let first = error.problems().first();
            tracing::error!(
                target: TARGET,
                generation,
                result = label,
                trigger = %trigger,
                error = %error,
                problems = error.problems().len(),
                file = first.and_then(|p| p.file.as_deref()),
                line = first.and_then(|p| p.line),
                route = first.and_then(|p| p.route.as_deref()),
                duration_ms = took.as_secs_f64() * 1e3,
                "reload"
            )
        }
        ReloadNews::Recovered { config_hash } => tracing::info!(
            target: TARGET,
            generation,
            result = label,
            trigger = %trigger,
            config_hash = format!("{config_hash:016x}"),
            detail = "the files on disk match the running configuration again; the last refusal no longer applies",
            "reload"
        ),
        ReloadNews::Unchanged {
            asked: true,
            successful,
        } => tracing::info!(
            target: TARGET,
            generation,
            result = label,
            trigger = %trigger,
            successful,
            "reload"
        ),
        ReloadNews::Unchanged {
            asked: false,
            successful,
        } => tracing::debug!(
            target: TARGET,
            generation,
            result = label,
            trigger = %trigger,
            successful,
            "reload"
        ),
    }
}
