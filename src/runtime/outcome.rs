//! How a connection ended: one label per outcome (its `keyword()`), for metrics and the access
//! log.

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
    /// Over a per-client limit (`limits.per_client`): TLS alert `access_denied`.
    ClientOverLimit,
    /// PROXY v2 LOCAL (NLB health check): closed quietly.
    HealthCheck,
    /// A PROXY header from a peer outside `trusted` (logged with a hint, rate-limited: the sign
    /// of a load balancer that preserves client addresses).
    ProxyUntrusted,
    /// Mode `required`, a peer outside `trusted` and no PROXY header: a direct connection.
    UntrustedDirect,
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
    /// A terminating route's handshake found no free slot (`tls.max_handshakes`) in time:
    /// TLS alert `internal_error`.
    TlsBusy,
    /// A terminating route's handshake with the client failed (reason in `detail`).
    TlsHandshakeFailed,
    /// A reencrypting route's handshake with the upstream failed (reason in `detail`).
    UpstreamTlsFailed,
    /// A `postgres` listener: a plaintext `StartupMessage` or `CancelRequest`, refused with a
    /// PostgreSQL `ErrorResponse` ("SSL required", SQLSTATE 28000).
    PostgresPlaintext,
    /// A `postgres` listener: the first bytes are no PostgreSQL start (closed).
    NotPostgres,
    /// A direct-SSL PostgreSQL client routed to a passthrough route whose upstream does not take
    /// direct SSL (`postgres_direct_ssl` off): TLS alert `internal_error`.
    PostgresDirectUnsupported,
    /// A `postgres` listener: the upstream did not answer the proxy's `SSLRequest` with `S`
    /// (reason in `detail`): TLS alert `internal_error`.
    UpstreamSslRefused,
}

ch_edge_wire::keywords!(Outcome {
    Relayed => "relayed",
    IdleTimeout => "idle_timeout",
    RelayError => "relay_error",
    Drained => "drained",
    OverLimit => "over_limit",
    ClientOverLimit => "client_over_limit",
    HealthCheck => "health_check",
    ProxyUntrusted => "proxy_untrusted",
    UntrustedDirect => "untrusted_direct",
    ProxyMissing => "proxy_missing",
    ProxyInvalid => "proxy_invalid",
    NotTls => "not_tls",
    BadClientHello => "bad_client_hello",
    ClientHelloTimeout => "client_hello_timeout",
    ClientClosedEarly => "client_closed_early",
    UnknownSni => "unknown_sni",
    NoSni => "no_sni",
    AccessDenied => "access_denied",
    UpstreamUnavailable => "upstream_unavailable",
    UpstreamWriteFailed => "upstream_write_failed",
    TlsBusy => "tls_busy",
    TlsHandshakeFailed => "tls_handshake_failed",
    UpstreamTlsFailed => "upstream_tls_failed",
    PostgresPlaintext => "postgres_plaintext",
    NotPostgres => "not_postgres",
    PostgresDirectUnsupported => "postgres_direct_unsupported",
    UpstreamSslRefused => "upstream_ssl_refused",
});

impl Outcome {
    /// Whether the connection was relayed at all (as opposed to refused).
    pub fn relayed(self) -> bool {
        matches!(
            self,
            Outcome::Relayed | Outcome::IdleTimeout | Outcome::RelayError | Outcome::Drained
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_follow_the_variants_in_order() {
        // The access log indexes per-outcome state by `outcome as usize`.
        for (i, word) in Outcome::KEYWORDS.iter().enumerate() {
            assert_eq!(word.parse::<Outcome>().map(|o| o as usize), Ok(i), "{word}");
        }
    }
}
