//! The legs of a connection whose TLS ends here (`tls: terminate`, `tls: reencrypt`).
//!
//! Routing, allowlists and their refusal alerts happen before any of this, on the peeked
//! ClientHello, exactly as for passthrough; [`establish`] then runs the client's handshake
//! (rustls, fed the bytes the preamble already read), connects to the upstream (plaintext on
//! the listener's `upstream_port_plain`, or TLS again, verified), and [`relay`] moves the
//! plaintext both ways. The configurations and the handshake bound come from the live state's
//! [`crate::runtime::tls::Tls`].

mod handshake;
mod io;
mod relay;

pub use handshake::{establish, Live, Routed, Session};
pub use relay::relay;
