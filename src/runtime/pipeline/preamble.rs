//! Phase 1 of a connection: read the PROXY header (if any) and the whole
//! TLS ClientHello into one buffer, which is later replayed to the upstream.
//!
//! The caller bounds this with `timeouts.client_hello`; the buffer is bounded
//! by the parsers' own limits, so a peer can make us hold at most
//! [`MAX_PREAMBLE`] bytes for at most that long.

use tokio::io::Interest;
use tokio::net::TcpStream;

use ch_edge_wire::client_hello::{self, ClientHello, Peek};
use ch_edge_wire::proxy_in::{self, Decision, ProxyHeader, ProxyInMode, Refusal};

use crate::runtime::outcome::Outcome;
use crate::runtime::pipeline::postgres::client::{Negotiator, Step};

/// PROXY header and ClientHello together never need more than this.
pub const MAX_PREAMBLE: usize = proxy_in::MAX_HEADER_LEN + client_hello::MAX_BUFFER;

/// Enough for a PROXY v2 header plus a post-quantum ClientHello in one read.
const INITIAL_CAPACITY: usize = 2048;

/// Everything read before routing.
#[derive(Debug)]
pub struct Preamble {
    /// Every byte read so far: PROXY header, ClientHello, anything after it.
    pub buf: Vec<u8>,
    pub header: Option<ProxyHeader>,
    /// Where the TLS bytes start in `buf` (after the PROXY header).
    pub tls_start: usize,
    pub hello: ClientHello,
}

impl Preamble {
    /// The bytes to replay to the upstream: the ClientHello and anything
    /// the client sent after it, without the PROXY header we consumed.
    pub fn tls_bytes(&self) -> &[u8] {
        self.buf.get(self.tls_start..).unwrap_or_default()
    }
}

/// Why the preamble was refused, with what was learnt before.
#[derive(Debug)]
pub struct Refused {
    pub outcome: Outcome,
    pub detail: &'static str,
    pub header: Option<ProxyHeader>,
}

fn refused(outcome: Outcome, detail: &'static str, header: Option<ProxyHeader>) -> Refused {
    Refused {
        outcome,
        detail,
        header,
    }
}

/// Reads until the PROXY policy and the ClientHello parser both have an answer. On a `postgres`
/// listener `postgres` reads the PostgreSQL start between them (answering it on `stream`).
pub async fn read(
    stream: &TcpStream,
    mode: ProxyInMode,
    peer_trusted: bool,
    mut postgres: Option<&mut Negotiator>,
) -> Result<Preamble, Refused> {
    let mut buf: Vec<u8> = Vec::new();
    let mut header: Option<ProxyHeader> = None;
    let mut tls_start: Option<usize> = None;
    let mut hello_parser = client_hello::Parser::default();
    // Whether the last read left the socket's receive queue empty (it returned less than asked).
    let mut drained = false;
    loop {
        if tls_start.is_none() {
            match proxy_in::decide(mode, peer_trusted, &buf) {
                Decision::Incomplete => {}
                Decision::NoHeader => tls_start = Some(0),
                Decision::Header(h) => {
                    if h.local {
                        return Err(refused(Outcome::HealthCheck, "proxy v2 local", Some(h)));
                    }
                    tls_start = Some(h.len);
                    header = Some(h);
                }
                Decision::Refuse(r) => {
                    let outcome = match r {
                        Refusal::UntrustedPeer => Outcome::ProxyUntrusted,
                        Refusal::UntrustedDirect => Outcome::UntrustedDirect,
                        Refusal::Missing => Outcome::ProxyMissing,
                        Refusal::Invalid(_) => Outcome::ProxyInvalid,
                    };
                    let detail = match r {
                        Refusal::Invalid(why) => why,
                        _ => outcome.keyword(),
                    };
                    return Err(refused(outcome, detail, None));
                }
            }
        }
        if let (Some(start), Some(pg)) = (tls_start, postgres.as_deref_mut()) {
            if let Step::Refuse(outcome, detail) = pg.step(stream, &mut buf, start, drained).await {
                return Err(refused(outcome, detail, header));
            }
        }
        let hello_next = postgres.as_ref().is_none_or(|pg| pg.ready());
        if let Some(start) = tls_start.filter(|_| hello_next) {
            match hello_parser.parse(buf.get(start..).unwrap_or_default()) {
                Peek::Incomplete => {}
                Peek::NotTls => return Err(refused(Outcome::NotTls, "not tls", header)),
                Peek::Malformed(why) => return Err(refused(Outcome::BadClientHello, why, header)),
                Peek::Hello(hello) => {
                    if drained {
                        // Nothing is left to read: tell tokio, so the relay's first read waits
                        // for the next event instead of costing a read that returns EAGAIN.
                        // (Data that arrives meanwhile raises a new event; it is not lost.)
                        let _ = stream.try_io(Interest::READABLE, || {
                            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
                        });
                    }
                    return Ok(Preamble {
                        buf,
                        header,
                        tls_start: start,
                        hello,
                    });
                }
            }
        }
        if buf.len() >= MAX_PREAMBLE {
            // The parsers promise an answer before this; never read without bound.
            return Err(refused(
                Outcome::BadClientHello,
                "preamble too large",
                header,
            ));
        }
        // Wait for readiness before the first allocation, so a silent
        // connection costs no buffer.
        if stream.readable().await.is_err() {
            return Err(refused(Outcome::ClientClosedEarly, "read error", header));
        }
        if buf.capacity() == buf.len() {
            // Grow geometrically but never past the bound; len < MAX here,
            // so there is always spare room and a 0-byte read means EOF.
            let want = (buf.capacity() * 2).clamp(INITIAL_CAPACITY, MAX_PREAMBLE);
            buf.reserve_exact(want - buf.len());
        }
        let room = buf.capacity() - buf.len();
        match stream.try_read_buf(&mut buf) {
            Ok(0) => return Err(refused(Outcome::ClientClosedEarly, "eof", header)),
            Ok(n) => drained = n < room,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return Err(refused(Outcome::ClientClosedEarly, "read error", header)),
        }
    }
}
