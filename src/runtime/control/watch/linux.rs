//! The watch on Linux: inotify with a mask of what can change a file's content or name.
//!
//! notify 8 cannot be told what to watch for: its inotify backend always asks for `IN_MODIFY`,
//! `IN_OPEN` and `IN_ATTRIB` too (its `Config` only sets polling, content comparison and
//! symlink following), so every write to a log file next to the config woke the proxy. Here the
//! kernel queues only a file closed after writing (an edit in place is complete then), names
//! moved in or out (an editor's rename over, kubelet's `..data` symlink swap), creates, deletes
//! and the watched directory itself going away; writes before the close, opens, reads and
//! attribute changes never reach us.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use inotify::{Event, EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::Sink;

const MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

/// Each watch descriptor's directories: two paths to one directory share a descriptor.
type Dirs = Arc<Mutex<HashMap<i32, Vec<PathBuf>>>>;

pub(super) struct Backend {
    watches: Watches,
    by_dir: HashMap<PathBuf, WatchDescriptor>,
    dirs: Dirs,
    reader: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Starts the task that reads the events, on the current Tokio runtime.
    pub(super) fn new(sink: Sink) -> io::Result<Backend> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let _entered = runtime.enter();
        let inotify = Inotify::init()?;
        let watches = inotify.watches();
        let dirs = Dirs::default();
        // SAFETY: the AsyncFd owns the Inotify, whose descriptor stays open (and the same)
        // until it is dropped; `watches` only adds and removes watches on it.
        let inotify = unsafe { AsyncFd::register_with_interest(inotify, Interest::READABLE)? };
        let reader = tokio::spawn(read(inotify, dirs.clone(), sink));
        Ok(Backend {
            watches,
            by_dir: HashMap::new(),
            dirs,
            reader,
        })
    }

    pub(super) fn watch(&mut self, dir: &Path) -> io::Result<()> {
        // Held across the add, so the reader knows the descriptor by its first event.
        let mut dirs = lock(&self.dirs);
        let wd = self.watches.add(dir, MASK)?;
        dirs.entry(wd.get_watch_descriptor_id())
            .or_default()
            .push(dir.to_path_buf());
        self.by_dir.insert(dir.to_path_buf(), wd);
        Ok(())
    }

    pub(super) fn unwatch(&mut self, dir: &Path) {
        let Some(wd) = self.by_dir.remove(dir) else {
            return;
        };
        let mut dirs = lock(&self.dirs);
        let id = wd.get_watch_descriptor_id();
        // A descriptor the kernel dropped already (its directory deleted) is not in `dirs`.
        if let Some(paths) = dirs.get_mut(&id) {
            paths.retain(|p| p != dir);
            if paths.is_empty() {
                dirs.remove(&id);
                let _ = self.watches.remove(wd);
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Ends the reader, which closes the descriptor.
        self.reader.abort();
    }
}

fn lock(dirs: &Dirs) -> MutexGuard<'_, HashMap<i32, Vec<PathBuf>>> {
    dirs.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads every queued event at each readiness, until the descriptor fails.
async fn read(mut inotify: AsyncFd<Inotify>, dirs: Dirs, sink: Sink) {
    // Room for many events; one needs at most 16 bytes + NAME_MAX + 1.
    let mut buffer = [0u8; 4096];
    loop {
        let mut ready = match inotify.readable_mut().await {
            Ok(ready) => ready,
            Err(error) => {
                tracing::warn!(%error, "config watch failed; relying on the periodic re-check");
                return;
            }
        };
        let read = ready.try_io(|inotify| {
            for event in inotify.get_mut().read_events(&mut buffer)? {
                on_event(&event, &dirs, &sink);
            }
            Ok(())
        });
        // `Err(_)`: nothing left to read, readiness cleared.
        if let Ok(Err(error)) = read {
            tracing::warn!(%error, "config watch failed; relying on the periodic re-check");
            sink.wake();
            return;
        }
    }
}

fn on_event(event: &Event<&std::ffi::OsStr>, dirs: &Dirs, sink: &Sink) {
    let mask = event.mask;
    if mask.contains(EventMask::Q_OVERFLOW) {
        // Events were lost and may have hidden a change: re-read.
        tracing::warn!("config watch queue overflowed; re-reading the configuration");
        sink.hint();
        return;
    }
    let mut dirs = lock(dirs);
    let id = event.wd.get_watch_descriptor_id();
    if mask.contains(EventMask::IGNORED) {
        // The watch is gone (its directory deleted, or unwatched).
        dirs.remove(&id);
        return;
    }
    // None: an event queued before its directory was unwatched.
    let Some(paths) = dirs.get(&id) else {
        return;
    };
    tracing::trace!(?mask, name = ?event.name, dir = ?paths, "config watch event");
    let gone = EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::UNMOUNT;
    match event.name {
        // The watched directory itself, or a directory in it (an include entry), went away.
        _ if mask.intersects(gone) || mask.contains(EventMask::DELETE | EventMask::ISDIR) => {
            sink.hint()
        }
        Some(name) => sink.about(paths.iter().map(|d| d.join(name))),
        None => sink.hint(),
    }
}
