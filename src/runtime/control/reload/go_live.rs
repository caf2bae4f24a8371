//! How a configuration goes live — the one path of every reload and of startup, which is a
//! reload from the empty state ([`Current::empty`], [`State::empty`]).
//!
//! First everything that can fail, before anything running changes: the table ([`table`]),
//! the plan over what is live ([`plan::plan`]) and the new listeners' sockets
//! ([`Staged::new`]). Then nothing fails: the new state goes live ([`Staged::go_live`]: the
//! generation after the live one, the gauges, the observer told), and the rest of the plan is
//! applied by the reloader (watches, discovery, listeners: `Reloader::apply`). Startup stops
//! between the two, so that nothing accepts before `Server::run`.

use std::sync::Arc;
use std::time::SystemTime;

use super::plan::{self, Current, Plan};
use super::ReloadResult;
use crate::model::config::{Config, ConfigError};
use crate::model::tls;
use crate::runtime::control::discovery::{self, Catalog, Merged};
use crate::runtime::control::listeners::{Bound, Listeners};
use crate::runtime::control::state::State;
use crate::runtime::control::watch::Targets;
use crate::runtime::meters;
use crate::runtime::observe::Observer;
use crate::runtime::pipeline::context::Context;
use crate::runtime::table::RouteTable;
use crate::runtime::upstream::resolve::Resolver;

/// A configuration ready to go live: its table built, its changes planned, its new listeners
/// bound (not accepting). Nothing running has changed; dropping it closes the new sockets.
pub(crate) struct Staged {
    pub config: Arc<Config>,
    pub plan: Plan,
    bound: Bound,
    routes: RouteTable,
    merged: Option<Merged>,
}

/// A configuration whose state is live, the rest of its plan not yet applied.
pub(crate) struct Pending {
    pub config: Arc<Config>,
    pub plan: Plan,
    pub bound: Bound,
}

/// What to watch for `config`.
pub(crate) fn targets(config: &Config) -> Targets {
    Targets::of(&config.path, &config.includes).with_files(&config.tls_files)
}

/// The one table for `config`: its file routes, with `catalog`'s routes merged in when there
/// is one. Routes built from files unchanged since `previous` (the live table) are reused from
/// it. Blocking.
pub(crate) fn table(
    config: &Config,
    catalog: Option<&Catalog>,
    resolver: &Resolver,
    previous: &RouteTable,
) -> Result<(RouteTable, Option<Merged>), ConfigError> {
    match catalog {
        Some(catalog) => discovery::build_table(config, catalog, resolver, previous)
            .map(|(routes, merged)| (routes, Some(merged))),
        None => RouteTable::build_reusing(&config.routes, &config.defaults, resolver, previous)
            .map(|routes| (routes, None))
            .map_err(|e| ConfigError::route_table(&config.path.display().to_string(), &e)),
    }
}

impl Staged {
    /// Plans `config` (watched through `targets`) over `current` and binds the listeners the
    /// plan opens; a socket that cannot be bound refuses the whole configuration.
    pub(crate) fn new(
        current: &Current,
        config: Arc<Config>,
        targets: &Targets,
        (routes, merged): (RouteTable, Option<Merged>),
    ) -> Result<Staged, ConfigError> {
        let plan = plan::plan(current, &config, targets);
        let file = config.path.display().to_string();
        let bound = Listeners::bind(plan.listeners.clone(), &config.listeners, &file)?;
        Ok(Staged {
            config,
            plan,
            bound,
            routes,
            merged,
        })
    }

    /// Makes the new state live in `ctx` — the generation after the live one, which lends it
    /// its TLS session cache — sets the gauges and tells the observer. Returns the rest of
    /// the plan and the state it replaced. Nothing here awaits or fails.
    pub(crate) fn go_live(self, ctx: &Context) -> (Pending, Arc<State>) {
        let Staged {
            config,
            plan,
            bound,
            routes,
            merged,
        } = self;
        let live = ctx.live.peek();
        let generation = live.generation + 1;
        let report = Arc::new(live.discovery.next(&config.discovery.kubernetes, merged));
        let count = routes.len();
        let next = State::new(&config, routes, generation, report, Some(&live));
        drop(live);
        let old = ctx.live.replace(next);
        now_live(&config, count, generation, &*ctx.observer);
        (
            Pending {
                config,
                plan,
                bound,
            },
            old,
        )
    }
}

/// Sets the gauges that describe the live configuration and tells the observer. (Whether the
/// files are refused is the publisher's: a discovery rebuild goes live while they may be.)
fn now_live(config: &Config, routes: usize, generation: u64, observer: &dyn Observer) {
    metrics::gauge!(meters::ROUTES).set(routes as f64);
    metrics::gauge!(meters::CONFIG_GENERATION).set(generation as f64);
    metrics::gauge!(meters::CONFIG_LAST_SUCCESS).set(meters::unix_seconds(SystemTime::now()));
    metrics::gauge!(meters::MAX_CONNECTIONS).set(config.limits.max_connections as f64);
    // Every result exported from the start, at 0, so `increase(...)` sees the first error.
    for result in ReloadResult::LABELS {
        metrics::counter!(meters::RELOADS, "result" => result).increment(0);
    }
    observer.configured(&config.log);
    warn_expiring(config);
}

/// A warning for every certificate that expires within 14 days or has
/// ([`tls::expiring`]).
fn warn_expiring(config: &Config) {
    for e in tls::expiring(&config.tls.certificates, SystemTime::now()) {
        let c = e.certificate;
        let message = if e.expired {
            "tls certificate has expired"
        } else {
            "tls certificate expires within 14 days"
        };
        tracing::warn!(
            certificate = %c.cert_file.display(),
            names = %c.names.join(","),
            not_after = c.not_after,
            days_left = e.days_left,
            "{message}"
        );
    }
}
