//! The client's side of a postgres listener: the PostgreSQL wire start read after the PROXY
//! header and before the ClientHello, inside the preamble's read and its deadline.
//!
//! `SSLRequest` is answered `S` and its 8 bytes dropped, so the buffer holds the ClientHello
//! next as on a `tls` listener; `GSSENCRequest` is answered `N` (at most once) and the next start
//! read; a direct TLS start is left as it is. A plaintext `StartupMessage` or `CancelRequest`, and
//! anything else, refuse the connection (the caller sends the `ErrorResponse`,
//! [`error_response`]).

use ch_edge_wire::postgres::{self, Negotiation, Start, ACCEPT, REFUSE, SSL_REQUIRED};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::runtime::observe::PgStart;
use crate::runtime::outcome::Outcome;
use crate::runtime::pipeline::relay;

/// The start's state on one connection.
#[derive(Debug, Default)]
pub struct Negotiator {
    /// A `GSSENCRequest` was refused already.
    gssenc: bool,
    /// Set once the ClientHello's bytes are next in the buffer.
    done: Option<PgStart>,
}

/// What [`Negotiator::step`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The ClientHello starts at the buffer's `start`: parse it.
    Ready,
    /// Read more.
    More,
    /// Refuse the connection: how it ends, and why (for the log).
    Refuse(Outcome, &'static str),
}

impl Negotiator {
    /// How the client reached its ClientHello, once it has.
    pub fn start(&self) -> Option<PgStart> {
        self.done
    }

    /// Whether the ClientHello is next (or there is no start to read).
    pub fn ready(&self) -> bool {
        self.done.is_some()
    }

    /// Reads the start in `buf[start..]` (everything after the PROXY header), answering the
    /// requests on `stream` and dropping their bytes from `buf`. `drained`: the last read left
    /// the socket's receive queue empty.
    pub async fn step(
        &mut self,
        stream: &TcpStream,
        buf: &mut Vec<u8>,
        start: usize,
        drained: bool,
    ) -> Step {
        loop {
            if self.done.is_some() {
                return Step::Ready;
            }
            let rest = buf.get(start..).unwrap_or_default();
            let parsed = postgres::parse(rest);
            match parsed {
                Start::NeedMore => return Step::More,
                Start::SslRequest | Start::GssEncRequest => {
                    // A client waits for the answer before it sends more; bytes sent early
                    // could be taken for the encrypted stream (CVE-2021-23214).
                    if rest.len() > postgres::SSL_REQUEST.len() {
                        return Step::Refuse(Outcome::NotPostgres, "data before the answer");
                    }
                    let gssenc = parsed == Start::GssEncRequest;
                    if gssenc && self.gssenc {
                        return Step::Refuse(Outcome::NotPostgres, "second GSSENCRequest");
                    }
                    // The request is all that was read, and the read left the socket empty: a
                    // client sends nothing more before our answer, so say so before answering
                    // (after, its next bytes could already have come and their event be lost),
                    // and the next read waits for that event instead of costing an EAGAIN.
                    if drained {
                        clear_readable(stream);
                    }
                    let answer: &[u8] = if gssenc { REFUSE } else { ACCEPT };
                    if relay::write_all(stream, answer).await.is_err() {
                        return Step::Refuse(Outcome::ClientClosedEarly, "write error");
                    }
                    buf.truncate(start);
                    if gssenc {
                        self.gssenc = true;
                    } else {
                        self.finish(parsed, false);
                    }
                }
                Start::DirectTls => self.finish(parsed, true),
                Start::Startup { .. } => {
                    return Step::Refuse(Outcome::PostgresPlaintext, "plaintext startup")
                }
                Start::CancelRequest { .. } => {
                    return Step::Refuse(Outcome::PostgresPlaintext, "plaintext cancel request")
                }
                Start::NotPostgres(why) => return Step::Refuse(Outcome::NotPostgres, why),
            }
        }
    }

    fn finish(&mut self, start: Start, direct: bool) {
        self.done = Negotiation::of(start, self.gssenc).map(|negotiation| PgStart {
            negotiation,
            direct,
        });
    }
}

/// What a plaintext client is told before the connection closes: FATAL, SQLSTATE 28000,
/// "SSL required …" (libpq shows it after `FATAL:`).
pub fn error_response() -> Vec<u8> {
    postgres::error_response(SSL_REQUIRED)
}

/// Tells tokio that `stream` has nothing to read now (the last read left its queue empty), so
/// the next read waits for the next event instead of costing a read that returns EAGAIN. Data
/// that arrives later raises a new event; it is not lost. (As the preamble does after the
/// ClientHello.) Only safe while the peer sends nothing before it hears from us.
pub(super) fn clear_readable(stream: &TcpStream) {
    let _ = stream.try_io(Interest::READABLE, || {
        Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
    });
}
