//! Hot reload: re-read the configuration when its files change, on request (SIGHUP) and every
//! [`RECHECK_EVERY`]; validate it fully; plan the changes ([`plan`]); then apply them at once.
//!
//! Watch events are hints only (see [`crate::runtime::control::watch`]): after a short quiet
//! period ([`DEBOUNCE`]) the files are hashed, and nothing is parsed when the hash matches the live
//! configuration. A configuration that fails to load, to compile into a route table, or to bind
//! a new listener is refused as a whole: the running state stays, the error is logged, counted,
//! and kept for `/routes`. On success a new [`State`] (generation + 1) goes live; connections
//! already running keep the state they loaded when they began.
//!
//! Every attempt's result is published on the [`Channel`] and handed to the observer, which
//! logs it as `{"message":"reload","generation":N,"result":"ok"|"error"|"unchanged",…}`
//! (`surface::reload_log`).
//!
//! Startup takes the same path from the empty state ([`go_live`]): `Server::bind` stages the
//! first configuration and makes its state live, [`Reloader::start`] applies the rest of its
//! plan as a reload's commit does.
//!
//! With Kubernetes discovery, every table also holds the discovered routes
//! ([`crate::runtime::control::discovery`]), and each new discovery snapshot rebuilds the table
//! from the live configuration (files are not re-read): trigger `discovery`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::model::config::KubernetesDiscovery;
use crate::model::config::{self, Config, ConfigError, Problem};
use crate::runtime::control::discovery::{Discovery, Merged};
use crate::runtime::control::listeners::{self, Listeners};
use crate::runtime::control::state::State;
use crate::runtime::control::watch::{DirWatcher, Targets};
use crate::runtime::pipeline::context::Context;
use crate::runtime::table::RouteTable;
use crate::runtime::upstream::resolve::Resolver;

pub(crate) mod go_live;
pub mod plan;
mod publish;
mod status;

pub(crate) use go_live::{Pending, Staged};

pub use status::{Channel, ReloadResult, Status, Trigger};

/// Quiet time after a watch event before re-reading: an editor's write-then-rename or kubelet's
/// symlink swap is a burst of events. Kept short because DESIGN.md asks for file change → route
/// live in ≤ 100 ms.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// A directory that never goes quiet is still re-read this often.
pub const DEBOUNCE_MAX: Duration = Duration::from_millis(500);
/// Safety net for lost events and directories that could not be watched.
pub const RECHECK_EVERY: Duration = Duration::from_secs(30);

/// What the reloader works with, shared with the rest of the server: the connections'
/// [`Context`] (the live state and the observer among it) and what only the control plane
/// holds.
pub(crate) struct Parts {
    pub ctx: Arc<Context>,
    pub listeners: Arc<Mutex<Listeners>>,
    pub channel: Arc<Channel>,
    pub resolver: Arc<Resolver>,
}

/// Owns reloading for one running server.
pub struct Reloader {
    parts: Parts,
    /// The live configuration: what a reload compares with, and whose file routes a discovery
    /// rebuild reuses.
    config: Arc<Config>,
    /// What is live, as planning sees it.
    current: plan::Current,
    /// The last refusal of the files while the live config is older than them.
    failed: Option<ConfigError>,
    /// The last refusal of a discovery rebuild, kept apart: a rebuild that works does not make
    /// refused files good.
    rebuild_failed: Option<ConfigError>,
    watcher: Option<DirWatcher>,
    discovery: Discovery,
    /// What the last commit replaced, until [`Reloader::free_replaced`].
    replaced: Option<(Arc<State>, Arc<Config>)>,
}

impl Reloader {
    /// The reloader of a server whose first configuration went live from the empty state
    /// (`Server::bind`): applies the rest of its plan as every reload's commit does — the
    /// configuration's directories watched (events go to `hints`), discovery started if
    /// configured, the listeners accepting. Needs a Tokio runtime.
    pub(crate) fn start(parts: Parts, first: Pending, hints: mpsc::Sender<()>) -> Reloader {
        let watcher = match DirWatcher::new(hints) {
            Ok(w) => Some(w),
            Err(error) => {
                tracing::warn!(%error, "cannot watch the configuration; reloading on SIGHUP and every 30s only");
                None
            }
        };
        let mut current = plan::Current::empty();
        // Bound by `Server::bind` with the first configuration; it moves only on restart.
        current.admin = first.config.admin.clone();
        let mut reloader = Reloader {
            parts,
            config: first.config.clone(),
            current,
            failed: None,
            rebuild_failed: None,
            watcher,
            discovery: Discovery::start(&KubernetesDiscovery::default()),
            replaced: None,
        };
        reloader.apply(first);
        reloader
    }

    /// Reloads on watch hints (debounced), requests and the periodic timer, forever.
    pub async fn run(mut self, mut hints: mpsc::Receiver<()>) {
        let channel = self.parts.channel.clone();
        let mut timer = tokio::time::interval_at(Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let trigger = tokio::select! {
                Some(()) = hints.recv() => {
                    settle(&mut hints).await;
                    Trigger::Watch
                }
                () = channel.requested() => Trigger::Signal,
                _ = timer.tick() => Trigger::Timer,
                () = self.discovery.changed() => Trigger::Discovery,
            };
            if trigger == Trigger::Discovery {
                self.rediscover().await;
                continue;
            }
            self.reload(trigger).await;
            timer.reset();
        }
    }

    /// One reload attempt, published and logged.
    pub async fn reload(&mut self, trigger: Trigger) -> ReloadResult {
        let started = Instant::now();
        let (path, includes, tls_files, hash) = (
            self.config.path.clone(),
            self.config.includes.clone(),
            self.config.tls_files.clone(),
            self.config.content_hash,
        );
        let files = self.config.route_files.clone();
        // Reading and parsing off the async workers.
        let loaded =
            tokio::task::spawn_blocking(move || load(&path, &includes, &tls_files, hash, &files))
                .await
                .unwrap_or_else(|e| Err(task_failed("reload", e)));
        let result = match loaded {
            Ok(None) => {
                // Back to the live config: the refusal is over (published as successful), and
                // a later identical breakage is news again.
                self.failed = None;
                ReloadResult::Unchanged
            }
            Ok(Some((config, targets))) => {
                let config = Arc::new(config);
                match self.build(&config, true).await {
                    Ok(Some((routes, merged))) => {
                        self.install(trigger, config, &targets, routes, merged)
                    }
                    Ok(None) => ReloadResult::Unchanged,
                    Err(e) => self.refuse(trigger, e),
                }
            }
            Err(e) => self.refuse(trigger, e),
        };
        self.publish(trigger, &result, started.elapsed());
        self.free_replaced().await;
        result
    }

    /// Rebuilds the table from the live file routes and the latest discovered catalog;
    /// published like any reload.
    pub async fn rediscover(&mut self) -> ReloadResult {
        let started = Instant::now();
        let config = self.config.clone();
        let targets = self.current.targets.clone();
        let result = match self.build(&config, false).await {
            Ok(Some((routes, merged @ Some(_)))) => {
                self.install(Trigger::Discovery, config, &targets, routes, merged)
            }
            Ok(_) => ReloadResult::Unchanged,
            Err(e) => self.refuse(Trigger::Discovery, e),
        };
        self.publish(Trigger::Discovery, &result, started.elapsed());
        self.free_replaced().await;
        result
    }

    /// The one table for `config` ([`go_live::table`]), with the latest catalog when
    /// discovery has one. `None` when there is no catalog and `files_only` is false (nothing
    /// to rebuild).
    async fn build(
        &self,
        config: &Arc<Config>,
        files_only: bool,
    ) -> Result<Option<(RouteTable, Option<Merged>)>, ConfigError> {
        let catalog = match self.discovery.current() {
            Some(c) if config.discovery.kubernetes.enabled => Some(c.clone()),
            _ if files_only => None,
            _ => return Ok(None),
        };
        let live = self.parts.ctx.live.load();
        let (config, resolver) = (config.clone(), self.parts.resolver.clone());
        tokio::task::spawn_blocking(move || {
            go_live::table(&config, catalog.as_deref(), &resolver, &live.routes).map(Some)
        })
        .await
        .unwrap_or_else(|e| Err(task_failed("build", e)))
    }

    /// Plans, binds what the plan needs, and commits; what it replaced waits in
    /// `self.replaced`.
    fn install(
        &mut self,
        trigger: Trigger,
        config: Arc<Config>,
        targets: &Targets,
        routes: RouteTable,
        merged: Option<Merged>,
    ) -> ReloadResult {
        match Staged::new(&self.current, config, targets, (routes, merged)) {
            Ok(staged) => {
                self.commit(trigger, staged);
                ReloadResult::Ok
            }
            Err(e) => self.refuse(trigger, e),
        }
    }

    /// Frees the state and configuration the last commit replaced. Freeing 100k routes takes
    /// tens of milliseconds, so it happens after the new table is live and published, off the
    /// async workers, and before the next reload starts: at most one replaced table exists at a
    /// time (more only while connections still hold theirs; the last one out frees it).
    async fn free_replaced(&mut self) {
        if let Some(replaced) = self.replaced.take() {
            let _ = tokio::task::spawn_blocking(move || drop(replaced)).await;
        }
    }

    /// Records `error` as the refusal of the files, or of a discovery rebuild; the same one
    /// again is `unchanged` (already reported).
    fn refuse(&mut self, trigger: Trigger, error: ConfigError) -> ReloadResult {
        let slot = match trigger {
            Trigger::Discovery => &mut self.rebuild_failed,
            _ => &mut self.failed,
        };
        if slot.as_ref() == Some(&error) {
            return ReloadResult::Unchanged;
        }
        *slot = Some(error.clone());
        ReloadResult::Error(error)
    }

    /// Makes `staged` live and applies the rest of its plan. Nothing here awaits or fails,
    /// so shutdown cannot interrupt it half-way.
    fn commit(&mut self, trigger: Trigger, staged: Staged) {
        if staged.plan.admin_moved {
            tracing::warn!("admin changed; admin listeners move only on restart");
        }
        let (pending, old) = staged.go_live(&self.parts.ctx);
        let old_config = self.apply(pending);
        // Every table is built with the latest catalog: any commit ends a rebuild's refusal,
        // only one of files ends theirs.
        if trigger != Trigger::Discovery {
            self.failed = None;
        }
        self.rebuild_failed = None;
        self.replaced = Some((old, old_config));
    }

    /// The rest of a plan whose state is live: watches first (a change made by anyone who
    /// waited for a "listening" line is seen), discovery, then the listeners start, move and
    /// stop. Returns the configuration it replaced.
    fn apply(&mut self, pending: Pending) -> Arc<Config> {
        let Pending {
            config,
            plan,
            bound,
        } = pending;
        if let (Some(targets), Some(w)) = (&plan.watch, &mut self.watcher) {
            w.set(targets);
        }
        let settings = &config.discovery.kubernetes;
        if let Some(settings) = &plan.discovery {
            let settings = with_bound_ports(settings, &config, &bound, &self.parts.listeners);
            self.discovery.configure(&settings);
        }
        listeners::lock(&self.parts.listeners).apply(bound, &self.parts.ctx);
        self.current = plan::Current {
            listeners: config.listeners.clone(),
            admin: self.current.admin.clone(),
            targets: plan.watch.unwrap_or_else(|| self.current.targets.clone()),
            discovery: settings.clone(),
        };
        std::mem::replace(&mut self.config, config)
    }

    /// Publishes and logs one attempt's result: the files last read are the running
    /// configuration unless a refusal stands.
    fn publish(&self, trigger: Trigger, result: &ReloadResult, took: Duration) {
        let state = self.parts.ctx.live.peek();
        publish::publish(
            &self.parts.channel,
            &*self.parts.ctx.observer,
            &state,
            publish::Attempt {
                trigger,
                result,
                took,
                successful: self.failed.is_none() && self.rebuild_failed.is_none(),
            },
        );
    }
}

/// Loads the configuration, or `None` when it hashes as the live one (`hash`); the table is
/// built by the caller, once discovery is known. Blocking.
fn load(
    path: &std::path::Path,
    includes: &[std::path::PathBuf],
    tls_files: &[std::path::PathBuf],
    hash: u64,
    files: &config::RouteFiles,
) -> Result<Option<(Config, Targets)>, ConfigError> {
    if config::fingerprint(path, includes, tls_files) == Ok(hash) {
        return Ok(None);
    }
    let config = config::load_reusing(path, files)?;
    if config.content_hash == hash {
        return Ok(None);
    }
    let targets = go_live::targets(&config);
    Ok(Some((config, targets)))
}

fn task_failed(what: &str, e: tokio::task::JoinError) -> ConfigError {
    Problem {
        file: None,
        line: None,
        route: None,
        message: format!("{what} task failed: {e}"),
    }
    .into()
}

/// Waits until no hint arrived for [`DEBOUNCE`], at most [`DEBOUNCE_MAX`].
async fn settle(hints: &mut mpsc::Receiver<()>) {
    let deadline = Instant::now() + DEBOUNCE_MAX;
    loop {
        let quiet = (Instant::now() + DEBOUNCE).min(deadline);
        match tokio::time::timeout_at(quiet, hints.recv()).await {
            Ok(Some(())) if Instant::now() < deadline => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests;

/// `settings` with the Gateway API's listener ports as bound: a listener configured on port 0
/// (tests) is matched by the port it got, so Gateway listeners match what clients reach.
fn with_bound_ports(
    settings: &KubernetesDiscovery,
    config: &Config,
    bound: &listeners::Bound,
    running: &std::sync::Mutex<listeners::Listeners>,
) -> KubernetesDiscovery {
    let mut settings = settings.clone();
    if !settings.gateway_api.enabled || config.listeners.iter().all(|l| l.address.port() != 0) {
        return settings;
    }
    let new = bound.new_addrs();
    let old = listeners::lock(running).bound_addrs();
    settings.gateway_api.listener_ports = config
        .listeners
        .iter()
        .map(|l| match l.address.port() {
            0 => new
                .iter()
                .find(|(n, _)| *n == *l.name)
                .map(|(_, a)| a.port())
                .or_else(|| {
                    old.iter()
                        .find(|(n, _)| **n == *l.name)
                        .map(|(_, a)| a.port())
                })
                .unwrap_or(0),
            port => port,
        })
        .collect();
    settings
}
