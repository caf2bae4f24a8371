//! The runtime layer: sockets, tasks and live state — the proxy running the model.
//!
//! One connection goes [`accept`] → [`preamble`] (PROXY header + ClientHello, wire parsers) →
//! route and allowlist (model) → [`connect`] (through [`resolve`]'s DNS cache, choosing by the
//! live state of each address in [`endpoint`]) → PROXY header out → [`relay`], driven top to
//! bottom by [`connection`] (with what every connection is served with in [`context`]). Around it: [`listeners`] (the accepting sockets), [`state`] (the live snapshot each connection loads once), [`drain`]
//! (counting connections, waiting for them on shutdown), [`registry`] (the live connections, for the admin listing), [`reload`] with [`watch`] and
//! [`discovery`] (new configurations, planned purely, then applied), and [`server`], which
//! wires them together.
//!
//! Uses the wire and model layers, never the surface: what surfaces (access-log lines, the log
//! level) is handed to an [`observe::Observer`] the surface provides. Metrics are recorded
//! through the `metrics` facade under the names in [`meters`], into handles each route and
//! listener resolves once ([`route_meters`]); the surface exposes them.

pub mod endpoint;
pub mod observe;
pub mod reload;
pub mod resolve;
pub mod route_meters;
pub mod server;
pub mod state;

pub(crate) mod accept;
pub(crate) mod clients;
pub(crate) mod connect;
pub(crate) mod connection;
pub(crate) mod context;
pub(crate) mod discovery;
pub(crate) mod drain;
pub(crate) mod listeners;
pub(crate) mod meters;
pub(crate) mod outcome;
pub(crate) mod park;
pub(crate) mod preamble;
pub mod registry;
pub(crate) mod relay;
pub(crate) mod relayed;
pub(crate) mod resolve_log;
pub(crate) mod socket;
pub mod tls;
pub(crate) mod untrusted;
pub(crate) mod watch;
