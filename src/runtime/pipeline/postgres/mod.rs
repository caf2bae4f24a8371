//! PostgreSQL clients on a `protocol: postgres` listener (README "PostgreSQL clients"): the
//! wire start before the ClientHello ([`client`], run inside the preamble's read), the
//! `SSLRequest` the proxy sends upstream before replaying it ([`upstream`]), and the metric
//! handles a postgres listener keeps ([`Meters`]). The parsing is the wire crate's
//! ([`ch_edge_wire::postgres`]); nothing here runs on a `tls` listener.

pub(crate) mod client;
pub(crate) mod upstream;

use std::sync::Arc;

use ch_edge_wire::postgres::{ListenerProtocol, Negotiation};
use metrics::{Counter, SharedString};

use crate::model::config::ListenerConfig;
use crate::runtime::meters;
use crate::runtime::observe::Record;
use crate::runtime::table::Route;
use client::Negotiator;

/// A postgres listener's negotiation counters, one handle per [`Negotiation`], registered when
/// the listener starts (no registry lookup per connection).
#[derive(Debug)]
pub struct Meters {
    negotiations: [Counter; 3],
}

impl Meters {
    /// The handles of `config`'s listener, if it is a `postgres` one.
    pub fn of(config: &ListenerConfig, name: &Arc<str>) -> Option<Meters> {
        (config.protocol == ListenerProtocol::Postgres).then(|| {
            let counter = |n: Negotiation| {
                metrics::counter!(
                    meters::POSTGRES_NEGOTIATIONS,
                    "listener" => SharedString::from_shared(name.clone()),
                    "negotiation" => n.keyword(),
                )
            };
            Meters {
                negotiations: [
                    counter(Negotiation::SslRequest),
                    counter(Negotiation::Direct),
                    counter(Negotiation::GssEncThenSsl),
                ],
            }
        })
    }

    /// Counts one client that reached its ClientHello by `negotiation`.
    pub fn count(&self, negotiation: Negotiation) {
        let i = match negotiation {
            Negotiation::SslRequest => 0,
            Negotiation::Direct => 1,
            Negotiation::GssEncThenSsl => 2,
        };
        if let Some(c) = self.negotiations.get(i) {
            c.increment(1);
        }
    }
}

/// Writes what the start showed into `record` and counts it on the listener's `meters` (once
/// the ClientHello is next).
pub fn note(record: &mut Record, meters: Option<&Meters>, pg: &Negotiator) {
    record.postgres = pg.start();
    if let (Some(start), Some(meters)) = (record.postgres, meters) {
        meters.count(start.negotiation);
    }
}

/// Whether `record`'s client started TLS at once and `route` would pass its ClientHello to an
/// upstream that cannot answer it: the client requires ALPN `postgresql`, which only a direct-SSL
/// server (PostgreSQL 17+) chooses — ClickHouse's PostgreSQL port takes `SSLRequest` only.
pub fn direct_unsupported(record: &Record, route: &Route) -> bool {
    record.postgres.is_some_and(|pg| pg.direct)
        && !route.tls.terminates()
        && !route.postgres.direct_ssl
}

/// Whether the upstream leg of `record`'s connection starts with the proxy's `SSLRequest`: on a
/// postgres listener, unless a direct client goes to a direct-SSL upstream.
pub fn sends_ssl_request(record: &Record, route: &Route) -> bool {
    record
        .postgres
        .is_some_and(|pg| !(pg.direct && route.postgres.direct_ssl))
}

/// The port of `route`'s upstreams written without one, `listener_port` being the listener's
/// for the leg: on a postgres listener the route's own PostgreSQL port if its cluster sets one
/// (the same port serves `SSLRequest` and plaintext, so every leg uses it).
pub fn default_port(config: &ListenerConfig, route: &Route, listener_port: u16) -> u16 {
    match config.protocol {
        ListenerProtocol::Postgres => route.postgres.port.unwrap_or(listener_port),
        ListenerProtocol::Tls => listener_port,
    }
}
