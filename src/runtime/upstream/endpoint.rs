//! Live state of each upstream address: this proxy's open connections to it and its passive
//! health (consecutive connect failures, ejection), for least_conn and for skipping dead
//! addresses.
//!
//! The state hangs off the upstream host's address handle ([`crate::runtime::upstream::resolve::Addrs`]),
//! one list per port in use, so a connection reaches it from its route without any lookup;
//! a DNS refresh keeps the state of addresses that stay, and a reused route keeps its handle.
//! Every endpoint is also listed (weakly) in a process-wide [`registry`] for `/metrics`: an
//! address leaves the metrics once no table and no connection holds it.

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::model::config::Health;
use crate::model::route::balance::Seen;

/// One upstream address (IP and port) as this proxy sees it.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The upstream host it was resolved from (the metric label `upstream` is `host:port`).
    pub host: Arc<str>,
    open: AtomicU32,
    /// Connect failures since the last success.
    failures: AtomicU32,
    /// Ejections since the last success (each lasts twice the one before).
    ejections: AtomicU32,
    /// [`now_ms`] until which it is ejected; 0 when it has not failed since its last success.
    ejected_until: AtomicU64,
    failures_total: AtomicU64,
    ejections_total: AtomicU64,
}

/// How a chosen endpoint may be tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Live, or chosen because every address is ejected.
    Try,
    /// Its ejection is over and this connection is the one to try it again: the others keep
    /// skipping it until this attempt has told whether it is back.
    Probe,
    /// Another connection is trying it again right now: choose another.
    Busy,
}

/// What `/routes` and `/metrics` show of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub open: u32,
    pub failures: u32,
    /// When the ejection ends, if it is ejected now.
    pub ejected_until: Option<SystemTime>,
    pub failures_total: u64,
    pub ejections_total: u64,
}

impl Endpoint {
    pub fn new(host: &Arc<str>, addr: SocketAddr) -> Arc<Endpoint> {
        let e = Arc::new(Endpoint {
            addr,
            host: host.clone(),
            open: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
            ejections_total: AtomicU64::new(0),
        });
        registry::add(&e);
        e
    }

    /// What balancing needs; reads the clock only for an address that has failed.
    pub fn seen(&self, now: &Now) -> Seen {
        let until = self.ejected_until.load(Ordering::Relaxed);
        Seen {
            open: self.open.load(Ordering::Relaxed),
            ejected: until != 0 && until > now.ms(),
        }
    }

    /// Claims the endpoint for one attempt lasting at most `hold`.
    pub fn claim(&self, now: &Now, hold: Duration) -> Claim {
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 || until > now.ms() {
            return Claim::Try;
        }
        let probing = now.ms().saturating_add(millis(hold));
        match self.ejected_until.compare_exchange(
            until,
            probing,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => Claim::Probe,
            Err(_) => Claim::Busy,
        }
    }

    /// Counts a connection (or attempt) to it until the lease is dropped.
    pub fn lease(self: &Arc<Self>) -> Lease {
        self.open.fetch_add(1, Ordering::Relaxed);
        Lease(self.clone())
    }

    /// A connect succeeded: the address is live again, its ejections start over.
    pub fn succeeded(&self) {
        // Only a failed address pays for the writes.
        if self.failures.load(Ordering::Relaxed) != 0
            || self.ejected_until.load(Ordering::Relaxed) != 0
        {
            self.failures.store(0, Ordering::Relaxed);
            self.ejections.store(0, Ordering::Relaxed);
            self.ejected_until.store(0, Ordering::Relaxed);
        }
    }

    /// A connect failed; true if that ejected the address. A failure while it is already
    /// ejected (a concurrent attempt, or every address ejected) only counts, unless it was the
    /// probe: then the next, longer ejection starts.
    pub fn failed(&self, health: &Health, claim: Claim, now: &Now) -> bool {
        self.failures_total.fetch_add(1, Ordering::Relaxed);
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let until = self.ejected_until.load(Ordering::Relaxed);
        let ejected_now = until != 0 && until > now.ms();
        if failures < health.eject_after || (ejected_now && claim != Claim::Probe) {
            return false;
        }
        let nth = self
            .ejections
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let until = now.ms().saturating_add(millis(health.ejection(nth)));
        self.ejected_until.store(until, Ordering::Relaxed);
        self.ejections_total.fetch_add(1, Ordering::Relaxed);
        true
    }

    pub fn stats(&self) -> Stats {
        let until = self.ejected_until.load(Ordering::Relaxed);
        let now = now_ms();
        Stats {
            open: self.open.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            ejected_until: (until > now)
                .then(|| SystemTime::now() + Duration::from_millis(until - now)),
            failures_total: self.failures_total.load(Ordering::Relaxed),
            ejections_total: self.ejections_total.load(Ordering::Relaxed),
        }
    }
}

/// One open connection (or connect attempt) to an endpoint; dropping it ends the count.
#[derive(Debug)]
pub struct Lease(Arc<Endpoint>);

impl Lease {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The process clock in milliseconds, read at most once per use (and only if needed).
#[derive(Debug, Default)]
pub struct Now(Cell<Option<u64>>);

impl Now {
    pub fn ms(&self) -> u64 {
        match self.0.get() {
            Some(ms) => ms,
            None => {
                let ms = now_ms();
                self.0.set(Some(ms));
                ms
            }
        }
    }
}

/// Milliseconds since the first call, from 1 (0 means "not ejected").
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    millis(START.get_or_init(Instant::now).elapsed()).saturating_add(1)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The endpoints of one upstream host, per port in use; made by the first connection to a
/// port (a handle no connection used costs one empty cell, which matters for 100k routes).
#[derive(Debug, Default)]
pub struct Ports {
    by_port: OnceLock<ArcSwap<Vec<PortList>>>,
    /// Serialises adding a port with replacing the addresses.
    write: Mutex<()>,
}

#[derive(Debug, Clone)]
struct PortList {
    port: u16,
    endpoints: Arc<[Arc<Endpoint>]>,
}

impl Ports {
    /// The endpoints of `ips` on `port`, in the order of `ips`; `ips` is read under the
    /// write lock (by `current`) so a concurrent refresh cannot be missed.
    pub fn get(
        &self,
        host: &Arc<str>,
        port: u16,
        current: impl FnOnce() -> Arc<Vec<IpAddr>>,
    ) -> Arc<[Arc<Endpoint>]> {
        if let Some(found) = self.find(port) {
            return found;
        }
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = self.find(port) {
            return found;
        }
        let endpoints: Arc<[Arc<Endpoint>]> = current()
            .iter()
            .map(|ip| Endpoint::new(host, SocketAddr::new(*ip, port)))
            .collect();
        let lists = self
            .by_port
            .get_or_init(|| ArcSwap::from_pointee(Vec::new()));
        let mut next = Vec::clone(&lists.load());
        next.push(PortList {
            port,
            endpoints: endpoints.clone(),
        });
        lists.store(Arc::new(next));
        endpoints
    }

    fn find(&self, port: u16) -> Option<Arc<[Arc<Endpoint>]>> {
        let lists = self.by_port.get()?.load();
        lists
            .iter()
            .find(|l| l.port == port)
            .map(|l| l.endpoints.clone())
    }

    /// New addresses for every port: an address that stays keeps its endpoint (and so its
    /// open connections and health); `store` publishes the addresses themselves, under the
    /// same lock.
    pub fn replace(&self, host: &Arc<str>, ips: &[IpAddr], store: impl FnOnce()) {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        store();
        let Some(lists) = self.by_port.get() else {
            return;
        };
        let next: Vec<PortList> = lists
            .load()
            .iter()
            .map(|old| PortList {
                port: old.port,
                endpoints: ips
                    .iter()
                    .map(|ip| {
                        let addr = SocketAddr::new(*ip, old.port);
                        old.endpoints
                            .iter()
                            .find(|e| e.addr == addr)
                            .cloned()
                            .unwrap_or_else(|| Endpoint::new(host, addr))
                    })
                    .collect(),
            })
            .collect();
        lists.store(Arc::new(next));
    }

    /// Every endpoint, for `/routes`: (port, endpoints) per port in use.
    pub fn all(&self) -> Vec<(u16, Arc<[Arc<Endpoint>]>)> {
        match self.by_port.get() {
            Some(lists) => lists
                .load()
                .iter()
                .map(|l| (l.port, l.endpoints.clone()))
                .collect(),
            None => Vec::new(),
        }
    }
}

/// Every endpoint alive in the process, for `/metrics`.
pub mod registry {
    use super::*;

    static ALL: Mutex<Registry> = Mutex::new(Registry {
        endpoints: Vec::new(),
        prune_at: 64,
    });

    struct Registry {
        endpoints: Vec<Weak<Endpoint>>,
        /// Dead entries are dropped when the list reaches this length (then twice the live).
        prune_at: usize,
    }

    pub(super) fn add(e: &Arc<Endpoint>) {
        let mut all = ALL.lock().unwrap_or_else(|e| e.into_inner());
        if all.endpoints.len() >= all.prune_at {
            all.endpoints.retain(|w| w.strong_count() > 0);
            all.prune_at = (all.endpoints.len() * 2).max(64);
        }
        all.endpoints.push(Arc::downgrade(e));
    }

    /// Each live endpoint's labels and stats: (`host:port`, `ip:port`, stats).
    pub fn snapshot() -> Vec<(String, SocketAddr, Stats)> {
        let live: Vec<Arc<Endpoint>> = {
            let mut all = ALL.lock().unwrap_or_else(|e| e.into_inner());
            all.endpoints.retain(|w| w.strong_count() > 0);
            all.endpoints.iter().filter_map(Weak::upgrade).collect()
        };
        live.iter()
            .map(|e| (upstream_label(&e.host, e.addr.port()), e.addr, e.stats()))
            .collect()
    }
}

/// `host:port`, IPv6 literals in brackets.
pub fn upstream_label(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Arc<Endpoint> {
        Endpoint::new(&Arc::from("h"), "127.0.0.1:1".parse().unwrap())
    }

    fn at(ms: u64) -> Now {
        Now(Cell::new(Some(ms)))
    }

    const HOLD: Duration = Duration::from_secs(3);

    #[test]
    fn a_failure_ejects_and_doubles_until_a_success() {
        let health = Health::default(); // one failure, 5 s
        let e = ep();
        assert!(!e.seen(&at(1000)).ejected);
        assert!(e.failed(&health, Claim::Try, &at(1000)));
        assert!(e.seen(&at(5999)).ejected);
        // Concurrent attempts that fail meanwhile do not double it again.
        assert!(!e.failed(&health, Claim::Try, &at(2000)));
        assert!(!e.seen(&at(6000)).ejected, "due for a retry");
        // One connection probes; the others keep skipping it.
        assert_eq!(e.claim(&at(6000), HOLD), Claim::Probe);
        assert!(e.seen(&at(6001)).ejected);
        assert_eq!(e.claim(&at(6001), HOLD), Claim::Try, "all ejected");
        // The probe fails: 10 s this time.
        assert!(e.failed(&health, Claim::Probe, &at(6100)));
        assert!(e.seen(&at(16099)).ejected);
        assert!(!e.seen(&at(16100)).ejected);
        let s = e.stats();
        assert_eq!((s.failures, s.failures_total, s.ejections_total), (3, 3, 2));
        // A success puts it back and starts the doubling over.
        e.succeeded();
        assert!(!e.seen(&at(16101)).ejected);
        assert!(e.failed(&health, Claim::Try, &at(20000)));
        assert!(e.seen(&at(24999)).ejected);
        assert!(!e.seen(&at(25000)).ejected);
    }

    #[test]
    fn eject_after_counts_consecutive_failures() {
        let health = Health {
            eject_after: 3,
            ..Health::default()
        };
        let e = ep();
        assert!(!e.failed(&health, Claim::Try, &at(10)));
        assert!(!e.failed(&health, Claim::Try, &at(10)));
        e.succeeded();
        assert!(!e.failed(&health, Claim::Try, &at(10)));
        assert!(!e.failed(&health, Claim::Try, &at(10)));
        assert!(e.failed(&health, Claim::Try, &at(10)));
        assert!(e.seen(&at(11)).ejected);
    }

    #[test]
    fn only_one_probe_at_a_time() {
        let e = ep();
        e.failed(&Health::default(), Claim::Try, &at(1));
        assert_eq!(e.claim(&at(10_000), HOLD), Claim::Probe);
        // A connection that chose it before the probe's claim lost the race.
        let stale = e.ejected_until.load(Ordering::Relaxed);
        assert!(stale > 10_000);
        e.succeeded();
        assert_eq!(e.claim(&at(10_001), HOLD), Claim::Try);
    }

    #[test]
    fn leases_count_open_connections() {
        let e = ep();
        let a = e.lease();
        let b = e.lease();
        assert_eq!(e.seen(&Now::default()).open, 2);
        drop(a);
        assert_eq!(e.stats().open, 1);
        drop(b);
        assert_eq!(e.stats().open, 0);
    }

    #[test]
    fn refreshed_addresses_keep_the_state_of_those_that_stay() {
        let host: Arc<str> = "svc".into();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let ports = Ports::default();
        let first = ports.get(&host, 9000, || {
            Arc::new(vec![ip("10.0.0.1"), ip("10.0.0.2")])
        });
        assert_eq!(first.len(), 2);
        let kept = first[1].clone();
        let _open = kept.lease();
        // The same port again: the same endpoints, without reading the addresses.
        let again = ports.get(&host, 9000, || unreachable!());
        assert!(Arc::ptr_eq(&again[0], &first[0]));
        let other = ports.get(&host, 8123, || Arc::new(vec![ip("10.0.0.1")]));
        assert_eq!(other[0].addr.port(), 8123);
        ports.replace(&host, &[ip("10.0.0.2"), ip("10.0.0.3")], || {});
        let now = ports.get(&host, 9000, || unreachable!());
        assert!(Arc::ptr_eq(&now[0], &kept), "10.0.0.2 kept its state");
        assert_eq!(now[0].stats().open, 1);
        assert_eq!(now[1].addr, "10.0.0.3:9000".parse().unwrap());
        assert_eq!(ports.get(&host, 8123, || unreachable!()).len(), 2);
        // Labels: the registry lists live endpoints only.
        drop((first, again, now, other));
        let labels: Vec<_> = registry::snapshot()
            .into_iter()
            .filter(|(u, _, _)| u.starts_with("svc:"))
            .map(|(u, a, _)| (u, a.to_string()))
            .collect();
        assert!(labels.contains(&("svc:9000".into(), "10.0.0.2:9000".into())));
        assert!(
            !labels.iter().any(|(_, a)| a == "10.0.0.1:9000"),
            "{labels:?}"
        );
        assert_eq!(upstream_label("::1", 9440), "[::1]:9440");
    }
}
