//! The places an admin listener has for connections: [`MAX_CONNECTIONS`] served in full, and
//! past them [`OVERFLOW_CONNECTIONS`] answered for probes only (see the parent's comment). One
//! peer address gets at most a quarter of each, so holding them all takes several addresses,
//! and the kubelet (its node's address) keeps places of its own against any one of them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Open connections per admin listener. Probes, a Prometheus or two and a person need a
/// handful.
pub(super) const MAX_CONNECTIONS: usize = 32;
/// Past [`MAX_CONNECTIONS`], connections served one request each, probes only; more are
/// closed at accept and counted.
pub(super) const OVERFLOW_CONNECTIONS: usize = 16;
/// Of each budget, the most one peer address may hold.
const PER_PEER: [u16; 2] = [
    (MAX_CONNECTIONS / 4) as u16,
    (OVERFLOW_CONNECTIONS / 4) as u16,
];

/// Which budget an admin connection was taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Budget {
    /// Within the cap: every endpoint the listener serves, kept alive.
    Full = 0,
    /// Over the cap: one request, probes only.
    ProbesOnly = 1,
}

type Peers = Arc<Mutex<HashMap<IpAddr, [u16; 2]>>>;

/// The places of one admin listener.
pub(super) struct Places {
    budgets: [Arc<Semaphore>; 2],
    /// Places held per peer address, per budget; only addresses holding one (at most
    /// `MAX_CONNECTIONS + OVERFLOW_CONNECTIONS` entries).
    peers: Peers,
}

/// A place taken; dropping it gives it back.
pub(super) struct Place {
    pub(super) budget: Budget,
    _permit: OwnedSemaphorePermit,
    peers: Peers,
    peer: IpAddr,
}

impl Default for Places {
    fn default() -> Self {
        Places {
            budgets: [
                Arc::new(Semaphore::new(MAX_CONNECTIONS)),
                Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS)),
            ],
            peers: Peers::default(),
        }
    }
}

fn lock(peers: &Peers) -> MutexGuard<'_, HashMap<IpAddr, [u16; 2]>> {
    peers.lock().unwrap_or_else(|e| e.into_inner())
}

impl Places {
    /// A place for a connection from `peer`: in full if one is free and `peer` holds less than
    /// its share, else probes only likewise, else none.
    pub(super) fn take(&self, peer: IpAddr) -> Option<Place> {
        let peer = peer.to_canonical();
        let mut peers = lock(&self.peers);
        let held = peers.get(&peer).copied().unwrap_or_default();
        let (budget, permit) = [Budget::Full, Budget::ProbesOnly]
            .into_iter()
            .filter(|b| held[*b as usize] < PER_PEER[*b as usize])
            .find_map(|b| {
                let permit = self.budgets[b as usize].clone().try_acquire_owned().ok()?;
                Some((b, permit))
            })?;
        peers.entry(peer).or_default()[budget as usize] += 1;
        Some(Place {
            budget,
            _permit: permit,
            peers: self.peers.clone(),
            peer,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut peers = lock(&self.peers);
        if let Some(held) = peers.get_mut(&self.peer) {
            held[self.budget as usize] = held[self.budget as usize].saturating_sub(1);
            if *held == [0, 0] {
                peers.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn one_peer_takes_a_quarter_of_each_budget_and_gives_it_back() {
        let places = Places::default();
        let mut held: Vec<Place> = std::iter::from_fn(|| places.take(ip(1))).collect();
        let budgets: Vec<Budget> = held.iter().map(|p| p.budget).collect();
        assert_eq!(budgets.len(), 8 + 4);
        assert!(budgets[..8].iter().all(|b| *b == Budget::Full));
        assert!(budgets[8..].iter().all(|b| *b == Budget::ProbesOnly));
        // Another peer still gets a full place; three more fill the cap.
        assert_eq!(places.take(ip(2)).map(|p| p.budget), Some(Budget::Full));
        let others: Vec<Place> = (2..5)
            .flat_map(|i| std::iter::repeat_n(i, 8))
            .filter_map(|i| places.take(ip(i)))
            .collect();
        assert_eq!(
            others.iter().filter(|p| p.budget == Budget::Full).count(),
            24
        );
        assert_eq!(
            places.take(ip(9)).map(|p| p.budget),
            Some(Budget::ProbesOnly)
        );
        // Given back, a place is free again, for its peer too.
        held.truncate(7);
        assert_eq!(places.take(ip(1)).map(|p| p.budget), Some(Budget::Full));
        drop((held, others));
        assert!(lock(&places.peers).is_empty());
    }
}
