//! The upstream side: where a connection may go and what is known of each place.
//!
//! Owns [`resolve`] (cached DNS: every upstream name's address handle, refreshed in the
//! background; what the log says about lookups is [`resolve_log`]), [`endpoint`] (each
//! address's open connections and passive health — the balancing state the model's pure
//! `route::balance` chooses over) and [`clients`] (open connections and connection rate per
//! client address, the per-client limits).
//!
//! May call the model and the runtime's leaves (`meters`, `route_meters`); nothing here knows
//! of connections, listeners or reloads. The connection pipeline and the control plane call
//! into it.

pub(crate) mod clients;
pub mod endpoint;
pub mod resolve;
pub(crate) mod resolve_log;
