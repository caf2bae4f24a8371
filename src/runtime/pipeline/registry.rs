//! Live relayed connections, for the admin `/connections` listing.
//!
//! Built for the hot path: a connection registers once, when it is established (route and
//! upstream known), and leaves when it ends. It lands in one of [`SHARDS`] shards chosen by its
//! client port, so two connections rarely take the same (short, uncontended) lock; nothing is
//! global. Its byte counts live in a slot of a chunk of slots owned by the shard: the relay adds
//! to them with relaxed atomics (next to the route's byte counter it already increments), so
//! nothing is locked or allocated per byte. Entries and slots are stored densely, names inline,
//! so a parked connection leaves no small allocation of its own behind (see `park`). Only the
//! admin request walks the shards, one at a time, keeping the `limit` oldest entries.

use std::collections::BinaryHeap;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::runtime::observe::Record;

/// Shards of the registry; a power of two (chosen by the client's port).
const SHARDS: usize = 32;
/// Slots per chunk: chunks never move once made, so a connection may point into its own.
const CHUNK: usize = 64;
/// Longest name held inline; a longer SNI (rare) gets an allocation of its own.
const INLINE_NAME: usize = 38;

/// The live relayed connections of one server.
#[derive(Debug)]
pub struct Registry {
    shards: Vec<Arc<Shard>>,
}

#[derive(Debug, Default)]
struct Shard {
    inner: Mutex<ShardInner>,
}

#[derive(Debug, Default)]
struct ShardInner {
    /// Keyed like the slots: entry `k` counts its bytes in slot `k % CHUNK` of chunk `k / CHUNK`.
    entries: slab::Slab<Info>,
    chunks: Vec<Arc<Chunk>>,
}

/// Slots made together, one allocation for [`CHUNK`] connections (never freed before the
/// registry: bounded by the most connections open at once).
#[derive(Debug)]
struct Chunk([Tally; CHUNK]);

/// What changes while a connection lives: its byte counts and whether it is parked. Not padded
/// to a cache line: a slot shares one with two neighbours at most, while the route's byte
/// counter, incremented at the same point, is shared by every connection of the route.
#[derive(Debug, Default)]
pub struct Tally {
    pub from_client: AtomicU64,
    pub from_upstream: AtomicU64,
    parked: AtomicBool,
}

impl Tally {
    /// Marks the connection parked (quiet, out of the reactor) or relaying again.
    pub fn set_parked(&self, parked: bool) {
        self.parked.store(parked, Ordering::Relaxed);
    }
}

/// What does not change while a connection lives, held compactly (it lives as long as the
/// connection: addresses as 18 bytes, the SNI inline).
#[derive(Debug)]
struct Info {
    listener: Arc<str>,
    route: Arc<str>,
    peer: Addr,
    client: Addr,
    upstream: Option<Addr>,
    sni: Name,
    opened: Instant,
}

/// A connection's place in the registry; dropping it removes the connection.
#[derive(Debug)]
pub struct Registered {
    shard: Arc<Shard>,
    chunk: Arc<Chunk>,
    key: usize,
}

impl Registered {
    /// The connection's live counters.
    pub fn tally(&self) -> &Tally {
        &self.chunk.0[self.key % CHUNK]
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shard.lock().entries.try_remove(self.key);
    }
}

/// Whether a connection is moving bytes (in a task) or parked (quiet, out of the reactor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    Relaying,
    Parked,
}

ch_edge_wire::keywords!(ConnState {
    Relaying => "relaying",
    Parked => "parked",
});

/// One live connection as the listing shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub listener: Arc<str>,
    pub route: Arc<str>,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The real client (from a trusted PROXY header, else the peer).
    pub client: SocketAddr,
    pub upstream: Option<SocketAddr>,
    pub sni: Option<Box<str>>,
    pub state: ConnState,
    pub opened: Instant,
    pub from_client: u64,
    pub from_upstream: u64,
}

/// The oldest live connections, oldest first, and how many there are in all.
#[derive(Debug)]
pub struct Listing {
    pub total: usize,
    pub entries: Vec<Entry>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| Arc::default()).collect(),
        }
    }
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, ShardInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Registry {
    /// Registers an established connection from what its `record` learnt; its bytes so far
    /// (the ClientHello, relayed already) are counted from the start.
    pub fn register(&self, record: &Record) -> Registered {
        let shard = &self.shards[usize::from(record.peer.port()) % SHARDS];
        let info = Info {
            listener: record.listener.clone(),
            route: record.route.clone().unwrap_or_else(|| Arc::from("")),
            peer: Addr::from(record.peer.0),
            client: Addr::from(record.client_or_peer()),
            upstream: record.upstream.map(|u| Addr::from(u.0)),
            sni: Name::new(record.sni.as_deref()),
            opened: record.accepted,
        };
        let mut inner = shard.lock();
        let key = inner.entries.insert(info);
        while inner.chunks.len() <= key / CHUNK {
            inner
                .chunks
                .push(Arc::new(Chunk(std::array::from_fn(|_| Tally::default()))));
        }
        let chunk = inner.chunks[key / CHUNK].clone();
        drop(inner);
        let tally = &chunk.0[key % CHUNK];
        // The slot's last user is gone (its entry was removed); start it afresh.
        tally
            .from_client
            .store(record.from_client, Ordering::Relaxed);
        tally
            .from_upstream
            .store(record.from_upstream, Ordering::Relaxed);
        tally.set_parked(false);
        Registered {
            shard: shard.clone(),
            chunk,
            key,
        }
    }

    /// The `limit` oldest connections, oldest first, and the count of all. Walks one shard at
    /// a time and holds at most `limit` entries.
    pub fn list(&self, limit: usize) -> Listing {
        // A max-heap on age order: its top is the youngest kept, replaced by anything older.
        let mut kept: BinaryHeap<ByAge> = BinaryHeap::with_capacity(limit.min(1024));
        let mut total = 0;
        for shard in &self.shards {
            let inner = shard.lock();
            total += inner.entries.len();
            for (key, info) in &inner.entries {
                let full = kept.len() >= limit;
                if full && kept.peek().is_none_or(|top| info.opened >= top.0.opened) {
                    continue;
                }
                let tally = &inner.chunks[key / CHUNK].0[key % CHUNK];
                if full {
                    kept.pop();
                }
                kept.push(ByAge(info.entry(tally)));
            }
        }
        let entries = kept.into_sorted_vec().into_iter().map(|e| e.0).collect();
        Listing { total, entries }
    }
}

impl Info {
    fn entry(&self, tally: &Tally) -> Entry {
        Entry {
            listener: self.listener.clone(),
            route: self.route.clone(),
            peer: self.peer.into(),
            client: self.client.into(),
            upstream: self.upstream.map(Into::into),
            sni: self.sni.get().map(Box::from),
            state: if tally.parked.load(Ordering::Relaxed) {
                ConnState::Parked
            } else {
                ConnState::Relaying
            },
            opened: self.opened,
            from_client: tally.from_client.load(Ordering::Relaxed),
            from_upstream: tally.from_upstream.load(Ordering::Relaxed),
        }
    }
}

impl Entry {
    /// How long the connection has been open.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }
}

/// Orders entries by when they opened (older first).
struct ByAge(Entry);

impl PartialEq for ByAge {
    fn eq(&self, other: &Self) -> bool {
        self.0.opened == other.0.opened
    }
}
impl Eq for ByAge {}
impl PartialOrd for ByAge {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByAge {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.opened.cmp(&other.0.opened)
    }
}

/// A socket address in 18 bytes (an IPv4 address held IPv4-mapped).
#[derive(Debug, Clone, Copy)]
struct Addr {
    ip: [u8; 16],
    port: u16,
}

impl From<SocketAddr> for Addr {
    fn from(a: SocketAddr) -> Self {
        let ip = match a.ip() {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            std::net::IpAddr::V6(v6) => v6,
        };
        Addr {
            ip: ip.octets(),
            port: a.port(),
        }
    }
}

impl From<Addr> for SocketAddr {
    fn from(a: Addr) -> Self {
        SocketAddr::new(Ipv6Addr::from(a.ip).to_canonical(), a.port)
    }
}

/// A client-given name held inline when short (see the module's comment).
#[derive(Debug)]
enum Name {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Boxed(Option<Box<str>>),
}

impl Name {
    fn new(name: Option<&str>) -> Name {
        match name {
            Some(n) if n.len() <= INLINE_NAME => {
                let mut bytes = [0u8; INLINE_NAME];
                bytes[..n.len()].copy_from_slice(n.as_bytes());
                Name::Inline {
                    len: n.len() as u8,
                    bytes,
                }
            }
            other => Name::Boxed(other.map(Box::from)),
        }
    }

    fn get(&self) -> Option<&str> {
        match self {
            Name::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).ok(),
            Name::Boxed(name) => name.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::addrs::{ClientAddr, PeerAddr};

    fn record(port: u16, sni: Option<&str>) -> Record {
        let peer = PeerAddr(SocketAddr::from(([10, 0, 0, 1], port)));
        let mut r = Record::new(Arc::from("native"), peer);
        r.client = Some(ClientAddr(SocketAddr::from(([203, 0, 113, 7], 40000))));
        r.route = Some(Arc::from("demo"));
        r.sni = sni.map(Box::from);
        r.upstream = Some("[::1]:9440".parse().unwrap());
        r.from_client = 517;
        r
    }

    #[tokio::test(start_paused = true)]
    async fn lists_the_oldest_first_counts_all_and_forgets_the_ended() {
        let registry = Registry::default();
        let long = "x".repeat(INLINE_NAME + 1);
        let mut held = Vec::new();
        for (i, sni) in [Some("a.test"), None, Some(long.as_str())]
            .into_iter()
            .enumerate()
        {
            held.push(registry.register(&record(1000 + i as u16 * 33, sni)));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        held[0]
            .tally()
            .from_upstream
            .fetch_add(9, Ordering::Relaxed);
        held[1].tally().set_parked(true);
        let all = registry.list(10);
        assert_eq!(all.total, 3);
        let ports: Vec<u16> = all.entries.iter().map(|e| e.peer.port()).collect();
        assert_eq!(ports, [1000, 1033, 1066]);
        let first = &all.entries[0];
        assert_eq!(first.sni.as_deref(), Some("a.test"));
        assert_eq!(first.client, SocketAddr::from(([203, 0, 113, 7], 40000)));
        assert_eq!(first.peer, SocketAddr::from(([10, 0, 0, 1], 1000)));
        assert_eq!(first.upstream, Some("[::1]:9440".parse().unwrap()));
        assert_eq!((first.from_client, first.from_upstream), (517, 9));
        assert_eq!(first.state, ConnState::Relaying);
        assert_eq!(all.entries[1].sni, None);
        assert_eq!(all.entries[1].state, ConnState::Parked);
        assert_eq!(all.entries[2].sni.as_deref(), Some(long.as_str()));

        let two = registry.list(2);
        assert_eq!((two.total, two.entries.len()), (3, 2));
        assert_eq!(two.entries[1].peer.port(), 1033);

        held.remove(0);
        let rest = registry.list(10);
        assert_eq!(rest.total, 2);
        assert_eq!(rest.entries[0].peer.port(), 1033);
        // A reused slot starts afresh.
        let again = registry.register(&record(1000, None));
        assert_eq!(again.tally().from_upstream.load(Ordering::Relaxed), 0);
        assert_eq!(registry.list(0).total, 3);
    }

    #[test]
    fn an_entry_stays_small() {
        // What each live connection adds to the proxy's memory (168 bytes on x86_64; an idle
        // connection cost ~230 bytes before).
        let per_connection = std::mem::size_of::<Option<Info>>() + std::mem::size_of::<Tally>();
        assert!(per_connection <= 176, "{per_connection} bytes");
    }

    #[test]
    fn many_connections_in_one_shard_get_slots_of_their_own() {
        let registry = Registry::default();
        let held: Vec<Registered> = (0..CHUNK * 2 + 1)
            .map(|_| registry.register(&record(SHARDS as u16, None)))
            .collect();
        for (i, r) in held.iter().enumerate() {
            r.tally().from_upstream.store(i as u64, Ordering::Relaxed);
        }
        let listed = registry.list(usize::MAX);
        let mut bytes: Vec<u64> = listed.entries.iter().map(|e| e.from_upstream).collect();
        bytes.sort_unstable();
        assert_eq!(bytes, (0..held.len() as u64).collect::<Vec<_>>());
    }
}
