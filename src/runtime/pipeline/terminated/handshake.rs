//! A terminating route's connection up to the relay: the client's handshake (in a bounded
//! number of slots, inside the ClientHello deadline), the upstream connection, the PROXY
//! header, and for `reencrypt` the upstream's verified handshake.

use std::sync::Arc;
use std::time::Duration;

use ch_edge_wire::tls_alert::{self, Alert};
use metrics::Histogram;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::unbuffered::ClientTls;
use crate::model::config::{Health, Timeouts};
use crate::model::route::{Tag, TlsMode};
use crate::runtime::observe::{Record, TlsNote};
use crate::runtime::outcome::Outcome;
use crate::runtime::pipeline::connect::{self, Attempt};
use crate::runtime::pipeline::postgres::upstream::request_ssl;
use crate::runtime::pipeline::preamble::Preamble;
use crate::runtime::pipeline::relay::write_all;
use crate::runtime::table::Route;
use crate::runtime::tls::{postgres_alpn, Failure, Side, Tls};
use crate::runtime::upstream::endpoint::Lease;

/// How long a complete ClientHello waits for a handshake slot before it is refused: long
/// enough to ride out a burst, short enough that a flood is refused rather than queued.
const SLOT_WAIT: Duration = Duration::from_millis(500);

/// A terminated connection, ready to relay plaintext (its upstream's [`Lease`] is handed
/// back beside it: the connection holds it until its end is reported). The client's socket is
/// not in it: the relay takes it over.
pub struct Streams {
    /// The client's session (rustls's unbuffered state, and any application data that came
    /// with its Finished).
    pub client: ClientTls,
    pub upstream: Upstream,
}

/// The upstream leg: plaintext (`terminate`) or TLS again (`reencrypt`). The upstream side
/// stays on rustls's buffered client (through tokio-rustls): one per `reencrypt` connection,
/// and only the client side's idle cost was worth the unbuffered API's extra work.
pub enum Upstream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Where a terminating route's connection goes, from its [`crate::runtime::pipeline::routing::Routed`].
pub struct Target<'r> {
    pub route: &'r Arc<Route>,
    pub sticky: Option<&'r Tag>,
    /// The PROXY header for the upstream (empty without one).
    pub proxy_header: Vec<u8>,
    /// The listener's (`upstream_port_plain`, `upstream_port`), for upstreams without a port.
    pub ports: (u16, u16),
    /// A `postgres` listener: ALPN `postgresql` to the client, and `reencrypt` sends
    /// `SSLRequest` before its handshake upstream.
    pub postgres: bool,
}

/// What the connection's state snapshot says about TLS, deadlines and upstream health, and
/// where the connect time is recorded.
#[derive(Clone, Copy)]
pub struct Live<'s> {
    pub tls: &'s Tls,
    pub timeouts: &'s Timeouts,
    pub health: &'s Health,
    pub connect_seconds: &'s Histogram,
}

/// Handshake with the client (the ClientHello is in `preamble`), then the upstream.
pub async fn establish(
    stream: &TcpStream,
    state: Live<'_>,
    target: Target<'_>,
    preamble: Preamble,
    record: &mut Record,
) -> Result<(Streams, Lease), Outcome> {
    let route = target.route;
    let deadline = record.accepted + state.timeouts.client_hello;
    let mut note = TlsNote {
        mode: route.tls,
        version: 0,
        handshake_us: 0,
    };

    // A slot, taken only now that the whole ClientHello is here: a client that sends
    // nothing, or sends it slowly, never holds one (RUSTSEC-2024-0341).
    let wait = SLOT_WAIT.min(deadline.saturating_duration_since(Instant::now()));
    let slots = state.tls.handshakes.clone();
    let Ok(Ok(slot)) = tokio::time::timeout(wait, slots.acquire_owned()).await else {
        record.tls = Some(note);
        state
            .tls
            .counted(Side::Client, Err(Failure::Busy), Duration::ZERO);
        record.detail = Some(Failure::detail(None, Side::Client, Failure::Busy));
        let _ = write_all(stream, &tls_alert::record(Alert::InternalError)).await;
        return Err(Outcome::TlsBusy);
    };
    let in_flight = state.tls.in_flight();
    in_flight.increment(1.0);
    let alpn = match target.postgres {
        true => Some(postgres_alpn()),
        false => route.alpn.as_ref(),
    };
    let Some(config) = state.tls.server(alpn) else {
        in_flight.decrement(1.0);
        tracing::error!(route = %route.name, "tls: no server configuration for the route");
        record.detail = Some("tls: no server configuration");
        return Err(Outcome::TlsHandshakeFailed);
    };
    let started = Instant::now();
    let client = rustls::server::UnbufferedServerConnection::new(config.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        .and_then(|conn| ClientTls::new(conn, preamble.tls_bytes()));
    drop(preamble);
    let accepted = match client {
        Ok(mut client) => tokio::time::timeout_at(deadline, client.handshake(stream))
            .await
            .map(|done| done.map(|()| client)),
        Err(error) => Ok(Err(error)),
    };
    in_flight.decrement(1.0);
    drop(slot);
    let took = started.elapsed();
    note.handshake_us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
    let mut client = match accepted {
        Ok(Ok(client)) => client,
        failed => {
            let error = match &failed {
                Ok(Err(e)) => Some(e),
                _ => None,
            };
            let failure = error.map_or(Failure::Timeout, Failure::of);
            record.tls = Some(note);
            state.tls.counted(Side::Client, Err(failure), took);
            record.detail = Some(Failure::detail(error, Side::Client, failure));
            return Err(Outcome::TlsHandshakeFailed);
        }
    };
    state.tls.counted(Side::Client, Ok(()), took);
    note.version = match client.conn().protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => 13,
        Some(rustls::ProtocolVersion::TLSv1_2) => 12,
        _ => 0,
    };
    record.tls = Some(note);

    // The upstream: ClickHouse's plain port after termination, its TLS port to reencrypt.
    let attempt = Attempt {
        default_port: match route.tls {
            TlsMode::Terminate => target.ports.0,
            _ => target.ports.1,
        },
        budget: state.timeouts.connect,
        health: state.health,
        sticky: target.sticky,
    };
    let connect_started = Instant::now();
    let connected = match connect::recorded(route, attempt, record, state.connect_seconds).await {
        Ok(connected) => connected,
        Err(outcome) => {
            close_notify(&mut client, stream).await;
            return Err(outcome);
        }
    };
    let upstream = connected.stream;
    // Several writes before a reply (a handshake, then records): no Nagle wait between them.
    let _ = upstream.set_nodelay(true);
    if target.postgres && route.tls == TlsMode::Reencrypt {
        // The PROXY header and SSLRequest in one write, then `S` awaited (within the connect
        // budget, as the handshake after it).
        let deadline = connect_started + state.timeouts.connect;
        if let Err(why) = request_ssl(&upstream, target.proxy_header, deadline).await {
            let upstream_addr = connected.lease.endpoint().addr;
            tracing::debug!(%upstream_addr, why, "the upstream refused SSLRequest");
            record.detail = Some(why);
            close_notify(&mut client, stream).await;
            return Err(Outcome::UpstreamSslRefused);
        }
    } else if !target.proxy_header.is_empty() {
        if let Err(error) = write_all(&upstream, &target.proxy_header).await {
            let upstream_addr = connected.lease.endpoint().addr;
            tracing::debug!(%upstream_addr, %error, "writing the PROXY header upstream failed");
            return Err(Outcome::UpstreamWriteFailed);
        }
    }
    let upstream = match route.tls {
        TlsMode::Reencrypt => {
            let budget = connect_started + state.timeouts.connect;
            let upstream = reencrypt(upstream, route, state, &connected.lease, budget, record);
            Upstream::Tls(Box::new(upstream.await?))
        }
        _ => Upstream::Plain(upstream),
    };
    Ok((Streams { client, upstream }, connected.lease))
}

/// Ends a client's session whose upstream could not be reached. Its handshake is done, so only
/// an encrypted alert is valid, and the only one rustls sends on request is `close_notify`: the
/// client at least sees the TLS session closed, not a bare TCP close (README "Refusals").
async fn close_notify(client: &mut ClientTls, stream: &TcpStream) {
    let shutdown = std::future::poll_fn(|cx| client.poll_close(stream, cx, true));
    let _ = tokio::time::timeout(CLOSE_WAIT, shutdown).await;
}

/// How long sending `close_notify` may take (a client that reads nothing cannot hold us).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// TLS to the upstream, verified against the route's CA (or the system's roots) for its
/// `server_name` (or the upstream host), within what is left of `timeouts.connect`.
async fn reencrypt(
    upstream: TcpStream,
    route: &Route,
    state: Live<'_>,
    lease: &Lease,
    deadline: Instant,
    record: &mut Record,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Outcome> {
    let settings = route.upstream_tls.as_deref();
    let ca = settings.and_then(|u| u.ca.as_ref());
    let host = settings
        .and_then(|u| u.server_name.clone())
        .unwrap_or_else(|| lease.endpoint().host.clone());
    let fail = |record: &mut Record, failure, error: Option<&std::io::Error>, took| {
        state.tls.counted(Side::Upstream, Err(failure), took);
        record.detail = Some(Failure::detail(error, Side::Upstream, failure));
        Err(Outcome::UpstreamTlsFailed)
    };
    let (Some(config), Ok(name)) = (state.tls.client(ca), ServerName::try_from(host.to_string()))
    else {
        tracing::warn!(route = %route.name, %host, "upstream tls: no client configuration or invalid server name");
        return fail(record, Failure::BadCertificate, None, Duration::ZERO);
    };
    let started = Instant::now();
    let connector = TlsConnector::from(config.clone());
    match tokio::time::timeout_at(deadline, connector.connect(name, upstream)).await {
        Ok(Ok(tls)) => {
            state.tls.counted(Side::Upstream, Ok(()), started.elapsed());
            Ok(tls)
        }
        Ok(Err(error)) => {
            let failure = Failure::of(&error);
            tracing::warn!(route = %route.name, upstream = %lease.endpoint().addr, %error, "upstream tls handshake failed");
            fail(record, failure, Some(&error), started.elapsed())
        }
        Err(_) => fail(record, Failure::Timeout, None, started.elapsed()),
    }
}
