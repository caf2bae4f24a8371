//! What a route does with TLS (`tls:`, `upstream_tls:`, `alpn:`): pass it through to the
//! upstream, terminate it here, or terminate it and speak TLS again to the upstream.

use std::path::Path;
use std::sync::Arc;

/// `tls:` of a route (and of `defaults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// The client's TLS goes to the upstream untouched (the ClientHello is only peeked).
    #[default]
    Passthrough,
    /// TLS ends here; plaintext to the upstream (ClickHouse `tcp_port` / `http_port`).
    Terminate,
    /// TLS ends here and a new TLS connection, verified, goes to the upstream.
    Reencrypt,
}

ch_edge_wire::keywords!(TlsMode {
    Passthrough => "passthrough",
    Terminate => "terminate",
    Reencrypt => "reencrypt",
});

impl TlsMode {
    /// Whether the proxy does the client's handshake (and so needs a certificate for it).
    pub fn terminates(self) -> bool {
        self != TlsMode::Passthrough
    }
}

/// `upstream_tls:` of a `reencrypt` route: how the upstream's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UpstreamTls {
    /// PEM file of the CA(s) to trust; `None`: `defaults.upstream_tls.ca`, else the system's
    /// roots. Resolved against the directory of the file it was written in.
    pub ca: Option<Arc<Path>>,
    /// The name the upstream's certificate must carry (and the SNI sent); `None`: the
    /// upstream host connected to.
    pub server_name: Option<Arc<str>>,
}

/// The longest ALPN protocol name (RFC 7301: one length byte).
pub const MAX_ALPN: usize = 255;

/// An `alpn:` entry that is no protocol id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ALPN protocol {protocol:?} must be 1-{MAX_ALPN} bytes")]
pub struct AlpnError {
    pub protocol: String,
}

/// Checks one `alpn:` entry (any protocol id of 1-255 bytes, e.g. `http/1.1`, `h2`).
pub fn check_alpn(protocol: &str) -> Result<(), AlpnError> {
    if protocol.is_empty() || protocol.len() > MAX_ALPN {
        return Err(AlpnError {
            protocol: protocol.into(),
        });
    }
    Ok(())
}
