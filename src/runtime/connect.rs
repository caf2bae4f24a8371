//! Connect phase: pick an upstream address and connect, failing over.
//!
//! A route's upstreams resolve (through the cached resolver) to any number
//! of addresses — operator services are headless, so one name is a set of
//! pod IPs. Connections rotate over all of them; a refused or timed-out
//! attempt moves on to the next address, all within `timeouts.connect`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::runtime::meters;
use crate::runtime::resolve::Route;
use crate::runtime::socket;

/// One attempt never gets less than this share of the budget (unless the
/// budget itself is smaller), so a blackholed first address cannot starve
/// the rest and a slow-but-alive one still has time.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);

/// Why no upstream connection was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no upstream address resolved within the connect timeout")]
    NoAddress,
    #[error("every upstream address failed; last {addr}: {error}")]
    AllFailed { addr: SocketAddr, error: String },
    #[error("connect timeout after {tried} attempt(s)")]
    TimedOut { tried: usize },
}

/// Connects to one of `route`'s upstream addresses within `budget`.
pub async fn connect(
    route: &Route,
    default_port: u16,
    budget: Duration,
) -> Result<(TcpStream, SocketAddr), ConnectError> {
    let deadline = Instant::now() + budget;
    let candidates = candidates(route, default_port, deadline).await;
    if candidates.is_empty() {
        return Err(ConnectError::NoAddress);
    }
    let first = route.cursor.fetch_add(1, Ordering::Relaxed);
    let mut last_error = None;
    let total = candidates.len();
    for i in 0..total {
        let Some(&(addr, host)) = candidates.get((first + i) % total) else {
            break;
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ConnectError::TimedOut { tried: i });
        }
        let share = remaining / (total - i) as u32;
        let attempt = share.max(MIN_ATTEMPT).min(remaining);
        match tokio::time::timeout(attempt, connect_one(addr)).await {
            Ok(Ok(stream)) => return Ok((stream, addr)),
            Ok(Err(error)) => {
                tracing::debug!(%addr, %error, "upstream connect failed; trying next address");
                last_error = Some((addr, error.to_string()));
            }
            Err(_) => {
                tracing::debug!(%addr, "upstream connect timed out; trying next address");
                last_error = Some((addr, "timed out".to_string()));
            }
        }
        metrics::counter!(meters::UPSTREAM_CONNECT_FAILURES, "upstream" => host.to_string())
            .increment(1);
    }
    match last_error {
        Some((addr, error)) if error != "timed out" => Err(ConnectError::AllFailed { addr, error }),
        _ => Err(ConnectError::TimedOut { tried: total }),
    }
}

/// Every (address, upstream host) of the route, in configuration order.
/// Waits for a name's first lookup only if it has never resolved.
async fn candidates(
    route: &Route,
    default_port: u16,
    deadline: Instant,
) -> Vec<(SocketAddr, &str)> {
    let mut out = Vec::new();
    for upstream in &route.upstreams {
        let port = upstream.port.unwrap_or(default_port);
        let mut ips = upstream.addrs.current();
        if ips.is_empty() {
            match tokio::time::timeout_at(deadline, upstream.addrs.wait()).await {
                Ok(resolved) => ips = resolved,
                Err(_) => continue,
            }
        }
        out.extend(
            ips.iter()
                .map(|ip| (SocketAddr::new(*ip, port), &*upstream.host)),
        );
    }
    out
}

async fn connect_one(addr: SocketAddr) -> std::io::Result<TcpStream> {
    socket::for_upstream(addr)?.connect(addr).await
}
