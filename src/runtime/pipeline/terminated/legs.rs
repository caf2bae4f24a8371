//! The two ends of a terminated relay, as plaintext sources and sinks: a TCP socket, or rustls
//! over one, driven here directly (not through tokio-rustls) so that nothing is held while the
//! connection is idle. The client's end is rustls's unbuffered server ([`super::unbuffered`]);
//! the ends here are the upstream's.
//!
//! A plain end borrows a pooled copy buffer only from a read until its bytes are written on. A
//! TLS end's (a `reencrypt` upstream's, rustls's buffered client) plaintext waits in rustls's
//! own buffer until it is passed on (no copy of ours), and what is written to it is encrypted
//! into rustls's output queue only once that queue is empty, so one chunk at most waits there
//! for a slow peer.

use std::io::{self, BufRead, Read, Write};
use std::net::Shutdown;
use std::ops::DerefMut;
use std::task::{ready, Context, Poll};

use rustls::{ConnectionCommon, SideData};
use tokio::net::TcpStream;

use crate::runtime::pipeline::relay::PooledBuf;

/// A plaintext source and sink: one side of the relay.
pub trait Leg {
    /// Plaintext read and not yet passed on; reads more if there is none. An empty slice is the
    /// end of the stream (a TLS end's close_notify, or a TCP EOF without it: most clients just
    /// close, and a proxy cannot tell that from a finished stream).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>>;
    /// `n` bytes of what [`Leg::poll_fill`] gave were passed on.
    fn consume(&mut self, n: usize);
    /// Takes up to `data.len()` bytes to send.
    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>>;
    /// Sends what was taken and is still queued (a TLS end's records and alerts).
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Passes the other side's end of stream on (a TLS end sends close_notify first). Without
    /// `half_close` (the other direction is over too) a plain socket's FIN is left to the close.
    fn poll_finish(&mut self, cx: &mut Context<'_>, half_close: bool) -> Poll<io::Result<()>>;
    /// Nothing taken waits to be sent or passed on: the end may be parked.
    fn at_rest(&self) -> bool;
}

/// A plaintext TCP end (the upstream of a `terminate` route).
pub struct Plain {
    sock: TcpStream,
    /// Bytes read, `pos..len` not yet passed on.
    held: Option<(PooledBuf, usize, usize)>,
}

impl Plain {
    pub fn new(sock: TcpStream) -> Self {
        Plain { sock, held: None }
    }

    /// The socket, to park (nothing is held when the relay is quiet).
    pub fn into_sock(self) -> TcpStream {
        self.sock
    }
}

impl Leg for Plain {
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        while self.held.is_none() {
            let mut buf = PooledBuf::take();
            match self.sock.try_read(buf.as_mut()) {
                Ok(0) => return Poll::Ready(Ok(&[])),
                Ok(n) => self.held = Some((buf, 0, n)),
                // The buffer goes back to the pool before waiting.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drop(buf);
                    ready!(self.sock.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let held = self
            .held
            .as_ref()
            .map(|(buf, pos, len)| buf.get(*pos, *len));
        Poll::Ready(Ok(held.unwrap_or_default()))
    }

    fn consume(&mut self, n: usize) {
        if let Some((_, pos, len)) = &mut self.held {
            *pos += n;
            if *pos >= *len {
                self.held = None;
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.sock.try_write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.sock.poll_write_ready(cx))?;
                }
                done => return Poll::Ready(done),
            }
        }
    }

    fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn at_rest(&self) -> bool {
        self.held.is_none()
    }

    fn poll_finish(&mut self, _: &mut Context<'_>, half_close: bool) -> Poll<io::Result<()>> {
        Poll::Ready(if half_close {
            shutdown(&self.sock)
        } else {
            Ok(())
        })
    }
}

/// rustls's state in a box of its own, from the relay's start through parking: parking then
/// moves a pointer (no allocation among the memory the connection's task just freed), and the
/// relay's future does not carry it.
pub struct Boxed<T>(pub Box<T>);

impl<T: std::ops::Deref> std::ops::Deref for Boxed<T> {
    type Target = T::Target;
    fn deref(&self) -> &T::Target {
        &self.0
    }
}

impl<T: DerefMut> DerefMut for Boxed<T> {
    fn deref_mut(&mut self) -> &mut T::Target {
        &mut self.0
    }
}

/// The socket under a TLS end, and how rustls reads it.
pub trait Socket: Read {
    fn sock(&self) -> &TcpStream;
}

/// A TLS end: rustls's connection (`C`: a server's or a client's) over `io`.
pub struct Tls<C, R> {
    io: R,
    conn: C,
}

impl<C, R> Tls<C, R> {
    pub fn new(io: R, conn: C) -> Self {
        Tls { io, conn }
    }

    pub fn into_parts(self) -> (R, C) {
        (self.io, self.conn)
    }
}

impl<C, D, R> Tls<C, R>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData + 'static,
    R: Socket,
{
    /// Plaintext rustls holds: its length, 0 at a clean end; `WouldBlock` when it needs more.
    fn available(&mut self) -> io::Result<usize> {
        match self.conn.reader().fill_buf() {
            Ok(data) => Ok(data.len()),
            // A TCP EOF without close_notify: the end, as for a plain socket.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Writes rustls's queued records without waiting: whatever the socket takes now.
    fn send_queued(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut Sock(self.io.sock()))?;
        }
        Ok(())
    }
}

impl<C, D, R> Leg for Tls<C, R>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData + 'static,
    R: Socket,
{
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        loop {
            match self.available() {
                Ok(0) => return Poll::Ready(Ok(&[])),
                Ok(_) => return Poll::Ready(self.conn.reader().into_first_chunk()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match self.conn.read_tls(&mut self.io) {
                // rustls notes the EOF; `available` reports it next.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.io.sock().poll_read_ready(cx))?;
                    continue;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            if let Err(error) = self.conn.process_new_packets() {
                // rustls queued an alert for the peer: best effort, the connection ends.
                let _ = self.send_queued();
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.conn.reader().consume(n);
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        // Encrypt more only once what was encrypted before is out: the backpressure.
        ready!(self.poll_flush(cx))?;
        let n = self.conn.writer().write(data)?;
        match self.send_queued() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Poll::Ready(Err(e)),
            _ => {}
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.send_queued() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.io.sock().poll_write_ready(cx))?;
                }
                done => return Poll::Ready(done),
            }
        }
    }

    fn at_rest(&self) -> bool {
        !self.conn.wants_write()
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>, half_close: bool) -> Poll<io::Result<()>> {
        // Idempotent: a second call while the alert waits to be written queues nothing.
        self.conn.send_close_notify();
        ready!(self.poll_flush(cx))?;
        Poll::Ready(if half_close {
            shutdown(self.io.sock())
        } else {
            Ok(())
        })
    }
}

/// A write shutdown; the peer may be gone already, which makes it moot.
fn shutdown(sock: &TcpStream) -> io::Result<()> {
    match socket2::SockRef::from(sock).shutdown(Shutdown::Write) {
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
        _ => Ok(()),
    }
}

/// An upstream's socket under TLS, read as it is.
pub struct Owned(pub TcpStream);

impl Read for Owned {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Socket for Owned {
    fn sock(&self) -> &TcpStream {
        &self.0
    }
}

/// A borrowed socket as rustls writes it: non-blocking, `WouldBlock` when not ready.
struct Sock<'s>(&'s TcpStream);

impl Write for Sock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
