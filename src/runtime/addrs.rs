//! The roles a socket address plays in a connection, each its own type (in the style of
//! linkerd2-proxy's `addrs.rs`), so that passing the TCP peer where the real client is meant —
//! or an upstream where either is — does not compile.
//!
//! Each wraps a `SocketAddr` (`.0`), reads as one (`Deref`: `.ip()`, `.port()`), prints and
//! parses as one. The one place a role becomes another is [`ClientAddr::of`]: the client
//! is the peer unless a PROXY header names another.
//!
//! The upstream as configured is `model::route::UpstreamAddr` (a `host[:port]` spec); the
//! socket address it resolved to and was connected is [`ConnectedAddr`].
//!
//! ```compile_fail
//! use ch_edge_proxy::runtime::addrs::{ClientAddr, PeerAddr};
//! fn allowed(_client: ClientAddr) {}
//! allowed(PeerAddr("127.0.0.1:1".parse().unwrap())); // the peer is not the client
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::str::FromStr;

use ch_edge_wire::proxy_in::canonical;

macro_rules! addr {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub SocketAddr);

        impl Deref for $name {
            type Target = SocketAddr;

            fn deref(&self) -> &SocketAddr {
                &self.0
            }
        }

        impl From<$name> for SocketAddr {
            fn from($name(addr): $name) -> SocketAddr {
                addr
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = std::net::AddrParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

addr!(
    /// The TCP peer of an accepted connection: the client itself, or the load balancer in
    /// front of it.
    PeerAddr
);

addr!(
    /// The real client: as a trusted PROXY header says, else the TCP peer (canonical: an
    /// IPv4-mapped IPv6 address as IPv4). Allowlists and per-client limits apply to it.
    ClientAddr
);

addr!(
    /// The address the client connected to: as the PROXY header says, else ours. What the
    /// PROXY header out gives as the destination.
    LocalAddr
);

addr!(
    /// An upstream socket address a connection was made to (or tried).
    ConnectedAddr
);

impl ClientAddr {
    /// The client of a connection from `peer`: the source its PROXY header gives (`source`:
    /// none without a header, or with one that names no addresses), else the peer itself.
    pub fn of(peer: PeerAddr, source: Option<SocketAddr>) -> Self {
        ClientAddr(canonical(source.unwrap_or(peer.0)))
    }
}
