//! Refusing a client before its TLS is ours: a fatal alert, then a bounded wait for the client
//! to close first.

use std::time::Duration;

use ch_edge_wire::tls_alert::{self, Alert};
use tokio::net::TcpStream;

use crate::runtime::pipeline::relay;

/// After a refusal alert, how long we wait for the client to close first.
/// Closing with unread input would send RST, which can destroy the alert
/// before the client reads it.
const ALERT_LINGER: Duration = Duration::from_secs(1);

/// What a passthrough client is told when no upstream could take its connection. Nothing has
/// reached it yet (no ServerHello), so a plaintext alert record is still valid. `internal_error`
/// (80) and not `handshake_failure` (40): the fault is on the server's side and unrelated to
/// what the client offered, so it should not make the client retry with other parameters
/// (RFC 8446 §6.2). A bare close would look like a network fault.
pub const UPSTREAM_DOWN: Alert = Alert::InternalError;

/// Sends a fatal alert, half-closes, and waits (bounded) for the client to
/// close so the alert is not lost to a reset.
pub async fn with_alert(stream: &TcpStream, alert: Alert) {
    with_bytes(stream, &tls_alert::record(alert)).await;
}

/// Sends `message` (an alert, a PostgreSQL `ErrorResponse`), half-closes, and waits (bounded)
/// for the client to close so the message is not lost to a reset.
pub async fn with_bytes(stream: &TcpStream, message: &[u8]) {
    let linger = async {
        relay::write_all(stream, message).await?;
        socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write)?;
        let mut sink = [0u8; 512];
        let mut budget = 64 * 1024usize;
        loop {
            stream.readable().await?;
            match stream.try_read(&mut sink) {
                Ok(0) => return Ok(()),
                Ok(n) if n >= budget => return Ok(()),
                Ok(n) => budget -= n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    };
    let _: Result<std::io::Result<()>, _> = tokio::time::timeout(ALERT_LINGER, linger).await;
}
