//! Socket options, set the same way on every leg.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};

/// TCP keepalive (the time is [`KEEPALIVE_TIME`]): well under the AWS NLB's 350 s flow idle
/// timeout, so silent ClickHouse sessions (long queries, idle pools) stay mapped.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_RETRIES: u32 = 4;
const LISTEN_BACKLOG: u32 = 4096;

/// How long the kernel holds a connection that has sent nothing yet, with
/// `defer_accept: true`, before handing it to the proxy anyway (the `client_hello` timeout
/// then applies as to any connection).
pub const DEFER_ACCEPT: Duration = Duration::from_secs(10);

/// Binds `address` with SO_REUSEADDR and a deep backlog, nonblocking, not yet registered with
/// any reactor (the worker that accepts on it registers it). `reuse_port`: one of several
/// sockets on the same address, one per worker, the kernel spreading connections over them.
/// `defer_accept`: TCP_DEFER_ACCEPT (see [`defer_accept`]).
///
/// NODELAY and keepalive are set on the listening socket: Linux copies them into every
/// accepted socket, which saves five syscalls per connection.
pub fn listen(
    address: SocketAddr,
    reuse_port: bool,
    defer_accept: bool,
) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM.nonblocking(),
        None,
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_tcp_keepalive(&keepalive())?;
    if defer_accept {
        set_defer_accept(&socket, true)?;
    }
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG as i32)?;
    Ok(socket.into())
}

/// TCP_DEFER_ACCEPT on a listening socket (on) or off: the kernel hands a connection over
/// only once its first bytes have arrived (for up to [`DEFER_ACCEPT`]), so the first read
/// finds the PROXY header and the ClientHello and no wakeup is spent on an empty socket.
pub fn set_defer_accept(socket: &impl std::os::fd::AsRawFd, on: bool) -> io::Result<()> {
    let secs: libc::c_int = if on {
        DEFER_ACCEPT.as_secs() as libc::c_int
    } else {
        0
    };
    // SAFETY: a valid descriptor and a c_int option value of the size given.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A nonblocking socket for connecting to `address`, with no option set: NODELAY is set by
/// the relay before its first write upstream ([`nodelay`]), so a connection whose upstream
/// gets one write (PROXY header + ClientHello, into an idle connection Nagle never delays)
/// before its reply skips the call. Keepalive costs four more calls, and most connections are
/// short, so the relay turns it on ([`keep_alive`]) only for a connection that has been quiet
/// for [`KEEPALIVE_TIME`].
pub fn for_upstream(address: SocketAddr) -> io::Result<Socket> {
    Socket::new(
        Domain::for_address(address),
        Type::STREAM.nonblocking(),
        None,
    )
}

/// Turns NODELAY on for a connected upstream socket (TLS and ClickHouse's protocol are
/// latency-bound: a second small write must not wait for the first one's ACK).
pub fn nodelay(socket: SockRef<'_>) -> io::Result<()> {
    socket.set_tcp_nodelay(true)
}

/// Turns TCP keepalive on for a connected socket, as listeners do for accepted ones.
pub fn keep_alive(socket: SockRef<'_>) -> io::Result<()> {
    socket.set_tcp_keepalive(&keepalive())
}

/// A quiet connection older than this gets keepalive on its upstream leg too.
pub const KEEPALIVE_TIME: Duration = Duration::from_secs(60);

fn keepalive() -> TcpKeepalive {
    TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn defer_accept_of(socket: &std::net::TcpListener) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid descriptor and a c_int-sized out value.
        let r = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        value
    }

    #[test]
    fn defer_accept_is_set_on_the_listening_socket_and_changed_in_place() {
        let plain = listen("127.0.0.1:0".parse().unwrap(), false, false).unwrap();
        assert_eq!(defer_accept_of(&plain), 0);
        let deferred = listen("127.0.0.1:0".parse().unwrap(), false, true).unwrap();
        // The kernel keeps it as SYN-ACK retransmissions and reports it back rounded up.
        assert!(defer_accept_of(&deferred) >= DEFER_ACCEPT.as_secs() as libc::c_int);
        set_defer_accept(&deferred, false).unwrap();
        assert_eq!(defer_accept_of(&deferred), 0);
    }

    #[test]
    fn sockets_of_one_listener_share_its_port_and_others_cannot_take_it() {
        let first = listen("127.0.0.1:0".parse().unwrap(), true, false).unwrap();
        let address = first.local_addr().unwrap();
        let second = listen(address, true, false).unwrap();
        assert_eq!(second.local_addr().unwrap(), address);
        // A socket that did not ask to share the port is refused it.
        assert!(listen(address, false, false).is_err());
    }
}
