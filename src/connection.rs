//! One connection, top to bottom:
//! PROXY in → ClientHello → route → allow → connect → PROXY out → relay.
//!
//! Each phase either hands the next one what it learnt or ends the
//! connection with an [`Outcome`]; `handle` turns that into one access-log
//! line and one metric sample.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics::SharedString;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::accept::ListenerCtx;
use crate::access_log::Record;
use crate::config::ProxyVersion;
use crate::outcome::Outcome;
use crate::preamble::{self, Preamble};
use crate::proxy_in::{self, ProxyHeader};
use crate::relay::{self, End, Meters};
use crate::route::Miss;
use crate::server::{ActiveGuard, Shared, State};
use crate::tls_alert::{self, Alert};
use crate::{connect, proxy_out};

/// After a refusal alert, how long we wait for the client to close first.
/// Closing with unread input would send RST, which can destroy the alert
/// before the client reads it.
const ALERT_LINGER: Duration = Duration::from_secs(1);
/// PROXY v2 TLV types we forward upstream.
const PP2_TYPE_AUTHORITY: u8 = 0x02;
const PP2_TYPE_AWS: u8 = 0xEA;

/// Serves one accepted connection to the end.
pub async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerCtx>,
    shared: Arc<Shared>,
    guard: ActiveGuard,
) {
    let mut record = Record::new(listener.name.clone(), peer);
    let state = shared.state.load_full();
    let idle = state.timeouts.idle;
    // Everything before the relay runs boxed, so its buffers and parser
    // state are freed before the relay, which may last for hours: an idle
    // connection's task holds only what the relay needs. The config snapshot
    // is released too, so old route tables do not outlive a reload.
    let established = Box::pin(establish(&stream, peer, &listener, &state, &mut record)).await;
    drop(state);
    let outcome = match established {
        Ok(upstream) => relay(&stream, &upstream, idle, &mut record).await,
        Err(outcome) => outcome,
    };
    drop(stream);
    // The live log settings, so a reload that changes them also covers
    // connections opened before it.
    record.finish(outcome, &shared.state.load().log);
    drop(guard);
}

/// Counts a connection refused at accept for being over the limit.
pub fn record_over_limit(listener: &ListenerCtx, shared: &Shared, peer: SocketAddr) {
    Record::new(listener.name.clone(), peer).finish(Outcome::OverLimit, &shared.state.load().log);
}

/// PROXY in → ClientHello → route → allow → connect → PROXY out: returns
/// the upstream with the client's first bytes already written to it.
async fn establish(
    stream: &TcpStream,
    peer: SocketAddr,
    listener: &ListenerCtx,
    state: &State,
    record: &mut Record,
) -> Result<TcpStream, Outcome> {
    // PROXY in + ClientHello, under one deadline.
    let policy = &listener.config.proxy_protocol;
    let trusted = proxy_in::is_trusted(&policy.trusted, peer.ip());
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
    metrics::histogram!(crate::metrics::CLIENT_HELLO_SECONDS)
        .record(record.accepted.elapsed().as_secs_f64());
    let client = match &preamble.header {
        Some(h) => {
            note_header(record, h);
            h.source.unwrap_or(peer)
        }
        None => peer,
    };
    let client = normalize(client);
    record.client = Some(client);
    record.sni = preamble
        .hello
        .sni
        .as_ref()
        .map(|s| String::from_utf8_lossy(s.as_bytes()).into());
    record.ech = preamble.hello.ech;

    // Route.
    let sni = preamble.hello.sni.as_ref().map(|s| s.as_bytes());
    let route = match state.routes.lookup(sni) {
        Ok(route) => route,
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

    // Allow.
    if !route.allow.allows(client.ip()) {
        refuse_with_alert(stream, Alert::AccessDenied).await;
        return Err(Outcome::AccessDenied);
    }

    // Connect.
    let started = Instant::now();
    let connected =
        connect::connect(route, listener.config.upstream_port, state.timeouts.connect).await;
    let elapsed = started.elapsed();
    record.connect_us = Some(elapsed.as_micros() as u64);
    metrics::histogram!(crate::metrics::UPSTREAM_CONNECT_SECONDS).record(elapsed.as_secs_f64());
    let (upstream, upstream_addr) = match connected {
        Ok(c) => c,
        Err(error) => {
            tracing::warn!(route = %route.name, %error, "no upstream connection");
            record.detail = Some("upstream connect failed");
            return Err(Outcome::UpstreamUnavailable);
        }
    };
    record.upstream = Some(upstream_addr);

    // PROXY out + replay of everything the client sent so far.
    let version = route.proxy_protocol;
    let destination = match preamble.header.as_ref().and_then(|h| h.destination) {
        Some(d) => d,
        None if version == ProxyVersion::Off => peer, // unused
        None => local_addr(stream, &listener.bound),
    };
    let first = first_bytes(&preamble, version, client, normalize(destination));
    record.from_client = preamble.tls_bytes().len() as u64;
    drop(preamble);
    if let Err(error) = relay::write_all(&upstream, &first).await {
        tracing::debug!(%upstream_addr, %error, "writing the ClientHello upstream failed");
        return Err(Outcome::UpstreamWriteFailed);
    }
    drop(first);

    Ok(upstream)
}

/// Relays until the end and says how it ended.
async fn relay(
    stream: &TcpStream,
    upstream: &TcpStream,
    idle: Duration,
    record: &mut Record,
) -> Outcome {
    let route_label = match &record.route {
        Some(name) => SharedString::from_shared(name.clone()),
        None => SharedString::const_str(""),
    };
    let meters = Meters {
        from_client: metrics::counter!(crate::metrics::BYTES_FROM_CLIENT, "route" => route_label.clone()),
        from_upstream: metrics::counter!(crate::metrics::BYTES_FROM_UPSTREAM, "route" => route_label),
    };
    meters.from_client.increment(record.from_client);
    let transfer = relay::relay(stream, upstream, idle, &meters).await;
    record.from_client += transfer.from_client;
    record.from_upstream = transfer.from_upstream;
    match transfer.end {
        End::Done => Outcome::Relayed,
        End::Idle => Outcome::IdleTimeout,
        End::Error(_) => Outcome::RelayError,
    }
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
    proxy_out::encode(version, client, destination, &tlvs, &mut out);
    out.extend_from_slice(tls);
    out
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

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as plain IPv4.
fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
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
