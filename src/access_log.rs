//! One structured access-log line and one metric sample per connection.

use std::net::SocketAddr;
use std::sync::Arc;

use metrics::SharedString;
use tokio::time::Instant;

use crate::outcome::Outcome;

/// What we learnt about one connection, filled in phase by phase.
#[derive(Debug)]
pub struct Record {
    pub listener: Arc<str>,
    pub peer: SocketAddr,
    /// The real client: from a trusted PROXY header, else `peer`.
    pub client: Option<SocketAddr>,
    pub proxy_version: Option<u8>,
    pub vpce: Option<Box<str>>,
    /// Held on the heap at its exact size: the record lives as long as the
    /// connection, and an inline 255-byte name would sit in every idle one.
    pub sni: Option<Box<str>>,
    pub ech: bool,
    pub route: Option<Arc<str>>,
    pub upstream: Option<SocketAddr>,
    pub detail: Option<&'static str>,
    pub from_client: u64,
    pub from_upstream: u64,
    pub accepted: Instant,
    pub client_hello_us: Option<u64>,
    pub connect_us: Option<u64>,
}

impl Record {
    pub fn new(listener: Arc<str>, peer: SocketAddr) -> Self {
        Record {
            listener,
            peer,
            client: None,
            proxy_version: None,
            vpce: None,
            sni: None,
            ech: false,
            route: None,
            upstream: None,
            detail: None,
            from_client: 0,
            from_upstream: 0,
            accepted: Instant::now(),
            client_hello_us: None,
            connect_us: None,
        }
    }

    /// Counts the connection and writes its access-log line.
    pub fn finish(&self, outcome: Outcome) {
        let route = match &self.route {
            Some(r) => SharedString::from_shared(r.clone()),
            None => SharedString::const_str(""),
        };
        metrics::counter!(
            crate::metrics::CONNECTIONS,
            "listener" => SharedString::from_shared(self.listener.clone()),
            "route" => route,
            "outcome" => outcome.label(),
        )
        .increment(1);
        let level_is_refusal = !outcome.relayed();
        tracing::info!(
            target: "access",
            listener = &*self.listener,
            peer = %self.peer,
            client = %self.client.unwrap_or(self.peer),
            proxy_version = self.proxy_version,
            vpce = self.vpce.as_deref(),
            sni = self.sni.as_deref(),
            ech = self.ech,
            route = self.route.as_deref(),
            upstream = self.upstream.map(tracing::field::display),
            outcome = outcome.label(),
            refused = level_is_refusal,
            detail = self.detail,
            bytes_from_client = self.from_client,
            bytes_from_upstream = self.from_upstream,
            client_hello_us = self.client_hello_us,
            connect_us = self.connect_us,
            duration_ms = self.accepted.elapsed().as_millis() as u64,
        );
    }
}
