//! The running listeners, changed in place by reloads.
//!
//! A reload's listener changes are planned first ([`plan::plan`], pure). [`Listeners::bind`]
//! then opens the sockets the plan needs, so a port already in use refuses the reload before
//! anything changed; [`Listeners::apply`] starts them, hands kept listeners their new settings,
//! and stops the removed ones (their live connections carry on; only accepting stops).

use std::net::SocketAddr;
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
use crate::runtime::socket;

pub(crate) mod plan;

pub use plan::{Plan, Step};

/// One accepting listener.
struct Running {
    slot: Arc<ArcSwap<ListenerCtx>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    local: Option<SocketAddr>,
}

/// Every listener the proxy accepts on.
#[derive(Default)]
pub struct Listeners {
    running: Vec<Running>,
}

/// A [`Plan`] with its new sockets bound, not yet accepting.
pub struct Bound {
    plan: Plan,
    /// For each configured listener: its config, and its new socket if the plan binds one.
    entries: Vec<(ListenerConfig, Option<TcpListener>)>,
}

impl Bound {
    /// Bound addresses by name of the listeners this plan opens.
    pub fn new_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.entries
            .iter()
            .filter_map(|(c, socket)| Some((c.name.clone(), socket.as_ref()?.local_addr().ok()?)))
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
            let socket = match step {
                Step::Keep(_) => None,
                Step::Bind => Some(socket::listen(config.address).map_err(|e| {
                    let msg = format!(
                        "listener {:?}: cannot bind {}: {e}",
                        config.name, config.address
                    );
                    Problem::in_file(file, msg)
                })?),
            };
            entries.push((config.clone(), socket));
        }
        Ok(Bound { plan, entries })
    }

    /// Makes `bound` the running set: starts new listeners (logging a "listening" line each),
    /// updates kept ones, stops the others.
    pub fn apply(&mut self, bound: Bound, ctx: &Arc<Context>) {
        let Bound { plan, entries } = bound;
        let mut old: Vec<Option<Running>> = self.running.drain(..).map(Some).collect();
        for ((config, socket), step) in entries.into_iter().zip(plan.steps) {
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
            match (step, socket) {
                (Step::Keep(i), _) => {
                    if let Some(r) = old.get_mut(i).and_then(Option::take) {
                        r.slot.store(make_ctx(r.local.unwrap_or(config.address)));
                        self.running.push(r);
                    }
                }
                (Step::Bind, Some(listener)) => {
                    let local = listener.local_addr().ok();
                    let listener_ctx = make_ctx(local.unwrap_or(config.address));
                    if let Some(addr) = local {
                        tracing::info!(listener = %listener_ctx.name, address = %addr, "listening");
                    }
                    let slot = Arc::new(ArcSwap::from(listener_ctx));
                    let (stop, stop_rx) = watch::channel(false);
                    let task =
                        tokio::spawn(accept::run(listener, slot.clone(), ctx.clone(), stop_rx));
                    self.running.push(Running {
                        slot,
                        stop,
                        task,
                        local,
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
            .map(|r| {
                let _ = r.stop.send(true);
                r.task
            })
            .collect()
    }
}
