//! Directory watches that wake the reloader.
//!
//! Directories, never files: a watch on a file dies when an editor renames
//! a new version over it, and a Kubernetes ConfigMap update swaps a `..data`
//! symlink so that no event names the file at all. An event is only a hint
//! to re-read (the reloader decides by content); events about files that
//! cannot matter (a log file written next to the config) are dropped, so they
//! do not make the proxy re-read its route files over and over.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use notify::event::RemoveKind;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::model::config::is_route_file;

/// What to watch for one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// The main file's directory and each include entry's (a directory
    /// entry itself, a file entry's parent), sorted, without duplicates.
    pub dirs: Vec<PathBuf>,
    /// File names that matter besides route files (`*.yaml`, `*.yml`, `*.json`) and `..*`: the main
    /// file's and each file entry's, whatever their extension.
    pub names: Vec<OsString>,
}

impl Targets {
    pub fn of(path: &Path, includes: &[PathBuf]) -> Targets {
        let parent = |p: &Path| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut dirs = vec![parent(path)];
        let mut names: Vec<OsString> = path.file_name().map(Into::into).into_iter().collect();
        for entry in includes {
            if entry.is_dir() {
                dirs.push(entry.clone());
            } else {
                dirs.push(parent(entry));
                names.extend(entry.file_name().map(Into::into));
            }
        }
        dirs.sort();
        dirs.dedup();
        names.sort();
        names.dedup();
        Targets { dirs, names }
    }
}

/// True when an event about `path` may change the configuration.
fn relevant(path: &Path, names: &[OsString]) -> bool {
    let Some(name) = path.file_name() else {
        return true;
    };
    // `..data`, `..data_tmp`, `..2026_…`: kubelet's ConfigMap swap.
    name.as_encoded_bytes().starts_with(b"..")
        || is_route_file(path)
        || names.iter().any(|n| n == name)
}

/// Watches a set of directories (non-recursive) and sends a hint per
/// relevant event.
pub struct DirWatcher {
    watcher: notify::RecommendedWatcher,
    dirs: BTreeSet<PathBuf>,
    names: Arc<RwLock<Vec<OsString>>>,
}

impl DirWatcher {
    /// Hints go to `hints`; a full channel drops them (one pending hint is
    /// as good as many).
    pub fn new(hints: mpsc::Sender<()>) -> notify::Result<DirWatcher> {
        let names: Arc<RwLock<Vec<OsString>>> = Arc::default();
        let wanted = names.clone();
        // notify calls back on its own thread; `try_send` never blocks it.
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            match event {
                // Reads (ours included) change nothing: ignoring them keeps
                // a reload from waking the next one.
                Ok(e) if matches!(e.kind, EventKind::Access(_)) => {}
                Ok(e)
                    if !e.paths.is_empty()
                        && !matches!(
                            e.kind,
                            EventKind::Remove(RemoveKind::Folder) | EventKind::Other
                        )
                        && !e.paths.iter().any(|p| {
                            relevant(p, &wanted.read().unwrap_or_else(|e| e.into_inner()))
                        }) => {}
                Ok(e) => {
                    tracing::trace!(kind = ?e.kind, paths = ?e.paths, "config watch event");
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
            names,
        })
    }

    /// Watches exactly `targets` from now on. A directory that cannot be
    /// watched (missing) is logged; the periodic re-check still covers it.
    pub fn set(&mut self, targets: &Targets) {
        *self.names.write().unwrap_or_else(|e| e.into_inner()) = targets.names.clone();
        let wanted: BTreeSet<PathBuf> = targets.dirs.iter().cloned().collect();
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
    #[cfg(test)]
    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
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
        w.set(&Targets::of(&dir.path().join("c.conf"), &[]));
        assert_eq!(w.dirs().count(), 1);
        std::fs::write(dir.path().join("new.tmp"), "x").unwrap();
        // Renaming over the config file is a hint, whatever its extension.
        std::fs::rename(dir.path().join("new.tmp"), dir.path().join("c.conf")).unwrap();
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
        w.set(&Targets::of(
            Path::new("/nonexistent/ch-edge-proxy/c.yaml"),
            &[],
        ));
        assert_eq!(w.dirs().count(), 0);
    }

    #[test]
    fn relevance() {
        let names = [OsString::from("routes.conf")];
        for p in [
            "d/a.yaml",
            "d/b.yml",
            "d/c.json",
            "d/..data",
            "d/..data_tmp",
            "d/..2026_11_22",
            "d/routes.conf",
        ] {
            assert!(relevant(Path::new(p), &names), "{p}");
        }
        for p in ["d/proxy.log", "d/a.yaml.tmp~", "d/4913", "d/.a.yaml.swp"] {
            assert!(!relevant(Path::new(p), &names), "{p}");
        }
    }

    #[test]
    fn targets_cover_the_config_and_every_include() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("routes.d")).unwrap();
        std::fs::create_dir(d.join("more")).unwrap();
        std::fs::write(d.join("more/extra.conf"), "routes: []\n").unwrap();
        let t = Targets::of(
            &d.join("config.yaml"),
            &[d.join("routes.d"), d.join("more/extra.conf")],
        );
        let mut want = vec![d.to_path_buf(), d.join("routes.d"), d.join("more")];
        want.sort();
        assert_eq!(t.dirs, want);
        assert_eq!(
            t.names,
            vec![OsString::from("config.yaml"), OsString::from("extra.conf")]
        );
    }
}
