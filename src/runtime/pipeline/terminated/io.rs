//! The client's socket as rustls reads it: first the bytes the preamble already read (the
//! ClientHello, whatever followed it), then the socket itself, borrowed. Reads and writes go
//! straight to the socket's non-blocking calls, so nothing is buffered twice.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A borrowed client socket that replays `prefix[pos..]` before reading from the socket.
pub struct ClientIo<'a> {
    stream: &'a TcpStream,
    prefix: Vec<u8>,
    pos: usize,
}

impl<'a> ClientIo<'a> {
    /// `prefix[start..]` is replayed first (the preamble's buffer, PROXY header skipped).
    pub fn new(stream: &'a TcpStream, prefix: Vec<u8>, start: usize) -> Self {
        ClientIo {
            stream,
            prefix,
            pos: start,
        }
    }

    /// What is left to replay (`prefix[pos..]`), the socket's borrow given up.
    pub fn into_rest(self) -> (Vec<u8>, usize) {
        (self.prefix, self.pos)
    }

    /// Hands out the unreplayed prefix, else reads the socket (`WouldBlock` when it has nothing).
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(rest) = self.prefix.get(self.pos..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(rest.get(..n).unwrap_or_default());
            self.pos += n;
            if self.pos >= self.prefix.len() {
                // Replayed: the buffer is not needed for the rest of the connection.
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Ok(n);
        }
        self.stream.try_read(buf)
    }
}

/// rustls's `read_tls` reads through this once the relay drives the connection itself.
impl io::Read for ClientIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_now(buf)
    }
}

impl AsyncRead for ClientIo<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.read_now(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(this.stream.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for ClientIo<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.stream.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.stream.poll_write_ready(cx))?;
                }
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.stream.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.stream.poll_write_ready(cx))?;
                }
                result => return Poll::Ready(result),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// A half-close: the client reads the rest of what comes back.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        match socket2::SockRef::from(self.stream).shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn replays_the_prefix_then_reads_and_writes_the_socket() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (ours, _) = l.accept().await.unwrap();
        let mut io = ClientIo::new(&ours, b"PROXY..hello".to_vec(), 7);
        peer.write_all(b" world").await.unwrap();
        peer.shutdown().await.unwrap();
        let mut got = String::new();
        io.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "hello world");
        io.write_all(b"back").await.unwrap();
        io.shutdown().await.unwrap();
        let mut back = Vec::new();
        peer.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"back");
    }
}
