//! The upstream's side of a postgres listener: before the client's ClientHello is replayed (or
//! a `reencrypt` route's own handshake starts), the proxy asks the upstream for TLS as a
//! PostgreSQL client does — `SSLRequest`, then its one-byte answer, read within a deadline.

use ch_edge_wire::postgres::{self, SslResponse, SSL_REQUEST};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::client::clear_readable;
use crate::runtime::pipeline::relay;

/// Writes `first` (the PROXY header, if any) and `SSLRequest` in one write, then reads the
/// answer until `deadline`. `Err` is the reason the upstream cannot take the ClientHello, for
/// the access log (the connection ends as `upstream_ssl_refused`).
pub async fn request_ssl(
    upstream: &TcpStream,
    mut first: Vec<u8>,
    deadline: Instant,
) -> Result<(), &'static str> {
    first.extend_from_slice(&SSL_REQUEST);
    if relay::write_all(upstream, &first).await.is_err() {
        return Err("writing SSLRequest upstream failed");
    }
    drop(first);
    match tokio::time::timeout_at(deadline, answer(upstream)).await {
        Err(_) => Err("upstream did not answer SSLRequest in time"),
        Ok(result) => result,
    }
}

/// Reads the one-byte answer (two bytes asked for, so a byte sent after `S` in the same
/// segment is seen and refused).
async fn answer(upstream: &TcpStream) -> Result<(), &'static str> {
    let mut buf = [0u8; 2];
    loop {
        if upstream.readable().await.is_err() {
            return Err("reading the SSLRequest answer failed");
        }
        let n = match upstream.try_read(&mut buf) {
            Ok(0) => return Err("upstream closed before answering SSLRequest"),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return Err("reading the SSLRequest answer failed"),
        };
        return match postgres::parse_ssl_response(buf.get(..n).unwrap_or_default()) {
            SslResponse::Accepted => {
                // `S` alone, less than asked: nothing else is queued until our ClientHello is
                // answered, so the relay's first read waits for the event (no EAGAIN).
                clear_readable(upstream);
                Ok(())
            }
            SslResponse::Refused => Err("upstream answered SSLRequest with N (TLS off)"),
            SslResponse::Error => Err("upstream answered SSLRequest with an error"),
            SslResponse::DataAfterAccept => Err("upstream sent data after S"),
            SslResponse::NotPostgres(_) => {
                Err("upstream is not PostgreSQL (bad SSLRequest answer)")
            }
            SslResponse::NeedMore => continue,
        };
    }
}
