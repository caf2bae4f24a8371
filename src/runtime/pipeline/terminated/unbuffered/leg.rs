//! The socket side of [`ClientTls`]: reading ciphertext into the pooled input buffer, writing
//! what is encoded, and the relay's client leg over it.

use std::io;
use std::net::Shutdown;
use std::task::{ready, Context, Poll};

use rustls::server::UnbufferedServerConnection;
use tokio::net::TcpStream;

use super::{general, ClientTls, Input, Output, Step, Want, PLAIN_ROOM};

/// The largest record on the wire: header, 2^14 bytes and the most expansion TLS allows.
const MAX_RECORD: usize = 5 + 16 * 1024 + 2048;
use crate::runtime::pipeline::relay::PooledBuf;
use crate::runtime::pipeline::terminated::legs::Leg;

impl ClientTls {
    /// Reads more ciphertext: the number of bytes, 0 at the socket's EOF.
    pub(super) fn poll_read(
        &mut self,
        sock: &TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let input = &mut self.input;
            let buf = input.buf.get_or_insert_with(PooledBuf::take).as_mut();
            let limit = buf.len().saturating_sub(PLAIN_ROOM);
            // What rustls has not discarded (a partial record, as a rule) goes to the front once
            // a whole record might not fit after it (no plaintext waits past it now).
            if input.start >= input.end {
                (input.start, input.end) = (0, 0);
            } else if input.start > 0 && limit.saturating_sub(input.end) < MAX_RECORD {
                buf.copy_within(input.start..input.end, 0);
                input.end -= input.start;
                input.start = 0;
            }
            let Some(room) = buf.get_mut(input.end..limit).filter(|r| !r.is_empty()) else {
                let error = general("tls: message larger than the buffer");
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
            };
            match sock.try_read(room) {
                Ok(n) => {
                    input.end += n;
                    input.settled &= n == 0;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The buffer goes back to the pool before waiting, if it holds nothing.
                    input.tidy();
                    ready!(sock.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Writes what is queued without waiting: whatever the socket takes now.
    pub(super) fn send(&mut self, sock: &TcpStream) -> io::Result<()> {
        while let Some(buf) = &self.output.buf {
            if self.output.pos >= self.output.len {
                self.output = Output::default();
                break;
            }
            match sock.try_write(buf.get(self.output.pos, self.output.len))? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => self.output.pos += n,
            }
        }
        Ok(())
    }

    pub(super) fn poll_send(
        &mut self,
        sock: &TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match self.send(sock) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(sock.poll_write_ready(cx))?;
                }
                done => return Poll::Ready(done),
            }
        }
    }

    fn poll_fill(&mut self, sock: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        while self.input.plain.0 >= self.input.plain.1 && !self.ended {
            let step = self.process(Want::Read);
            // Records rustls encoded meanwhile (an alert, a refused renegotiation) go out now.
            match self.send(sock) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Poll::Ready(Err(e)),
                _ => {}
            }
            match step {
                Ok(Step::NeedMore) => {
                    // A TCP EOF without close_notify: the end, as for a plain socket (the
                    // buffer goes back unless a partial record is left in it).
                    self.ended = ready!(self.poll_read(sock, cx))? == 0;
                    if self.ended {
                        self.input.tidy();
                    }
                }
                Ok(_) => {}
                Err(error) => return Poll::Ready(Err(self.fail(sock, error))),
            }
        }
        let (from, to) = self.input.plain;
        let plain = self.input.buf.as_ref().map(|b| b.get(from, to));
        Poll::Ready(Ok(plain.unwrap_or_default()))
    }

    fn consume(&mut self, n: usize) {
        let input = &mut self.input;
        input.plain.0 += n;
        if input.plain.0 >= input.plain.1 {
            input.plain = (0, 0);
            input.tidy();
        }
    }

    fn poll_write(
        &mut self,
        sock: &TcpStream,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Encrypt more only once what was encrypted before is out: the backpressure.
        ready!(self.poll_send(sock, cx))?;
        let n = match self.process(Want::Encrypt(data)) {
            Ok(Step::Wrote(n)) => n,
            Ok(_) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Err(error) => return Poll::Ready(Err(self.fail(sock, error))),
        };
        if self.ended {
            // Seen on the way (not expected): the reading side learns it on its next poll.
            cx.waker().wake_by_ref();
        }
        match self.send(sock) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(n)),
        }
    }

    /// Nothing waits to be sent or passed on, and no buffer is held.
    fn at_rest(&self) -> bool {
        self.output.buf.is_none() && self.input.buf.is_none()
    }
}

impl Input {
    /// Nothing held.
    pub(super) fn empty() -> Input {
        Input {
            buf: None,
            start: 0,
            end: 0,
            plain: (0, 0),
            settled: true,
        }
    }

    /// Gives the buffer back to the pool when nothing is left in it.
    pub(super) fn tidy(&mut self) {
        if self.start >= self.end && self.plain.0 >= self.plain.1 {
            *self = Input::empty();
        }
    }
}

impl Output {
    /// Free room at the end of the buffer (taken from the pool if none is held); what was
    /// written already is dropped from the front first.
    pub(super) fn spare(&mut self) -> &mut [u8] {
        let buf = self.buf.get_or_insert_with(PooledBuf::take).as_mut();
        if self.pos > 0 {
            buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        buf.get_mut(self.len..).unwrap_or_default()
    }
}

/// A write shutdown; the peer may be gone already, which makes it moot.
pub(super) fn shutdown(sock: &TcpStream) -> io::Result<()> {
    match socket2::SockRef::from(sock).shutdown(Shutdown::Write) {
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
        _ => Ok(()),
    }
}

/// The relay's client leg: the client's socket (owned, so that the connection can park) and
/// its session.
pub struct Client {
    sock: TcpStream,
    pub(super) tls: ClientTls,
}

impl Client {
    pub fn new(sock: TcpStream, tls: ClientTls) -> Self {
        Client { sock, tls }
    }

    /// The socket and rustls's state, to park.
    pub fn into_parts(self) -> (TcpStream, Box<UnbufferedServerConnection>) {
        (self.sock, self.tls.into_conn())
    }
}

impl Leg for Client {
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        self.tls.poll_fill(&self.sock, cx)
    }

    fn consume(&mut self, n: usize) {
        self.tls.consume(n)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.tls.poll_write(&self.sock, cx, data)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tls.poll_send(&self.sock, cx)
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>, half_close: bool) -> Poll<io::Result<()>> {
        self.tls.poll_close(&self.sock, cx, half_close)
    }

    fn at_rest(&self) -> bool {
        self.tls.at_rest()
    }
}
