//! The connection pipeline: one accepted connection's life, top to bottom.
//!
//! [`accept`] → [`routing`] (PROXY header + ClientHello read by [`preamble`], then the route
//! decision: per-client limits, route by SNI, allowlist; a refusal's alert from [`refuse`]) →
//! a leg's connect ([`passthrough`]: [`connect`] an upstream chosen by its live state, then
//! [`proxy_out`]'s PROXY header and first bytes; or [`terminated`] for a route that ends TLS
//! here) → relay ([`relay`] moves bytes, [`park`] holds quiet connections, their names in
//! [`kept_names`]) → the end
//! ([`session`]: one metric sample, one access-log record). [`connection`] is the table of
//! contents: it calls each step in turn, passing values ([`routing::Routed`],
//! [`routing::Established`]) or ending [`routing::Refused`]. Beside them: what every connection
//! is served with ([`context`]), the live connections for the admin listing ([`registry`]), and
//! the warning about PROXY headers from untrusted peers ([`untrusted`]).
//!
//! Owns: everything per connection, from the accepted socket to its end. May call: the model,
//! the live snapshot ([`crate::runtime::control::state`]), the upstream side (resolve, endpoint,
//! route_counters, clients, drain), the TLS configurations ([`crate::runtime::tls`]), and the
//! runtime's shared vocabulary (addrs, observe, outcome, meters, socket). Nothing here calls
//! the control plane (reload, listeners, server, discovery): they start accept loops and hand
//! in the [`context::Context`]; the surface sees connections only through the
//! [`crate::runtime::observe::Observer`] and the [`registry`].
//!
//! Where a new per-connection feature goes: a new step or a refusal in [`connection`]'s
//! sequence (its work in a module of its own here), what it learns in the
//! [`crate::runtime::observe::Record`], and a new way to end in [`crate::runtime::outcome`].

pub(crate) mod accept;
pub(crate) mod connect;
pub(crate) mod connection;
pub(crate) mod context;
pub(crate) mod kept_names;
pub(crate) mod park;
pub(crate) mod passthrough;
pub(crate) mod postgres;
pub(crate) mod preamble;
pub(crate) mod proxy_out;
pub(crate) mod refuse;
pub mod registry;
pub(crate) mod relay;
pub(crate) mod routing;
pub(crate) mod session;
pub(crate) mod terminated;
pub(crate) mod untrusted;
