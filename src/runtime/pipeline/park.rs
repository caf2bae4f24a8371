//! Parked connections. A relayed connection quiet for [`PARK_AFTER`] gives up its task and its
//! two reactor registrations — most of what an idle connection costs — and waits as its two
//! sockets in one epoll set of our own, itself registered with tokio's reactor. The first byte,
//! EOF or error on either socket wakes it: it leaves the set and relays again in a new task.
//! Idle deadlines of parked connections are kept here, in a heap, so expiring one costs nothing
//! per connection in between.
//!
//! Only the sockets' readable side is watched, and only for a direction still open: a socket
//! at EOF stays readable, and watching it would wake the connection at once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::Duration;

use rustix::buffer::spare_capacity;
use rustix::event::epoll;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A relayed connection with no byte either way for this long is parked.
pub const PARK_AFTER: Duration = Duration::from_secs(2);
/// Events taken from the set per `epoll_wait`.
const BATCH: usize = 256;
/// After this many connections parked, the allocator is asked to give freed pages back (the
/// tasks they left are freed, but glibc keeps freed heap pages resident until trimmed).
const TRIM_AFTER_PARKS: u64 = 512;
/// At most one trim per this period, so a busy proxy does not trim continuously.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// The parked connections of one server (`T`: what a connection needs to go on).
pub struct Parking<T> {
    epoll: AsyncFd<OwnedFd>,
    inner: Mutex<Inner<T>>,
    /// A connection was parked with a deadline earlier than all others.
    earlier: Notify,
}

struct Inner<T> {
    next_id: u64,
    /// `next_id` at the last trim.
    trimmed_at: u64,
    /// In one slab rather than one allocation each: entries made while connection tasks are
    /// being freed would otherwise land all over the freed memory and keep it resident.
    parked: slab::Slab<Entry<T>>,
    /// (idle deadline, token), earliest first; one array, for the same reason as the slab.
    /// Woken connections leave their entry behind (skipped when it comes up; the heap is
    /// rebuilt when such entries outnumber the parked ones).
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Set while draining: nothing is parked any more.
    closed: bool,
}

struct Entry<T> {
    /// Which parking this is (slab keys are reused): the low half of its token.
    id: u32,
    /// The sockets in the set (a direction at EOF is not watched).
    watched: [Option<RawFd>; 2],
    item: T,
}

/// What a parked connection shows the set.
pub trait Sockets {
    /// Its two sockets, each with whether to watch it (false: that direction is at EOF).
    fn sockets(&self) -> [(BorrowedFd<'_>, bool); 2];
    /// When it expires if nothing wakes it.
    fn deadline(&self) -> Instant;
}

impl<T: Sockets> Parking<T> {
    /// A new, empty set; must be called inside the runtime (the set registers with its reactor).
    pub fn new() -> io::Result<Parking<T>> {
        let fd = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        Ok(Parking {
            // SAFETY: the AsyncFd owns the epoll descriptor and closes it only when dropped.
            epoll: unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)? },
            inner: Mutex::new(Inner {
                next_id: 0,
                trimmed_at: 0,
                parked: slab::Slab::new(),
                deadlines: BinaryHeap::new(),
                closed: false,
            }),
            earlier: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parks a connection; hands it back if it cannot be (draining, or the set refused a
    /// socket), so that the caller relays on.
    pub fn park(&self, item: T) -> Result<(), T> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(item);
        }
        let id = inner.next_id as u32;
        inner.next_id += 1;
        let key = inner.parked.vacant_key();
        let token = token(key, id);
        let mut watched = [None, None];
        for ((fd, watch), slot) in item.sockets().iter().zip(&mut watched) {
            if !watch {
                continue;
            }
            let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
            if epoll::add(
                self.epoll.get_ref(),
                fd,
                epoll::EventData::new_u64(token),
                flags,
            )
            .is_err()
            {
                self.unwatch(&watched);
                return Err(item);
            }
            *slot = Some(fd.as_raw_fd());
        }
        let deadline = item.deadline();
        let earliest = inner.deadlines.peek().is_none_or(|f| deadline < f.0 .0);
        if inner.deadlines.len() > 2 * inner.parked.len() + 64 {
            let Inner {
                parked, deadlines, ..
            } = &mut *inner;
            deadlines.retain(|Reverse((_, t))| is_parked(parked, *t));
        }
        inner.deadlines.push(Reverse((deadline, token)));
        if earliest {
            self.earlier.notify_one();
        }
        let entry = Entry { id, watched, item };
        inner.parked.insert(entry);
        Ok(())
    }

    /// Connections parked now.
    pub fn len(&self) -> usize {
        self.lock().parked.len()
    }

    /// Takes the connection out of the set, its sockets unwatched.
    fn take(&self, inner: &mut Inner<T>, token: u64) -> Option<T> {
        if !is_parked(&inner.parked, token) {
            return None;
        }
        let entry = inner.parked.remove((token >> 32) as usize);
        self.unwatch(&entry.watched);
        Some(entry.item)
    }

    fn unwatch(&self, watched: &[Option<RawFd>; 2]) {
        for fd in watched.iter().flatten() {
            // SAFETY: the entry's item owns the socket and is alive while it is in the set.
            let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
            let _ = epoll::delete(self.epoll.get_ref(), fd);
        }
    }

    /// Wakes the connections whose sockets are ready (`wake`) and expires the ones past their
    /// idle deadline (`expire`), forever.
    pub async fn run(&self, wake: impl Fn(T), expire: impl Fn(T)) {
        let mut trim = tokio::time::interval(TRIM_EVERY);
        trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = self.lock().deadlines.peek().map(|d| d.0 .0);
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                ready = self.epoll.readable() => {
                    let Ok(mut guard) = ready else { return };
                    // Drain the set completely before readiness is cleared: an event left
                    // behind would not wake us again.
                    let drained = guard.try_io(|fd| ready_ids(fd.get_ref()));
                    if let Ok(Err(e)) = &drained {
                        // EINTR: try again; anything else would repeat, so log it and wait for
                        // the next readiness instead of spinning.
                        if e.kind() != io::ErrorKind::Interrupted {
                            tracing::warn!(error = %e, "epoll_wait on the parked connections failed");
                            guard.clear_ready();
                        }
                    }
                    let ids = match drained {
                        Ok(Ok(ids)) => ids,
                        _ => Vec::new(),
                    };
                    let woken: Vec<T> = {
                        let mut inner = self.lock();
                        ids.into_iter().filter_map(|id| self.take(&mut inner, id)).collect()
                    };
                    woken.into_iter().for_each(&wake);
                }
                () = self.earlier.notified() => {}
                _ = trim.tick() => {
                    let due = {
                        let mut inner = self.lock();
                        let due = inner.next_id - inner.trimmed_at >= TRIM_AFTER_PARKS;
                        if due {
                            inner.trimmed_at = inner.next_id;
                            let Inner {
                                parked, deadlines, ..
                            } = &mut *inner;
                            deadlines.retain(|Reverse((_, t))| is_parked(parked, *t));
                            deadlines.shrink_to_fit();
                            parked.shrink_to_fit();
                        }
                        due
                    };
                    if due {
                        // Off the reactor: a trim walks the whole heap.
                        tokio::task::spawn_blocking(release_freed_memory);
                    }
                }
                () = tokio::time::sleep_until(next.unwrap_or(far)) => {
                    let now = Instant::now();
                    let expired: Vec<T> = {
                        let mut inner = self.lock();
                        let mut due = Vec::new();
                        while let Some(Reverse((at, token))) = inner.deadlines.peek().copied() {
                            if at > now {
                                break;
                            }
                            inner.deadlines.pop();
                            due.push(token);
                        }
                        due.into_iter().filter_map(|t| self.take(&mut inner, t)).collect()
                    };
                    expired.into_iter().for_each(&expire);
                }
            }
        }
    }

    /// Parks nothing from now on and hands back every parked connection (the drain relays
    /// them like the others).
    pub fn close(&self) -> Vec<T> {
        let mut inner = self.lock();
        inner.closed = true;
        let ids: Vec<u64> = inner.parked.iter().map(|(k, e)| token(k, e.id)).collect();
        ids.into_iter()
            .filter_map(|id| self.take(&mut inner, id))
            .collect()
    }
}

/// What the set reports for a connection: its slab key and which parking it is.
fn token(key: usize, id: u32) -> u64 {
    (key as u64) << 32 | u64::from(id)
}

/// Whether `token` names a connection parked now (an event or deadline read before its
/// connection left the set may name a slab key reused since).
fn is_parked<T>(parked: &slab::Slab<Entry<T>>, token: u64) -> bool {
    parked
        .get((token >> 32) as usize)
        .is_some_and(|e| e.id == token as u32)
}

/// Returns freed heap pages to the kernel (glibc keeps them otherwise, and the resident size
/// of a proxy whose connections all parked would stay at its busiest).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The ids of the connections whose sockets are ready (at most [`BATCH`]), without waiting;
/// `WouldBlock` when there are none, so that the reactor's readiness is cleared.
fn ready_ids(epoll: &OwnedFd) -> io::Result<Vec<u64>> {
    let mut events: Vec<epoll::Event> = Vec::with_capacity(BATCH);
    epoll::wait(
        epoll,
        spare_capacity(&mut events),
        Some(&Default::default()),
    )?;
    if events.is_empty() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(events.iter().map(|e| e.data.u64()).collect())
}

impl<T> std::fmt::Debug for Parking<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parked = self.inner.lock().map_or(0, |i| i.parked.len());
        f.debug_struct("Parking").field("parked", &parked).finish()
    }
}
