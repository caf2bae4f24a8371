//! Directory watches that wake the reloader.
//!
//! Directories, never files: a watch on a file dies when an editor renames
//! a new version over it, and a Kubernetes ConfigMap update swaps a `..data`
//! symlink so that no event names the file at all. Every event in a watched
//! directory is only a hint to re-read; the reloader decides by content.

use std::collections::BTreeSet;
use std::path::PathBuf;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches a set of directories (non-recursive) and sends a hint per event.
pub struct DirWatcher {
    watcher: notify::RecommendedWatcher,
    dirs: BTreeSet<PathBuf>,
}

impl DirWatcher {
    /// Hints go to `hints`; a full channel drops them (one pending hint is
    /// as good as many).
    pub fn new(hints: mpsc::Sender<()>) -> notify::Result<DirWatcher> {
        // notify calls back on its own thread; `try_send` never blocks it.
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            match event {
                // Reads (ours included) change nothing: ignoring them keeps
                // a reload from waking the next one.
                Ok(e) if matches!(e.kind, EventKind::Access(_)) => {}
                Ok(_) => {
                    let _ = hints.try_send(());
                }
                Err(error) => {
                    // A lost event (queue overflow) may hide a change: re-read.
                    tracing::warn!(%error, "config watch error");
                    let _ = hints.try_send(());
                }
            }
        })?;
        Ok(DirWatcher {
            watcher,
            dirs: BTreeSet::new(),
        })
    }

    /// Watches exactly `dirs` from now on. A directory that cannot be
    /// watched (missing) is logged; the periodic re-check still covers it.
    pub fn set_dirs(&mut self, dirs: &[PathBuf]) {
        let wanted: BTreeSet<PathBuf> = dirs.iter().cloned().collect();
        for gone in self.dirs.difference(&wanted) {
            let _ = self.watcher.unwatch(gone);
        }
        let mut watching = BTreeSet::new();
        for dir in &wanted {
            if self.dirs.contains(dir) {
                watching.insert(dir.clone());
                continue;
            }
            match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(dir = %dir.display(), "watching config directory");
                    watching.insert(dir.clone());
                }
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "cannot watch config directory; relying on the periodic re-check");
                }
            }
        }
        self.dirs = watching;
    }

    /// The directories currently watched.
    pub fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        self.dirs.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_atomic_rename_in_a_watched_directory_is_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let mut w = DirWatcher::new(tx).unwrap();
        w.set_dirs(&[dir.path().to_path_buf()]);
        assert_eq!(w.dirs().count(), 1);
        std::fs::write(dir.path().join("new.tmp"), "x").unwrap();
        std::fs::rename(dir.path().join("new.tmp"), dir.path().join("c.yaml")).unwrap();
        // Bounded wait for an event that must come; not a timing assertion.
        tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a hint")
            .expect("channel open");
    }

    #[test]
    fn a_missing_directory_is_skipped() {
        let (tx, _rx) = mpsc::channel(1);
        let mut w = DirWatcher::new(tx).unwrap();
        w.set_dirs(&[PathBuf::from("/nonexistent/ch-edge-proxy-test")]);
        assert_eq!(w.dirs().count(), 0);
    }
}
