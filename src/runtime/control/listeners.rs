//! The running listeners, changed in place by reloads.
//!
//! A reload's listener changes are planned first ([`plan::plan`], pure). [`Listeners::bind`]
//! then opens the sockets the plan needs, so a port already in use refuses the reload before
//! anything changed; [`Listeners::apply`] starts them, hands kept listeners their new settings,
//! and stops the removed ones (their live connections carry on; only accepting stops).
//!
//! A listener is one listening socket per worker ([`workers`]), all on its address
//! (`SO_REUSEPORT`), each accepted on by its own worker: a connection stays on the thread that
//! accepted it. Kept listeners keep their sockets, so a reload loses no connection.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::model::config::{ConfigError, ListenerConfig, Problem};
use crate::runtime::pipeline::accept;
use crate::runtime::pipeline::context::{Context, ListenerCtx};
use crate::runtime::pipeline::postgres;
use crate::runtime::route_counters::Outcomes;
use crate::runtime::{socket, workers};

pub(crate) mod plan;

pub use plan::{Plan, Step};

/// One accepting listener: an accept loop per worker, each on its own socket.
struct Running {
    slot: Arc<ArcSwap<ListenerCtx>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    local: Option<SocketAddr>,
    /// Its sockets (open until `stop` is sent: the accept loops own them), for options a
    /// reload changes in place.
    fds: Vec<RawFd>,
    defer_accept: bool,
}

/// Every listener the proxy accepts on.
#[derive(Default)]
pub struct Listeners {
    running: Vec<Running>,
}

/// A [`Plan`] with its new sockets bound, not yet accepting.
pub struct Bound {
    plan: Plan,
    /// For each configured listener: its config, and its new sockets (one per worker) if the
    /// plan binds it.
    entries: Vec<(ListenerConfig, Option<Vec<std::net::TcpListener>>)>,
}

impl Listeners {
    /// The bound address of each running listener, by name.
    pub fn bound_addrs(&self) -> Vec<(Arc<str>, SocketAddr)> {
        self.running
            .iter()
            .map(|r| {
                let ctx = r.slot.load();
                (ctx.name.clone(), ctx.bound)
            })
            .collect()
    }
}

impl Bound {
    /// Bound addresses by name of the listeners this plan opens.
    pub fn new_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.entries
            .iter()
            .filter_map(|(c, sockets)| {
                let first = sockets.as_ref()?.first()?;
                Some((c.name.clone(), first.local_addr().ok()?))
            })
            .collect()
    }
}

/// The listener set's lock; a panic elsewhere while holding it leaves the set consistent (every
/// change is a plain push/drain), so poison is ignored.
pub(crate) fn lock(listeners: &Mutex<Listeners>) -> MutexGuard<'_, Listeners> {
    listeners.lock().unwrap_or_else(|e| e.into_inner())
}

impl Listeners {
    /// Binds the sockets `plan` needs for `configs` (the listeners it was planned for). On error
    /// nothing is kept open and the running set is untouched; the problem names the listener
    /// and the configuration file `file`.
    pub fn bind(plan: Plan, configs: &[ListenerConfig], file: &str) -> Result<Bound, ConfigError> {
        let mut entries = Vec::with_capacity(configs.len());
        for (config, step) in configs.iter().zip(&plan.steps) {
            let sockets = match step {
                Step::Keep(_) => None,
                Step::Bind => Some(bind_each_worker(config).map_err(|e| {
                    let msg = format!(
                        "listener {:?}: cannot bind {}: {e}",
                        config.name, config.address
                    );
                    Problem::in_file(file, msg)
                })?),
            };
            entries.push((config.clone(), sockets));
        }
        Ok(Bound { plan, entries })
    }

    /// Makes `bound` the running set: starts new listeners (logging a "listening" line each),
    /// updates kept ones, stops the others.
    pub fn apply(&mut self, bound: Bound, ctx: &Arc<Context>) {
        let Bound { plan, entries } = bound;
        let mut old: Vec<Option<Running>> = self.running.drain(..).map(Some).collect();
        for ((config, sockets), step) in entries.into_iter().zip(plan.steps) {
            let make_ctx = |bound: SocketAddr| {
                let name: Arc<str> = config.name.as_str().into();
                Arc::new(ListenerCtx {
                    unrouted: Outcomes::unrouted(&name),
                    postgres: postgres::Meters::of(&config, &name),
                    name,
                    config: config.clone(),
                    bound,
                })
            };
            match (step, sockets) {
                (Step::Keep(i), _) => {
                    if let Some(mut r) = old.get_mut(i).and_then(Option::take) {
                        r.slot.store(make_ctx(r.local.unwrap_or(config.address)));
                        if r.defer_accept != config.defer_accept {
                            for fd in &r.fds {
                                if let Err(error) =
                                    socket::set_defer_accept(fd, config.defer_accept)
                                {
                                    tracing::warn!(listener = %config.name, %error, "cannot change defer_accept");
                                }
                            }
                            r.defer_accept = config.defer_accept;
                        }
                        self.running.push(r);
                    }
                }
                (Step::Bind, Some(sockets)) => {
                    let local = sockets.first().and_then(|s| s.local_addr().ok());
                    let listener_ctx = make_ctx(local.unwrap_or(config.address));
                    if let Some(addr) = local {
                        tracing::info!(listener = %listener_ctx.name, address = %addr, "listening");
                    }
                    let slot = Arc::new(ArcSwap::from(listener_ctx));
                    let (stop, stop_rx) = watch::channel(false);
                    let fds = sockets.iter().map(AsRawFd::as_raw_fd).collect();
                    let tasks = sockets
                        .into_iter()
                        .enumerate()
                        .map(|(i, socket)| {
                            let (slot, ctx, stop_rx) = (slot.clone(), ctx.clone(), stop_rx.clone());
                            // Registered on the worker that accepts on it.
                            workers::spawn_on(i, async move {
                                match TcpListener::from_std(socket) {
                                    Ok(listener) => accept::run(listener, slot, ctx, stop_rx).await,
                                    Err(error) => tracing::error!(%error, "cannot accept on a listening socket"),
                                }
                            })
                        })
                        .collect();
                    self.running.push(Running {
                        slot,
                        stop,
                        tasks,
                        local,
                        fds,
                        defer_accept: config.defer_accept,
                    });
                }
                // `bind` gives every Bind step its socket.
                (Step::Bind, None) => {}
            }
        }
        // Removed listeners stop accepting; their tasks end on their own and close the socket,
        // so nothing per reload is left behind.
        for i in plan.stop {
            if let Some(r) = old.get_mut(i).and_then(Option::take) {
                let _ = r.stop.send(true);
            }
        }
    }

    /// Stops accepting everywhere; the returned tasks end once each listener has stopped.
    pub fn stop_all(&mut self) -> Vec<JoinHandle<()>> {
        self.running
            .drain(..)
            .flat_map(|r| {
                let _ = r.stop.send(true);
                r.tasks
            })
            .collect()
    }
}

/// `config`'s listening sockets, one per worker: the first on the configured address (port 0
/// resolved there), the others on the same address and port.
fn bind_each_worker(config: &ListenerConfig) -> std::io::Result<Vec<std::net::TcpListener>> {
    let n = workers::count();
    let first = socket::listen(config.address, n > 1, config.defer_accept)?;
    let address = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..n {
        sockets.push(socket::listen(address, true, config.defer_accept)?);
    }
    Ok(sockets)
}
