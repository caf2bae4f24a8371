//! Last phase: bytes both ways until both sides are done.
//!
//! An idle connection holds no copy buffer: each direction waits for
//! readiness with nothing allocated, and only takes a buffer from a
//! per-thread pool for the moment it moves bytes. A direction whose reads fill
//! the whole buffer is a bulk transfer: it then splices through a pooled pipe
//! instead ([`pipe`]), held likewise only while bytes are in it. A read of 0
//! (half-close) is passed on as a write shutdown and the other direction keeps
//! flowing.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use std::os::fd::AsRawFd;

use metrics::Counter;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::runtime::socket;

mod pipe;

use pipe::Pipe;

/// Big enough that a bulk transfer needs few syscalls (small copy buffers
/// cost a lot of throughput), small enough to stay off glibc's mmap path.
const BUF_SIZE: usize = 64 * 1024;
/// Buffers kept per worker thread; more than this in flight are freed.
const POOL_PER_THREAD: usize = 32;

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both directions reached EOF and passed it on.
    Done,
    /// No byte either way for `timeouts.idle`.
    Idle,
    /// A socket error (reset, broken pipe…) on the `side` that failed. `after_close`: a side
    /// had already sent its EOF and it was passed on (see [`End::outcome`]).
    Error {
        kind: io::ErrorKind,
        side: Side,
        after_close: bool,
    },
    /// No byte either way for the relay's `park_after` and nothing in flight: the caller may
    /// park the connection and relay again, from the returned [`Progress`], once a socket
    /// wakes.
    Quiet,
}

/// One of the two sockets of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

/// A direction stopped by an error: reading its source or writing its destination.
struct Failure {
    error: io::Error,
    reading: bool,
}

/// Where a relay stands: what a relay picks up from when a parked connection resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes relayed from the client so far (by relays; the ClientHello is not counted here).
    pub from_client: u64,
    pub from_upstream: u64,
    /// The client sent EOF, and it was passed on.
    pub client_done: bool,
    /// The upstream sent EOF, and it was passed on.
    pub upstream_done: bool,
    /// TCP keepalive is on for the upstream leg (set on the first quiet moment: short
    /// connections skip those four calls).
    pub keepalive: bool,
    /// NODELAY is on for the upstream leg (set before the relay's first write upstream: a
    /// connection whose upstream gets only its first bytes skips the call).
    pub nodelay: bool,
    /// When a byte last moved (or the relay started).
    pub last_activity: Instant,
}

impl Progress {
    pub fn start() -> Progress {
        Progress {
            from_client: 0,
            from_upstream: 0,
            client_done: false,
            upstream_done: false,
            keepalive: false,
            nodelay: false,
            last_activity: Instant::now(),
        }
    }
}

/// How far a relay got and why it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub progress: Progress,
    pub end: End,
}

/// Live byte counters, one per direction.
pub struct Meters<'a> {
    pub from_client: Meter<'a>,
    pub from_upstream: Meter<'a>,
}

/// One direction's byte counters: the route's, for metrics (held by the route), and the
/// connection's own, for the admin listing (in its registry slot; relaxed, uncontended).
#[derive(Clone, Copy)]
pub struct Meter<'a> {
    pub route: &'a Counter,
    pub connection: &'a AtomicU64,
}

impl Meter<'_> {
    pub fn increment(&self, n: u64) {
        self.route.increment(n);
        self.connection.fetch_add(n, Ordering::Relaxed);
    }
}

/// Relays from `progress` until both directions are done, an error, `idle` of silence, or
/// `park_after` of silence with nothing in flight ([`End::Quiet`]).
///
/// Written as one poll function over both directions rather than as two
/// futures: it stores no readiness futures, only two small [`Half`]s and
/// the timer, so a connection's task stays small.
pub async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    idle: Duration,
    park_after: Duration,
    meters: &Meters<'_>,
    progress: Progress,
) -> Transfer {
    let mut up = Half::resumed(progress.from_client, progress.client_done);
    up.nodelay_due = !progress.nodelay;
    let mut down = Half::resumed(progress.from_upstream, progress.upstream_done);
    let mut last_activity = progress.last_activity;
    let mut keepalive = progress.keepalive;
    let mut armed = false;
    // A resumed relay was woken by a ready socket: its quiet time for parking counts from now,
    // or it would park again before the reactor reports that readiness.
    let started = Instant::now();
    let park_at = |last: Instant| last.max(started) + park_after;
    // One timer for three things: keepalive on the first quiet moment, the idle deadline, and
    // parking. It is re-armed only when it fires, not on every read.
    let first = (last_activity + idle.min(socket::KEEPALIVE_TIME)).min(park_at(last_activity));
    let timer = tokio::time::sleep_until(first);
    tokio::pin!(timer);
    let end = std::future::poll_fn(|cx| {
        let mut moved = false;
        // Each direction's EOF is passed on only while the other is still
        // open; once both are done, the close that follows sends the FIN.
        let other_done = down.done;
        if let Poll::Ready(Err(f)) = up.poll(
            cx,
            client,
            upstream,
            &meters.from_client,
            other_done,
            &mut moved,
        ) {
            let side = if f.reading {
                Side::Client
            } else {
                Side::Upstream
            };
            return Poll::Ready(End::Error {
                kind: f.error.kind(),
                side,
                after_close: up.done || down.done,
            });
        }
        let other_done = up.done;
        if let Poll::Ready(Err(f)) = down.poll(
            cx,
            upstream,
            client,
            &meters.from_upstream,
            other_done,
            &mut moved,
        ) {
            let side = if f.reading {
                Side::Upstream
            } else {
                Side::Client
            };
            return Poll::Ready(End::Error {
                kind: f.error.kind(),
                side,
                after_close: up.done || down.done,
            });
        }
        if up.done && down.done {
            return Poll::Ready(End::Done);
        }
        if moved {
            last_activity = Instant::now();
            if armed && !timer.is_elapsed() {
                // Bytes moved and the timer is registered: nothing to check.
                return Poll::Pending;
            }
        }
        armed = true;
        while timer.as_mut().poll(cx).is_ready() {
            if !keepalive {
                keepalive = true;
                // Best effort: without it the idle timeout still ends a dead connection.
                let _ = socket::keep_alive(socket2::SockRef::from(upstream));
            }
            let now = Instant::now();
            if now >= last_activity + idle {
                return Poll::Ready(End::Idle);
            }
            let in_flight = up.holds() || down.holds();
            if now >= park_at(last_activity) && !in_flight {
                return Poll::Ready(End::Quiet);
            }
            // Both deadlines still ahead (checked above); bytes held for a peer that does not
            // read cannot be parked, so only the idle deadline is left for them.
            let idle_at = last_activity + idle;
            let next = if in_flight {
                idle_at
            } else {
                idle_at.min(park_at(last_activity))
            };
            timer.as_mut().reset(next);
        }
        Poll::Pending
    })
    .await;
    Transfer {
        progress: Progress {
            from_client: up.bytes,
            from_upstream: down.bytes,
            client_done: up.done,
            upstream_done: down.done,
            keepalive,
            nodelay: !up.nodelay_due,
            last_activity,
        },
        end,
    }
}

/// One direction. It holds a borrowed buffer or pipe only while bytes are in flight.
#[derive(Default)]
struct Half {
    held: Held,
    bytes: u64,
    done: bool,
    /// A bulk transfer: reads filled the whole buffer, so this direction splices through a
    /// pipe from now on (no copy through user space).
    bulk: bool,
    /// NODELAY is still to be set on the destination before its first write (upstream only).
    nodelay_due: bool,
}

/// Bytes read and not yet written.
#[derive(Default)]
enum Held {
    #[default]
    Nothing,
    /// In a pooled buffer, `pos..len` still to write.
    Buf {
        buf: PooledBuf,
        pos: usize,
        len: usize,
    },
    /// In a pipe, `pending` bytes still to write.
    Pipe { pipe: Pipe, pending: usize },
}

impl Half {
    /// A direction that moved `bytes` so far and is `done` or not, with nothing in flight.
    fn resumed(bytes: u64, done: bool) -> Half {
        Half {
            bytes,
            done,
            ..Half::default()
        }
    }

    /// Whether bytes read are still waiting to be written.
    fn holds(&self) -> bool {
        !matches!(self.held, Held::Nothing)
    }

    /// Moves bytes `from` → `to` until one of them would block (Pending,
    /// wakers registered), EOF (Ready(Ok)), or an error.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        from: &TcpStream,
        to: &TcpStream,
        meter: &Meter<'_>,
        other_done: bool,
        moved: &mut bool,
    ) -> Poll<Result<(), Failure>> {
        let writing = |error| Failure {
            error,
            reading: false,
        };
        let reading = |error| Failure {
            error,
            reading: true,
        };
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            // Write out what is held, first.
            if self.nodelay_due && self.holds() {
                self.nodelay_due = false;
                // Best effort: without it bytes still flow, a little later.
                let _ = socket::nodelay(socket2::SockRef::from(to));
            }
            let written = match &mut self.held {
                Held::Nothing => None,
                Held::Buf { buf, pos, len } => Some(to.try_write(buf.get(*pos, *len)).map(|n| {
                    *pos += n;
                    *pos >= *len
                })),
                Held::Pipe { pipe, pending } => Some(
                    to.try_io(Interest::WRITABLE, || {
                        pipe.drain_to(to.as_raw_fd(), *pending)
                    })
                    .map(|n| {
                        *pending -= n;
                        *pending == 0
                    }),
                ),
            };
            match written {
                None => {}
                Some(Ok(emptied)) => {
                    *moved = true;
                    if emptied {
                        // Back to the pool before waiting for more input.
                        if let Held::Pipe { pipe, .. } = std::mem::take(&mut self.held) {
                            pipe.put_back();
                        }
                    }
                    continue;
                }
                // Only now wait (and register a waker): trying first costs nothing when tokio
                // already knows the socket is not ready, and keeps the fast path off the coop
                // budget.
                Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(to.poll_write_ready(cx)).map_err(writing)?;
                    continue;
                }
                Some(Err(e)) => return Poll::Ready(Err(writing(e))),
            }
            // Nothing held: read.
            let read = if self.bulk {
                match Pipe::take() {
                    Some(pipe) => {
                        let read =
                            from.try_io(Interest::READABLE, || pipe.fill_from(from.as_raw_fd()));
                        if let Ok(n @ 1..) = read {
                            self.held = Held::Pipe { pipe, pending: n };
                        } else {
                            pipe.put_back();
                        }
                        read
                    }
                    // Out of descriptors for a pipe: copy, as for small transfers.
                    None => self.read_into_buf(from),
                }
            } else {
                self.read_into_buf(from)
            };
            match read {
                Ok(0) => {
                    self.done = true;
                    if !other_done {
                        // Pass the half-close on; the other direction keeps going.
                        match socket2::SockRef::from(to).shutdown(Shutdown::Write) {
                            Err(e) if e.kind() != io::ErrorKind::NotConnected => {
                                return Poll::Ready(Err(writing(e)))
                            }
                            _ => {}
                        }
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(n) => {
                    self.bytes += n as u64;
                    meter.increment(n as u64);
                    *moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(from.poll_read_ready(cx)).map_err(reading)?;
                }
                Err(e) => return Poll::Ready(Err(reading(e))),
            }
        }
    }

    /// Reads into a pooled buffer, held if anything was read. A read that fills the whole buffer
    /// marks the direction as bulk.
    ///
    /// A read that returns less than asked has emptied the receive queue: tokio is told so in
    /// the same step (the readiness it had before the read is cleared, a newer event is not), so
    /// the next read waits for an event instead of costing a call that finds nothing. A peer's
    /// shutdown is a closed state readiness keeps: the read that returns its 0 still happens.
    fn read_into_buf(&mut self, from: &TcpStream) -> io::Result<usize> {
        let mut buf = PooledBuf::take();
        let mut short = 0;
        let read = from.try_io(Interest::READABLE, || {
            let room = buf.as_mut();
            // SAFETY: a valid descriptor and a writable buffer of the length given.
            let n =
                unsafe { libc::recv(from.as_raw_fd(), room.as_mut_ptr().cast(), room.len(), 0) };
            match usize::try_from(n) {
                Err(_) => Err(io::Error::last_os_error()),
                Ok(n) if n > 0 && n < room.len() => {
                    short = n;
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Ok(n) => Ok(n),
            }
        });
        let n = match read {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => short,
            read => read?,
        };
        if n > 0 {
            self.bulk |= n == BUF_SIZE;
            self.held = Held::Buf {
                buf,
                pos: 0,
                len: n,
            };
        }
        Ok(n)
    }
}

/// Writes all of `data`, waiting for writability (backpressure).
pub async fn write_all(to: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(n) => data = data.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A copy buffer borrowed from the current thread's pool, returned on drop
/// (to whichever thread drops it; the pools even out). The terminated leg's relay borrows
/// them too.
pub(super) struct PooledBuf(Option<Box<[u8]>>);

impl PooledBuf {
    pub(super) fn take() -> Self {
        let reused = POOL.with(|p| p.borrow_mut().pop());
        PooledBuf(Some(
            reused.unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice()),
        ))
    }

    pub(super) fn as_mut(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or_default()
    }

    pub(super) fn get(&self, from: usize, to: usize) -> &[u8] {
        self.0
            .as_deref()
            .and_then(|b| b.get(from..to))
            .unwrap_or_default()
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(buf) = self.0.take() {
            POOL.with(|p| {
                let mut pool = p.borrow_mut();
                if pool.len() < POOL_PER_THREAD {
                    pool.push(buf);
                }
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
