//! The running proxy: shared state, listeners, admin endpoint, drain.
//!
//! `Server::bind` does everything that can fail (route table, sockets) so a
//! bad config never half-starts; `Server::run` serves until shutdown, then
//! drains (mini-redis style: stop accepting, wait for live connections up to
//! `timeouts.drain`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};

use crate::config::{Config, Defaults, Limits, LogConfig, Timeouts};
use crate::listeners::{Listeners, Plan};
use crate::reload::{Reloader, Status};
use crate::resolve::Resolver;
use crate::route::RouteTable;

/// One consistent snapshot of everything a new connection needs. Loaded
/// once per connection, so a reload never changes a connection mid-way.
#[derive(Debug)]
pub struct State {
    pub routes: RouteTable,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub defaults: Defaults,
    pub log: LogConfig,
    /// [`Config::content_hash`] of the configuration this state came from.
    pub config_hash: u64,
    pub generation: u64,
}

impl State {
    /// The state for `config` with its compiled `routes`.
    pub fn new(config: &Config, routes: RouteTable, generation: u64) -> State {
        State {
            routes,
            timeouts: config.timeouts.clone(),
            limits: config.limits.clone(),
            defaults: config.defaults.clone(),
            log: config.log.clone(),
            config_hash: config.content_hash,
            generation,
        }
    }
}

/// State shared by every task of the proxy.
#[derive(Debug)]
pub struct Shared {
    pub state: ArcSwap<State>,
    pub resolver: Arc<Resolver>,
    /// Connections accepted and not yet closed, over all listeners.
    pub active: AtomicUsize,
    /// Notified whenever a connection closes (drain waits on it).
    pub closed: Notify,
    pub ready: AtomicBool,
    pub draining: AtomicBool,
    pub generation: AtomicU64,
    /// The latest reload's result; `subscribe()` to wait for one.
    pub reload: watch::Sender<Status>,
    /// Asks the reloader for a reload now (SIGHUP).
    pub reload_requested: Notify,
    /// Kubernetes discovery as the live table reflects it.
    pub discovery: ArcSwap<crate::discovery::Report>,
}

impl Shared {
    /// Requests a reload (what SIGHUP does); the result is published on
    /// [`Shared::reload`].
    pub fn request_reload(&self) {
        self.reload_requested.notify_one();
    }
}

/// Counts one live connection; enforces `limits.max_connections`.
#[derive(Debug)]
pub struct ActiveGuard {
    shared: Arc<Shared>,
}

impl ActiveGuard {
    /// `None` when the proxy is at its connection limit.
    pub fn try_new(shared: &Arc<Shared>) -> Option<Self> {
        let limit = shared.state.load().limits.max_connections;
        let before = shared.active.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            shared.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        metrics::gauge!(crate::metrics::ACTIVE_CONNECTIONS).increment(1.0);
        Some(ActiveGuard {
            shared: shared.clone(),
        })
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.shared.active.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(crate::metrics::ACTIVE_CONNECTIONS).decrement(1.0);
        self.shared.closed.notify_waiters();
    }
}

/// A bound, not yet running proxy.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Plan,
    admin: Option<TcpListener>,
    config: Arc<Config>,
}

impl Server {
    /// Builds the route table and binds every socket.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        let resolver = Arc::new(Resolver::default());
        let routes = RouteTable::build(&config.routes, &config.defaults, &resolver)
            .context("building the route table")?;
        crate::reload::record_success(&config, routes.len(), 1);
        let state = State::new(&config, routes, 1);
        let listeners = Listeners::default().prepare(&config.listeners)?;
        let admin = match &config.admin {
            Some(a) => Some(
                TcpListener::bind(a.address)
                    .await
                    .with_context(|| format!("admin: cannot bind {}", a.address))?,
            ),
            None => None,
        };
        let shared = Arc::new(Shared {
            state: ArcSwap::from_pointee(state),
            resolver,
            active: AtomicUsize::new(0),
            closed: Notify::new(),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            generation: AtomicU64::new(1),
            reload: watch::Sender::new(Status::startup(config.content_hash)),
            reload_requested: Notify::new(),
            discovery: ArcSwap::from_pointee(crate::discovery::Report::startup(
                &config.discovery.kubernetes,
            )),
        });
        Ok(Server {
            shared,
            listeners,
            admin,
            config: Arc::new(config),
        })
    }

    /// Bound listener addresses by name (port 0 in the config resolves here).
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners.new_addrs()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until `shutdown` resolves, then drains and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Server {
            shared,
            listeners: plan,
            admin,
            config,
        } = self;
        let resolver = tokio::spawn(shared.resolver.clone().run());
        let upkeep = tokio::spawn(async {
            let mut every = tokio::time::interval(crate::telemetry::UPKEEP_EVERY);
            loop {
                every.tick().await;
                crate::telemetry::metrics_handle().run_upkeep();
            }
        });
        let admin_task = admin.map(|l| tokio::spawn(crate::admin::serve(l, shared.clone())));
        // Listeners are bound and routes loaded (both in `bind`): ready. Set
        // before the "listening" lines, which tell watchers we are up.
        // Watches are in place before "listening" is logged: a change made
        // by anyone who waited for that line is seen.
        let listeners = Arc::new(Mutex::new(Listeners::default()));
        let (hints_tx, hints) = mpsc::channel(1);
        let reloader = Reloader::new(shared.clone(), listeners.clone(), config, hints_tx);
        shared.ready.store(true, Ordering::Release);
        lock(&listeners).apply(plan, &shared);
        let reloading = tokio::spawn(reloader.run(hints));
        shutdown.await;

        // Not ready first, so load balancers stop sending; no reload may
        // open listeners any more; then stop accepting.
        shared.ready.store(false, Ordering::Release);
        shared.draining.store(true, Ordering::Release);
        reloading.abort();
        let _ = reloading.await;
        let accepting = lock(&listeners).stop_all();
        for task in accepting {
            let _ = task.await;
        }
        let drain = shared.state.load().timeouts.drain;
        let active = shared.active.load(Ordering::Acquire);
        tracing::info!(active, drain_secs = drain.as_secs_f64(), "draining");
        let drained = tokio::time::timeout(drain, async {
            loop {
                let closed = shared.closed.notified();
                tokio::pin!(closed);
                closed.as_mut().enable();
                if shared.active.load(Ordering::Acquire) == 0 {
                    break;
                }
                closed.await;
            }
        })
        .await;
        match drained {
            Ok(()) => tracing::info!("drained; exiting"),
            Err(_) => tracing::warn!(
                remaining = shared.active.load(Ordering::Acquire),
                "drain deadline passed; closing remaining connections"
            ),
        }
        resolver.abort();
        upkeep.abort();
        if let Some(task) = admin_task {
            task.abort();
        }
        Ok(())
    }
}

/// The listener set's lock; a panic elsewhere while holding it leaves the
/// set consistent (every change is a plain push/drain), so poison is ignored.
pub(crate) fn lock(listeners: &Mutex<Listeners>) -> std::sync::MutexGuard<'_, Listeners> {
    listeners.lock().unwrap_or_else(|e| e.into_inner())
}
