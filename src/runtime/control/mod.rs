//! The control plane: what configuration is live, and how it changes.
//!
//! Owns [`server`] (startup: binds everything, serves, drains — startup is a reload from the
//! empty state), [`reload`] (the loop: watch hints, requests and discovery snapshots → load →
//! **pure plan** → apply; what each attempt publishes), [`watch`] (directory watches, hints
//! only), [`listeners`] (the accepting sockets, planned purely, changed in place),
//! [`discovery`] (Kubernetes objects → routes) and [`state`] (the live snapshot every
//! connection loads once).
//!
//! May call the model, the upstream side (building tables resolves names; the per-client
//! state is swept), the connection pipeline's entry points (an accept loop per listener, the
//! [`Context`](crate::runtime::pipeline::context::Context) they share, parking) and the runtime's leaves.
//! The pipeline calls back into one thing only: the snapshot in [`state`].

pub(crate) mod discovery;
pub(crate) mod listeners;
pub mod reload;
pub mod server;
pub mod state;
pub(crate) mod watch;
