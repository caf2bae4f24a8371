//! Accept phase: bind listeners, accept connections, enforce the connection
//! limit, and hand each connection to the pipeline.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::config::ListenerConfig;
use crate::connection;
use crate::server::{ActiveGuard, Shared};

/// TCP keepalive: well under the AWS NLB's 350 s flow idle timeout, so
/// silent ClickHouse sessions (long queries, idle pools) stay mapped.
const KEEPALIVE_TIME: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_RETRIES: u32 = 4;
const LISTEN_BACKLOG: u32 = 4096;
/// Back-off bounds when accept fails for lack of resources (EMFILE…).
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A listener's identity as every connection on it sees it.
#[derive(Debug)]
pub struct ListenerCtx {
    pub name: Arc<str>,
    pub config: ListenerConfig,
    /// The bound address (port 0 in the config resolved).
    pub bound: SocketAddr,
}

/// Binds `config.address` with SO_REUSEADDR and a deep backlog.
///
/// NODELAY and keepalive are set on the listening socket: Linux copies them
/// into every accepted socket, which saves five syscalls per connection.
pub fn bind(config: &ListenerConfig) -> io::Result<TcpListener> {
    let socket = match config.address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    tune(SockRef::from(&socket))?;
    socket.bind(config.address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// NODELAY (TLS handshakes are latency-bound) and keepalive, for every leg.
pub fn tune(socket: SockRef<'_>) -> io::Result<()> {
    socket.set_tcp_nodelay(true)?;
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    socket.set_tcp_keepalive(&keepalive)
}

/// Accepts until `stop` turns true (drain, or a reload removed the
/// listener). `slot` is read per connection, so a reload that changes the
/// listener's name, PROXY policy or upstream port applies to new connections
/// without touching the socket.
pub async fn run(
    listener: TcpListener,
    slot: Arc<ArcSwap<ListenerCtx>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let ctx = slot.load_full();
        match accepted {
            Ok((stream, peer)) => {
                backoff = BACKOFF_MIN;
                let Some(guard) = ActiveGuard::try_new(&shared) else {
                    // Over the limit: close at once (no reset storm, no queueing).
                    drop(stream);
                    connection::record_over_limit(&ctx, &shared, peer);
                    continue;
                };
                tokio::spawn(connection::handle(stream, peer, ctx, shared.clone(), guard));
            }
            Err(error) => {
                metrics::counter!(crate::metrics::ACCEPT_ERRORS, "listener" => metrics::SharedString::from_shared(ctx.name.clone()))
                    .increment(1);
                if is_resource_exhaustion(&error) {
                    // Spinning on EMFILE burns a core and starves the
                    // connections that would free descriptors; wait instead.
                    tracing::warn!(listener = %ctx.name, %error, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                } else {
                    tracing::debug!(listener = %ctx.name, %error, "accept error");
                }
            }
        }
    }
    // Closed before saying so: whoever reads the line may rely on it.
    drop(listener);
    let active = shared.active.load(Ordering::Relaxed);
    tracing::info!(listener = %slot.load().name, active, "listener stopped accepting");
}

fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
