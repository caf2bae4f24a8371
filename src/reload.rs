//! Hot reload: re-read the configuration when its files change, on SIGHUP,
//! and every [`RECHECK_EVERY`]; validate it fully; then swap it in at once.
//!
//! Watch events are hints only (see [`crate::watch`]): after a short quiet
//! period ([`DEBOUNCE`]) the files are hashed, and nothing is parsed when the
//! hash matches the live configuration. A configuration that fails to load,
//! to compile into a route table, or to bind a new listener is refused as a
//! whole: the running state stays, the error is logged, counted, and kept
//! for `/routes`. On success a new [`State`] (generation + 1) is stored;
//! connections already running keep the state they loaded when they began.
//!
//! Every attempt's result is published on [`Shared::reload`] and logged as
//! `{"message":"reload","generation":N,"result":"ok"|"error"|"unchanged",…}`.
//!
//! With Kubernetes discovery, every table also holds the discovered routes
//! ([`crate::discovery`]), and each new discovery snapshot rebuilds the
//! table from the live configuration (files are not re-read): trigger
//! `discovery`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::{self, Config};
use crate::discovery::{Discovery, Merged};
use crate::listeners::Listeners;
use crate::route::RouteTable;
use crate::server::{lock, Shared, State};
use crate::watch::{DirWatcher, Targets};

/// Quiet time after a watch event before re-reading: an editor's
/// write-then-rename or kubelet's symlink swap is a burst of events. Kept
/// short because DESIGN.md asks for file change → route live in ≤ 100 ms.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// A directory that never goes quiet is still re-read this often.
pub const DEBOUNCE_MAX: Duration = Duration::from_millis(500);
/// Safety net for lost events and directories that could not be watched.
pub const RECHECK_EVERY: Duration = Duration::from_secs(30);

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Watch,
    Signal,
    Timer,
    /// Kubernetes discovery published new ClickHouseInstallations.
    Discovery,
}

impl Trigger {
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Watch => "watch",
            Trigger::Signal => "signal",
            Trigger::Timer => "timer",
            Trigger::Discovery => "discovery",
        }
    }
}

/// The result of one reload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new generation is live.
    Ok,
    /// The files hash as the live configuration, or fail exactly as the
    /// last attempt did (already reported).
    Unchanged,
    /// Refused; the running state stays. The message names file and line
    /// where known.
    Error(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unchanged => "unchanged",
            Outcome::Error(_) => "error",
        }
    }
}

/// The latest reload, as published on [`Shared::reload`].
#[derive(Debug, Clone)]
pub struct Status {
    /// Generation live after this attempt.
    pub generation: u64,
    pub outcome: Outcome,
    pub trigger: Trigger,
    pub at: SystemTime,
    /// How long the attempt took: from its start (after the watch debounce)
    /// until the result, the new table live included.
    pub took: Duration,
    /// Content hash of the live configuration.
    pub config_hash: u64,
    pub last_success: SystemTime,
    /// The most recent refusal, kept after later successes for `/routes`.
    pub last_error: Option<(String, SystemTime)>,
}

impl Status {
    pub fn startup(config_hash: u64) -> Status {
        let now = SystemTime::now();
        Status {
            generation: 1,
            outcome: Outcome::Ok,
            trigger: Trigger::Startup,
            at: now,
            took: Duration::ZERO,
            config_hash,
            last_success: now,
            last_error: None,
        }
    }
}

/// Seconds since the Unix epoch (for JSON and gauges).
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Where the live configuration came from: what a reload re-reads.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub includes: Vec<PathBuf>,
    pub admin: Option<SocketAddr>,
    pub content_hash: u64,
    /// Parsed routes of the included files: a reload parses only changed files.
    pub route_files: config::RouteFiles,
}

impl Source {
    pub fn of(config: &Config) -> Source {
        Source {
            path: config.path.clone(),
            includes: config.includes.clone(),
            admin: config.admin.as_ref().map(|a| a.address),
            content_hash: config.content_hash,
            route_files: config.route_files.clone(),
        }
    }

    fn targets(&self) -> Targets {
        Targets::of(&self.path, &self.includes)
    }
}

/// Sets the gauges that describe the live configuration.
pub(crate) fn record_success(config: &Config, routes: usize, generation: u64) {
    metrics::gauge!(crate::metrics::ROUTES).set(routes as f64);
    metrics::gauge!(crate::metrics::CONFIG_GENERATION).set(generation as f64);
    metrics::gauge!(crate::metrics::CONFIG_LAST_SUCCESS).set(unix_seconds(SystemTime::now()));
    crate::telemetry::set_level(&config.log.level);
}

/// Owns reloading for one running server.
pub struct Reloader {
    shared: Arc<Shared>,
    listeners: Arc<Mutex<Listeners>>,
    source: Source,
    /// The last refusal's message while the live config is older than it.
    failed: Option<String>,
    watcher: Option<DirWatcher>,
    /// The live configuration: discovery rebuilds reuse its file routes.
    config: Arc<Config>,
    discovery: Discovery,
    /// What the last commit replaced, until [`Reloader::free_replaced`].
    replaced: Option<(Arc<State>, Arc<Config>)>,
}

impl Reloader {
    /// Starts watching the configuration's directories (events go to
    /// `hints`) and, if configured, Kubernetes. Needs a Tokio runtime.
    pub fn new(
        shared: Arc<Shared>,
        listeners: Arc<Mutex<Listeners>>,
        config: Arc<Config>,
        hints: mpsc::Sender<()>,
    ) -> Reloader {
        let source = Source::of(&config);
        let watcher = match DirWatcher::new(hints) {
            Ok(mut w) => {
                w.set(&source.targets());
                Some(w)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch the configuration; reloading on SIGHUP and every 30s only");
                None
            }
        };
        Reloader {
            shared,
            listeners,
            source,
            failed: None,
            watcher,
            discovery: Discovery::start(&config.discovery.kubernetes),
            config,
            replaced: None,
        }
    }

    /// Reloads on watch hints (debounced), requests and the periodic timer, forever.
    pub async fn run(mut self, mut hints: mpsc::Receiver<()>) {
        let shared = self.shared.clone();
        let mut timer = tokio::time::interval_at(Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let trigger = tokio::select! {
                Some(()) = hints.recv() => {
                    settle(&mut hints).await;
                    Trigger::Watch
                }
                _ = shared.reload_requested.notified() => Trigger::Signal,
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
    pub async fn reload(&mut self, trigger: Trigger) -> Outcome {
        let started = Instant::now();
        let source = self.source.clone();
        // Reading and parsing off the async workers.
        let loaded = tokio::task::spawn_blocking(move || load(&source))
            .await
            .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
        let outcome = match loaded {
            Ok(None) => {
                // Back to the live config: a later identical breakage is news again.
                self.failed = None;
                Outcome::Unchanged
            }
            Ok(Some(config)) => {
                let config = Arc::new(config);
                match self.build(&config, true).await {
                    Ok(Some((routes, merged))) => self.install(config, routes, merged),
                    Ok(None) => Outcome::Unchanged,
                    Err(e) => self.refuse(e),
                }
            }
            Err(e) => self.refuse(e),
        };
        self.publish(trigger, &outcome, started.elapsed());
        self.free_replaced().await;
        outcome
    }

    /// Rebuilds the table from the live file routes and the latest
    /// discovered catalog; published like any reload.
    pub async fn rediscover(&mut self) -> Outcome {
        let started = Instant::now();
        let config = self.config.clone();
        let outcome = match self.build(&config, false).await {
            Ok(Some((routes, merged @ Some(_)))) => self.install(config, routes, merged),
            Ok(_) => Outcome::Unchanged,
            Err(e) => self.refuse(e),
        };
        self.publish(Trigger::Discovery, &outcome, started.elapsed());
        self.free_replaced().await;
        outcome
    }

    /// The one table for `config`: its file routes, with the discovered
    /// routes merged in when discovery has a catalog. Routes built from
    /// files unchanged since the live table are reused from it. `None` when
    /// there is no catalog and `files_only` is false (nothing to rebuild).
    async fn build(
        &self,
        config: &Arc<Config>,
        files_only: bool,
    ) -> Result<Option<(RouteTable, Option<Merged>)>, String> {
        let catalog = match self.discovery.current() {
            Some(c) if config.discovery.kubernetes.enabled => Some(c.clone()),
            _ if files_only => None,
            _ => return Ok(None),
        };
        let live = self.shared.state.load_full();
        let (config, resolver) = (config.clone(), self.shared.resolver.clone());
        tokio::task::spawn_blocking(move || {
            let previous = &live.routes;
            match catalog {
                Some(catalog) => {
                    crate::discovery::build_table(&config, &catalog, &resolver, previous)
                        .map(|(routes, merged)| Some((routes, Some(merged))))
                }
                None => {
                    RouteTable::build_reusing(&config.routes, &config.defaults, &resolver, previous)
                        .map(|routes| Some((routes, None)))
                        .map_err(|e| format!("{}: {e}", config.path.display()))
                }
            }
        })
        .await
        .unwrap_or_else(|e| Err(format!("build task failed: {e}")))
    }

    /// Commits; what it replaced waits in `self.replaced`.
    fn install(
        &mut self,
        config: Arc<Config>,
        routes: RouteTable,
        merged: Option<Merged>,
    ) -> Outcome {
        match self.commit(config, routes, merged) {
            Ok(()) => Outcome::Ok,
            Err(e) => self.refuse(e),
        }
    }

    /// Frees the state and configuration the last commit replaced. Freeing
    /// 100k routes takes tens of milliseconds, so it happens after the new
    /// table is live and published, off the async workers, and before the
    /// next reload starts: at most one replaced table exists at a time
    /// (more only while connections still hold theirs; the last one out
    /// frees it).
    async fn free_replaced(&mut self) {
        if let Some(replaced) = self.replaced.take() {
            let _ = tokio::task::spawn_blocking(move || drop(replaced)).await;
        }
    }

    fn refuse(&mut self, error: String) -> Outcome {
        if self.failed.as_ref() == Some(&error) {
            return Outcome::Unchanged;
        }
        self.failed = Some(error.clone());
        Outcome::Error(error)
    }

    /// Binds what the new config needs, then swaps state and listeners;
    /// keeps what they replaced in `self.replaced`. Nothing here awaits, so
    /// shutdown cannot interrupt it half-way.
    fn commit(
        &mut self,
        config: Arc<Config>,
        routes: RouteTable,
        merged: Option<Merged>,
    ) -> Result<(), String> {
        let plan = lock(&self.listeners)
            .prepare(&config.listeners)
            .map_err(|e| format!("{}: {e:#}", config.path.display()))?;
        let admin = config.admin.as_ref().map(|a| a.address);
        if admin != self.source.admin {
            tracing::warn!("admin.address changed; the admin endpoint moves only on restart");
        }
        let generation = self.shared.state.load().generation + 1;
        let count = routes.len();
        let old = self
            .shared
            .state
            .swap(Arc::new(State::new(&config, routes, generation)));
        self.shared
            .generation
            .store(generation, std::sync::atomic::Ordering::Release);
        lock(&self.listeners).apply(plan, &self.shared);
        record_success(&config, count, generation);
        let settings = &config.discovery.kubernetes;
        let report = self.shared.discovery.load().next(settings, merged);
        self.shared.discovery.store(Arc::new(report));
        self.discovery.configure(settings);
        self.failed = None;
        let source = Source {
            admin: self.source.admin,
            ..Source::of(&config)
        };
        if let Some(w) = &mut self.watcher {
            let targets = source.targets();
            if targets != self.source.targets() {
                w.set(&targets);
            }
        }
        self.source = source;
        let old_config = std::mem::replace(&mut self.config, config);
        self.replaced = Some((old, old_config));
        Ok(())
    }

    fn publish(&self, trigger: Trigger, outcome: &Outcome, took: Duration) {
        let state = self.shared.state.load();
        let now = SystemTime::now();
        metrics::counter!(crate::metrics::RELOADS, "result" => outcome.label()).increment(1);
        metrics::histogram!(crate::metrics::RELOAD_SECONDS, "result" => outcome.label())
            .record(took.as_secs_f64());
        let hash = format!("{:016x}", state.config_hash);
        let took_ms = took.as_secs_f64() * 1e3;
        match outcome {
            Outcome::Ok => tracing::info!(
                generation = state.generation,
                result = "ok",
                trigger = trigger.label(),
                config_hash = hash,
                routes = state.routes.len(),
                duration_ms = took_ms,
                "reload"
            ),
            Outcome::Error(error) => tracing::error!(
                generation = state.generation,
                result = "error",
                trigger = trigger.label(),
                error = error.as_str(),
                duration_ms = took_ms,
                "reload"
            ),
            // A timer or watch hint that found nothing new is routine; an
            // operator's SIGHUP deserves an answer.
            Outcome::Unchanged if trigger == Trigger::Signal => tracing::info!(
                generation = state.generation,
                result = "unchanged",
                trigger = trigger.label(),
                "reload"
            ),
            Outcome::Unchanged => tracing::debug!(
                generation = state.generation,
                result = "unchanged",
                trigger = trigger.label(),
                "reload"
            ),
        }
        self.shared.reload.send_modify(|s| {
            s.generation = state.generation;
            s.outcome = outcome.clone();
            s.trigger = trigger;
            s.at = now;
            s.took = took;
            s.config_hash = state.config_hash;
            match outcome {
                Outcome::Ok => s.last_success = now,
                Outcome::Error(e) => s.last_error = Some((e.clone(), now)),
                Outcome::Unchanged => {}
            }
        });
    }
}

/// Loads the configuration, or `None` when it hashes as the live one; the
/// table is built by the caller, once discovery is known. Blocking.
fn load(source: &Source) -> Result<Option<Config>, String> {
    if config::fingerprint(&source.path, &source.includes) == Ok(source.content_hash) {
        return Ok(None);
    }
    let config =
        config::load_reusing(&source.path, &source.route_files).map_err(|e| format!("{e:#}"))?;
    if config.content_hash == source.content_hash {
        return Ok(None);
    }
    Ok(Some(config))
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
