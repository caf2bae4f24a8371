//! The client's TLS session, driven through rustls's unbuffered API: the handshake and then the
//! relay's client leg. The ciphertext buffers are ours, borrowed from the relay's pool only
//! while bytes are in them, so a quiet connection holds rustls's state and nothing else (a
//! buffered `ServerConnection` keeps a 4 KiB deframer buffer for its whole life).
//!
//! Incoming: ciphertext is read into a pooled buffer (`start..end`, what rustls has not
//! discarded yet: a partial record, or a handshake message split across records, stays at its
//! front); rustls decrypts a record in place there and hands its plaintext out (rustls 0.23
//! copies it into a short-lived `Vec` of its own first), which is copied just past the
//! ciphertext (`plain`, room for one record being kept free there) and passed on from there. Outgoing: handshake flights, alerts and records are encoded into a pooled buffer and
//! written from it; more plaintext is encrypted only once what was before is out.

mod leg;
#[cfg(test)]
mod tests;

use std::io;
use std::task::{ready, Context, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, UnbufferedStatus};
use tokio::net::TcpStream;

use crate::runtime::pipeline::relay::PooledBuf;
pub use leg::Client;

/// Room kept free past the ciphertext for the plaintext of one record (2^14 bytes at most).
const PLAIN_ROOM: usize = 16 * 1024 + 256;
/// Plaintext encrypted at once: three full records, their overhead and any alert rustls puts
/// before them fit a pooled buffer with room to spare.
const WRITE_CHUNK: usize = 48 * 1024;

/// The client's rustls state and the ciphertext in flight either way.
pub struct ClientTls {
    conn: Box<UnbufferedServerConnection>,
    input: Input,
    output: Output,
    /// The client's close_notify (or a TCP EOF) was read: no more plaintext comes.
    ended: bool,
    /// Our close_notify was queued.
    closing: bool,
}

/// Ciphertext read and not discarded by rustls (`start..end`), and the plaintext of the last
/// record decrypted, not yet passed on (`plain`, past `end`).
struct Input {
    buf: Option<PooledBuf>,
    start: usize,
    end: usize,
    plain: (usize, usize),
    /// Every complete record in `start..end` was processed: rustls may be given the region
    /// again without decrypting anything (see [`ClientTls::process`]).
    settled: bool,
}

/// Records encoded and not yet written (`pos..len`).
#[derive(Default)]
struct Output {
    buf: Option<PooledBuf>,
    pos: usize,
    len: usize,
}

/// What a call to rustls is for.
#[derive(Clone, Copy)]
enum Want<'d> {
    Read,
    Encrypt(&'d [u8]),
    CloseNotify,
}

/// Where a call to rustls stopped.
enum Step {
    /// Plaintext is in `input.plain`.
    Plain,
    /// The client's close_notify.
    Ended,
    /// Nothing more without more ciphertext.
    NeedMore,
    /// `n` bytes of plaintext (or the close_notify) were encrypted into `output`.
    Wrote(usize),
}

impl ClientTls {
    /// A session whose first bytes, the ClientHello and whatever followed it, are `hello`.
    pub fn new(conn: UnbufferedServerConnection, hello: &[u8]) -> io::Result<ClientTls> {
        let mut input = Input::empty();
        if !hello.is_empty() {
            let mut buf = PooledBuf::take();
            let room = buf.as_mut();
            let fits = hello.len() + PLAIN_ROOM <= room.len();
            let Some(to) = room.get_mut(..hello.len()).filter(|_| fits) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "tls: hello too large",
                ));
            };
            to.copy_from_slice(hello);
            input.buf = Some(buf);
            input.end = hello.len();
            input.settled = false;
        }
        Ok(ClientTls {
            conn: Box::new(conn),
            input,
            output: Output::default(),
            ended: false,
            closing: false,
        })
    }

    /// A parked session's state again (nothing was in flight when it parked).
    pub fn resume(conn: Box<UnbufferedServerConnection>) -> ClientTls {
        ClientTls {
            conn,
            input: Input::empty(),
            output: Output::default(),
            ended: false,
            closing: false,
        }
    }

    /// rustls's state, to park: a quiet leg holds no buffer ([`ClientTls::at_rest`]).
    pub fn into_conn(self) -> Box<UnbufferedServerConnection> {
        self.conn
    }

    /// The negotiated version, ALPN and the rest.
    pub fn conn(&self) -> &UnbufferedServerConnection {
        &self.conn
    }

    /// The handshake, from the bytes given to [`ClientTls::new`] on. Application data that came
    /// with the client's Finished stays here for the relay.
    pub async fn handshake(&mut self, sock: &TcpStream) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_handshake(sock, cx)).await
    }

    fn poll_handshake(&mut self, sock: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_send(sock, cx))?;
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match self.process(Want::Read) {
                Ok(Step::NeedMore) if self.conn.is_handshaking() => {
                    // Our flight goes out before its answer is awaited.
                    ready!(self.poll_send(sock, cx))?;
                    if ready!(self.poll_read(sock, cx))? == 0 {
                        return Poll::Ready(Err(handshake_eof()));
                    }
                }
                Ok(Step::Ended) => return Poll::Ready(Err(handshake_eof())),
                Ok(_) => {}
                Err(error) => return Poll::Ready(Err(self.fail(sock, error))),
            }
        }
    }

    /// Sends close_notify (once), then waits until it is written; with `half_close`, a write
    /// shutdown after it.
    pub fn poll_close(
        &mut self,
        sock: &TcpStream,
        cx: &mut Context<'_>,
        half_close: bool,
    ) -> Poll<io::Result<()>> {
        if !self.closing {
            if let Err(error) = self.process(Want::CloseNotify) {
                return Poll::Ready(Err(self.fail(sock, error)));
            }
            self.closing = true;
        }
        ready!(self.poll_send(sock, cx))?;
        Poll::Ready(if half_close {
            leg::shutdown(sock)
        } else {
            Ok(())
        })
    }

    /// Runs rustls over the ciphertext read until it has plaintext, needs more, or has done
    /// what `want` asks. Handshake records and alerts it encodes on the way go to `output`.
    ///
    /// A write passes rustls the ciphertext region only when every complete record in it was
    /// processed (`settled`), so that nothing is decrypted there; otherwise (records wait
    /// behind plaintext not yet passed on) an empty one, which is safe: rustls keeps no
    /// partial handshake message once it has handed out application data.
    fn process(&mut self, want: Want<'_>) -> Result<Step, rustls::Error> {
        loop {
            let whole = matches!(want, Want::Read) || self.input.settled;
            let input = &mut self.input;
            let (region, spare) = match input.buf.as_mut() {
                Some(buf) => {
                    let (front, back) = buf.as_mut().split_at_mut(input.end);
                    let to = if whole { input.end } else { input.start };
                    (front.get_mut(input.start..to).unwrap_or_default(), back)
                }
                None => (Default::default(), Default::default()),
            };
            let UnbufferedStatus { discard, state } = self.conn.process_tls_records(region);
            let state = match state {
                Ok(state) => state,
                Err(error) => {
                    input.start += discard;
                    return Err(error);
                }
            };
            match state {
                ConnectionState::ReadTraffic(mut records) => {
                    if input.plain.0 < input.plain.1 {
                        return Err(general("tls: plaintext read twice"));
                    }
                    let (n, extra) = match records.next_record() {
                        Some(Ok(record)) => {
                            let n = record.payload.len();
                            let Some(to) = spare.get_mut(..n) else {
                                return Err(general("tls: record larger than the buffer"));
                            };
                            to.copy_from_slice(record.payload);
                            (n, record.discard)
                        }
                        Some(Err(error)) => return Err(error),
                        None => (0, 0),
                    };
                    input.start += discard + extra;
                    input.settled = false;
                    if n > 0 {
                        input.plain = (input.end, input.end + n);
                        if let Want::Read = want {
                            return Ok(Step::Plain);
                        }
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    input.start += discard;
                    let n = encode
                        .encode(self.output.spare())
                        .map_err(|e| general(&e.to_string()))?;
                    self.output.len += n;
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    // The records are ours to send now, in order with what follows them.
                    input.start += discard;
                    transmit.done();
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    // rustls reads nothing after a close_notify: what follows it is dropped, and
                    // the buffer with it (a half-closed connection may park).
                    input.start = input.end;
                    input.tidy();
                    self.ended = true;
                    match want {
                        Want::Read => return Ok(Step::Ended),
                        // Both ends closed: nothing more may be sent.
                        Want::CloseNotify => return Ok(Step::Wrote(0)),
                        Want::Encrypt(_) => return Err(general("tls: write after close_notify")),
                    }
                }
                ConnectionState::WriteTraffic(mut write) => {
                    input.start += discard;
                    input.settled |= whole;
                    return match want {
                        Want::Read => Ok(Step::NeedMore),
                        Want::CloseNotify => {
                            let out = self.output.spare();
                            let n = write
                                .queue_close_notify(out)
                                .map_err(|e| general(&e.to_string()))?;
                            self.output.len += n;
                            Ok(Step::Wrote(0))
                        }
                        Want::Encrypt(data) => {
                            let out = self.output.spare();
                            let mut n = data.len().min(WRITE_CHUNK);
                            loop {
                                match write.encrypt(data.get(..n).unwrap_or_default(), out) {
                                    Ok(written) => {
                                        self.output.len += written;
                                        break Ok(Step::Wrote(n));
                                    }
                                    Err(rustls::unbuffered::EncryptError::InsufficientSize(_))
                                        if n > 1 =>
                                    {
                                        n /= 2
                                    }
                                    Err(e) => break Err(general(&e.to_string())),
                                }
                            }
                        }
                    };
                }
                ConnectionState::BlockedHandshake => {
                    input.start += discard;
                    input.settled |= whole;
                    return Ok(Step::NeedMore);
                }
                // No early data is accepted (the server configurations leave it off).
                _ => return Err(general("tls: unexpected early data")),
            }
        }
    }

    /// The end of a session on a rustls error: the alert rustls queued for the peer, if any,
    /// is sent best effort, and the error becomes an `InvalidData` I/O error (as tokio-rustls
    /// reported it, so that [`crate::runtime::tls::Failure::of`] reads it the same).
    fn fail(&mut self, sock: &TcpStream, error: rustls::Error) -> io::Error {
        // Only while rustls has records queued: it hands those out before looking at the
        // input again (which would fail, and alert, a second time).
        for _ in 0..8 {
            if !self.conn.wants_write() {
                break;
            }
            let input = &mut self.input;
            let region = match input.buf.as_mut() {
                Some(buf) => buf
                    .as_mut()
                    .get_mut(input.start..input.end)
                    .unwrap_or_default(),
                None => Default::default(),
            };
            let UnbufferedStatus { discard, state } = self.conn.process_tls_records(region);
            input.start += discard;
            match state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    if let Ok(n) = encode.encode(self.output.spare()) {
                        self.output.len += n;
                    }
                }
                _ => break,
            }
        }
        let _ = self.send(sock);
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

fn general(why: &str) -> rustls::Error {
    rustls::Error::General(why.to_string())
}

/// The client closed before its handshake was done (worded as tokio-rustls's).
fn handshake_eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof")
}
