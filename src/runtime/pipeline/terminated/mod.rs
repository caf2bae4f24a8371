//! The legs of a connection whose TLS ends here (`tls: terminate`, `tls: reencrypt`).
//!
//! Routing, allowlists and their refusal alerts happen before any of this, on the peeked
//! ClientHello, exactly as for passthrough; [`connect`] then runs the client's handshake
//! (rustls's unbuffered API, fed the bytes the preamble already read), connects to the upstream (plaintext on
//! the listener's `upstream_port_plain`, or TLS again, verified), and [`relay`] moves the
//! plaintext both ways until the end, parked while quiet. The configurations and the handshake bound come from the
//! live state's [`crate::runtime::tls::Tls`].

mod handshake;
mod legs;
mod relay;
mod unbuffered;

pub use handshake::Streams;

use tokio::net::TcpStream;

use crate::runtime::observe::Record;
use crate::runtime::outcome::Outcome;
use crate::runtime::pipeline::context::At;
use crate::runtime::pipeline::park;
use crate::runtime::pipeline::relay::End;
use crate::runtime::pipeline::routing::{Established, Refused, Routed};
use crate::runtime::pipeline::session::{self, Host, ParkResult, Resume, Session};
use crate::runtime::pipeline::{postgres, proxy_out};
use crate::runtime::workers;
use handshake::{Live, Target};
use relay::{Conns, Legs};

/// The client's handshake, then the upstream (with the PROXY header, if the route wants one).
pub async fn connect(
    stream: &TcpStream,
    routed: Routed,
    at: At<'_>,
    record: &mut Record,
) -> Result<Established<Streams>, Refused> {
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

/// Relays a terminated connection until it ends (reported here) or parks.
///
/// Not an async fn: its arguments would stay in the task beside the relay's own copies (the
/// legs made of them, the session) for the connection's whole life; the task is `run`'s future
/// alone.
pub fn relay<H: Host>(
    stream: TcpStream,
    streams: Streams,
    session: Session<H>,
) -> impl std::future::Future<Output = ()> {
    run(Legs::new(stream, streams), session)
}

/// Relay turns until the end, parked while quiet in between, as passthrough connections are
/// ([`session::relay`]); rustls's state waits beside the sockets.
async fn run<H: Host>(mut legs: Legs, mut s: Session<H>) {
    loop {
        let meters = session::byte_meters(&s);
        let turn = legs
            .relay(s.idle, park::PARK_AFTER, &meters, s.progress)
            .await;
        s.progress = turn.progress;
        if turn.end == End::Quiet {
            let (client, upstream, conns) = legs.into_parts();
            let conns: Box<dyn Resume<H>> = Box::new(conns);
            match session::park(client, upstream, s, Some(conns)) {
                ParkResult::Parked => return,
                ParkResult::Refused(client, upstream, back, conns) => {
                    let Some(conns) = conns.and_then(|c| c.into_any().downcast::<Conns>().ok())
                    else {
                        return back.end(Outcome::RelayError);
                    };
                    legs = Legs::from_parts(client, upstream, *conns);
                    s = back;
                    continue;
                }
                ParkResult::Failed(back) => return back.end(Outcome::RelayError),
            }
        }
        // Closed before the end is reported, as a passthrough connection's sockets are.
        drop(legs);
        let (outcome, detail) = turn.end.outcome();
        if detail.is_some() {
            s.record.detail = detail;
        }
        return s.end(outcome);
    }
}

impl<H: Host> Resume<H> for Conns {
    fn resume(
        self: Box<Self>,
        client: std::net::TcpStream,
        upstream: std::net::TcpStream,
        s: Session<H>,
    ) {
        // Out of its (small) box: the task holds the two pointers.
        let conns = *self;
        workers::spawn(async move {
            match (TcpStream::from_std(client), TcpStream::from_std(upstream)) {
                (Ok(client), Ok(upstream)) => {
                    run(Legs::from_parts(client, upstream, conns), s).await
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(%error, "cannot resume a parked terminated connection");
                    s.end(Outcome::RelayError);
                }
            }
        });
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}
