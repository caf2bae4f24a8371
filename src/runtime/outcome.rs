//! How a connection ended: one label per outcome, for metrics and the access log.

/// The outcome of one connection. Every refusal has its own variant so that
/// metrics and logs say exactly why a client was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Relayed until both sides were done.
    Relayed,
    /// Relayed, then closed after `timeouts.idle` without a byte either way.
    IdleTimeout,
    /// Relayed, then a socket error on either side.
    RelayError,
    /// Closed when the drain deadline passed on shutdown.
    Drained,
    /// Over `limits.max_connections`: closed at accept.
    OverLimit,
    /// PROXY v2 LOCAL (NLB health check): closed quietly.
    HealthCheck,
    /// A PROXY header from a peer outside `trusted`, or mode `required` and peer untrusted.
    ProxyUntrusted,
    /// Mode `required` and no header.
    ProxyMissing,
    /// A malformed PROXY header.
    ProxyInvalid,
    /// The first bytes are not TLS.
    NotTls,
    /// A malformed or oversized ClientHello.
    BadClientHello,
    /// PROXY header + ClientHello did not arrive within `timeouts.client_hello`.
    ClientHelloTimeout,
    /// The client closed (or reset) before a complete ClientHello.
    ClientClosedEarly,
    /// SNI matches no route.
    UnknownSni,
    /// No SNI and no `*` route.
    NoSni,
    /// The real client address is outside the route's allowlist.
    AccessDenied,
    /// No upstream address accepted a connection within `timeouts.connect`.
    UpstreamUnavailable,
    /// Writing the PROXY header / ClientHello to the upstream failed.
    UpstreamWriteFailed,
}

impl Outcome {
    /// The `outcome` label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Relayed => "relayed",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::RelayError => "relay_error",
            Outcome::Drained => "drained",
            Outcome::OverLimit => "over_limit",
            Outcome::HealthCheck => "health_check",
            Outcome::ProxyUntrusted => "proxy_untrusted",
            Outcome::ProxyMissing => "proxy_missing",
            Outcome::ProxyInvalid => "proxy_invalid",
            Outcome::NotTls => "not_tls",
            Outcome::BadClientHello => "bad_client_hello",
            Outcome::ClientHelloTimeout => "client_hello_timeout",
            Outcome::ClientClosedEarly => "client_closed_early",
            Outcome::UnknownSni => "unknown_sni",
            Outcome::NoSni => "no_sni",
            Outcome::AccessDenied => "access_denied",
            Outcome::UpstreamUnavailable => "upstream_unavailable",
            Outcome::UpstreamWriteFailed => "upstream_write_failed",
        }
    }

    /// Whether the connection was relayed at all (as opposed to refused).
    pub fn relayed(self) -> bool {
        matches!(
            self,
            Outcome::Relayed | Outcome::IdleTimeout | Outcome::RelayError | Outcome::Drained
        )
    }
}
