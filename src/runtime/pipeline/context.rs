//! What every connection is served with: its listener's identity, the context shared by all
//! accept loops, and where a relayed connection reports its end and parks ([`Served`]).

use std::net::SocketAddr;
use std::sync::Arc;

use metrics::Histogram;

use crate::model::config::ListenerConfig;
use crate::runtime::addrs::PeerAddr;
use crate::runtime::control::state::{Live, State};
use crate::runtime::drain::{Drain, Open};
use crate::runtime::meters;
use crate::runtime::observe::{Observer, Record};
use crate::runtime::outcome::Outcome;
use crate::runtime::pipeline::park::Parking;
use crate::runtime::pipeline::postgres;
use crate::runtime::pipeline::registry::Registry;
use crate::runtime::pipeline::session::{Host, Parked};
use crate::runtime::pipeline::untrusted::UntrustedHeaders;
use crate::runtime::route_counters::Outcomes;
use crate::runtime::table::Route;
use crate::runtime::upstream::clients::Clients;

/// Where this server's quiet relayed connections wait. (Spelled once here: [`Host`] lets the
/// session module name it without importing this one, which would close a file cycle.)
pub type ParkingLot = Parking<Parked<Served>>;

/// A listener's identity as every connection on it sees it.
#[derive(Debug)]
pub struct ListenerCtx {
    pub name: Arc<str>,
    pub config: ListenerConfig,
    /// The bound address (port 0 in the config resolved).
    pub bound: SocketAddr,
    /// Connections that ended before a route was chosen, per outcome.
    pub unrouted: Outcomes,
    /// A `postgres` listener's negotiation counters (`None` on a `tls` listener).
    pub postgres: Option<postgres::Meters>,
}

/// What every connection needs besides its listener, shared by all accept loops.
pub struct Context {
    /// The live snapshot, loaded once per connection.
    pub(crate) live: Arc<Live>,
    /// Counts the connection while it is open.
    pub(crate) drain: Arc<Drain>,
    /// Told how each connection ended.
    pub(crate) observer: Arc<dyn Observer>,
    /// Open connections and connection rate per client address.
    pub(crate) clients: Arc<Clients>,
    /// Accept → PROXY header + ClientHello complete.
    pub(crate) hello_seconds: Histogram,
    /// Choosing and connecting an upstream, failovers included.
    pub(crate) connect_seconds: Histogram,
    /// Quiet relayed connections, out of the reactor (`None`: no epoll set could be made).
    pub(crate) parking: Option<Arc<ParkingLot>>,
    /// Warns (rate-limited) about PROXY headers from untrusted peers.
    untrusted_headers: UntrustedHeaders,
    /// The live relayed connections, for the admin listing.
    pub(crate) registry: Arc<Registry>,
}

/// What a connection consults while it is being established: its listener, the live snapshot
/// it loaded once, and the shared context.
#[derive(Clone, Copy)]
pub struct At<'a> {
    pub listener: &'a ListenerCtx,
    pub state: &'a State,
    pub ctx: &'a Context,
}

/// A relayed connection's place: its listener and the shared context.
pub struct Served {
    pub(crate) listener: Arc<ListenerCtx>,
    pub(crate) ctx: Arc<Context>,
}

impl Host for Served {
    fn finish(&self, route: &Route, record: &Record, outcome: Outcome) {
        self.ctx
            .finish(&self.listener, Some(route), record, outcome);
    }

    fn parking(&self) -> Option<&Arc<ParkingLot>> {
        self.ctx.parking.as_ref()
    }
}

impl Context {
    pub fn new(
        live: Arc<Live>,
        drain: Arc<Drain>,
        observer: Arc<dyn Observer>,
        clients: Arc<Clients>,
        parking: Option<Arc<ParkingLot>>,
        registry: Arc<Registry>,
    ) -> Self {
        Context {
            live,
            drain,
            observer,
            clients,
            hello_seconds: metrics::histogram!(meters::CLIENT_HELLO_SECONDS),
            connect_seconds: metrics::histogram!(meters::UPSTREAM_CONNECT_SECONDS),
            parking,
            untrusted_headers: UntrustedHeaders::default(),
            registry,
        }
    }

    /// Counts a new connection, unless `limits.max_connections` are open already.
    pub fn open(&self) -> Option<Open> {
        self.drain.open(self.live.peek().limits.max_connections)
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.drain.active()
    }

    /// Counts and reports a connection refused at accept for being over the limit.
    pub fn over_limit(&self, listener: &ListenerCtx, peer: PeerAddr) {
        self.finish(
            listener,
            None,
            &Record::new(listener.name.clone(), peer),
            Outcome::OverLimit,
        );
    }

    /// One metric sample and one report per connection.
    pub(crate) fn finish(
        &self,
        listener: &ListenerCtx,
        route: Option<&Route>,
        record: &Record,
        outcome: Outcome,
    ) {
        match route {
            Some(r) => r.meters.count(&r.name, &listener.name, outcome),
            None => listener.unrouted.count(outcome),
        }
        if outcome == Outcome::ProxyUntrusted {
            self.untrusted_headers.refused(&listener.name, record.peer);
        }
        self.observer.connection(record, outcome);
    }
}
