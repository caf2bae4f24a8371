//! Zero-copy relaying for bulk transfers: `splice(2)` from one socket into a pipe and from the
//! pipe into the other socket, so the bytes never cross into user space. Pipes come from a
//! per-thread pool and are held by a direction only while bytes sit in them.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Bytes a pipe holds (`F_SETPIPE_SZ`; the kernel rounds up to pages). Larger than the default
/// 64 KiB: fewer calls per GiB.
const PIPE_SIZE: i32 = 256 * 1024;
/// Empty pipes kept per worker thread; more are closed.
const POOL_PER_THREAD: usize = 16;

/// A pipe: bytes go in at `write`, out at `read`.
#[derive(Debug)]
pub(super) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

impl Pipe {
    /// An empty pipe from this thread's pool, or a new one; `None` when none can be made (out of
    /// descriptors): the caller copies through a buffer instead.
    pub fn take() -> Option<Pipe> {
        if let Some(pipe) = POOL.with(|p| p.borrow_mut().pop()) {
            return Some(pipe);
        }
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return None;
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors owned by nobody else.
        let pipe = unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        };
        // Best effort: a default-sized pipe works too, only with more calls.
        // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own.
        unsafe { libc::fcntl(pipe.write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Some(pipe)
    }

    /// Back to this thread's pool; the caller has emptied it.
    pub fn put_back(self) {
        POOL.with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < POOL_PER_THREAD {
                pool.push(self);
            }
        });
    }

    /// Moves up to the pipe's size from the socket `from` into the pipe: bytes moved, 0 at the
    /// socket's end of stream, `WouldBlock` when it has none.
    pub fn fill_from(&self, from: RawFd) -> io::Result<usize> {
        splice(from, self.write.as_raw_fd(), PIPE_SIZE as usize)
    }

    /// Moves up to `len` bytes from the pipe into the socket `to`.
    pub fn drain_to(&self, to: RawFd, len: usize) -> io::Result<usize> {
        splice(self.read.as_raw_fd(), to, len)
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (borrowed from their
    // owners); null offsets are what sockets and pipes require.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}
