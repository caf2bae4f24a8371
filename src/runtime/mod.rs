//! The runtime layer: sockets, tasks and live state — the proxy running the model.
//!
//! One connection's life is the [`pipeline`]: accept → PROXY header + ClientHello → route and
//! allowlist (model) → connect (through [`resolve`]'s DNS cache, choosing by the live state of
//! each address in [`endpoint`]) → PROXY header out → relay, TLS legs included. Around it: [`listeners`] (the accepting sockets), [`state`] (the live snapshot each connection loads once), [`drain`]
//! (counting connections, waiting for them on shutdown), [`registry`] (the live connections, for the admin listing), [`reload`] with [`watch`] and
//! [`discovery`] (new configurations, planned purely, then applied), and [`server`], which
//! wires them together.
//!
//! Uses the wire and model layers, never the surface: what surfaces (access-log lines, the log
//! level) is handed to an [`observe::Observer`] the surface provides. Metrics are recorded
//! through the `metrics` facade under the names in [`meters`], into handles each route and
//! listener resolves once ([`route_counters`]); the surface exposes them.

pub mod addrs;
pub mod endpoint;
pub mod observe;
pub mod pipeline;
pub mod reload;
pub mod resolve;
pub mod route_counters;
pub mod server;
pub mod state;

pub(crate) mod clients;
pub(crate) mod discovery;
pub(crate) mod drain;
pub(crate) mod listeners;
pub(crate) mod meters;
pub(crate) mod outcome;
pub(crate) mod resolve_log;
pub(crate) mod socket;
pub mod tls;
pub(crate) mod watch;

// i20: old paths, removed after the merge.
pub use pipeline::registry;
pub(crate) use pipeline::session as relayed;
pub(crate) use pipeline::{accept, context, park};
pub use route_counters as route_meters;
