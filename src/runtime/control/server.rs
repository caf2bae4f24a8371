//! The running proxy: binds everything, serves, drains.
//!
//! [`Server::bind`] does everything that can fail (route table, sockets) so a bad config never
//! half-starts: startup is a reload from the empty state (the same table, plan, binding and
//! switch to the new state, [`reload::go_live`]); the rest of the first plan (watches,
//! discovery, accepting) is applied when [`Server::run`] starts the reloader. [`Server::run`] serves until shutdown, then drains (mini-redis style: stop
//! accepting, wait for live connections up to `timeouts.drain`). A [`Handle`] is what the
//! outside sees of a running server: its state, readiness, reload results, reload requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::model::config::{AdminEndpoint, Config, ConfigError, Problem};
use crate::runtime::control::listeners;
use crate::runtime::control::reload::plan::Current;
use crate::runtime::control::reload::{self, Channel, Parts, Pending, Reloader, Staged, Status};
use crate::runtime::control::state::{Live, State};
use crate::runtime::drain::Phase;
use crate::runtime::meters;
use crate::runtime::observe::Observer;
use crate::runtime::pipeline::context::Context;
use crate::runtime::pipeline::park::Parking;
use crate::runtime::pipeline::registry::Listing;
use crate::runtime::pipeline::session;
use crate::runtime::upstream::clients::{self, Clients};
use crate::runtime::upstream::resolve::Resolver;

/// A bound, not yet running proxy.
pub struct Server {
    handle: Handle,
    parts: Parts,
    /// The first configuration: its state live, the rest of its plan applied by `run`.
    first: Pending,
    admin: Vec<AdminSocket>,
}

/// One bound admin listener and the endpoints it serves.
#[derive(Debug)]
pub struct AdminSocket {
    pub listener: TcpListener,
    pub serve: Vec<AdminEndpoint>,
}

/// The running proxy as the admin endpoint, signal handlers and tests see it.
#[derive(Clone)]
pub struct Handle {
    /// What connections are served with: the live state, the drain, parking, the registry.
    ctx: Arc<Context>,
    reload: Arc<Channel>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("generation", &self.ctx.live.peek().generation)
            .field("reload", &self.reload)
            .finish_non_exhaustive()
    }
}

/// Why `/readyz` says no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    Starting,
    Draining,
    /// Discovery is on and its first list is not live: CHI names would be refused.
    AwaitingDiscovery,
}

impl Handle {
    /// The live snapshot.
    pub fn state(&self) -> Arc<State> {
        self.ctx.live.load()
    }

    /// Asks for a reload now (what SIGHUP does); the result arrives on [`Handle::reloads`].
    pub fn request_reload(&self) {
        self.reload.request();
    }

    /// Every reload result from now on, starting with the latest.
    pub fn reloads(&self) -> watch::Receiver<Status> {
        self.reload.subscribe()
    }

    /// The latest reload result.
    pub fn last_reload(&self) -> Status {
        self.reload.latest()
    }

    /// Connections open now.
    pub fn active_connections(&self) -> usize {
        self.ctx.drain.active()
    }

    /// Relayed connections parked now (quiet, out of the reactor).
    pub fn parked_connections(&self) -> usize {
        self.ctx.parking.as_ref().map_or(0, |p| p.len())
    }

    /// The `limit` oldest live relayed connections (parked ones included), and how many are live.
    pub fn connections(&self, limit: usize) -> Listing {
        self.ctx.registry.list(limit)
    }

    /// Whether load balancers should send connections.
    pub fn ready(&self) -> Result<(), NotReady> {
        match self.ctx.drain.phase() {
            Phase::Starting => Err(NotReady::Starting),
            Phase::Draining => Err(NotReady::Draining),
            Phase::Serving if self.ctx.live.peek().discovery.awaiting_first_sync => {
                Err(NotReady::AwaitingDiscovery)
            }
            Phase::Serving => Ok(()),
        }
    }
}

impl Server {
    /// Builds the route table and binds every socket; `observer` hears of every connection.
    /// The first configuration goes live as a reload's would, from the empty state.
    pub async fn bind(config: Config, observer: Arc<dyn Observer>) -> Result<Server, ConfigError> {
        let resolver = Arc::new(Resolver::default());
        let parking = match Parking::new() {
            Ok(p) => Some(Arc::new(p)),
            Err(error) => {
                tracing::warn!(%error, "cannot park quiet connections; they keep their tasks");
                None
            }
        };
        let ctx = Arc::new(Context::new(
            Arc::new(Live::new(State::empty())),
            Arc::default(),
            observer,
            Arc::new(Clients::default()),
            parking,
            Arc::default(),
        ));
        let config = Arc::new(config);
        let table = reload::go_live::table(&config, None, &resolver, &ctx.live.peek().routes)?;
        let targets = reload::go_live::targets(&config);
        let staged = Staged::new(&Current::empty(), config, &targets, table)?;
        // From nothing, the admin section "moved": bound now, and only now.
        let admin = bind_admin(&staged.config).await?;
        // No refusal yet (later, each reload's result sets it).
        metrics::gauge!(meters::CONFIG_LAST_RELOAD_SUCCESSFUL).set(1.0);
        let channel = Arc::new(Channel::new(staged.config.content_hash));
        let (first, _empty) = staged.go_live(&ctx);
        Ok(Server {
            handle: Handle {
                ctx: ctx.clone(),
                reload: channel.clone(),
            },
            parts: Parts {
                ctx,
                listeners: Arc::default(),
                channel,
                resolver,
            },
            first,
            admin,
        })
    }

    /// Bound listener addresses by name (port 0 in the config resolves here).
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.first.bound.new_addrs()
    }

    /// The admin sockets, for the surface to serve (taken once).
    pub fn take_admin(&mut self) -> Vec<AdminSocket> {
        std::mem::take(&mut self.admin)
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Serves until `shutdown` resolves, then drains and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            handle: _,
            parts,
            first,
            admin: _,
        } = self;
        let resolving = tokio::spawn(parts.resolver.clone().run());
        let ctx = parts.ctx.clone();
        let listeners = parts.listeners.clone();
        let sweeping = tokio::spawn(sweep_clients(ctx.clients.clone(), ctx.live.clone()));
        let parking = ctx.parking.clone();
        let parked = parking
            .clone()
            .map(|p| tokio::spawn(async move { p.run(session::wake, session::expire).await }));
        // Ready before the "listening" lines, which tell watchers we are up; the reloader
        // sets the watches before it starts the listeners, so a change made by anyone who
        // waited for those lines is seen.
        ctx.drain.set_phase(Phase::Serving);
        let (hints_tx, hints) = mpsc::channel(1);
        let reloader = Reloader::start(parts, first, hints_tx);
        let reloading = tokio::spawn(reloader.run(hints));
        shutdown.await;

        // Not ready first, so load balancers stop sending; no reload may open listeners any
        // more; then stop accepting.
        ctx.drain.set_phase(Phase::Draining);
        reloading.abort();
        let _ = reloading.await;
        let accepting = listeners::lock(&listeners).stop_all();
        for task in accepting {
            let _ = task.await;
        }
        // Parked connections drain like the others: back in tasks of their own.
        if let Some(parking) = &parking {
            parking.close().into_iter().for_each(session::wake);
        }
        let deadline = ctx.live.peek().timeouts.drain;
        let active = ctx.drain.active();
        tracing::info!(active, drain_secs = deadline.as_secs_f64(), "draining");
        if ctx.drain.wait(deadline).await {
            tracing::info!("drained; exiting");
        } else {
            tracing::warn!(
                remaining = ctx.drain.active(),
                "drain deadline passed; closing remaining connections"
            );
        }
        resolving.abort();
        sweeping.abort();
        if let Some(task) = parked {
            task.abort();
        }
    }
}

/// Binds every admin listener of `config`.
async fn bind_admin(config: &Config) -> Result<Vec<AdminSocket>, ConfigError> {
    let file = config.path.display().to_string();
    let mut admin = Vec::new();
    for a in config.admin.iter().flat_map(|a| &a.listeners) {
        let listener = TcpListener::bind(a.address).await.map_err(|e| {
            Problem::in_file(&file, format!("admin: cannot bind {}: {e}", a.address))
        })?;
        admin.push(AdminSocket {
            listener,
            serve: a.serve.clone(),
        });
    }
    Ok(admin)
}

/// Forgets, every [`clients::SWEEP_EVERY`], the clients with nothing open and a full bucket.
async fn sweep_clients(clients: Arc<Clients>, live: Arc<Live>) {
    let mut every = tokio::time::interval(clients::SWEEP_EVERY);
    loop {
        every.tick().await;
        let limits = live.peek().limits.per_client.clone();
        clients.sweep(&limits, std::time::Instant::now());
    }
}
