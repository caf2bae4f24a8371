//! The legs of a connection whose TLS ends here (`tls: terminate`, `tls: reencrypt`).
//!
//! Routing, allowlists and their refusal alerts happen before any of this, on the peeked
//! ClientHello, exactly as for passthrough; [`connect`] then runs the client's handshake
//! (rustls, fed the bytes the preamble already read), connects to the upstream (plaintext on
//! the listener's `upstream_port_plain`, or TLS again, verified), and [`relay`] moves the
//! plaintext both ways until the end. The configurations and the handshake bound come from the
//! live state's [`crate::runtime::tls::Tls`].

mod handshake;
mod io;
mod relay;

pub use handshake::Streams;

use tokio::net::TcpStream;

use crate::runtime::observe::Record;
use crate::runtime::outcome::Outcome;
use crate::runtime::pipeline::context::{At, Served};
use crate::runtime::pipeline::routing::{Established, Refused, Routed};
use crate::runtime::pipeline::session::{self, Session};
use crate::runtime::pipeline::{postgres, proxy_out};
use handshake::{Live, Target};

/// The client's handshake, then the upstream (with the PROXY header, if the route wants one).
pub async fn connect<'a>(
    stream: &'a TcpStream,
    routed: Routed,
    at: At<'_>,
    record: &mut Record,
) -> Result<Established<Streams<'a>>, Refused> {
    let Routed {
        route,
        sticky,
        client,
        destination,
        preamble,
        admitted,
    } = routed;
    let config = &at.listener.config;
    let mut proxy_header = Vec::new();
    proxy_out::header(
        &preamble,
        route.proxy_protocol,
        client,
        destination,
        &mut proxy_header,
    );
    let target = Target {
        route: &route,
        sticky: sticky.as_ref(),
        proxy_header,
        ports: (
            postgres::default_port(config, &route, config.upstream_port_plain),
            postgres::default_port(config, &route, config.upstream_port),
        ),
        postgres: at.listener.postgres.is_some(),
    };
    let live = Live {
        tls: &at.state.tls,
        timeouts: &at.state.timeouts,
        health: &at.state.health,
        connect_seconds: &at.ctx.connect_seconds,
    };
    match handshake::establish(stream, live, target, preamble, record).await {
        Ok((streams, lease)) => Ok(Established {
            legs: streams,
            route,
            lease,
            admitted,
        }),
        Err(outcome) => Err(Refused::on(route, outcome)),
    }
}

/// Relays a terminated connection until the end and says how it ended (its session given
/// back to report it). It is never parked (rustls's state lives in the task), so it ends
/// here, not in [`session`].
pub async fn relay(
    streams: Streams<'_>,
    mut session: Session<Served>,
) -> (Session<Served>, Outcome) {
    let meters = session::byte_meters(&session);
    let transfer = relay::relay(streams, session.idle, &meters).await;
    session.progress = transfer.progress;
    let (outcome, detail) = transfer.end.outcome();
    if detail.is_some() {
        session.record.detail = detail;
    }
    (session, outcome)
}
