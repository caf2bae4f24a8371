//! Plaintext both ways between a terminated client and its upstream, until both sides are
//! done, an error, or `timeouts.idle` of silence. Half-closes pass on (a client's
//! close_notify becomes a write shutdown upstream, and the answer still flows back).
//!
//! tokio's `copy_bidirectional` moves the bytes; each side is wrapped to count what it
//! reads (the route's byte counters), note the last activity for the idle timer, and say
//! which side failed.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::handshake::{Streams, Upstream};
use crate::runtime::pipeline::relay::{End, Meter, Meters, Progress, Side, Transfer};
use crate::runtime::socket;

/// Bytes per direction in flight: one full TLS record.
const BUF_SIZE: usize = 16 * 1024;

/// Relays `session` to the end (never [`End::Quiet`]: nothing here parks).
pub async fn relay(session: Streams<'_>, idle: Duration, meters: &Meters<'_>) -> Transfer {
    let Streams { client, upstream } = session;
    let epoch = Instant::now();
    let activity = AtomicU64::new(0);
    let mut client = Tracked::new(client, meters.from_client, &activity, epoch);
    match upstream {
        Upstream::Plain(tcp) => {
            let _ = socket::keep_alive(socket2::SockRef::from(&tcp));
            let mut up = Tracked::new(tcp, meters.from_upstream, &activity, epoch);
            both_ways(&mut client, &mut up, idle).await
        }
        Upstream::Tls(tls) => {
            let _ = socket::keep_alive(socket2::SockRef::from(tls.get_ref().0));
            let mut up = Tracked::new(*tls, meters.from_upstream, &activity, epoch);
            both_ways(&mut client, &mut up, idle).await
        }
    }
}

async fn both_ways<A, B>(
    client: &mut Tracked<'_, A>,
    up: &mut Tracked<'_, B>,
    idle: Duration,
) -> Transfer
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = client.activity;
    let epoch = client.epoch;
    let copied = {
        let copy = tokio::io::copy_bidirectional_with_sizes(client, up, BUF_SIZE, BUF_SIZE);
        let quiet = async {
            loop {
                let last = epoch + Duration::from_millis(activity.load(Ordering::Relaxed));
                if Instant::now() >= last + idle {
                    return;
                }
                tokio::time::sleep_until(last + idle).await;
            }
        };
        tokio::select! {
            copied = copy => Some(copied),
            () = quiet => None,
        }
    };
    let end = match copied {
        Some(Ok(_)) => End::Done,
        None => End::Idle,
        Some(Err(error)) => End::Error {
            kind: error.kind(),
            side: if up.failed {
                Side::Upstream
            } else {
                Side::Client
            },
        },
    };
    // Only the byte counts and the last activity mean anything here: the rest is for
    // resuming a parked relay, which a terminated connection never is.
    let progress = Progress {
        from_client: client.bytes,
        from_upstream: up.bytes,
        last_activity: epoch + Duration::from_millis(activity.load(Ordering::Relaxed)),
        ..Progress::start()
    };
    Transfer { progress, end }
}

/// One side of the relay: counts the bytes read from it and notes activity.
struct Tracked<'m, S> {
    inner: S,
    counter: Meter<'m>,
    activity: &'m AtomicU64,
    epoch: Instant,
    bytes: u64,
    failed: bool,
}

impl<'m, S> Tracked<'m, S> {
    fn new(inner: S, counter: Meter<'m>, activity: &'m AtomicU64, epoch: Instant) -> Self {
        Tracked {
            inner,
            counter,
            activity,
            epoch,
            bytes: 0,
            failed: false,
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(ms, Ordering::Relaxed);
    }

    fn check<T>(&mut self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(_)) = &poll {
            self.failed = true;
        }
        poll
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = (buf.filled().len() - before) as u64;
                this.bytes += n;
                this.counter.increment(n);
                this.touch();
                Poll::Ready(Ok(()))
            }
            // A peer that closes without close_notify (most clients, on disconnect) has
            // finished as far as a proxy can tell: an end, not an error.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            other => this.check(other),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(_)) = poll {
            this.touch();
        }
        this.check(poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            // The other side may be gone already; its half-close is then moot.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            other => this.check(other),
        }
    }
}
