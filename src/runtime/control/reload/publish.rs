//! One reload attempt made known: counted, published on the [`Channel`], and handed to the
//! observer as the news it is ([`report`]: ok, refused, recovered, unchanged), which the
//! surface words as a log line.
//!
//! `ch_edge_proxy_config_last_reload_successful` (and [`Status::successful`]) says whether the
//! files last read are the configuration that runs: 1 after a load, and also after an
//! `unchanged` attempt that found them equal to it again (a bad edit reverted), so the
//! `ChEdgeProxyConfigStale` alert stops; 0 after a refusal, also while the same broken files
//! are found again (`unchanged` too, but still refused).

use std::time::{Duration, SystemTime};

use super::{Channel, ReloadResult, Trigger};
use crate::runtime::control::state::State;
use crate::runtime::meters;
use crate::runtime::observe::{Observer, ReloadNews, Reloaded};

/// What one attempt found.
pub(super) struct Attempt<'a> {
    pub trigger: Trigger,
    pub result: &'a ReloadResult,
    pub took: Duration,
    /// No refusal stands after it.
    pub successful: bool,
}

/// How an attempt is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    Ok,
    Error,
    /// The files equal the running configuration again after a refusal: news, at info.
    Recovered,
    /// Nothing new; at info only when an operator asked (SIGHUP) and deserves an answer.
    Unchanged {
        asked: bool,
    },
}

/// The pure decision: `was_successful` is the state before this attempt.
fn report(attempt: &Attempt<'_>, was_successful: bool) -> Report {
    match attempt.result {
        ReloadResult::Ok => Report::Ok,
        ReloadResult::Error(_) => Report::Error,
        ReloadResult::Unchanged if attempt.successful && !was_successful => Report::Recovered,
        ReloadResult::Unchanged => Report::Unchanged {
            asked: attempt.trigger == Trigger::Signal,
        },
    }
}

/// Counts and publishes `attempt` against the live `state`, and tells `observer` (who logs
/// it) what news it is.
pub(super) fn publish(
    channel: &Channel,
    observer: &dyn Observer,
    state: &State,
    attempt: Attempt<'_>,
) {
    let Attempt {
        trigger,
        result,
        took,
        successful,
    } = attempt;
    let now = SystemTime::now();
    let label = result.label();
    metrics::counter!(meters::RELOADS, "result" => label).increment(1);
    metrics::histogram!(meters::RELOAD_SECONDS, "result" => label).record(took.as_secs_f64());
    metrics::gauge!(meters::CONFIG_LAST_RELOAD_SUCCESSFUL).set(if successful { 1.0 } else { 0.0 });
    let generation = state.generation;
    let news = match report(&attempt, channel.latest().successful) {
        Report::Ok => ReloadNews::Live {
            config_hash: state.config_hash,
            routes: state.routes.len(),
            took,
        },
        Report::Error => {
            let ReloadResult::Error(error) = result else {
                unreachable!("an error report is an error result")
            };
            ReloadNews::Refused { error, took }
        }
        Report::Recovered => ReloadNews::Recovered {
            config_hash: state.config_hash,
        },
        Report::Unchanged { asked } => ReloadNews::Unchanged { asked, successful },
    };
    observer.reloaded(&Reloaded {
        generation,
        result: label,
        trigger: trigger.keyword(),
        news,
    });
    channel.publish(|s| {
        s.generation = generation;
        s.result = result.clone();
        s.trigger = trigger;
        s.at = now;
        s.took = took;
        s.config_hash = state.config_hash;
        s.successful = successful;
        match result {
            ReloadResult::Ok => s.last_success = now,
            ReloadResult::Error(e) => s.last_error = Some((e.clone(), now)),
            ReloadResult::Unchanged => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Problem;

    fn attempt(result: &ReloadResult, trigger: Trigger, successful: bool) -> Attempt<'_> {
        Attempt {
            trigger,
            result,
            took: Duration::ZERO,
            successful,
        }
    }

    #[test]
    fn what_an_attempt_reports() {
        let error = ReloadResult::Error(
            Problem {
                file: None,
                line: None,
                route: None,
                message: "bad".into(),
            }
            .into(),
        );
        let unchanged = ReloadResult::Unchanged;
        let (watch, signal) = (Trigger::Watch, Trigger::Signal);
        #[rustfmt::skip]
        let cases = [
            // (result, trigger, successful after, successful before, report)
            (&ReloadResult::Ok, watch, true, false, Report::Ok),
            (&error, watch, false, true, Report::Error),
            // A reverted edit: the files equal what runs again.
            (&unchanged, signal, true, false, Report::Recovered),
            (&unchanged, Trigger::Timer, true, false, Report::Recovered),
            // The same broken files again: still refused, nothing new.
            (&unchanged, signal, false, false, Report::Unchanged { asked: true }),
            (&unchanged, watch, false, false, Report::Unchanged { asked: false }),
            (&unchanged, watch, true, true, Report::Unchanged { asked: false }),
        ];
        for (result, trigger, after, before, want) in cases {
            assert_eq!(
                report(&attempt(result, trigger, after), before),
                want,
                "{result:?} {trigger} {after} {before}"
            );
        }
    }
}
