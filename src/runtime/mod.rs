//! The runtime layer: sockets, tasks and live state — the proxy running the model.
//!
//! One connection's life is the [`pipeline`]: accept → PROXY header + ClientHello → route and
//! allowlist (model) → connect (through [`upstream::resolve`]'s DNS cache, choosing by the live
//! state of each address in [`upstream::endpoint`]) → PROXY header out → relay, TLS legs
//! included. Around it: [`drain`] (counting connections, waiting for them on shutdown),
//! [`table`] (the route table as the runtime holds it), and two rooms: [`control`] (what
//! configuration is live and how it changes: startup, reloads, watches, listeners, discovery,
//! the live snapshot) and [`upstream`] (DNS, each address's state, per-client limits).
//!
//! Uses the wire and model layers, never the surface: what surfaces (access-log lines, the log
//! level) is handed to an [`observe::Observer`] the surface provides. Metrics are recorded
//! through the `metrics` facade under the names in [`meters`], into handles each route and
//! listener resolves once ([`route_counters`]); the surface exposes them.

pub mod addrs;
pub mod control;
pub mod observe;
pub mod pipeline;
pub mod route_counters;
pub mod table;
pub mod upstream;
pub mod workers;

pub(crate) mod drain;
pub(crate) mod meters;
pub(crate) mod outcome;
pub(crate) mod socket;
pub mod tls;
