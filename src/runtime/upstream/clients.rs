//! Per-client limits (`limits.per_client`): open connections and a token-bucket connection rate
//! per real client IP address (from the PROXY header when the peer is trusted).
//!
//! Entries live in a few sharded maps, so workers rarely wait on one another, and leave when
//! their client has no connection open and a full bucket: memory follows the clients active in
//! the last few seconds. A shard that fills up with addresses (a spray) forgets its idle ones at
//! once, so memory stays bounded by the connections open, however many addresses appear.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::model::config::PerClient;
use crate::runtime::meters;

/// Shards of the client map; a client always lands in the same one.
const SHARDS: usize = 16;
/// Entries a shard holds before it forgets its idle ones at once (not waiting for the sweep).
const SHARD_CAP: usize = 16 * 1024;
/// How often idle entries are swept away.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// One client address's state.
#[derive(Debug, Clone, Copy)]
struct Entry {
    open: u32,
    tokens: f64,
    refilled: Instant,
}

/// Why a client was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// `per_client.max_connections` already open.
    Connections,
    /// No token left in its bucket.
    Rate,
}

impl OverLimit {
    /// For the access log's `detail`.
    pub fn detail(self) -> &'static str {
        match self {
            OverLimit::Connections => "per-client connection limit",
            OverLimit::Rate => "per-client connection rate",
        }
    }
}

/// Every tracked client.
#[derive(Debug)]
pub struct Clients {
    shards: [Mutex<HashMap<IpAddr, Entry, foldhash::fast::RandomState>>; SHARDS],
    /// Picks a shard; seeded per process, so clients cannot aim at one shard.
    hasher: foldhash::fast::RandomState,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            shards: std::array::from_fn(|_| Mutex::default()),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

/// One admitted connection of a client; dropping it closes it in the count.
#[derive(Debug)]
pub struct Admitted {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut shard = self.clients.shard(self.ip);
        if let Some(e) = shard.get_mut(&self.ip) {
            e.open = e.open.saturating_sub(1);
        }
    }
}

impl Clients {
    fn shard(
        &self,
        ip: IpAddr,
    ) -> MutexGuard<'_, HashMap<IpAddr, Entry, foldhash::fast::RandomState>> {
        let i = (std::hash::BuildHasher::hash_one(&self.hasher, ip) as usize) % SHARDS;
        // A panic while holding a shard leaves plain counters behind: poison is ignored.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection of `ip` under `limits`, or says which limit it is over.
    /// `None` limits track nothing.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: &PerClient,
        now: Instant,
    ) -> Result<Option<Admitted>, OverLimit> {
        if limits.is_off() {
            return Ok(None);
        }
        let ip = ip.to_canonical();
        let mut shard = self.shard(ip);
        if shard.len() >= SHARD_CAP && !shard.contains_key(&ip) {
            // Too many addresses at once (a spray): forget the idle ones' buckets rather than
            // grow. What stays is bounded by the connections open.
            shard.retain(|_, e| e.open > 0);
        }
        let burst = limits.rate.map_or(0.0, |r| r.burst);
        let entry = shard.entry(ip).or_insert(Entry {
            open: 0,
            tokens: burst,
            refilled: now,
        });
        if let Some(max) = limits.max_connections {
            if entry.open >= max {
                return Err(OverLimit::Connections);
            }
        }
        if let Some(rate) = limits.rate {
            let elapsed = now.saturating_duration_since(entry.refilled).as_secs_f64();
            entry.tokens = (entry.tokens + elapsed * rate.per_second).min(rate.burst);
            entry.refilled = now;
            if entry.tokens < 1.0 {
                return Err(OverLimit::Rate);
            }
            entry.tokens -= 1.0;
        }
        entry.open += 1;
        Ok(Some(Admitted {
            clients: self.clone(),
            ip,
        }))
    }

    /// Drops the entries of clients with nothing open and a full bucket; returns how many
    /// remain. Call every [`SWEEP_EVERY`].
    pub fn sweep(&self, limits: &PerClient, now: Instant) -> usize {
        let mut left = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            sweep_shard(&mut shard, limits, now);
            left += shard.len();
        }
        metrics::gauge!(meters::CLIENTS_TRACKED).set(left as f64);
        left
    }
}

fn sweep_shard(
    shard: &mut HashMap<IpAddr, Entry, foldhash::fast::RandomState>,
    limits: &PerClient,
    now: Instant,
) {
    shard.retain(|_, e| {
        let full = limits.rate.is_none_or(|r| {
            let elapsed = now.saturating_duration_since(e.refilled).as_secs_f64();
            e.tokens + elapsed * r.per_second >= r.burst
        });
        e.open > 0 || !full
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Rate;

    fn ip(i: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    #[test]
    fn open_connections_are_limited_per_address() {
        let clients = Arc::new(Clients::default());
        let limits = PerClient {
            max_connections: Some(2),
            rate: None,
        };
        let now = Instant::now();
        let a1 = clients.admit(ip(1), &limits, now).unwrap();
        let a2 = clients.admit(ip(1), &limits, now).unwrap();
        assert_eq!(
            clients.admit(ip(1), &limits, now).unwrap_err(),
            OverLimit::Connections
        );
        assert!(
            clients.admit(ip(2), &limits, now).is_ok(),
            "another client is not affected"
        );
        drop(a1);
        assert!(
            clients.admit(ip(1), &limits, now).is_ok(),
            "a closed one frees a place"
        );
        drop(a2);
        // IPv4-mapped IPv6 is the same client.
        let mapped: IpAddr = "::ffff:10.0.0.3".parse().unwrap();
        let _m = clients.admit(mapped, &limits, now).unwrap();
        let _m2 = clients.admit(ip(3), &limits, now).unwrap();
        assert!(clients.admit(ip(3), &limits, now).is_err());
    }

    #[test]
    fn the_rate_is_a_token_bucket() {
        let clients = Arc::new(Clients::default());
        let limits = PerClient {
            max_connections: None,
            rate: Some(Rate {
                per_second: 10.0,
                burst: 3.0,
            }),
        };
        let t0 = Instant::now();
        let admitted = (0..5)
            .filter(|_| clients.admit(ip(1), &limits, t0).is_ok())
            .count();
        assert_eq!(admitted, 3, "the burst, then nothing");
        assert_eq!(
            clients.admit(ip(1), &limits, t0).unwrap_err(),
            OverLimit::Rate
        );
        // 0.1 s later one token has come back.
        let t1 = t0 + Duration::from_millis(100);
        assert!(clients.admit(ip(1), &limits, t1).is_ok());
        assert!(clients.admit(ip(1), &limits, t1).is_err());
    }

    #[test]
    fn memory_follows_the_active_clients() {
        let clients = Arc::new(Clients::default());
        let limits = PerClient {
            max_connections: Some(10),
            rate: Some(Rate {
                per_second: 100.0,
                burst: 100.0,
            }),
        };
        let t0 = Instant::now();
        let held: Vec<_> = (0..10)
            .map(|i| clients.admit(ip(i), &limits, t0).unwrap())
            .collect();
        for i in 10..100_000 {
            drop(clients.admit(ip(i), &limits, t0).unwrap());
        }
        // Shards full of idle clients dropped them as they filled.
        let total: usize = clients.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= SHARDS * SHARD_CAP, "{total}");
        // A second later every bucket is full again: only the clients with open connections stay.
        assert_eq!(clients.sweep(&limits, t0 + Duration::from_secs(1)), 10);
        drop(held);
        assert_eq!(clients.sweep(&limits, t0 + Duration::from_secs(1)), 0);
    }
}
