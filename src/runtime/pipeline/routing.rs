//! The route decision, and the values a connection is passed on as: PROXY header + ClientHello
//! (under one deadline) → the real client → per-client limits → route by SNI → allowlist, and
//! the connection comes out [`Routed`] or [`Refused`] (its alert sent here).

use std::sync::Arc;

use ch_edge_wire::proxy_in::ProxyHeader;
use ch_edge_wire::tls_alert::Alert;
use tokio::net::TcpStream;

use crate::model::route::{Miss, Tag};
use crate::runtime::addrs::{ClientAddr, LocalAddr, PeerAddr};
use crate::runtime::observe::Record;
use crate::runtime::outcome::Outcome;
use crate::runtime::pipeline::context::At;
use crate::runtime::pipeline::postgres::{
    self,
    client::{self, Negotiator},
};
use crate::runtime::pipeline::preamble::{self, Preamble};
use crate::runtime::pipeline::{proxy_out, refuse};
use crate::runtime::table::Route;
use crate::runtime::upstream::clients::Admitted;
use crate::runtime::upstream::endpoint::Lease;

/// A connection routed and let in: what each leg's `connect` starts from.
pub struct Routed {
    pub route: Arc<Route>,
    /// The tag of a sticky name (`<tag>.sticky.<name>`).
    pub sticky: Option<Tag>,
    /// The real client: the trusted PROXY header's source, else the TCP peer.
    pub client: ClientAddr,
    /// What the PROXY header out gives as the destination.
    pub destination: LocalAddr,
    /// Everything read so far (the ClientHello, to replay or to hand to rustls).
    pub preamble: Preamble,
    /// The client's place under the per-client limits, held to the end.
    pub admitted: Option<Admitted>,
}

/// A connection connected: its legs, and what it holds until its end is reported (its route's
/// metric handles, its upstream address's and its client's places).
pub struct Established<L> {
    pub legs: L,
    pub route: Arc<Route>,
    pub lease: Lease,
    pub admitted: Option<Admitted>,
}

impl<L> Established<L> {
    pub fn map<M>(self, f: impl FnOnce(L) -> M) -> Established<M> {
        Established {
            legs: f(self.legs),
            route: self.route,
            lease: self.lease,
            admitted: self.admitted,
        }
    }
}

/// A connection turned away before its relay: how, and the route if it had one by then (its
/// metrics count it).
pub struct Refused {
    pub outcome: Outcome,
    pub route: Option<Arc<Route>>,
}

impl Refused {
    pub fn on(route: Arc<Route>, outcome: Outcome) -> Self {
        Refused {
            outcome,
            route: Some(route),
        }
    }

    fn unrouted(outcome: Outcome) -> Self {
        Refused {
            outcome,
            route: None,
        }
    }
}

/// PROXY in → ClientHello → per-client limits → route → allow. `record` is the connection's
/// notebook: what is learnt is written there, refused or not.
pub async fn route(
    stream: &TcpStream,
    peer: PeerAddr,
    at: At<'_>,
    record: &mut Record,
) -> Result<Routed, Refused> {
    let (listener, state, ctx) = (at.listener, at.state, at.ctx);
    // PROXY in + ClientHello, under one deadline.
    let policy = &listener.config.proxy_protocol;
    let trusted = policy.trusts(peer.ip());
    // On a postgres listener, the PostgreSQL start between them (README "PostgreSQL clients").
    let mut pg = listener.postgres.as_ref().map(|_| Negotiator::default());
    record.protocol = listener.config.protocol;
    let read = preamble::read(stream, policy.mode, trusted, pg.as_mut());
    let read = tokio::time::timeout(state.timeouts.client_hello, read).await;
    if let Some(pg) = &pg {
        postgres::note(record, listener.postgres.as_ref(), pg);
    }
    let preamble = match read {
        Err(_) => return Err(Refused::unrouted(Outcome::ClientHelloTimeout)),
        Ok(Err(refused)) => {
            record.detail = Some(refused.detail);
            if let Some(h) = &refused.header {
                note_header(record, h);
            }
            match refused.outcome {
                Outcome::BadClientHello => refuse::with_alert(stream, Alert::DecodeError).await,
                Outcome::PostgresPlaintext => {
                    refuse::with_bytes(stream, &client::error_response()).await
                }
                _ => {}
            }
            return Err(Refused::unrouted(refused.outcome));
        }
        Ok(Ok(p)) => p,
    };
    record.client_hello_us = Some(record.accepted.elapsed().as_micros() as u64);
    ctx.hello_seconds
        .record(record.accepted.elapsed().as_secs_f64());
    if let Some(h) = &preamble.header {
        note_header(record, h);
    }
    let client = ClientAddr::of(peer, preamble.header.as_ref().and_then(|h| h.source));
    record.client = Some(client);
    record.sni = preamble
        .hello
        .sni
        .as_ref()
        .map(|s| String::from_utf8_lossy(s.as_bytes()).into());
    record.ech = preamble.hello.ech;

    // Per-client limits, on the real client address: every attempt is counted here (a rate
    // token charged), but a refusal for the name or the allowlist is reported before the
    // limit's, since it says what is wrong with the request (README "Per-client limits").
    let now = std::time::Instant::now();
    let admission = ctx
        .clients
        .admit(client.ip(), &state.limits.per_client, now);

    // Route.
    let sni = preamble.hello.sni.as_ref().map(|s| s.as_bytes());
    let (route, sticky) = match state.routes.find(sni) {
        Ok(found) => (found.route, found.sticky),
        Err(Miss::UnknownName) => {
            refuse::with_alert(stream, Alert::UnrecognizedName).await;
            return Err(Refused::unrouted(Outcome::UnknownSni));
        }
        Err(Miss::NoSni) => {
            refuse::with_alert(stream, Alert::MissingExtension).await;
            return Err(Refused::unrouted(Outcome::NoSni));
        }
    };
    record.route = Some(route.name.clone());
    let route = route.clone();
    record.sticky = sticky.map(|t| t.as_str().into());

    // Allow.
    if !route.allow.allows(client.ip()) {
        refuse::with_alert(stream, Alert::AccessDenied).await;
        return Err(Refused::on(route, Outcome::AccessDenied));
    }
    let admitted = match admission {
        Ok(admitted) => admitted,
        Err(over) => {
            record.detail = Some(over.detail());
            refuse::with_alert(stream, Alert::AccessDenied).await;
            return Err(Refused::on(route, Outcome::ClientOverLimit));
        }
    };
    if postgres::direct_unsupported(record, &route) {
        record.detail = Some("direct SSL client, upstream without postgres_direct_ssl");
        refuse::with_alert(stream, refuse::UPSTREAM_DOWN).await;
        return Err(Refused::on(route, Outcome::PostgresDirectUnsupported));
    }

    let destination = proxy_out::destination(
        preamble.header.as_ref(),
        route.proxy_protocol,
        stream,
        &listener.bound,
        peer,
    );
    Ok(Routed {
        route,
        sticky,
        client,
        destination,
        preamble,
        admitted,
    })
}

fn note_header(record: &mut Record, header: &ProxyHeader) {
    record.proxy_version = Some(header.version);
    record.vpce = header.aws_vpce_id().map(Into::into);
}
