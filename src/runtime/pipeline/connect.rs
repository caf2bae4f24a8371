//! Connect phase: choose an upstream address, connect, fail over.
//!
//! A route's upstreams resolve (through the cached resolver) to any number of addresses —
//! operator services may be headless, so one name can be a set of pod IPs. The route's
//! balancing ([`balance`]) chooses among the live ones: least connections, round robin, or a
//! sticky tag's rendezvous choice. A refused or timed-out attempt ejects the address (passive
//! health, [`Endpoint::failed`]) and moves on to the next choice, all within
//! `timeouts.connect`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use metrics::Histogram;
use smallvec::SmallVec;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::model::config::Health;
use crate::model::route::balance::{self, Choose, Node, Pool, Seen};
use crate::model::route::weighted;
use crate::model::route::Tag;
use crate::runtime::addrs::ConnectedAddr;
use crate::runtime::observe::Record;
use crate::runtime::outcome::Outcome;
use crate::runtime::socket;
use crate::runtime::table::{Route, Upstream};
use crate::runtime::upstream::endpoint::{Claim, Endpoint, Lease, Now};

/// One attempt never gets less than this share of the budget (unless the
/// budget itself is smaller), so a blackholed first address cannot starve
/// the rest and a slow-but-alive one still has time.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);

/// Why no upstream connection was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no upstream address: no name of the route has resolved")]
    NoAddress,
    /// Gateway API: a route whose backendRefs all weigh 0 forwards nothing.
    #[error("every upstream of the route has weight 0")]
    AllWeightZero,
    /// Gateway API: the connection fell to an invalid backendRef's share (its detail).
    #[error("{0}")]
    Refused(&'static str),
    #[error("every upstream address failed; last {addr}: {error}")]
    AllFailed { addr: SocketAddr, error: String },
    #[error("connect timeout after {tried} attempt(s)")]
    TimedOut {
        tried: usize,
        last: Option<SocketAddr>,
    },
}

impl ConnectError {
    /// The access log's `detail`.
    pub fn detail(&self) -> &'static str {
        match self {
            ConnectError::NoAddress => "no upstream address resolved",
            ConnectError::AllWeightZero => "every upstream weighs 0",
            ConnectError::Refused(detail) => detail,
            ConnectError::AllFailed { .. } => "upstream connect failed",
            ConnectError::TimedOut { .. } => "upstream connect timed out",
        }
    }

    /// The last address that failed, if any.
    pub fn last_failed(&self) -> Option<SocketAddr> {
        match self {
            ConnectError::NoAddress | ConnectError::AllWeightZero | ConnectError::Refused(_) => {
                None
            }
            ConnectError::AllFailed { addr, .. } => Some(*addr),
            ConnectError::TimedOut { last, .. } => *last,
        }
    }
}

/// An upstream connection, counted against its address while the lease lives.
#[derive(Debug)]
pub struct Connected {
    pub stream: TcpStream,
    pub lease: Lease,
    /// The last address that failed before this one, if the connection failed over.
    pub failed: Option<SocketAddr>,
}

/// What a connect needs besides the route.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The listener's `upstream_port`, for upstreams written without a port.
    pub default_port: u16,
    pub budget: Duration,
    pub health: &'a Health,
    /// The sticky tag, if the client asked for one (`<tag>.sticky.<name>`).
    pub sticky: Option<&'a Tag>,
}

/// Connects to one of `route`'s upstream addresses within `attempt.budget`.
pub async fn connect(route: &Route, attempt: Attempt<'_>) -> Result<Connected, ConnectError> {
    if route.upstreams.iter().all(|u| u.weight == 0) {
        return Err(ConnectError::AllWeightZero);
    }
    // Invalid backendRefs' share is decided first, by weight alone (their placeholders hold no
    // connection, so least_conn would hand them every new one under load); a sticky tag's
    // rendezvous weighs them among the others instead, so a tag is refused or served steadily.
    let how = match attempt.sticky {
        Some(tag) => Choose::Sticky(tag),
        None => {
            let rotation = route.cursor.fetch_add(1, Ordering::Relaxed);
            match refusal_share(route, rotation) {
                Ok(rotation) => Choose::Balance(route.balance, rotation),
                Err(detail) => return Err(ConnectError::Refused(detail)),
            }
        }
    };
    let deadline = Instant::now() + attempt.budget;
    // A name whose first lookup is still running is worth waiting for (bounded); one whose
    // lookups have all failed is skipped at once.
    for upstream in &route.upstreams {
        if upstream.refused.is_none() && upstream.addrs.pending() {
            let _ = tokio::time::timeout_at(deadline, upstream.addrs.wait()).await;
        }
    }
    let lists: SmallVec<[List<'_>; 2]> = route
        .upstreams
        .iter()
        .map(|upstream| {
            let port = upstream.port.unwrap_or(attempt.default_port);
            List {
                upstream,
                endpoints: upstream.addrs.endpoints(port),
            }
        })
        .collect();
    let mut pool = Candidates::new(&lists, attempt.sticky.is_some());
    if pool.slots.is_empty() {
        return Err(ConnectError::NoAddress);
    }
    let mut last_failed: Option<(SocketAddr, String)> = None;
    let mut tried = 0;
    loop {
        pool.now = Now::default();
        let Some(chosen) = balance::choose(&pool, how).and_then(|i| pool.take(i)) else {
            break;
        };
        let endpoint = match chosen {
            Ok(endpoint) => endpoint,
            // Failing over: the connection fell to a valid ref, so the last failure tells it.
            Err(_) if tried > 0 => continue,
            Err(refused) => return Err(ConnectError::Refused(refused)),
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ConnectError::TimedOut {
                tried,
                last: last_failed.map(|(a, _)| a),
            });
        }
        let claim = endpoint.claim(&pool.now, remaining);
        if claim == Claim::Busy {
            continue;
        }
        tried += 1;
        let lease = endpoint.lease();
        // This attempt and every one still possible share what is left.
        let left = u32::try_from(pool.untried() + 1).unwrap_or(u32::MAX);
        let share = (remaining / left).max(MIN_ATTEMPT).min(remaining);
        let addr = endpoint.addr;
        let error = match tokio::time::timeout(share, connect_one(addr)).await {
            Ok(Ok(stream)) => {
                endpoint.succeeded();
                return Ok(Connected {
                    stream,
                    lease,
                    failed: last_failed.map(|(a, _)| a),
                });
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        drop(lease);
        let ejected = endpoint.failed(attempt.health, claim, &Now::default());
        tracing::debug!(%addr, %error, ejected, "upstream connect failed; trying the next address");
        last_failed = Some((addr, error));
    }
    match last_failed {
        Some((addr, error)) if error != "timed out" => Err(ConnectError::AllFailed { addr, error }),
        last => Err(ConnectError::TimedOut {
            tried,
            last: last.map(|(a, _)| a),
        }),
    }
}

/// Whether connection number `rotation` falls to a refusal placeholder's share (its detail),
/// else its number among the served ones. One pass over the route's few upstreams, no
/// allocation.
fn refusal_share(route: &Route, rotation: usize) -> Result<usize, &'static str> {
    let placeholders = || route.upstreams.iter().filter(|u| u.refused.is_some());
    let n = placeholders().count();
    if n == 0 {
        return Ok(rotation);
    }
    let served: u64 = route
        .upstreams
        .iter()
        .filter(|u| u.refused.is_none())
        .map(|u| u64::from(u.weight))
        .sum();
    let weight = |i: usize| placeholders().nth(i).map_or(0, |u| u64::from(u.weight));
    weighted::refusal_share(served, n, &weight, rotation).map_err(|i| {
        placeholders()
            .nth(i)
            .and_then(|u| u.refused)
            .unwrap_or("refused")
    })
}

/// [`connect`], told to the access log (where, how long, or why not) and to `seconds` (the
/// connect-time histogram's handle).
pub async fn recorded(
    route: &Route,
    attempt: Attempt<'_>,
    record: &mut Record,
    seconds: &Histogram,
) -> Result<Connected, Outcome> {
    let started = Instant::now();
    let connected = connect(route, attempt).await;
    let elapsed = started.elapsed();
    record.connect_us = Some(elapsed.as_micros() as u64);
    seconds.record(elapsed.as_secs_f64());
    match connected {
        Ok(c) => {
            record.upstream = Some(ConnectedAddr(c.lease.endpoint().addr));
            record.upstream_failed = c.failed.map(ConnectedAddr);
            Ok(c)
        }
        Err(error) => {
            tracing::warn!(route = %route.name, %error, "no upstream connection");
            record.detail = Some(error.detail());
            record.upstream_failed = error.last_failed().map(ConnectedAddr);
            Err(Outcome::UpstreamUnavailable)
        }
    }
}

/// One upstream's endpoints on the port this connection uses.
struct List<'r> {
    upstream: &'r Upstream,
    endpoints: Arc<[Arc<Endpoint>]>,
}

/// The route's addresses for one connection, flattened in configuration order.
struct Candidates<'l> {
    slots: SmallVec<[Slot<'l>; 8]>,
    /// Every upstream of the route weighs the same (known per upstream, not per address).
    uniform: bool,
    now: Now,
}

struct Slot<'l> {
    /// `None`: the one slot of a refusal placeholder.
    endpoint: Option<&'l Arc<Endpoint>>,
    upstream: &'l Upstream,
    /// Whether its name has several addresses (then the IP is part of its sticky identity).
    shared_name: bool,
    tried: bool,
}

impl<'l> Candidates<'l> {
    /// With the refusal placeholders' slots only for a sticky choice (a balanced one decided
    /// their share before, [`refusal_share`]).
    fn new(lists: &'l [List<'_>], placeholders: bool) -> Self {
        let lists = lists
            .iter()
            .filter(move |l| placeholders || l.upstream.refused.is_none());
        let slots = lists
            .clone()
            .flat_map(|l| {
                let shared_name = l.endpoints.len() > 1;
                let placeholder = l.upstream.refused.map(|_| None);
                l.endpoints
                    .iter()
                    .map(Some)
                    .chain(placeholder)
                    .map(move |endpoint| Slot {
                        endpoint,
                        upstream: l.upstream,
                        shared_name,
                        tried: false,
                    })
            })
            .collect();
        let mut weights = lists.map(|l| l.upstream.weight);
        let first = weights.next();
        Candidates {
            slots,
            uniform: weights.all(|w| Some(w) == first),
            now: Now::default(),
        }
    }

    /// Marks slot `i` tried and hands out its endpoint, or the placeholder's refusal.
    fn take(&mut self, i: usize) -> Option<Result<Arc<Endpoint>, &'static str>> {
        let slot = self.slots.get_mut(i)?;
        slot.tried = true;
        Some(match slot.endpoint {
            Some(endpoint) => Ok(endpoint.clone()),
            None => Err(slot.upstream.refused.unwrap_or("refused")),
        })
    }

    fn untried(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| !s.tried && s.endpoint.is_some())
            .count()
    }
}

impl Pool for Candidates<'_> {
    fn len(&self) -> usize {
        self.slots.len()
    }

    fn seen(&self, i: usize) -> Option<Seen> {
        let slot = self.slots.get(i).filter(|s| !s.tried)?;
        // A placeholder holds no connection: it is never busier than its weight says.
        Some(slot.endpoint.map_or(Seen::default(), |e| e.seen(&self.now)))
    }

    fn weight(&self, i: usize) -> u32 {
        self.slots.get(i).map_or(0, |s| s.upstream.weight)
    }

    fn uniform(&self) -> bool {
        self.uniform
    }

    fn node(&self, i: usize) -> Node<'_> {
        match self.slots.get(i) {
            Some(slot) => Node {
                host: &slot.upstream.host,
                port: slot.upstream.port,
                ip: slot
                    .endpoint
                    .filter(|_| slot.shared_name)
                    .map(|e| e.addr.ip()),
            },
            None => Node {
                host: "",
                port: None,
                ip: None,
            },
        }
    }
}

/// A nonblocking connect, then writable readiness. A refused, reset or timed-out attempt is
/// reported write-closed (EPOLLHUP/EPOLLERR), and only then is its error read (SO_ERROR): a
/// connect that succeeds costs no getsockopt.
async fn connect_one(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket::for_upstream(addr)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(socket.into())?;
    let ready = stream.ready(Interest::WRITABLE).await?;
    if ready.is_write_closed() {
        let error = stream.take_error()?;
        return Err(error.unwrap_or_else(|| std::io::ErrorKind::ConnectionRefused.into()));
    }
    Ok(stream)
}

#[cfg(test)]
mod tests;
