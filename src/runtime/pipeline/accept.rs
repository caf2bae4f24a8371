//! Accept phase: accept connections, enforce the connection limit, and hand each connection
//! to the pipeline.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::runtime::addrs::PeerAddr;
use crate::runtime::meters;
use crate::runtime::pipeline::connection;
use crate::runtime::pipeline::context::{Context, ListenerCtx};

/// Back-off bounds when accept fails for lack of resources (EMFILE…).
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What an accept loop does after `accept()` failed, shared by the data listeners and the
/// admin endpoint: a resource shortage (EMFILE…) waits, doubling from 5 ms to 1 s, instead of
/// spinning, which would burn a core and starve the connections that would free descriptors.
/// At most one warning per wait, so the log stays bounded too.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// An accept succeeded: the next shortage starts from the shortest wait again.
    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    /// Logs `error` of `listener`'s accept and, on a resource shortage, waits.
    pub async fn failed(&mut self, listener: &str, error: &io::Error) {
        if is_resource_exhaustion(error) {
            tracing::warn!(listener, %error, backoff_ms = self.next.as_millis() as u64, "accept failed; backing off");
            tokio::time::sleep(self.next).await;
            self.next = (self.next * 2).min(BACKOFF_MAX);
        } else {
            tracing::debug!(listener, %error, "accept error");
        }
    }
}

/// Accepts until `stop` turns true (drain, or a reload removed the listener). `slot` is read
/// per connection, so a reload that changes the listener's name, PROXY policy or upstream port
/// applies to new connections without touching the socket.
pub async fn run(
    listener: TcpListener,
    slot: Arc<ArcSwap<ListenerCtx>>,
    ctx: Arc<Context>,
    mut stop: watch::Receiver<bool>,
) {
    // Exported from the start, at 0, so rates and alerts see the series before the first error.
    let name = metrics::SharedString::from_shared(slot.load().name.clone());
    metrics::counter!(meters::ACCEPT_ERRORS, "listener" => name).increment(0);
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let listener_ctx = slot.load_full();
        match accepted {
            Ok((stream, peer)) => {
                let peer = PeerAddr(peer);
                backoff.reset();
                let Some(open) = ctx.open() else {
                    // Over the limit: close at once (no reset storm, no queueing).
                    drop(stream);
                    ctx.over_limit(&listener_ctx, peer);
                    continue;
                };
                // Boxed: tokio moves a spawned future several times on its way into the task,
                // and a connection's is about 2 KiB.
                tokio::spawn(Box::pin(connection::handle(
                    stream,
                    peer,
                    listener_ctx,
                    ctx.clone(),
                    open,
                )));
            }
            Err(error) => {
                let name = metrics::SharedString::from_shared(listener_ctx.name.clone());
                metrics::counter!(meters::ACCEPT_ERRORS, "listener" => name).increment(1);
                backoff.failed(&listener_ctx.name, &error).await;
            }
        }
    }
    // Closed before saying so: whoever reads the line may rely on it.
    drop(listener);
    tracing::info!(listener = %slot.load().name, active = ctx.active(), "listener stopped accepting");
}

fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
