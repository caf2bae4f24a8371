//! The sign of a load balancer that preserves client addresses (or of `trusted` not covering
//! it): PROXY headers arriving from peers outside `proxy_protocol.trusted`. Each one is refused
//! and counted (outcome `proxy_untrusted`); this says so in the log with the hint an operator
//! needs, at most once per [`EVERY`] however many arrive.

use crate::runtime::addrs::PeerAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// At most one warning per this long; the ones held back are counted in the next.
pub const EVERY: Duration = Duration::from_secs(10);

/// Rate-limits the warning across all listeners (lock-free: refusals come from every task).
#[derive(Debug)]
pub struct UntrustedHeaders {
    start: Instant,
    /// Milliseconds after `start` before which no warning is written.
    next_ms: AtomicU64,
    /// Refusals since the last warning that wrote none.
    held_back: AtomicU64,
}

impl Default for UntrustedHeaders {
    fn default() -> Self {
        UntrustedHeaders {
            start: Instant::now(),
            next_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }
}

impl UntrustedHeaders {
    /// A PROXY header from `peer` on `listener` was refused: warn, unless one did recently.
    pub fn refused(&self, listener: &str, peer: PeerAddr) {
        if let Some(held_back) = self.ready() {
            tracing::warn!(
                listener,
                %peer,
                held_back,
                "PROXY header from a peer outside proxy_protocol.trusted, refused: the load balancer \
                 seems to preserve client IP addresses, or `trusted` does not include its addresses \
                 (README \"Behind an AWS NLB\")"
            );
        }
    }

    /// `Some(refusals held back since the last warning)` when one may be written now.
    fn ready(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Relaxed);
        let every = EVERY.as_millis() as u64;
        // One task wins the slot; the others count themselves as held back.
        if now < next
            || self
                .next_ms
                .compare_exchange(next, now.saturating_add(every), Relaxed, Relaxed)
                .is_err()
        {
            self.held_back.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.held_back.swap(0, Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_refusal_warns_then_the_rest_are_held_back_and_counted() {
        let warner = UntrustedHeaders::default();
        assert_eq!(warner.ready(), Some(0));
        assert_eq!(warner.ready(), None);
        assert_eq!(warner.ready(), None);
        // As if EVERY had passed: the next warning reports the two held back.
        warner.next_ms.store(0, Relaxed);
        assert_eq!(warner.ready(), Some(2));
    }
}
