//! The runtime layer: sockets, tasks and live state — the proxy running the model.
//!
//! One connection goes [`accept`] → [`preamble`] (PROXY header + ClientHello, wire parsers) →
//! route and allowlist (model) → [`connect`] (through [`upstream::resolve`]'s DNS cache,
//! choosing by the live state of each address in [`upstream::endpoint`]) → PROXY header out →
//! [`relay`], driven top to bottom by [`connection`] (with what every connection is served with
//! in [`context`]). Around it: [`drain`] (counting connections, waiting for them on shutdown),
//! [`registry`] (the live connections, for the admin listing), [`table`] (the route table as
//! the runtime holds it), and two rooms: [`control`] (what configuration is live and how it
//! changes: startup, reloads, watches, listeners, discovery, the live snapshot) and
//! [`upstream`] (DNS, each address's state, per-client limits).
//!
//! Uses the wire and model layers, never the surface: what surfaces (access-log lines, the log
//! level) is handed to an [`observe::Observer`] the surface provides. Metrics are recorded
//! through the `metrics` facade under the names in [`meters`], into handles each route and
//! listener resolves once ([`route_meters`]); the surface exposes them.

pub mod control;
pub mod observe;
pub mod route_meters;
pub mod table;
pub mod upstream;

pub(crate) mod accept;
pub(crate) mod connect;
pub(crate) mod connection;
pub(crate) mod context;
pub(crate) mod drain;
pub(crate) mod meters;
pub(crate) mod outcome;
pub(crate) mod park;
pub(crate) mod preamble;
pub mod registry;
pub(crate) mod relay;
pub(crate) mod relayed;
pub(crate) mod socket;
pub mod tls;
pub(crate) mod untrusted;

// i20: old paths, removed after the merge.
#[allow(unused_imports)]
pub(crate) use control::{discovery, listeners, watch};
pub use control::{reload, server, state};
pub use upstream::endpoint;
#[allow(unused_imports)]
pub(crate) use upstream::{clients, resolve_log};
/// i20: old path (the DNS cache and the table's aliases), removed after the merge.
pub mod resolve {
    pub use super::table::{Route, RouteTable, Upstream};
    pub use super::upstream::resolve::*;
}
