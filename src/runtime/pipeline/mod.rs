//! The connection pipeline: one accepted connection's life, top to bottom.
//!
//! [`accept`] → [`preamble`] (PROXY header + ClientHello, wire parsers) → the route decision
//! (model: name, allowlist, per-client limits) → [`connect`] (an upstream address chosen by its
//! live state) → [`proxy_out`] (the PROXY header and first bytes for the upstream) → relay
//! ([`relay`] moves bytes, parked by [`park`] while quiet) → the end ([`session`]: one metric
//! sample, one access-log record). [`connection`] is the table of contents: it calls each step
//! in turn. Routes that end TLS here take the [`terminated`] legs (handshake, plaintext relay)
//! in place of connect + relay. Beside them: what every connection is served with
//! ([`context`]), the live connections for the admin listing ([`registry`]), and the warning
//! about PROXY headers from untrusted peers ([`untrusted`]).
//!
//! Owns: everything per connection, from the accepted socket to its end. May call: the model,
//! the live snapshot ([`crate::runtime::state`]), the upstream side (resolve, endpoint,
//! clients), the TLS configurations ([`crate::runtime::tls`]), and the runtime's shared
//! vocabulary (observe, outcome, meters, socket). Nothing here calls the control plane
//! (reload, listeners, server): they start accept loops and hand in the [`context::Context`].
//!
//! Where a new per-connection feature goes: a new step or a refusal in [`connection`]'s
//! sequence (its work in a module of its own here), what it learns in the
//! [`crate::runtime::observe::Record`], and a new way to end in [`crate::runtime::outcome`].

pub(crate) mod accept;
pub(crate) mod connect;
pub(crate) mod connection;
pub(crate) mod context;
pub(crate) mod park;
pub(crate) mod preamble;
pub mod registry;
pub(crate) mod relay;
pub(crate) mod session;
pub(crate) mod terminated;
pub(crate) mod untrusted;
