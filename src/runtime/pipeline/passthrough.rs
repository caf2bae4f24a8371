//! The passthrough leg: an upstream connected, then the PROXY header and the client's first
//! bytes written to it, so the relay only has to move bytes.

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::runtime::observe::Record;
use crate::runtime::outcome::Outcome;
use crate::runtime::pipeline::connect::{self, Attempt};
use crate::runtime::pipeline::context::At;
use crate::runtime::pipeline::postgres::{self, upstream};
use crate::runtime::pipeline::routing::{Established, Refused, Routed};
use crate::runtime::pipeline::{proxy_out, refuse, relay};

/// Connects `routed`'s upstream and replays the client's first bytes to it.
pub async fn connect(
    stream: &TcpStream,
    routed: Routed,
    at: At<'_>,
    record: &mut Record,
) -> Result<Established<TcpStream>, Refused> {
    let Routed {
        route,
        sticky,
        client,
        destination,
        preamble,
        admitted,
    } = routed;
    let attempt = Attempt {
        default_port: postgres::default_port(
            &at.listener.config,
            &route,
            at.listener.config.upstream_port,
        ),
        budget: at.state.timeouts.connect,
        health: &at.state.health,
        sticky: sticky.as_ref(),
    };
    let connected = match connect::recorded(&route, attempt, record, &at.ctx.connect_seconds).await
    {
        Ok(connected) => connected,
        Err(outcome) => {
            refuse::with_alert(stream, refuse::UPSTREAM_DOWN).await;
            return Err(Refused::on(route, outcome));
        }
    };
    let upstream = connected.stream;
    let upstream_addr = connected.lease.endpoint().addr;

    // On a postgres listener, the upstream is asked for TLS first (after the PROXY header).
    let first = if postgres::sends_ssl_request(record, &route) {
        let mut header = Vec::new();
        proxy_out::header(
            &preamble,
            route.proxy_protocol,
            client,
            destination,
            &mut header,
        );
        let deadline = Instant::now() + at.state.timeouts.connect;
        if let Err(why) = upstream::request_ssl(&upstream, header, deadline).await {
            tracing::debug!(%upstream_addr, why, "the upstream refused SSLRequest");
            record.detail = Some(why);
            refuse::with_alert(stream, refuse::UPSTREAM_DOWN).await;
            return Err(Refused::on(route, Outcome::UpstreamSslRefused));
        }
        preamble.tls_bytes().to_vec()
    } else {
        // PROXY out + replay of everything the client sent so far.
        proxy_out::first_bytes(&preamble, route.proxy_protocol, client, destination)
    };
    record.from_client = preamble.tls_bytes().len() as u64;
    drop(preamble);
    if let Err(error) = relay::write_all(&upstream, &first).await {
        tracing::debug!(%upstream_addr, %error, "writing the ClientHello upstream failed");
        refuse::with_alert(stream, refuse::UPSTREAM_DOWN).await;
        return Err(Refused::on(route, Outcome::UpstreamWriteFailed));
    }
    drop(first);

    Ok(Established {
        legs: upstream,
        route,
        lease: connected.lease,
        admitted,
    })
}
