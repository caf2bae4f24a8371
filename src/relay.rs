//! Last phase: bytes both ways until both sides are done.
//!
//! An idle connection holds no copy buffer: each direction waits for
//! readiness with nothing allocated, and only takes a buffer from a
//! per-thread pool for the moment it moves bytes. A read of 0 (half-close)
//! is passed on as a write shutdown and the other direction keeps flowing.

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::Counter;
use tokio::net::TcpStream;
use tokio::time::Instant;

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
    /// A socket error on either side (reset, broken pipe…).
    Error(io::ErrorKind),
}

/// Bytes moved and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub from_client: u64,
    pub from_upstream: u64,
    pub end: End,
}

/// Live byte counters for metrics (route-labelled).
pub struct Meters {
    pub from_client: Counter,
    pub from_upstream: Counter,
}

/// Relays until both directions are done, an error, or `idle` of silence.
pub async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    idle: Duration,
    meters: &Meters,
) -> Transfer {
    let start = Instant::now();
    let activity = Activity {
        start,
        last_ms: AtomicU64::new(0),
    };
    let from_client = AtomicU64::new(0);
    let from_upstream = AtomicU64::new(0);
    let up = pump(
        client,
        upstream,
        &activity,
        &from_client,
        &meters.from_client,
    );
    let down = pump(
        upstream,
        client,
        &activity,
        &from_upstream,
        &meters.from_upstream,
    );
    let end = tokio::select! {
        both = async { tokio::try_join!(up, down) } => match both {
            Ok(_) => End::Done,
            Err(e) => End::Error(e.kind()),
        },
        _ = activity.idle_for(idle) => End::Idle,
    };
    Transfer {
        from_client: from_client.load(Ordering::Relaxed),
        from_upstream: from_upstream.load(Ordering::Relaxed),
        end,
    }
}

/// Time of the last byte moved, as milliseconds since the relay started.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Copies `from` → `to` until EOF, then shuts down `to`'s write side.
async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    activity: &Activity,
    bytes: &AtomicU64,
    meter: &Counter,
) -> io::Result<()> {
    loop {
        from.readable().await?;
        let mut buf = PooledBuf::take();
        let n = match from.try_read(buf.as_mut()) {
            Ok(0) => {
                // Pass the half-close on; the other direction keeps going.
                return match socket2::SockRef::from(to).shutdown(Shutdown::Write) {
                    Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
                    _ => Ok(()),
                };
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        write_all(to, &buf.as_mut()[..n]).await?;
        drop(buf);
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        meter.increment(n as u64);
        activity.touch();
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
/// (to whichever thread drops it; the pools even out).
struct PooledBuf(Option<Box<[u8]>>);

impl PooledBuf {
    fn take() -> Self {
        let reused = POOL.with(|p| p.borrow_mut().pop());
        PooledBuf(Some(
            reused.unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice()),
        ))
    }

    fn as_mut(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or_default()
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
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    fn meters() -> Meters {
        Meters {
            from_client: Counter::noop(),
            from_upstream: Counter::noop(),
        }
    }

    #[tokio::test]
    async fn half_close_keeps_other_direction_flowing() {
        // client_app <-> (client_side | proxy | upstream_side) <-> server_app
        let (mut client_app, client_side) = pair().await;
        let (upstream_side, mut server_app) = pair().await;
        let relay = tokio::spawn(async move {
            relay(
                &client_side,
                &upstream_side,
                Duration::from_secs(30),
                &meters(),
            )
            .await
        });
        client_app.write_all(b"request").await.unwrap();
        client_app.shutdown().await.unwrap();
        let mut got = Vec::new();
        server_app.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"request", "server sees the half-close as EOF");
        // After the client's half-close the server still answers in full.
        let answer = vec![7u8; 1 << 20];
        server_app.write_all(&answer).await.unwrap();
        server_app.shutdown().await.unwrap();
        let mut back = Vec::new();
        client_app.read_to_end(&mut back).await.unwrap();
        assert_eq!(back.len(), answer.len());
        let t = tokio::time::timeout(Duration::from_secs(10), relay)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(t.end, End::Done);
        assert_eq!(t.from_client, 7);
        assert_eq!(t.from_upstream, 1 << 20);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connection_is_closed_after_idle_timeout() {
        let (_client_app, client_side) = pair().await;
        let (upstream_side, _server_app) = pair().await;
        let t = relay(
            &client_side,
            &upstream_side,
            Duration::from_secs(3600),
            &meters(),
        )
        .await;
        assert_eq!(t.end, End::Idle);
        assert_eq!((t.from_client, t.from_upstream), (0, 0));
    }
}
