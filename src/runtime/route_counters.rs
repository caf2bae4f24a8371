//! Metric handles a connection records into, resolved once per route and listener instead of
//! looked up in the metrics registry on every connection (building a label set and hashing it
//! cost more than the counting). Each handle is registered on first use, so a table of 100k
//! routes creates series only for the routes that carry traffic, and a route reused by a reload
//! keeps its handles.

use std::sync::{Arc, OnceLock};

use metrics::{Counter, SharedString};

use crate::runtime::meters;
use crate::runtime::outcome::Outcome;

/// Listeners whose connection counters a route keeps at hand; a route reached through more
/// listeners than this (unusual: one per port and protocol) counts the rest through the registry.
const LISTENER_SLOTS: usize = 4;

/// A route's handles: allocated on its first connection, so an unused route costs one pointer.
#[derive(Default)]
pub struct RouteCounters(OnceLock<Box<Handles>>);

struct Handles {
    from_client: Counter,
    from_upstream: Counter,
    by_listener: [OnceLock<Box<Outcomes>>; LISTENER_SLOTS],
}

impl std::fmt::Debug for RouteCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteCounters")
            .field("registered", &self.0.get().is_some())
            .finish()
    }
}

impl RouteCounters {
    fn handles(&self, route: &Arc<str>) -> &Handles {
        self.0.get_or_init(|| {
            let label = || SharedString::from_shared(route.clone());
            Box::new(Handles {
                from_client: metrics::counter!(meters::BYTES_FROM_CLIENT, "route" => label()),
                from_upstream: metrics::counter!(meters::BYTES_FROM_UPSTREAM, "route" => label()),
                by_listener: Default::default(),
            })
        })
    }

    /// Bytes from the client and from the upstream of route `route` (the route's name).
    pub fn bytes(&self, route: &Arc<str>) -> (&Counter, &Counter) {
        let h = self.handles(route);
        (&h.from_client, &h.from_upstream)
    }

    /// Counts one connection of `route` through `listener` that ended with `outcome`.
    pub fn count(&self, route: &Arc<str>, listener: &Arc<str>, outcome: Outcome) {
        let slots = &self.handles(route).by_listener;
        for slot in slots {
            let outcomes = slot.get_or_init(|| Box::new(Outcomes::new(listener, route.clone())));
            if *outcomes.listener == **listener {
                outcomes.count(outcome);
                return;
            }
        }
        Outcomes::new(listener, route.clone()).count(outcome);
    }
}

/// `connections_total` of one listener and route, one handle per outcome.
pub struct Outcomes {
    listener: Arc<str>,
    route: Arc<str>,
    counters: [OnceLock<Counter>; Outcome::KEYWORDS.len()],
}

impl Outcomes {
    /// The counters of connections through `listener` that ended before a route was chosen
    /// (label `route=""`).
    pub fn unrouted(listener: &Arc<str>) -> Outcomes {
        Outcomes::new(listener, Arc::from(""))
    }

    fn new(listener: &Arc<str>, route: Arc<str>) -> Outcomes {
        Outcomes {
            listener: listener.clone(),
            route,
            counters: Default::default(),
        }
    }

    pub fn count(&self, outcome: Outcome) {
        let Some(slot) = self.counters.get(outcome as usize) else {
            return;
        };
        slot.get_or_init(|| {
            metrics::counter!(
                meters::CONNECTIONS,
                "listener" => SharedString::from_shared(self.listener.clone()),
                "route" => SharedString::from_shared(self.route.clone()),
                "outcome" => outcome.keyword(),
            )
        })
        .increment(1);
    }
}

impl std::fmt::Debug for Outcomes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcomes")
            .field("listener", &self.listener)
            .field("route", &self.route)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_a_slot() {
        // `outcome as usize` indexes the counters: variants and keywords must line up.
        for (i, word) in Outcome::KEYWORDS.iter().enumerate() {
            let outcome: Outcome = word.parse().unwrap();
            assert_eq!(outcome as usize, i, "{word}");
        }
    }

    #[test]
    fn listeners_beyond_the_slots_still_count() {
        let m = RouteCounters::default();
        let route: Arc<str> = "r".into();
        for i in 0..LISTENER_SLOTS + 2 {
            let listener: Arc<str> = format!("l{i}").into();
            m.count(&route, &listener, Outcome::Relayed);
            m.count(&route, &listener, Outcome::Relayed);
        }
        let h = m.0.get().unwrap();
        let held: Vec<&str> = h
            .by_listener
            .iter()
            .filter_map(|s| s.get().map(|o| &*o.listener))
            .collect();
        assert_eq!(held, ["l0", "l1", "l2", "l3"]);
    }
}
