//! The running proxy: binds everything, serves, drains.
//!
//! [`Server::bind`] does everything that can fail (route table, sockets) so a bad config never
//! half-starts; [`Server::run`] serves until shutdown, then drains (mini-redis style: stop
//! accepting, wait for live connections up to `timeouts.drain`). A [`Handle`] is what the
//! outside sees of a running server: its state, readiness, reload results, reload requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::model::config::{AdminEndpoint, Config, ConfigError, Problem};
use crate::runtime::context::{Context, Served};
use crate::runtime::control::discovery;
use crate::runtime::control::listeners::{self, Bound, Listeners};
use crate::runtime::control::reload::{self, Channel, Reloader, Status};
use crate::runtime::control::state::{Live, State};
use crate::runtime::drain::{Drain, Phase};
use crate::runtime::observe::Observer;
use crate::runtime::park::Parking;
use crate::runtime::registry::{Listing, Registry};
use crate::runtime::relayed::{self, Parked};
use crate::runtime::table::RouteTable;
use crate::runtime::upstream::clients::{self, Clients};
use crate::runtime::upstream::resolve::Resolver;

/// A bound, not yet running proxy.
pub struct Server {
    handle: Handle,
    resolver: Arc<Resolver>,
    observer: Arc<dyn Observer>,
    listeners: Bound,
    admin: Vec<AdminSocket>,
    config: Arc<Config>,
}

/// One bound admin listener and the endpoints it serves.
#[derive(Debug)]
pub struct AdminSocket {
    pub listener: TcpListener,
    pub serve: Vec<AdminEndpoint>,
}

/// The running proxy as the admin endpoint, signal handlers and tests see it.
#[derive(Debug, Clone)]
pub struct Handle {
    live: Arc<Live>,
    drain: Arc<Drain>,
    reload: Arc<Channel>,
    /// Quiet relayed connections, out of the reactor (`None`: no epoll set could be made).
    parking: Option<Arc<Parking<Parked<Served>>>>,
    /// The live relayed connections.
    registry: Arc<Registry>,
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
        self.live.load()
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
        self.drain.active()
    }

    /// Relayed connections parked now (quiet, out of the reactor).
    pub fn parked_connections(&self) -> usize {
        self.parking.as_ref().map_or(0, |p| p.len())
    }

    /// The `limit` oldest live relayed connections (parked ones included), and how many are live.
    pub fn connections(&self, limit: usize) -> Listing {
        self.registry.list(limit)
    }

    /// Whether load balancers should send connections.
    pub fn ready(&self) -> Result<(), NotReady> {
        match self.drain.phase() {
            Phase::Starting => Err(NotReady::Starting),
            Phase::Draining => Err(NotReady::Draining),
            Phase::Serving if self.live.peek().discovery.awaiting_first_sync => {
                Err(NotReady::AwaitingDiscovery)
            }
            Phase::Serving => Ok(()),
        }
    }
}

impl Server {
    /// Builds the route table and binds every socket; `observer` hears of every connection.
    pub async fn bind(config: Config, observer: Arc<dyn Observer>) -> Result<Server, ConfigError> {
        let file = config.path.display().to_string();
        let resolver = Arc::new(Resolver::default());
        let routes = RouteTable::build(&config.routes, &config.defaults, &*resolver)
            .map_err(|e| ConfigError::route_table(&file, &e))?;
        reload::went_live(&config, routes.len(), 1, &*observer);
        let report = Arc::new(discovery::Report::startup(&config.discovery.kubernetes));
        let state = State::new(&config, routes, 1, report, None);
        let plan = listeners::plan::plan(&[], &config.listeners);
        let listeners = Listeners::bind(plan, &config.listeners, &file)?;
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
        Ok(Server {
            handle: Handle {
                live: Arc::new(Live::new(state)),
                drain: Arc::default(),
                reload: Arc::new(Channel::new(config.content_hash)),
                parking: match Parking::new() {
                    Ok(p) => Some(Arc::new(p)),
                    Err(error) => {
                        tracing::warn!(%error, "cannot park quiet connections; they keep their tasks");
                        None
                    }
                },
                registry: Arc::default(),
            },
            resolver,
            observer,
            listeners,
            admin,
            config: Arc::new(config),
        })
    }

    /// Bound listener addresses by name (port 0 in the config resolves here).
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners.new_addrs()
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
            handle,
            resolver,
            observer,
            listeners: bound,
            admin: _,
            config,
        } = self;
        let resolving = tokio::spawn(resolver.clone().run());
        let clients = Arc::new(Clients::default());
        let connections = Arc::new(Context::new(
            handle.live.clone(),
            handle.drain.clone(),
            observer.clone(),
            clients.clone(),
            handle.parking.clone(),
            handle.registry.clone(),
        ));
        let sweeping = tokio::spawn(sweep_clients(clients, handle.live.clone()));
        let parking = handle.parking.clone();
        let parked = parking
            .clone()
            .map(|p| tokio::spawn(async move { p.run(relayed::wake, relayed::expire).await }));
        // Watches are in place before "listening" is logged: a change made by anyone who
        // waited for that line is seen. Ready is set before the "listening" lines too, which
        // tell watchers we are up.
        let listeners = Arc::new(Mutex::new(Listeners::default()));
        let (hints_tx, hints) = mpsc::channel(1);
        let parts = reload::Parts {
            live: handle.live.clone(),
            listeners: listeners.clone(),
            connections: connections.clone(),
            channel: handle.reload.clone(),
            resolver,
            observer,
        };
        let reloader = Reloader::new(parts, config, hints_tx);
        handle.drain.set_phase(Phase::Serving);
        reload::lock(&listeners).apply(bound, &connections);
        let reloading = tokio::spawn(reloader.run(hints));
        shutdown.await;

        // Not ready first, so load balancers stop sending; no reload may open listeners any
        // more; then stop accepting.
        handle.drain.set_phase(Phase::Draining);
        reloading.abort();
        let _ = reloading.await;
        let accepting = reload::lock(&listeners).stop_all();
        for task in accepting {
            let _ = task.await;
        }
        // Parked connections drain like the others: back in tasks of their own.
        if let Some(parking) = &parking {
            parking.close().into_iter().for_each(relayed::wake);
        }
        let deadline = handle.live.peek().timeouts.drain;
        let active = handle.drain.active();
        tracing::info!(active, drain_secs = deadline.as_secs_f64(), "draining");
        if handle.drain.wait(deadline).await {
            tracing::info!("drained; exiting");
        } else {
            tracing::warn!(
                remaining = handle.drain.active(),
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

/// Forgets, every [`clients::SWEEP_EVERY`], the clients with nothing open and a full bucket.
async fn sweep_clients(clients: Arc<Clients>, live: Arc<Live>) {
    let mut every = tokio::time::interval(clients::SWEEP_EVERY);
    loop {
        every.tick().await;
        let limits = live.peek().limits.per_client.clone();
        clients.sweep(&limits, std::time::Instant::now());
    }
}
