//! The live snapshot: everything a new connection needs, swapped whole by reloads.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::model::config::{Config, Health, Limits, Timeouts};
use crate::runtime::control::discovery;
use crate::runtime::table::RouteTable;
use crate::runtime::tls::Tls;

/// One consistent snapshot. A connection loads it once, so a reload never changes a
/// connection mid-way; one that started before a reload keeps its routes and timeouts.
#[derive(Debug)]
pub struct State {
    pub routes: RouteTable,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub health: Health,
    /// [`Config::content_hash`] of the configuration this state came from.
    pub config_hash: u64,
    /// 1 at start, + 1 per configuration or discovery change that went live.
    pub generation: u64,
    /// Kubernetes discovery as this table reflects it.
    pub discovery: Arc<discovery::Report>,
    /// What terminating and reencrypting routes use.
    pub tls: Tls,
}

impl State {
    /// The state for `config` with its compiled `routes`; `previous` (the live state) lends
    /// its TLS session cache and handshake bound.
    pub fn new(
        config: &Config,
        routes: RouteTable,
        generation: u64,
        discovery: Arc<discovery::Report>,
        previous: Option<&State>,
    ) -> State {
        let tls = Tls::build(config, &routes, previous.map(|p| &p.tls));
        State {
            tls,
            routes,
            timeouts: config.timeouts.clone(),
            limits: config.limits.clone(),
            health: config.health.clone(),
            config_hash: config.content_hash,
            generation,
            discovery,
        }
    }
}

impl State {
    /// Before the first configuration went live: no routes, generation 0. Startup replaces it
    /// as a reload replaces any state.
    pub fn empty() -> State {
        State {
            routes: RouteTable::default(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            health: Health::default(),
            config_hash: 0,
            generation: 0,
            discovery: Arc::new(discovery::Report::empty()),
            tls: Tls::default(),
        }
    }
}

/// The current [`State`]: read by every connection, replaced only by the reloader.
#[derive(Debug)]
pub struct Live(ArcSwap<State>);

impl Live {
    pub fn new(state: State) -> Live {
        Live(ArcSwap::from_pointee(state))
    }

    /// The current state, kept for as long as the caller needs it (a connection: until its
    /// relay starts).
    pub fn load(&self) -> Arc<State> {
        self.0.load_full()
    }

    /// A short look at the current state (no reference count taken).
    pub fn peek(&self) -> Guard<Arc<State>> {
        self.0.load()
    }

    /// Makes `state` current; returns the one it replaced.
    pub(crate) fn replace(&self, state: State) -> Arc<State> {
        self.0.swap(Arc::new(state))
    }
}
