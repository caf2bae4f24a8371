//! TLS alerts we send when refusing a ClientHello, so the client sees why.
//!
//! The alert goes out as a plaintext record before any ServerHello (also on routes that
//! terminate TLS: routing and refusals come first), which every TLS version allows
//! (RFC 8446 §6).

/// The alert descriptions the proxy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Alert {
    /// Allowlist refused the real client address.
    AccessDenied = 49,
    /// The ClientHello could not be parsed.
    DecodeError = 50,
    /// ClientHello without SNI and no `*` route (RFC 8446 §9.2).
    MissingExtension = 109,
    /// SNI names no route.
    UnrecognizedName = 112,
    /// The proxy cannot take the handshake now (too many in flight).
    InternalError = 80,
}

/// A fatal alert record: content type 21, legacy version TLS 1.2, length 2.
pub fn record(alert: Alert) -> [u8; 7] {
    [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, alert as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_record_bytes() {
        assert_eq!(
            record(Alert::UnrecognizedName),
            [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112]
        );
        assert_eq!(record(Alert::MissingExtension)[6], 109);
        assert_eq!(record(Alert::AccessDenied)[6], 49);
    }
}
