//! A connection past its first bytes: relay turns, parked ([`park`]) while quiet in between,
//! and its end — one metric sample and one access-log record, however many turns it took
//! (the `End → Outcome` mapping, [`End::outcome`], is here, for both kinds of relay).

use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::runtime::drain::Open;
use crate::runtime::observe::Record;
use crate::runtime::outcome::Outcome;
use crate::runtime::pipeline::kept_names::KeptNames;
use crate::runtime::pipeline::park::{self, Parking, Sockets};
use crate::runtime::pipeline::registry::Registered;
use crate::runtime::pipeline::relay::{self, End, Meter, Meters, Progress, Side};
use crate::runtime::table::Route;
use crate::runtime::upstream::clients::Admitted;
use crate::runtime::upstream::endpoint::Lease;
use crate::runtime::workers;

/// Where a relayed connection reports its end and parks: the connection layer above, which
/// this module does not import (it is generic over it instead).
pub trait Host: Send + Sync + Sized + 'static {
    /// One metric sample and one report for the connection.
    fn finish(&self, route: &Route, record: &Record, outcome: Outcome);
    /// Where quiet connections wait, if anywhere.
    fn parking(&self) -> Option<&Arc<Parking<Parked<Self>>>>;
}

/// What a relayed connection carries from turn to turn, and to its end.
pub struct Session<H> {
    pub host: H,
    /// Its route, for the metric handles (not its table).
    pub route: Arc<Route>,
    pub record: Record,
    pub progress: Progress,
    /// `timeouts.idle` when the connection was accepted.
    pub idle: Duration,
    /// Counts held until the end: the drain's, the upstream address's, the client's.
    pub held: (Open, Lease, Option<Admitted>),
    /// Its entry in the live connections' registry (its byte counts, parked or not).
    pub live: Registered,
}

impl<H: Host> Session<H> {
    /// Reports the end: bytes from the relay turns, one metric sample, one record. (Also how
    /// a terminated TLS connection, relayed in its own task, ends.)
    pub fn end(mut self, outcome: Outcome) {
        // Gone from the listing before it is reported: whoever saw the report no longer sees it.
        drop(self.live);
        self.record.from_client += self.progress.from_client;
        self.record.from_upstream = self.progress.from_upstream;
        self.host.finish(&self.route, &self.record, outcome);
        // Released once reported: a drain waiting for this connection sees its record first.
        drop(self.held);
    }
}

/// A terminated connection's TLS state while it is parked; it relays again from there.
pub trait Resume<H>: Send {
    /// Relays again, in a task of its own on a worker (the sockets register with its reactor).
    fn resume(
        self: Box<Self>,
        client: std::net::TcpStream,
        upstream: std::net::TcpStream,
        s: Session<H>,
    );
    /// Back to what it was, when it could not be parked after all.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;
}

/// A parked connection: its sockets out of the reactor, its session as it stood.
pub struct Parked<H> {
    client: std::net::TcpStream,
    upstream: std::net::TcpStream,
    session: Session<H>,
    /// A terminated connection's TLS state (none for passthrough).
    tls: Option<Box<dyn Resume<H>>>,
    /// The record's client-given names, moved inline (see [`KeptNames`]).
    names: KeptNames,
}

impl<H> Parked<H> {
    fn new(
        client: std::net::TcpStream,
        upstream: std::net::TcpStream,
        mut s: Session<H>,
        tls: Option<Box<dyn Resume<H>>>,
    ) -> Self {
        let r = &mut s.record;
        let names = KeptNames::new([r.sni.take(), r.sticky.take(), r.vpce.take()]);
        Parked {
            client,
            upstream,
            session: s,
            tls,
            names,
        }
    }

    /// The session as it was when parked.
    fn into_parts(self) -> (std::net::TcpStream, std::net::TcpStream, Session<H>) {
        let mut s = self.session;
        let r = &mut s.record;
        [r.sni, r.sticky, r.vpce] = self.names.restore();
        (self.client, self.upstream, s)
    }
}

impl<H> Sockets for Parked<H> {
    fn sockets(&self) -> [(BorrowedFd<'_>, bool); 2] {
        let p = &self.session.progress;
        [
            (self.client.as_fd(), !p.client_done),
            (self.upstream.as_fd(), !p.upstream_done),
        ]
    }

    fn deadline(&self) -> tokio::time::Instant {
        self.session.progress.last_activity + self.session.idle
    }
}

/// Relays until the connection ends or parks.
pub async fn relay<H: Host>(mut client: TcpStream, mut upstream: TcpStream, mut s: Session<H>) {
    loop {
        let meters = byte_meters(&s);
        let turn = relay::relay(
            &client,
            &upstream,
            s.idle,
            park::PARK_AFTER,
            &meters,
            s.progress,
        )
        .await;
        s.progress = turn.progress;
        match turn.end {
            End::Quiet => match park(client, upstream, s, None) {
                ParkResult::Parked => return,
                ParkResult::Refused(c, u, back, _) => {
                    (client, upstream, s) = (c, u, back);
                    continue;
                }
                ParkResult::Failed(back) => return back.end(Outcome::RelayError),
            },
            End::Error { side, .. } => {
                // The other side learns of the failure as a reset too, not as a clean end.
                let other = match side {
                    Side::Client => &upstream,
                    Side::Upstream => &client,
                };
                let _ = socket2::SockRef::from(other).set_linger(Some(Duration::ZERO));
            }
            End::Done | End::Idle => {}
        }
        let (outcome, detail) = turn.end.outcome();
        if detail.is_some() {
            s.record.detail = detail;
        }
        drop((client, upstream));
        return s.end(outcome);
    }
}

impl End {
    /// How a relay's end ends the connection, and the `detail` of an error. (A quiet relay
    /// that was not parked is not an end.)
    pub fn outcome(self) -> (Outcome, Option<&'static str>) {
        match self {
            End::Done => (Outcome::Relayed, None),
            End::Idle => (Outcome::IdleTimeout, None),
            // A side had closed, then one reset (or its pipe broke): the session was over — a
            // peer that closed and then refuses what follows has left; one that resets after
            // the other closed has nothing left to say. E.g. PostgreSQL and libpq each send
            // close_notify and close without reading the other's, so the kernel answers the
            // late one with a reset.
            End::Error {
                side,
                kind: kind @ (ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
                after_close: true,
            } => (Outcome::Relayed, Some(after_close_detail(side, kind))),
            End::Error { side, kind, .. } => (Outcome::RelayError, Some(error_detail(side, kind))),
            End::Quiet => (Outcome::RelayError, None),
        }
    }
}

/// The route's byte counters and the connection's own.
pub fn byte_meters<H>(s: &Session<H>) -> Meters<'_> {
    let (from_client, from_upstream) = s.route.meters.bytes(&s.route.name);
    let tally = s.live.tally();
    Meters {
        from_client: Meter {
            route: from_client,
            connection: &tally.from_client,
        },
        from_upstream: Meter {
            route: from_upstream,
            connection: &tally.from_upstream,
        },
    }
}

pub enum ParkResult<H> {
    Parked,
    /// Not parked (draining, no set): relay on with these.
    Refused(TcpStream, TcpStream, Session<H>, Option<Box<dyn Resume<H>>>),
    /// A socket could not move between the reactor and the set.
    Failed(Session<H>),
}

/// Parks a quiet connection (`tls`: a terminated one's state), or hands it back.
pub fn park<H: Host>(
    client: TcpStream,
    upstream: TcpStream,
    s: Session<H>,
    tls: Option<Box<dyn Resume<H>>>,
) -> ParkResult<H> {
    let Some(parking) = s.host.parking() else {
        return ParkResult::Refused(client, upstream, s, tls);
    };
    let parking = parking.clone();
    let (Ok(client), Ok(upstream)) = (client.into_std(), upstream.into_std()) else {
        return ParkResult::Failed(s);
    };
    // Marked before it is in the set: once there, it may wake (and be marked relaying) at once.
    s.live.tally().set_parked(true);
    let parked = Parked::new(client, upstream, s, tls);
    match parking.park(parked) {
        Ok(()) => ParkResult::Parked,
        Err(mut back) => {
            let tls = back.tls.take();
            let (client, upstream, s) = back.into_parts();
            s.live.tally().set_parked(false);
            match registered(client, upstream) {
                Ok((c, u)) => ParkResult::Refused(c, u, s, tls),
                Err(_) => ParkResult::Failed(s),
            }
        }
    }
}

fn registered(
    client: std::net::TcpStream,
    upstream: std::net::TcpStream,
) -> std::io::Result<(TcpStream, TcpStream)> {
    Ok((TcpStream::from_std(client)?, TcpStream::from_std(upstream)?))
}

/// A parked connection's socket woke: relay again, in a task of its own on a worker (its
/// sockets register with that worker's reactor).
pub fn wake<H: Host>(mut parked: Parked<H>) {
    if let Some(tls) = parked.tls.take() {
        let (client, upstream, session) = parked.into_parts();
        session.live.tally().set_parked(false);
        return tls.resume(client, upstream, session);
    }
    workers::spawn(async move {
        let (client, upstream, session) = parked.into_parts();
        session.live.tally().set_parked(false);
        match registered(client, upstream) {
            Ok((client, upstream)) => relay(client, upstream, session).await,
            Err(error) => {
                tracing::warn!(%error, "cannot resume a parked connection");
                session.end(Outcome::RelayError);
            }
        }
    });
}

/// A parked connection reached its idle deadline: it ends as an idle relayed one does.
pub fn expire<H: Host>(mut parked: Parked<H>) {
    drop(parked.tls.take());
    let (client, upstream, session) = parked.into_parts();
    drop((client, upstream));
    session.end(Outcome::IdleTimeout);
}

/// A `relayed` connection's `detail` when a side reset after a side had closed.
fn after_close_detail(side: Side, kind: ErrorKind) -> &'static str {
    match (side, kind) {
        (Side::Client, ErrorKind::BrokenPipe) => "client: broken pipe after close",
        (Side::Client, _) => "client: connection reset after close",
        (Side::Upstream, ErrorKind::BrokenPipe) => "upstream: broken pipe after close",
        (Side::Upstream, _) => "upstream: connection reset after close",
    }
}

/// A `relay_error`'s `detail`: the side whose socket failed and how (`client: connection
/// reset`), static so the record stays small.
fn error_detail(side: Side, kind: std::io::ErrorKind) -> &'static str {
    use std::io::ErrorKind as K;
    // [client, upstream] per kind; the kinds a relayed TCP (or TLS) socket can end with.
    const KNOWN: [(K, [&str; 2]); 7] = [
        (
            K::ConnectionReset,
            ["client: connection reset", "upstream: connection reset"],
        ),
        (
            K::BrokenPipe,
            ["client: broken pipe", "upstream: broken pipe"],
        ),
        (
            K::ConnectionAborted,
            ["client: connection aborted", "upstream: connection aborted"],
        ),
        (K::TimedOut, ["client: timed out", "upstream: timed out"]),
        (
            K::UnexpectedEof,
            ["client: unexpected eof", "upstream: unexpected eof"],
        ),
        (
            K::InvalidData,
            ["client: invalid data", "upstream: invalid data"],
        ),
        (
            K::NotConnected,
            ["client: not connected", "upstream: not connected"],
        ),
    ];
    let i = match side {
        Side::Client => 0,
        Side::Upstream => 1,
    };
    KNOWN
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(["client: i/o error", "upstream: i/o error"][i], |(_, d)| {
            d[i]
        })
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use crate::runtime::outcome::Outcome;
    use crate::runtime::pipeline::relay::{End, Side};

    #[test]
    fn a_reset_after_the_other_side_closed_ends_the_session_normally() {
        let error = |side, kind, after_close| {
            End::Error {
                side,
                kind,
                after_close,
            }
            .outcome()
        };
        let cases = [
            (
                Side::Upstream,
                ErrorKind::ConnectionReset,
                true,
                Outcome::Relayed,
                "upstream: connection reset after close",
            ),
            (
                Side::Client,
                ErrorKind::BrokenPipe,
                true,
                Outcome::Relayed,
                "client: broken pipe after close",
            ),
            (
                Side::Upstream,
                ErrorKind::ConnectionReset,
                false,
                Outcome::RelayError,
                "upstream: connection reset",
            ),
            // Only a reset or a broken pipe: other errors after a close stay errors.
            (
                Side::Client,
                ErrorKind::TimedOut,
                true,
                Outcome::RelayError,
                "client: timed out",
            ),
        ];
        for (side, kind, closed, outcome, detail) in cases {
            assert_eq!(
                error(side, kind, closed),
                (outcome, Some(detail)),
                "{side:?} {kind:?} {closed}"
            );
        }
    }
}
