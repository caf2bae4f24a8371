//! Plaintext both ways between a terminated client and its upstream, until both sides are
//! done, an error, or `timeouts.idle` of silence. Half-closes pass on (a client's
//! close_notify or EOF becomes a write shutdown upstream, and the answer still flows back; the
//! upstream's EOF becomes close_notify and a write shutdown to the client).
//!
//! One poll function over both directions ([`super::legs`]): an idle connection holds rustls's
//! state and no copy buffer (a read borrows one from the relay's pool until its bytes are
//! written on), so it costs a few KiB rather than two 16 KiB buffers.

use std::future::Future;
use std::io;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use rustls::{ClientConnection, ServerConnection};

use super::handshake::{Streams, Upstream};
use super::io::ClientIo;
use super::legs::{Leg, Owned, Plain, Tls};
use crate::runtime::pipeline::relay::{End, Meter, Meters, Progress, Side, Transfer};
use crate::runtime::socket;

/// The two ends of a terminated connection, ready to relay. Built before the relay's future,
/// which then holds each end once (an async fn's arguments stay in its future for its whole
/// life, so passing rustls's state down by value would keep a copy at every level).
pub enum Legs<'a> {
    Plain(Tls<ServerConnection, ClientIo<'a>>, Plain),
    /// Reencrypted: the upstream's end boxed, so that a `terminate` connection does not carry
    /// room for a second rustls state.
    Tls(
        Tls<ServerConnection, ClientIo<'a>>,
        Box<Tls<ClientConnection, Owned>>,
    ),
}

impl<'a> Legs<'a> {
    pub fn new(streams: Streams<'a>) -> Self {
        let Streams { client, upstream } = streams;
        let (io, conn) = client.into_inner();
        let client = Tls::new(io, conn);
        match upstream {
            Upstream::Plain(tcp) => {
                let _ = socket::keep_alive(socket2::SockRef::from(&tcp));
                Legs::Plain(client, Plain::new(tcp))
            }
            Upstream::Tls(tls) => {
                let (tcp, conn) = tls.into_inner();
                let _ = socket::keep_alive(socket2::SockRef::from(&tcp));
                Legs::Tls(client, Box::new(Tls::new(Owned(tcp), conn)))
            }
        }
    }

    /// Relays to the end (never [`End::Quiet`]: nothing here parks).
    pub async fn relay(&mut self, idle: Duration, meters: &Meters<'_>) -> Transfer {
        match self {
            Legs::Plain(client, up) => both_ways(client, up, idle, meters).await,
            Legs::Tls(client, up) => both_ways(client, &mut **up, idle, meters).await,
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
            let data = match ready!(from.poll_fill(cx)) {
                Ok(data) => data,
                Err(error) => {
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
    idle: Duration,
    meters: &Meters<'_>,
) -> Transfer {
    let (mut from_client, mut from_upstream) = (Direction::default(), Direction::default());
    let mut last_activity = Instant::now();
    // Re-armed only when it fires, not on every read.
    let timer = tokio::time::sleep_until(last_activity + idle);
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
        while timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= last_activity + idle {
                return Poll::Ready(End::Idle);
            }
            timer.as_mut().reset(last_activity + idle);
        }
        Poll::Pending
    })
    .await;
    // Only the byte counts and the last activity mean anything here: the rest is for
    // resuming a parked relay, which a terminated connection never is.
    let progress = Progress {
        from_client: from_client.bytes,
        from_upstream: from_upstream.bytes,
        last_activity,
        ..Progress::start()
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
mod tests;
