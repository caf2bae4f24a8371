//! The watch on other platforms: notify's recommended watcher, which cannot leave out
//! modifications and reads, so those are dropped here after the wakeup.

use std::io;
use std::path::Path;

use notify::event::{AccessKind, AccessMode, RemoveKind};
use notify::{EventKind, RecursiveMode, Watcher};

use super::Sink;

pub(super) struct Backend {
    watcher: notify::RecommendedWatcher,
}

impl Backend {
    pub(super) fn new(sink: Sink) -> io::Result<Backend> {
        // notify calls back on its own thread.
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            match event {
                // A file closed after writing: an edit in place is complete.
                Ok(e) if e.kind == EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    sink.about(&e.paths)
                }
                // Reads (ours included) change nothing: ignoring them keeps a reload from
                // waking the next one.
                Ok(e) if matches!(e.kind, EventKind::Access(_)) => sink.ignore(),
                Ok(e)
                    if e.paths.is_empty()
                        || matches!(
                            e.kind,
                            EventKind::Remove(RemoveKind::Folder) | EventKind::Other
                        ) =>
                {
                    sink.hint()
                }
                Ok(e) => sink.about(&e.paths),
                Err(error) => {
                    // A lost event (queue overflow) may hide a change: re-read.
                    tracing::warn!(%error, "config watch error");
                    sink.wake();
                }
            }
        })
        .map_err(io::Error::other)?;
        Ok(Backend { watcher })
    }

    pub(super) fn watch(&mut self, dir: &Path) -> io::Result<()> {
        self.watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(io::Error::other)
    }

    pub(super) fn unwatch(&mut self, dir: &Path) {
        let _ = self.watcher.unwatch(dir);
    }
}
