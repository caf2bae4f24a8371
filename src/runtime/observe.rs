//! What the runtime reports upwards without knowing who listens: each finished connection,
//! each configuration that went live, and each reload attempt. The surface's access log implements [`Observer`]
//! (formatting, sampling, the log level); tests and benches use [`Silent`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ch_edge_wire::postgres::{ListenerProtocol, Negotiation};
use tokio::time::Instant;

use crate::model::config::{ConfigError, LogConfig};
use crate::model::route::TlsMode;
use crate::runtime::addrs::{ClientAddr, ConnectedAddr, PeerAddr};
use crate::runtime::outcome::Outcome;

/// Told about every connection and every configuration change. Called on the connection's own
/// task, so it must be cheap and must not block.
pub trait Observer: Send + Sync + 'static {
    /// A connection ended, relayed or refused; `record` is what was learnt about it.
    fn connection(&self, record: &Record, outcome: Outcome);

    /// A configuration went live (at start and after each successful reload).
    fn configured(&self, log: &LogConfig);

    /// A reload attempt ended (not startup's); the control plane decided what news it is.
    fn reloaded(&self, reload: &Reloaded<'_>);
}

/// One reload attempt, as the log tells it.
#[derive(Debug, Clone, Copy)]
pub struct Reloaded<'a> {
    /// The generation live after it.
    pub generation: u64,
    /// `ok`, `unchanged` or `error`: the `result` label of the metrics.
    pub result: &'static str,
    /// What started it: `watch`, `signal`, `timer`, `discovery`.
    pub trigger: &'static str,
    pub news: ReloadNews<'a>,
}

/// What a reload attempt is news of.
#[derive(Debug, Clone, Copy)]
pub enum ReloadNews<'a> {
    /// A new generation is live, from the configuration hashing as `config_hash`.
    Live {
        config_hash: u64,
        routes: usize,
        took: Duration,
    },
    /// Refused; the running configuration stays.
    Refused {
        error: &'a ConfigError,
        took: Duration,
    },
    /// The files equal the running configuration again after a refusal.
    Recovered { config_hash: u64 },
    /// Nothing new (`successful`: no refusal stands); worth an answer at info only when an
    /// operator `asked` (SIGHUP).
    Unchanged { asked: bool, successful: bool },
}

/// Discards everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Observer for Silent {
    fn connection(&self, _: &Record, _: Outcome) {}
    fn configured(&self, _: &LogConfig) {}
    fn reloaded(&self, _: &Reloaded<'_>) {}
}

/// What we learnt about one connection, filled in phase by phase.
#[derive(Debug)]
pub struct Record {
    pub listener: Arc<str>,
    pub peer: PeerAddr,
    /// The real client: from a trusted PROXY header, else `peer`.
    pub client: Option<ClientAddr>,
    pub proxy_version: Option<u8>,
    pub vpce: Option<Box<str>>,
    /// Held on the heap at its exact size: the record lives as long as the connection, and an
    /// inline 255-byte name would sit in every idle one.
    pub sni: Option<Box<str>>,
    pub ech: bool,
    pub route: Option<Arc<str>>,
    /// The tag of a sticky name (`<tag>.sticky.<name>`): in the log, never a metric label.
    pub sticky: Option<Box<str>>,
    pub upstream: Option<ConnectedAddr>,
    /// The last upstream address whose connect failed (before a failover, or before giving up).
    pub upstream_failed: Option<ConnectedAddr>,
    pub detail: Option<&'static str>,
    pub from_client: u64,
    pub from_upstream: u64,
    pub accepted: Instant,
    pub client_hello_us: Option<u64>,
    pub connect_us: Option<u64>,
    /// Routes that terminate TLS: how the client's handshake went.
    pub tls: Option<TlsNote>,
    /// The listener's protocol (`postgres` written in the access log; `tls` left out).
    pub protocol: ListenerProtocol,
    /// A `postgres` listener's connection: how the client reached its ClientHello (`None`
    /// before it did, and on a `tls` listener).
    pub postgres: Option<PgStart>,
}

/// How a client on a `postgres` listener came to its ClientHello: what the access log says, and
/// what the legs need (a direct ClientHello is passed through only to a direct-SSL upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgStart {
    pub negotiation: Negotiation,
    /// The ClientHello came without an `SSLRequest` before it (`sslnegotiation=direct`).
    pub direct: bool,
}

/// A terminated connection's TLS, in 8 bytes (the record lives as long as the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsNote {
    pub mode: TlsMode,
    /// 12 or 13 (TLS 1.2, 1.3); 0 before the handshake finished.
    pub version: u8,
    pub handshake_us: u32,
}

impl Record {
    pub fn new(listener: Arc<str>, peer: PeerAddr) -> Self {
        Record {
            listener,
            peer,
            client: None,
            proxy_version: None,
            vpce: None,
            sni: None,
            ech: false,
            route: None,
            sticky: None,
            upstream: None,
            upstream_failed: None,
            detail: None,
            from_client: 0,
            from_upstream: 0,
            accepted: Instant::now(),
            client_hello_us: None,
            connect_us: None,
            tls: None,
            protocol: ListenerProtocol::Tls,
            postgres: None,
        }
    }

    /// The client as far as it is known: the real one once the preamble named it, the TCP
    /// peer for a connection refused before.
    pub fn client_or_peer(&self) -> SocketAddr {
        self.client.map_or(self.peer.0, |c| c.0)
    }
}
