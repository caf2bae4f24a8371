//! One connection, top to bottom:
//! PROXY in → ClientHello → route → allow → connect → PROXY out → relay.
//! Routes that terminate TLS branch off after allow to [`tls`] (handshake, then connect).
//!
//! Each phase either hands the next one what it learnt or ends the
//! connection with an [`Outcome`]; `handle` turns that into one access-log
//! line and one metric sample.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ch_edge_wire::proxy_in::{canonical, ProxyHeader, PP2_TYPE_AWS};
use ch_edge_wire::proxy_out::{self, ProxyVersion, PP2_TYPE_AUTHORITY};
use ch_edge_wire::tls_alert::{self, Alert};
use tokio::net::TcpStream;

use crate::model::route::Miss;
use crate::runtime::clients::Admitted;
use crate::runtime::drain::Open;
use crate::runtime::endpoint::Lease;
use crate::runtime::observe::Record;
use crate::runtime::outcome::Outcome;
use crate::runtime::pipeline::connect::{self, Attempt};
use crate::runtime::pipeline::context::{Context, ListenerCtx, Served};
use crate::runtime::pipeline::preamble::{self, Preamble};
use crate::runtime::pipeline::relay::{self, End, Progress};
use crate::runtime::pipeline::session::{self, Session};
use crate::runtime::pipeline::terminated;
use crate::runtime::resolve::Route;
use crate::runtime::state::State;

/// After a refusal alert, how long we wait for the client to close first.
/// Closing with unread input would send RST, which can destroy the alert
/// before the client reads it.
const ALERT_LINGER: Duration = Duration::from_secs(1);

/// What a passthrough client is told when no upstream could take its connection. Nothing has
/// reached it yet (no ServerHello), so a plaintext alert record is still valid. `internal_error`
/// (80) and not `handshake_failure` (40): the fault is on the server's side and unrelated to
/// what the client offered, so it should not make the client retry with other parameters
/// (RFC 8446 §6.2). A bare close would look like a network fault.
const UPSTREAM_DOWN: Alert = Alert::InternalError;

/// Serves one accepted connection to the end.
pub async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerCtx>,
    ctx: Arc<Context>,
    open: Open,
) {
    let mut record = Record::new(listener.name.clone(), peer);
    // The chosen route, kept to the end for its metric handles (not its table).
    let mut route = None;
    let state = ctx.live.load();
    let idle = state.timeouts.idle;
    // Everything before the relay runs boxed, so its buffers and parser
    // state are freed before the relay, which may last for hours: an idle
    // connection's task holds only what the relay needs. The config snapshot
    // is released too, so old route tables do not outlive a reload.
    let established = Box::pin(establish(
        &stream,
        peer,
        &listener,
        &state,
        &ctx,
        &mut record,
        &mut route,
    ))
    .await;
    drop(state);
    let (established, route) = match (established, route) {
        (Ok(established), Some(route)) => (established, route),
        (established, route) => {
            // Connected always means routed; a refusal may come before or after routing.
            let outcome = established.err().unwrap_or(Outcome::RelayError);
            drop(stream);
            ctx.finish(&listener, route.as_deref(), &record, outcome);
            drop(open);
            return;
        }
    };
    let Established {
        legs,
        lease,
        admitted,
    } = established;
    // The ClientHello's bytes, already relayed (none where TLS ends here: the handshake took
    // them). Counted before the session is made, which nothing here borrows: a borrowed local
    // would stay in the task's state for the whole relay.
    let (from_client, _) = route.meters.bytes(&route.name);
    from_client.increment(record.from_client);
    let live = ctx.registry.register(&record);
    let session = Session {
        host: Served { listener, ctx },
        route,
        record,
        progress: Progress::start(),
        idle,
        held: (open, lease, admitted),
        live,
    };
    match legs {
        Legs::Plain(upstream) => session::relay(stream, upstream, session).await,
        Legs::Tls(terminated) => {
            // Boxed, the session with it: a passthrough connection's task carries neither.
            let (session, outcome) = Box::pin(relay_tls(*terminated, session)).await;
            // Closed before the end is reported, as a passthrough connection's sockets are.
            drop(stream);
            session.end(outcome);
        }
    }
}

/// A connection ready to relay, with the places it holds until its end: its upstream
/// address's and its client's.
struct Established<'a> {
    legs: Legs<'a>,
    lease: Lease,
    admitted: Option<Admitted>,
}

/// The two sockets' sides of a connection ready to relay.
enum Legs<'a> {
    /// Passthrough: the upstream with the client's first bytes already written to it.
    Plain(TcpStream),
    /// TLS terminated here, the upstream connected.
    Tls(Box<terminated::Session<'a>>),
}

/// PROXY in → ClientHello → route → allow → per-client limits → connect → PROXY out (or, for a
/// route that terminates TLS, the handshake first).
async fn establish<'a>(
    stream: &'a TcpStream,
    peer: SocketAddr,
    listener: &ListenerCtx,
    state: &State,
    ctx: &Context,
    record: &mut Record,
    routed: &mut Option<Arc<Route>>,
) -> Result<Established<'a>, Outcome> {
    // PROXY in + ClientHello, under one deadline.
    let policy = &listener.config.proxy_protocol;
    let trusted = policy.trusts(peer.ip());
    let read = preamble::read(stream, policy.mode, trusted);
    let preamble = match tokio::time::timeout(state.timeouts.client_hello, read).await {
        Err(_) => return Err(Outcome::ClientHelloTimeout),
        Ok(Err(refused)) => {
            record.detail = Some(refused.detail);
            if let Some(h) = &refused.header {
                note_header(record, h);
            }
            if refused.outcome == Outcome::BadClientHello {
                refuse_with_alert(stream, Alert::DecodeError).await;
            }
            return Err(refused.outcome);
        }
        Ok(Ok(p)) => p,
    };
    record.client_hello_us = Some(record.accepted.elapsed().as_micros() as u64);
    ctx.hello_seconds
        .record(record.accepted.elapsed().as_secs_f64());
    let client = match &preamble.header {
        Some(h) => {
            note_header(record, h);
            h.source.unwrap_or(peer)
        }
        None => peer,
    };
    let client = canonical(client);
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
            refuse_with_alert(stream, Alert::UnrecognizedName).await;
            return Err(Outcome::UnknownSni);
        }
        Err(Miss::NoSni) => {
            refuse_with_alert(stream, Alert::MissingExtension).await;
            return Err(Outcome::NoSni);
        }
    };
    record.route = Some(route.name.clone());
    *routed = Some(route.clone());
    record.sticky = sticky.map(|t| t.as_str().into());

    // Allow.
    if !route.allow.allows(client.ip()) {
        refuse_with_alert(stream, Alert::AccessDenied).await;
        return Err(Outcome::AccessDenied);
    }
    let admitted = match admission {
        Ok(admitted) => admitted,
        Err(over) => {
            record.detail = Some(over.detail());
            refuse_with_alert(stream, Alert::AccessDenied).await;
            return Err(Outcome::ClientOverLimit);
        }
    };

    let version = route.proxy_protocol;
    let destination = match preamble.header.as_ref().and_then(|h| h.destination) {
        Some(d) => d,
        None if version == ProxyVersion::Off => peer, // unused
        None => local_addr(stream, &listener.bound),
    };
    if route.tls.terminates() {
        let mut proxy_header = Vec::new();
        write_proxy_header(
            &preamble,
            version,
            client,
            canonical(destination),
            &mut proxy_header,
        );
        let routed = terminated::Routed {
            route,
            sticky: sticky.as_ref(),
            proxy_header,
            ports: (
                listener.config.upstream_port_plain,
                listener.config.upstream_port,
            ),
        };
        let live = terminated::Live {
            tls: &state.tls,
            timeouts: &state.timeouts,
            health: &state.health,
            connect_seconds: &ctx.connect_seconds,
        };
        let (session, lease) =
            terminated::establish(stream, live, routed, preamble, record).await?;
        return Ok(Established {
            legs: Legs::Tls(Box::new(session)),
            lease,
            admitted,
        });
    }

    // Connect.
    let attempt = Attempt {
        default_port: listener.config.upstream_port,
        budget: state.timeouts.connect,
        health: &state.health,
        sticky: sticky.as_ref(),
    };
    let connected = match connect::recorded(route, attempt, record, &ctx.connect_seconds).await {
        Ok(connected) => connected,
        Err(outcome) => {
            refuse_with_alert(stream, UPSTREAM_DOWN).await;
            return Err(outcome);
        }
    };
    let upstream = connected.stream;
    let upstream_addr = connected.lease.endpoint().addr;

    // PROXY out + replay of everything the client sent so far.
    let first = first_bytes(&preamble, version, client, canonical(destination));
    record.from_client = preamble.tls_bytes().len() as u64;
    drop(preamble);
    if let Err(error) = relay::write_all(&upstream, &first).await {
        tracing::debug!(%upstream_addr, %error, "writing the ClientHello upstream failed");
        refuse_with_alert(stream, UPSTREAM_DOWN).await;
        return Err(Outcome::UpstreamWriteFailed);
    }
    drop(first);

    Ok(Established {
        legs: Legs::Plain(upstream),
        lease: connected.lease,
        admitted,
    })
}

/// Relays a terminated connection until the end and says how it ended (its session given
/// back to report it). It is never parked (rustls's state lives in the task), so it ends
/// here, not in [`session`].
async fn relay_tls(
    terminated: terminated::Session<'_>,
    mut session: Session<Served>,
) -> (Session<Served>, Outcome) {
    let meters = session::byte_meters(&session);
    let transfer = terminated::relay(terminated, session.idle, &meters).await;
    session.progress = transfer.progress;
    let outcome = match transfer.end {
        End::Done => Outcome::Relayed,
        End::Idle => Outcome::IdleTimeout,
        End::Error { side, kind } => {
            session.record.detail = Some(session::error_detail(side, kind));
            Outcome::RelayError
        }
        End::Quiet => Outcome::RelayError,
    };
    (session, outcome)
}

/// The PROXY header for the upstream (if the route wants one) followed by
/// the buffered TLS bytes, as one write.
fn first_bytes(
    preamble: &Preamble,
    version: ProxyVersion,
    client: SocketAddr,
    destination: SocketAddr,
) -> Vec<u8> {
    let tls = preamble.tls_bytes();
    let mut out = Vec::with_capacity(tls.len() + 256);
    write_proxy_header(preamble, version, client, destination, &mut out);
    out.extend_from_slice(tls);
    out
}

/// The PROXY header for the upstream, if the route wants one: v2 carries the SNI and the
/// client's AWS VPC endpoint.
fn write_proxy_header(
    preamble: &Preamble,
    version: ProxyVersion,
    client: SocketAddr,
    destination: SocketAddr,
    out: &mut Vec<u8>,
) {
    let mut tlvs: Vec<(u8, &[u8])> = Vec::new();
    if version == ProxyVersion::V2 {
        if let Some(sni) = &preamble.hello.sni {
            tlvs.push((PP2_TYPE_AUTHORITY, sni.as_bytes()));
        }
        if let Some(h) = &preamble.header {
            tlvs.extend(
                h.tlvs
                    .iter()
                    .filter(|(kind, _)| *kind == PP2_TYPE_AWS)
                    .map(|(kind, value)| (*kind, value.as_slice())),
            );
        }
    }
    proxy_out::encode(version, client, destination, &tlvs, out);
}

/// The address the client connected to: the listener's own address unless
/// it is a wildcard bind (which saves a getsockname per connection).
fn local_addr(stream: &TcpStream, listener: &SocketAddr) -> SocketAddr {
    if listener.ip().is_unspecified() {
        stream.local_addr().unwrap_or(*listener)
    } else {
        *listener
    }
}

fn note_header(record: &mut Record, header: &ProxyHeader) {
    record.proxy_version = Some(header.version);
    record.vpce = header.aws_vpce_id().map(Into::into);
}

/// Sends a fatal alert, half-closes, and waits (bounded) for the client to
/// close so the alert is not lost to a reset.
async fn refuse_with_alert(stream: &TcpStream, alert: Alert) {
    let record = tls_alert::record(alert);
    let linger = async {
        relay::write_all(stream, &record).await?;
        socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write)?;
        let mut sink = [0u8; 512];
        let mut budget = 64 * 1024usize;
        loop {
            stream.readable().await?;
            match stream.try_read(&mut sink) {
                Ok(0) => return Ok(()),
                Ok(n) if n >= budget => return Ok(()),
                Ok(n) => budget -= n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    };
    let _: Result<std::io::Result<()>, _> = tokio::time::timeout(ALERT_LINGER, linger).await;
}
