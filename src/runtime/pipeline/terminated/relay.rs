//! Plaintext both ways between a terminated client and its upstream, until both sides are
//! done, an error, or `timeouts.idle` of silence. Half-closes pass on (a client's
//! close_notify or EOF becomes a write shutdown upstream, and the answer still flows back; the
//! upstream's EOF becomes close_notify and a write shutdown to the client).
//!
//! One poll function over both directions ([`super::legs`]): an idle connection holds rustls's
//! state and no buffer (a read borrows one from the relay's pool until its bytes are written
//! on; the client's ciphertext too, [`super::unbuffered`]), so it costs a few KiB rather than
//! two 16 KiB buffers. A quiet one ends its turn
//! ([`End::Quiet`]) and is parked, its rustls state beside its sockets, as passthrough ones are.

use std::future::Future;
use std::io;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use rustls::server::UnbufferedServerConnection;
use rustls::ClientConnection;

use tokio::net::TcpStream;

use super::handshake::{Streams, Upstream};
use super::legs::{Boxed, Leg, Owned, Plain, Tls};
use super::unbuffered::{Client, ClientTls};
use crate::runtime::pipeline::relay::{End, Meter, Meters, Progress, Side, Transfer};
use crate::runtime::socket;

/// The two ends of a terminated connection, ready to relay. Built before the relay's future,
/// which then holds each end once (an async fn's arguments stay in its future for its whole
/// life, so passing rustls's state down by value would keep a copy at every level).
pub enum Legs {
    Plain(Client, Plain),
    /// Reencrypted: the upstream's rustls state boxed too.
    Tls(Client, Tls<Boxed<ClientConnection>, Owned>),
}

/// A quiet connection's rustls state, kept while its sockets are parked: the client's
/// unbuffered session holds no buffer then.
pub struct Conns {
    pub client: Box<UnbufferedServerConnection>,
    pub upstream: Option<Box<ClientConnection>>,
}

impl Legs {
    /// The client's socket (owned: the connection may park) and what its handshake left.
    pub fn new(stream: TcpStream, streams: Streams) -> Self {
        let Streams { client, upstream } = streams;
        let client = Client::new(stream, client);
        match upstream {
            Upstream::Plain(tcp) => {
                let _ = socket::keep_alive(socket2::SockRef::from(&tcp));
                Legs::Plain(client, Plain::new(tcp))
            }
            Upstream::Tls(tls) => {
                let (tcp, conn) = tls.into_inner();
                let _ = socket::keep_alive(socket2::SockRef::from(&tcp));
                Legs::Tls(client, Tls::new(Owned(tcp), Boxed(Box::new(conn))))
            }
        }
    }

    /// The sockets and rustls's state of a quiet relay, to park.
    pub fn into_parts(self) -> (TcpStream, TcpStream, Conns) {
        match self {
            Legs::Plain(client, up) => {
                let (sock, conn) = client.into_parts();
                let conns = Conns {
                    client: conn,
                    upstream: None,
                };
                (sock, up.into_sock(), conns)
            }
            Legs::Tls(client, up) => {
                let (sock, conn) = client.into_parts();
                let (up, up_conn) = up.into_parts();
                let conns = Conns {
                    client: conn,
                    upstream: Some(up_conn.0),
                };
                (sock, up.0, conns)
            }
        }
    }

    /// A parked connection's ends again.
    pub fn from_parts(client: TcpStream, upstream: TcpStream, conns: Conns) -> Self {
        let tls = Client::new(client, ClientTls::resume(conns.client));
        match conns.upstream {
            None => Legs::Plain(tls, Plain::new(upstream)),
            Some(conn) => Legs::Tls(tls, Tls::new(Owned(upstream), Boxed(conn))),
        }
    }

    /// Relays from `progress` to the end, or until `park_after` of silence with nothing in
    /// flight ([`End::Quiet`]).
    pub async fn relay(
        &mut self,
        idle: Duration,
        park_after: Duration,
        meters: &Meters<'_>,
        progress: Progress,
    ) -> Transfer {
        let limits = (idle, park_after);
        match self {
            Legs::Plain(client, up) => both_ways(client, up, limits, meters, progress).await,
            Legs::Tls(client, up) => both_ways(client, up, limits, meters, progress).await,
        }
    }
}

/// One direction: its byte count and how far its end of stream got.
#[derive(Default)]
struct Direction {
    bytes: u64,
    /// The source's end of stream was seen; passing it on may still be under way.
    eof: bool,
    /// ... and was passed on.
    done: bool,
    /// The last poll waits for its source to have more: nothing of it is in flight.
    reading: bool,
}

/// A direction stopped by an error: reading its source or writing its destination.
struct Failure {
    error: io::Error,
    reading: bool,
}

impl Direction {
    /// Moves plaintext `from` → `to` until one would block, the end was passed on, or an error.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut impl Leg,
        to: &mut impl Leg,
        meter: &Meter<'_>,
        half_close: bool,
        moved: &mut bool,
    ) -> Poll<Result<(), Failure>> {
        let writing = |error| Failure {
            error,
            reading: false,
        };
        self.reading = false;
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            // What `to` still queues goes out before more is read for it.
            ready!(to.poll_flush(cx)).map_err(writing)?;
            if self.eof {
                ready!(to.poll_finish(cx, half_close)).map_err(writing)?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            let data = match from.poll_fill(cx) {
                Poll::Pending => {
                    self.reading = true;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(data)) => data,
                Poll::Ready(Err(error)) => {
                    return Poll::Ready(Err(Failure {
                        error,
                        reading: true,
                    }))
                }
            };
            if data.is_empty() {
                self.eof = true;
                continue;
            }
            let n = ready!(to.poll_write(cx, data)).map_err(writing)?;
            if n == 0 {
                // Nothing taken of a non-empty write would repeat forever: an end, not a spin.
                return Poll::Ready(Err(writing(io::ErrorKind::WriteZero.into())));
            }
            from.consume(n);
            self.bytes += n as u64;
            meter.increment(n as u64);
            *moved = true;
        }
    }
}

async fn both_ways(
    client: &mut impl Leg,
    up: &mut impl Leg,
    (idle, park_after): (Duration, Duration),
    meters: &Meters<'_>,
    progress: Progress,
) -> Transfer {
    let resumed = |bytes, done| Direction {
        bytes,
        eof: done,
        done,
        reading: false,
    };
    let mut from_client = resumed(progress.from_client, progress.client_done);
    let mut from_upstream = resumed(progress.from_upstream, progress.upstream_done);
    let mut last_activity = progress.last_activity;
    // A resumed relay was woken by a ready socket: its quiet time counts from now, or it
    // would park again before reading what woke it.
    let started = Instant::now();
    let park_at = |last: Instant| last.max(started) + park_after;
    // Re-armed only when it fires, not on every read.
    let timer = tokio::time::sleep_until((last_activity + idle).min(park_at(last_activity)));
    tokio::pin!(timer);
    let end = std::future::poll_fn(|cx| {
        let mut moved = false;
        // A plain socket's EOF is passed on only while the other direction is open; once both
        // are done, the close sends the FIN.
        let half_close = !from_upstream.done;
        let up_way = from_client.poll(cx, client, up, &meters.from_client, half_close, &mut moved);
        if let Poll::Ready(Err(f)) = up_way {
            let side = if f.reading {
                Side::Client
            } else {
                Side::Upstream
            };
            return Poll::Ready(failed(
                f.error,
                side,
                (from_client.done, from_upstream.done),
            ));
        }
        let half_close = !from_client.done;
        let down_way = from_upstream.poll(
            cx,
            up,
            client,
            &meters.from_upstream,
            half_close,
            &mut moved,
        );
        if let Poll::Ready(Err(f)) = down_way {
            let side = if f.reading {
                Side::Upstream
            } else {
                Side::Client
            };
            return Poll::Ready(failed(
                f.error,
                side,
                (from_client.done, from_upstream.done),
            ));
        }
        if from_client.done && from_upstream.done {
            return Poll::Ready(End::Done);
        }
        if moved {
            last_activity = Instant::now();
        }
        // Nothing read and not passed on, nothing encrypted and not sent: the sockets alone
        // say when to go on.
        let quiet = (from_client.done || from_client.reading)
            && (from_upstream.done || from_upstream.reading)
            && client.at_rest()
            && up.at_rest();
        while timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let idle_at = last_activity + idle;
            if now >= idle_at {
                return Poll::Ready(End::Idle);
            }
            if now >= park_at(last_activity) && quiet {
                return Poll::Ready(End::Quiet);
            }
            // Past the park time with bytes in flight: only the idle deadline is left.
            let next = match now >= park_at(last_activity) {
                true => idle_at,
                false => idle_at.min(park_at(last_activity)),
            };
            timer.as_mut().reset(next);
        }
        Poll::Pending
    })
    .await;
    let progress = Progress {
        from_client: from_client.bytes,
        from_upstream: from_upstream.bytes,
        client_done: from_client.done,
        upstream_done: from_upstream.done,
        last_activity,
        ..progress
    };
    Transfer { progress, end }
}

/// The end for a socket or TLS error on `side`, given which directions were `done` (client's,
/// upstream's).
fn failed(error: io::Error, side: Side, done: (bool, bool)) -> End {
    End::Error {
        kind: error.kind(),
        side,
        after_close: done.0 || done.1,
    }
}

#[cfg(test)]
pub(crate) mod tests;
