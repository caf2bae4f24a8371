//! Cached DNS for upstream names.
//!
//! Connections never wait on DNS once a name has been looked up: every name in
//! the route table has an [`Addrs`] handle whose address list a background task
//! refreshes. A failed refresh keeps the last good list; what the log says about
//! failures (a line per change, not per refresh) is [`resolve_log`]. IP literals never
//! touch DNS. Each handle also carries the live state of its addresses
//! ([`endpoint`](crate::runtime::upstream::endpoint)), kept for addresses a refresh keeps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::model::route;
use crate::runtime::meters;
use crate::runtime::route_counters::RouteCounters;
use crate::runtime::upstream::endpoint::{Endpoint, Ports};
use crate::runtime::upstream::resolve_log::{self, LookupLog};

/// How many lookups run at once during a refresh.
const CONCURRENT_LOOKUPS: usize = 32;
/// One lookup may take this long before it counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The resolved addresses of one upstream host name.
#[derive(Debug)]
pub struct Addrs {
    host: Arc<str>,
    ips: Ips,
    /// Whether a first lookup has finished (found addresses or not).
    looked_up: AtomicBool,
    resolved: Notify,
    /// The state of each address, per port in use.
    ports: Ports,
}

/// A literal's one address needs no swapping (and no `ArcSwap` to drop:
/// 100k literal upstreams made that a visible part of a reload).
#[derive(Debug)]
enum Ips {
    Literal(Arc<Vec<IpAddr>>),
    Resolved(ArcSwap<Vec<IpAddr>>),
}

impl Addrs {
    /// A fixed address: never looked up, not registered with any resolver.
    /// `written` is how it was written (shared as the host when canonical).
    pub fn literal(ip: IpAddr, written: &Arc<str>) -> Self {
        let host = match ip {
            // IPv4 literals parse only in canonical dotted-decimal form.
            IpAddr::V4(_) => written.clone(),
            IpAddr::V6(_) => ip.to_string().into(),
        };
        Addrs {
            host,
            ips: Ips::Literal(Arc::new(vec![ip])),
            looked_up: AtomicBool::new(true),
            resolved: Notify::new(),
            ports: Ports::default(),
        }
    }

    /// No address, never looked up: a refusal placeholder's.
    fn none() -> Self {
        Addrs {
            host: Arc::from(""),
            ips: Ips::Literal(Arc::new(Vec::new())),
            looked_up: AtomicBool::new(true),
            resolved: Notify::new(),
            ports: Ports::default(),
        }
    }

    fn named(host: Arc<str>) -> Self {
        Addrs {
            host,
            ips: Ips::Resolved(ArcSwap::from_pointee(Vec::new())),
            looked_up: AtomicBool::new(false),
            resolved: Notify::new(),
            ports: Ports::default(),
        }
    }

    /// The endpoints of the current addresses on `port`, in address order.
    pub fn endpoints(&self, port: u16) -> Arc<[Arc<Endpoint>]> {
        self.ports.get(&self.host, port, || self.current())
    }

    /// Every endpoint per port in use (for `/routes`).
    pub fn endpoints_by_port(&self) -> Vec<(u16, Arc<[Arc<Endpoint>]>)> {
        self.ports.all()
    }

    /// True until the first lookup has finished: only then is waiting worth it.
    pub fn pending(&self) -> bool {
        !self.looked_up.load(Ordering::Acquire)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The last good address list; empty until the first lookup succeeded.
    pub fn current(&self) -> Arc<Vec<IpAddr>> {
        match &self.ips {
            Ips::Literal(ips) => ips.clone(),
            Ips::Resolved(ips) => ips.load_full(),
        }
    }

    fn is_literal(&self) -> bool {
        matches!(self.ips, Ips::Literal(_))
    }

    /// The addresses once the first lookup has finished (empty if it found none).
    /// Callers bound this with their connect timeout.
    pub async fn wait(&self) -> Arc<Vec<IpAddr>> {
        loop {
            let notified = self.resolved.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let ips = self.current();
            if !ips.is_empty() || !self.pending() {
                return ips;
            }
            notified.await;
        }
    }

    fn store(&self, mut ips: Vec<IpAddr>) -> bool {
        let Ips::Resolved(current) = &self.ips else {
            return false;
        };
        ips.sort();
        ips.dedup();
        let changed = **current.load() != ips;
        if changed {
            self.ports
                .replace(&self.host, &ips, || current.store(Arc::new(ips.clone())));
        }
        self.looked_up();
        changed
    }

    /// A lookup finished: connections waiting for the first one go on.
    fn looked_up(&self) {
        self.looked_up.store(true, Ordering::Release);
        self.resolved.notify_waiters();
    }
}

impl route::Resolve for Resolver {
    type Addrs = Arc<Addrs>;
    type Meters = RouteCounters;

    fn addrs(&self, host: &Arc<str>) -> Arc<Addrs> {
        self.handle(host)
    }

    fn refused(&self) -> Arc<Addrs> {
        Arc::new(Addrs::none())
    }
}

/// Hands out shared [`Addrs`] per host name and keeps them fresh.
#[derive(Debug)]
pub struct Resolver {
    names: Mutex<HashMap<Box<str>, Weak<Addrs>>>,
    /// Woken when a name is registered that has never been resolved.
    new_name: Notify,
    refresh_every: Duration,
    /// The failing names, for the log (touched by the refresh only).
    log: Mutex<LookupLog>,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::new(Duration::from_secs(10))
    }
}

impl Resolver {
    pub fn new(refresh_every: Duration) -> Self {
        Resolver {
            names: Mutex::new(HashMap::new()),
            new_name: Notify::new(),
            refresh_every,
            log: Mutex::default(),
        }
    }

    /// The shared handle for `host` (a DNS name or an IP literal).
    ///
    /// Handles live as long as some route table holds them; a name no table
    /// uses any more is dropped from the refresh set.
    pub fn handle(&self, host: &Arc<str>) -> Arc<Addrs> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Arc::new(Addrs::literal(ip, host));
        }
        let key = host.to_ascii_lowercase();
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = names.get(key.as_str()).and_then(Weak::upgrade) {
            return live;
        }
        let addrs = Arc::new(Addrs::named(key.clone().into()));
        names.insert(key.into(), Arc::downgrade(&addrs));
        drop(names);
        self.new_name.notify_one();
        addrs
    }

    /// Names currently held by some route table.
    fn live(&self, only_unresolved: bool) -> Vec<Arc<Addrs>> {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.retain(|_, weak| weak.strong_count() > 0);
        if !only_unresolved {
            lock(&self.log).retain(|host| names.contains_key(host));
        }
        names
            .values()
            .filter_map(Weak::upgrade)
            .filter(|a| !a.is_literal() && (!only_unresolved || a.current().is_empty()))
            .collect()
    }

    /// Resolves every live name once (or only those never resolved).
    pub async fn refresh(&self, only_unresolved: bool) {
        let mut pending = self.live(only_unresolved).into_iter();
        let mut running = JoinSet::new();
        loop {
            while running.len() < CONCURRENT_LOOKUPS {
                let Some(addrs) = pending.next() else { break };
                running.spawn(async move {
                    let result = lookup(&addrs.host).await;
                    (addrs, result)
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let Ok((addrs, result)) = joined else {
                continue;
            };
            match result {
                Ok(ips) => {
                    if addrs.store(ips) {
                        tracing::debug!(host = %addrs.host, ips = ?addrs.current(), "upstream addresses changed");
                    }
                    metrics::counter!(meters::DNS_LOOKUPS, "result" => "ok").increment(1);
                    if let Some(line) = lock(&self.log).resolved(&addrs.host) {
                        resolve_log::write(&addrs.host, &line, None, &addrs.current());
                    }
                }
                Err(error) => {
                    addrs.looked_up();
                    metrics::counter!(meters::DNS_LOOKUPS, "result" => "error").increment(1);
                    let error = error.to_string();
                    let line = lock(&self.log).failed(&addrs.host, &error, Instant::now());
                    if let Some(line) = line {
                        resolve_log::write(&addrs.host, &line, Some(&error), &addrs.current());
                    }
                }
            }
        }
    }

    /// Refreshes forever: every `refresh_every`, and at once for new names.
    pub async fn run(self: Arc<Self>) {
        loop {
            let wait_new = self.new_name.notified();
            tokio::pin!(wait_new);
            wait_new.as_mut().enable();
            self.refresh(false).await;
            let next = tokio::time::sleep(self.refresh_every);
            tokio::pin!(next);
            loop {
                tokio::select! {
                    _ = &mut next => break,
                    _ = &mut wait_new => {
                        wait_new.set(self.new_name.notified());
                        wait_new.as_mut().enable();
                        self.refresh(true).await;
                    }
                }
            }
        }
    }
}

/// The lookup log's lock; it holds no invariant a panic could break, so poison is ignored.
fn lock(log: &Mutex<LookupLog>) -> std::sync::MutexGuard<'_, LookupLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

async fn lookup(host: &str) -> std::io::Result<Vec<IpAddr>> {
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, 0)))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "lookup timed out"))??;
    let ips: Vec<IpAddr> = found.map(|sa| sa.ip()).collect();
    if ips.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no addresses",
        ));
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str) -> Arc<str> {
        name.into()
    }

    #[test]
    fn literal_needs_no_lookup() {
        let r = Resolver::default();
        let a = r.handle(&h("127.0.0.7"));
        assert_eq!(*a.current(), vec!["127.0.0.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(a.host(), "127.0.0.7");
        let v6 = r.handle(&h("0:0::1"));
        assert_eq!(*v6.current(), vec!["::1".parse::<IpAddr>().unwrap()]);
        assert_eq!(v6.host(), "::1");
        assert!(r.live(false).is_empty(), "literals are not looked up");
    }

    #[test]
    fn same_name_shares_one_handle_case_insensitively() {
        let r = Resolver::default();
        let a = r.handle(&h("Localhost"));
        let b = r.handle(&h("localhost"));
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        assert!(
            r.live(false).is_empty(),
            "dropped handles leave the refresh set"
        );
    }

    #[tokio::test]
    async fn resolves_and_keeps_last_good_on_failure() {
        let r = Resolver::default();
        let a = r.handle(&h("localhost"));
        r.refresh(false).await;
        let first = a.current();
        assert!(first.iter().any(|ip| ip.is_loopback()), "{first:?}");
        let missing = r.handle(&h("no-such-host.invalid"));
        r.refresh(false).await;
        assert!(missing.current().is_empty());
        // A failed lookup must not clear a good list.
        missing.store(vec!["127.0.0.9".parse().unwrap()]);
        r.refresh(false).await;
        assert_eq!(
            *missing.current(),
            vec!["127.0.0.9".parse::<IpAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn wait_returns_once_resolved() {
        let r = Arc::new(Resolver::default());
        let a = r.handle(&h("localhost"));
        let bg = tokio::spawn(r.clone().run());
        let ips = tokio::time::timeout(Duration::from_secs(10), a.wait())
            .await
            .expect("first lookup within bound");
        assert!(!ips.is_empty());
        bg.abort();
    }
}
