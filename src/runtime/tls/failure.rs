//! Why a handshake failed, in a few words that label metrics (`result`) and fill the access
//! log's `detail`: a bounded set, whatever the peer sends.

use std::io;

use rustls::{AlertDescription, CertificateError, Error};

/// Which handshake: the client's with us, or ours with the upstream (`reencrypt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

ch_edge_wire::keywords!(Side {
    Client => "client",
    Upstream => "upstream",
});

/// A handshake's end other than success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not finished within the deadline (`timeouts.client_hello` for the client,
    /// `timeouts.connect` for the upstream).
    Timeout,
    /// Too many handshakes in flight (`tls.max_handshakes`) for longer than a brief wait.
    Busy,
    /// The peer closed or reset the connection.
    Closed,
    /// The peer refused us with an alert (a client that does not trust our certificate).
    PeerAlert,
    /// No version, cipher suite or signature scheme in common.
    Incompatible,
    /// The peer's certificate is not trusted or not for the name (upstream side).
    BadCertificate,
    /// Malformed or unexpected messages.
    Protocol,
    /// A socket error.
    Io,
}

ch_edge_wire::keywords!(Failure {
    Timeout => "timeout",
    Busy => "busy",
    Closed => "closed",
    PeerAlert => "peer_alert",
    Incompatible => "incompatible",
    BadCertificate => "bad_certificate",
    Protocol => "protocol_error",
    Io => "io_error",
});

impl Failure {
    /// What a failed handshake's error says.
    pub fn of(error: &io::Error) -> Failure {
        match error.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
            Some(Error::AlertReceived(_)) => Failure::PeerAlert,
            Some(Error::PeerIncompatible(_)) => Failure::Incompatible,
            Some(Error::InvalidCertificate(_) | Error::NoCertificatesPresented) => {
                Failure::BadCertificate
            }
            Some(_) => Failure::Protocol,
            None => match error.kind() {
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => Failure::Closed,
                _ => Failure::Io,
            },
        }
    }

    /// The access log's `detail`, naming the most telling alerts and certificate errors.
    pub fn detail(error: Option<&io::Error>, side: Side, failure: Failure) -> &'static str {
        let rustls = error.and_then(|e| e.get_ref()?.downcast_ref::<Error>());
        match (side, rustls) {
            (_, Some(Error::AlertReceived(alert))) => match alert {
                AlertDescription::BadCertificate => "tls handshake: peer alert bad_certificate",
                AlertDescription::UnknownCA => "tls handshake: peer alert unknown_ca",
                AlertDescription::CertificateUnknown => {
                    "tls handshake: peer alert certificate_unknown"
                }
                AlertDescription::CertificateExpired => {
                    "tls handshake: peer alert certificate_expired"
                }
                AlertDescription::HandshakeFailure => "tls handshake: peer alert handshake_failure",
                AlertDescription::ProtocolVersion => "tls handshake: peer alert protocol_version",
                _ => "tls handshake: peer alert",
            },
            (_, Some(Error::InvalidCertificate(e))) => match e {
                CertificateError::UnknownIssuer => "upstream tls: certificate from an unknown CA",
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "upstream tls: certificate not valid for the server name"
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "upstream tls: certificate expired"
                }
                _ => "upstream tls: invalid certificate",
            },
            (Side::Client, _) => match failure {
                Failure::Timeout => "tls handshake: timeout",
                Failure::Busy => "tls handshake: too many in flight",
                Failure::Closed => "tls handshake: client closed",
                Failure::PeerAlert => "tls handshake: peer alert",
                Failure::Incompatible => "tls handshake: nothing in common with the client",
                Failure::BadCertificate => "tls handshake: bad certificate",
                Failure::Protocol => "tls handshake: protocol error",
                Failure::Io => "tls handshake: socket error",
            },
            (Side::Upstream, _) => match failure {
                Failure::Timeout => "upstream tls: timeout",
                Failure::Busy => "upstream tls: busy",
                Failure::Closed => "upstream tls: upstream closed",
                Failure::PeerAlert => "upstream tls: upstream alert",
                Failure::Incompatible => "upstream tls: nothing in common with the upstream",
                Failure::BadCertificate => "upstream tls: invalid certificate",
                Failure::Protocol => "upstream tls: protocol error",
                Failure::Io => "upstream tls: socket error",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_a_few_reasons() {
        let tls = |e: Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let alert = tls(Error::AlertReceived(AlertDescription::UnknownCA));
        assert_eq!(Failure::of(&alert), Failure::PeerAlert);
        assert_eq!(
            Failure::detail(Some(&alert), Side::Client, Failure::PeerAlert),
            "tls handshake: peer alert unknown_ca"
        );
        let cert = tls(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        assert_eq!(Failure::of(&cert), Failure::BadCertificate);
        assert_eq!(
            Failure::detail(Some(&cert), Side::Upstream, Failure::BadCertificate),
            "upstream tls: certificate from an unknown CA"
        );
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(Failure::of(&eof), Failure::Closed);
        let junk = tls(Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ));
        assert_eq!(Failure::of(&junk), Failure::Protocol);
        assert_eq!(
            Failure::detail(None, Side::Client, Failure::Timeout),
            "tls handshake: timeout"
        );
    }
}
