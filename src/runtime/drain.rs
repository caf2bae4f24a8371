//! Counting open connections, enforcing `limits.max_connections`, and the drain on shutdown:
//! readiness off, then wait (bounded) until every connection has closed.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Where the proxy is in its life, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Binding listeners, loading routes.
    Starting,
    /// Listeners accept, routes are loaded.
    Serving,
    /// Shutting down: listeners stopped, open connections finishing.
    Draining,
}

/// Connections accepted and not yet closed, over all listeners.
#[derive(Debug)]
pub struct Drain {
    active: AtomicUsize,
    /// Notified when a connection closes while someone waits for all to close. Notifying takes
    /// the `Notify`'s lock, so closes skip it unless [`Drain::wait`] runs: no lock per connection.
    closed: Notify,
    waiting: AtomicBool,
    phase: AtomicU8,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            active: AtomicUsize::new(0),
            closed: Notify::new(),
            waiting: AtomicBool::new(false),
            phase: AtomicU8::new(Phase::Starting as u8),
        }
    }
}

impl Drain {
    /// Counts one more open connection, unless `limit` are open already (`None`).
    pub fn open(self: &Arc<Self>, limit: usize) -> Option<Open> {
        let before = self.active.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Open(self.clone()))
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Serving,
            _ => Phase::Draining,
        }
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// Waits until no connection is open, at most `deadline`; true if none is.
    pub async fn wait(&self, deadline: Duration) -> bool {
        // SeqCst with the close's decrement and check: either a close sees `waiting`, or this
        // loop sees the count it left.
        self.waiting.store(true, Ordering::SeqCst);
        let all_closed = async {
            loop {
                let closed = self.closed.notified();
                tokio::pin!(closed);
                closed.as_mut().enable();
                if self.active.load(Ordering::SeqCst) == 0 {
                    return;
                }
                closed.await;
            }
        };
        tokio::time::timeout(deadline, all_closed).await.is_ok()
    }
}

/// One open connection; closing it (drop) is counted and wakes the drain.
#[derive(Debug)]
pub struct Open(Arc<Drain>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        if self.0.waiting.load(Ordering::SeqCst) {
            self.0.closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_limits_and_waits_for_the_last_close() {
        let drain = Arc::new(Drain::default());
        let a = drain.open(2).expect("first");
        let b = drain.open(2).expect("second");
        assert!(drain.open(2).is_none(), "over the limit");
        assert_eq!(drain.active(), 2);
        drop(a);
        assert!(!drain.wait(Duration::from_secs(1)).await, "one still open");
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.wait(Duration::from_secs(3600)).await }
        });
        tokio::task::yield_now().await;
        drop(b);
        assert!(waiter.await.unwrap());
        assert_eq!(drain.active(), 0);
        assert_eq!(drain.phase(), Phase::Starting);
        drain.set_phase(Phase::Draining);
        assert_eq!(drain.phase(), Phase::Draining);
    }
}
