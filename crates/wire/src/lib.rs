//! The wire layer of ch-edge-proxy: pure functions over the bytes and names that cross the
//! network. Nothing here does I/O, knows the configuration, or needs an async runtime, so every
//! parser can be tested on every prefix of real input and fuzzed (`fuzz/`) on its own.
//!
//! - [`client_hello`]: the TLS ClientHello → SNI (hand-written: rustls cannot hand back the bytes
//!   it consumed, and passthrough must replay them);
//! - [`proxy_in`]: the PROXY v1/v2 header sent to us, and the trust policy ([`proxy_in::ProxyInMode`]);
//! - [`proxy_out`]: the PROXY header we send upstream ([`proxy_out::ProxyVersion`]);
//! - [`postgres`]: the PostgreSQL wire start on a `protocol: postgres` listener (`SSLRequest`,
//!   `GSSENCRequest`, direct TLS, plaintext starts), its one-byte answers and `ErrorResponse`,
//!   the proxy's own `SSLRequest` upstream and the answer to it ([`postgres::ListenerProtocol`],
//!   [`postgres::Negotiation`]);
//! - [`tls_alert`]: the alert records refusals send;
//! - [`sni`]: host names and SNI patterns (syntax, normal form, the lookup key);
//! - [`keyword`]: the one spelling of each keyword value (`FromStr` + `Display`).
//!
//! Layers above (model, runtime, surface, in the `ch-edge-proxy` crate) use these; nothing here
//! uses them, which Cargo itself enforces.

pub mod client_hello;
pub mod keyword;
pub mod postgres;
pub mod proxy_in;
pub mod proxy_out;
pub mod sni;
pub mod tls_alert;
