//! The running listeners, changed in place by reloads.
//!
//! A reload first [`Listeners::prepare`]s: it binds the sockets the new
//! config needs that are not open yet, so a port already in use refuses the
//! reload before anything changed. [`Listeners::apply`] then starts them,
//! hands kept listeners their new settings, and stops the removed ones
//! (their live connections carry on; only accepting stops).
//!
//! A listener is kept (same socket, no rebind) when its configured address is
//! unchanged; for port 0 (tests) the name must match too, since several
//! listeners may ask for port 0 on one address.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::accept::{self, ListenerCtx};
use crate::config::ListenerConfig;
use crate::server::Shared;

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

/// Sockets bound for a new listener set, not yet accepting.
pub struct Plan {
    /// For each configured listener: the running one it keeps, or a new socket.
    entries: Vec<(ListenerConfig, Slot)>,
}

enum Slot {
    Keep(usize),
    New(TcpListener),
}

impl Plan {
    /// Bound addresses by name of the listeners this plan opens.
    pub fn new_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.entries
            .iter()
            .filter_map(|(c, slot)| match slot {
                Slot::New(l) => Some((c.name.clone(), l.local_addr().ok()?)),
                Slot::Keep(_) => None,
            })
            .collect()
    }
}

fn same_listener(running: &ListenerConfig, wanted: &ListenerConfig) -> bool {
    running.address == wanted.address && (wanted.address.port() != 0 || running.name == wanted.name)
}

impl Listeners {
    /// Matches `configs` against the running listeners and binds the rest.
    /// On error nothing is kept open and the running set is untouched.
    pub fn prepare(&self, configs: &[ListenerConfig]) -> anyhow::Result<Plan> {
        let mut taken = vec![false; self.running.len()];
        let mut entries = Vec::with_capacity(configs.len());
        for lc in configs {
            let found = self.running.iter().enumerate().position(|(i, r)| {
                !taken.get(i).copied().unwrap_or(true) && same_listener(&r.slot.load().config, lc)
            });
            let slot = match found {
                Some(i) => {
                    if let Some(t) = taken.get_mut(i) {
                        *t = true;
                    }
                    Slot::Keep(i)
                }
                None => Slot::New(accept::bind(lc).with_context(|| {
                    format!("listener {:?}: cannot bind {}", lc.name, lc.address)
                })?),
            };
            entries.push((lc.clone(), slot));
        }
        Ok(Plan { entries })
    }

    /// Makes `plan` the running set: starts new listeners (logging a
    /// "listening" line each), updates kept ones, stops the others.
    pub fn apply(&mut self, plan: Plan, shared: &Arc<Shared>) {
        let mut old: Vec<Option<Running>> = self.running.drain(..).map(Some).collect();
        for (config, slot) in plan.entries {
            let make_ctx = |bound: SocketAddr| {
                Arc::new(ListenerCtx {
                    name: config.name.as_str().into(),
                    config: config.clone(),
                    bound,
                })
            };
            match slot {
                Slot::Keep(i) => {
                    if let Some(r) = old.get_mut(i).and_then(Option::take) {
                        r.slot.store(make_ctx(r.local.unwrap_or(config.address)));
                        self.running.push(r);
                    }
                }
                Slot::New(listener) => {
                    let local = listener.local_addr().ok();
                    let ctx = make_ctx(local.unwrap_or(config.address));
                    if let Some(addr) = local {
                        tracing::info!(listener = %ctx.name, address = %addr, "listening");
                    }
                    let slot = Arc::new(ArcSwap::from(ctx));
                    let (stop, stop_rx) = watch::channel(false);
                    let task =
                        tokio::spawn(accept::run(listener, slot.clone(), shared.clone(), stop_rx));
                    self.running.push(Running {
                        slot,
                        stop,
                        task,
                        local,
                    });
                }
            }
        }
        // Removed listeners stop accepting; their tasks end on their own and
        // close the socket, so nothing per reload is left behind.
        for r in old.into_iter().flatten() {
            let _ = r.stop.send(true);
        }
    }

    /// Stops accepting everywhere; the returned tasks end once each
    /// listener has stopped.
    pub fn stop_all(&mut self) -> Vec<JoinHandle<()>> {
        self.running
            .drain(..)
            .map(|r| {
                let _ = r.stop.send(true);
                r.task
            })
            .collect()
    }

    /// Bound addresses by listener name.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.running
            .iter()
            .filter_map(|r| Some((r.slot.load().name.to_string(), r.local?)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }
}
