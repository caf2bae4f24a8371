//! Socket options, set the same way on every leg.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpSocket};

/// TCP keepalive (the time is [`KEEPALIVE_TIME`]): well under the AWS NLB's 350 s flow idle
/// timeout, so silent ClickHouse sessions (long queries, idle pools) stay mapped.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_RETRIES: u32 = 4;
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `address` with SO_REUSEADDR and a deep backlog.
///
/// NODELAY and keepalive are set on the listening socket: Linux copies them into every
/// accepted socket, which saves five syscalls per connection.
pub fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(address)?;
    socket.set_reuseaddr(true)?;
    tune(&socket)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A socket for connecting to `address`: NODELAY only. Keepalive costs four more calls, and
/// most connections are short, so the relay turns it on ([`keep_alive`]) only for a
/// connection that has been quiet for [`KEEPALIVE_TIME`].
pub fn for_upstream(address: SocketAddr) -> io::Result<TcpSocket> {
    let socket = new_socket(address)?;
    socket.set_nodelay(true)?;
    Ok(socket)
}

/// Turns TCP keepalive on for a connected socket, as listeners do for accepted ones.
pub fn keep_alive(socket: SockRef<'_>) -> io::Result<()> {
    socket.set_tcp_keepalive(&keepalive())
}

/// A quiet connection older than this gets keepalive on its upstream leg too.
pub const KEEPALIVE_TIME: Duration = Duration::from_secs(60);

fn new_socket(address: SocketAddr) -> io::Result<TcpSocket> {
    match address {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
}

/// NODELAY (TLS handshakes are latency-bound) and keepalive.
fn tune(socket: &TcpSocket) -> io::Result<()> {
    let socket = SockRef::from(socket);
    socket.set_tcp_nodelay(true)?;
    socket.set_tcp_keepalive(&keepalive())
}

fn keepalive() -> TcpKeepalive {
    TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES)
}
