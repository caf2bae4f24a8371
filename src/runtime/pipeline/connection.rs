//! One connection, top to bottom — the pipeline's table of contents:
//! route ([`routing`]: PROXY in → ClientHello → per-client limits → route → allow) →
//! connect (a leg: [`passthrough`], or [`terminated`] for a route that ends TLS here) →
//! relay ([`session`], or the terminated leg's) → the end, reported once.
//!
//! Each step hands the next one a value ([`Routed`], then [`Established`]) or ends the
//! connection [`Refused`]; `handle` turns that into one access-log line and one metric sample.

use std::sync::Arc;

use tokio::net::TcpStream;

use crate::runtime::addrs::PeerAddr;
use crate::runtime::drain::Open;
use crate::runtime::observe::Record;
use crate::runtime::pipeline::context::{At, Context, ListenerCtx, Served};
use crate::runtime::pipeline::relay::Progress;
use crate::runtime::pipeline::routing::{self, Established, Refused};
use crate::runtime::pipeline::session::{self, Session};
use crate::runtime::pipeline::{passthrough, terminated};

/// Serves one accepted connection to the end.
pub async fn handle(
    stream: TcpStream,
    peer: PeerAddr,
    listener: Arc<ListenerCtx>,
    ctx: Arc<Context>,
    open: Open,
) {
    let mut record = Record::new(listener.name.clone(), peer);
    let state = ctx.live.load();
    let idle = state.timeouts.idle;
    let at = At {
        listener: &listener,
        state: &state,
        ctx: &ctx,
    };
    // Inline, not boxed: its state (2.6 KiB; a terminating route's handshake is boxed
    // apart) shares the task's storage with the relay's, which comes after it, and its
    // buffers are freed when it returns. A quiet connection parks and gives the whole task
    // up, so an idle connection holds none of it. The config snapshot is released here
    // too, so old route tables do not outlive a reload.
    let established = establish(&stream, peer, at, &mut record).await;
    drop(state);
    let Established {
        legs,
        route,
        lease,
        admitted,
    } = match established {
        Ok(established) => established,
        Err(Refused { outcome, route }) => {
            drop(stream);
            ctx.finish(&listener, route.as_deref(), &record, outcome);
            drop(open);
            return;
        }
    };
    // The ClientHello's bytes, already relayed (none where TLS ends here: the handshake took
    // them). Counted before the session is made, which nothing here borrows: a borrowed local
    // would stay in the task's state for the whole relay.
    let (from_client, _) = route.meters.bytes(&route.name);
    from_client.increment(record.from_client);
    let live = ctx.registry.register(&record);
    let session = Session {
        host: Served { listener, ctx },
        route,
        record,
        progress: Progress::start(),
        idle,
        held: (open, lease, admitted),
        live,
    };
    match legs {
        Legs::Plain(upstream) => session::relay(stream, upstream, session).await,
        Legs::Tls(streams) => {
            // In a task of its own, sized for it: this one, sized for a passthrough relay, is
            // freed now (the next connection's task takes its place), not when the connection
            // parks or ends. Same worker: its sockets are registered with this reactor.
            tokio::spawn(terminated::relay(stream, *streams, session));
        }
    }
}

/// The two sockets' sides of a connection ready to relay.
enum Legs {
    /// Passthrough: the upstream with the client's first bytes already written to it.
    Plain(TcpStream),
    /// TLS terminated here, the upstream connected.
    Tls(Box<terminated::Streams>),
}

/// Route, then connect by the route's leg.
async fn establish(
    stream: &TcpStream,
    peer: PeerAddr,
    at: At<'_>,
    record: &mut Record,
) -> Result<Established<Legs>, Refused> {
    let routed = routing::route(stream, peer, at, record).await?;
    if routed.route.tls.terminates() {
        // Boxed on its own: the handshake's state is several KiB, and inline it would make
        // every passthrough connection allocate and copy that much too.
        let established = Box::pin(terminated::connect(stream, routed, at, record)).await?;
        Ok(established.map(|streams| Legs::Tls(Box::new(streams))))
    } else {
        let established = passthrough::connect(stream, routed, at, record).await?;
        Ok(established.map(Legs::Plain))
    }
}
