//! Directory watches that wake the reloader.
//!
//! Directories, never files: a watch on a file dies when an editor renames
//! a new version over it, and a Kubernetes ConfigMap update swaps a `..data`
//! symlink so that no event names the file at all. An event is only a hint
//! to re-read (the reloader decides by content); events about files that
//! cannot matter (a log file written next to the config) are dropped, so they
//! do not make the proxy re-read its route files over and over. On Linux the kernel is not even
//! asked for what cannot change a file's content or name (writes before the close, opens,
//! reads, attribute changes: see `linux.rs`), so a log appended next to the config costs
//! nothing; other platforms use notify, which wakes for those too.
//!
//! Every path in [`Targets`] is absolute, made so once where the targets are derived: an
//! event's path is the watched directory joined to the name the kernel reports, so a
//! target kept relative (`--config config.yaml`, an include written `routes.d`) would never
//! match one and every edit would wait for the periodic re-check.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::model::config::is_route_file;
use crate::runtime::meters;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux::Backend;
#[cfg(not(target_os = "linux"))]
mod portable;
#[cfg(not(target_os = "linux"))]
use portable::Backend;

/// What to watch for one configuration; every path absolute. The default watches nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// The main file's directory and each include entry's (a directory
    /// entry itself, a file entry's parent), sorted, without duplicates.
    pub dirs: Vec<PathBuf>,
    /// The files that matter by name, as (directory, name): the main file and each file entry,
    /// whatever their extension.
    pub files: Vec<(PathBuf, OsString)>,
    /// The directory entries: their route files (`*.yaml`, `*.yml`, `*.json`) matter.
    pub route_dirs: Vec<PathBuf>,
}

impl Targets {
    pub fn of(path: &Path, includes: &[PathBuf]) -> Targets {
        let path = absolute(path);
        let mut dirs = vec![parent(&path)];
        let mut files: Vec<(PathBuf, OsString)> = path
            .file_name()
            .map(|n| (parent(&path), n.into()))
            .into_iter()
            .collect();
        let mut route_dirs = Vec::new();
        for entry in includes.iter().map(|e| absolute(e)) {
            if entry.is_dir() {
                dirs.push(entry.clone());
                route_dirs.push(entry);
            } else {
                dirs.push(parent(&entry));
                files.extend(entry.file_name().map(|n| (parent(&entry), n.into())));
            }
        }
        for list in [&mut dirs, &mut route_dirs] {
            list.sort();
            list.dedup();
        }
        files.sort();
        files.dedup();
        Targets {
            dirs,
            files,
            route_dirs,
        }
    }

    /// These plus `files` (certificates, keys, CA files), watched by name in their
    /// directories: a Kubernetes Secret volume swaps `..data` there, an editor renames over.
    pub fn with_files(mut self, files: &[PathBuf]) -> Targets {
        for f in files.iter().map(|f| absolute(f)) {
            self.dirs.push(parent(&f));
            self.files
                .extend(f.file_name().map(|n| (parent(&f), n.into())));
        }
        self.dirs.sort();
        self.dirs.dedup();
        self.files.sort();
        self.files.dedup();
        self
    }

    /// True when an event about `path` may change the configuration: the main file, an
    /// included file, a route file in an included directory, or kubelet's `..data` swap in any
    /// watched directory. Anything else (a log file next to the config) is not. `path` is
    /// absolute, as notify reports it.
    fn relevant(&self, path: &Path) -> bool {
        let Some(name) = path.file_name() else {
            return true;
        };
        let dir = parent(path);
        // `..data`, `..data_tmp`, `..2026_…`: kubelet's ConfigMap swap.
        name.as_encoded_bytes().starts_with(b"..")
            || self.files.iter().any(|(d, n)| n == name && *d == dir)
            || (is_route_file(path) && self.route_dirs.contains(&dir))
    }
}

/// The directory of an absolute `p` (itself for the root).
fn parent(p: &Path) -> PathBuf {
    p.parent().unwrap_or(p).to_path_buf()
}

/// `p` against the current directory, as notify joins a watched directory (no symlink
/// resolved, so a Kubernetes `..data` swap still happens inside the watched directory). Only
/// a current directory that is gone leaves `p` as it is.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Where a backend's events go: each counted by result, and a hint sent for one that may
/// change the configuration.
#[derive(Clone)]
struct Sink {
    targets: Arc<RwLock<Option<Targets>>>,
    hints: mpsc::Sender<()>,
    hinted: metrics::Counter,
    ignored: metrics::Counter,
}

impl Sink {
    /// A reload is due. A full channel drops the hint: one pending hint is as good as many,
    /// and `try_send` never blocks the backend.
    fn hint(&self) {
        self.hinted.increment(1);
        self.wake();
    }

    /// A hint that is no event (a lost one, a failing watch): re-read, uncounted.
    fn wake(&self) {
        let _ = self.hints.try_send(());
    }

    fn ignore(&self) {
        self.ignored.increment(1);
    }

    /// A hint if one of `paths` (absolute) may change the configuration, or none is known yet.
    fn about<P: AsRef<Path>>(&self, paths: impl IntoIterator<Item = P>) {
        let matters = {
            let wanted = self.targets.read().unwrap_or_else(|e| e.into_inner());
            paths
                .into_iter()
                .any(|p| wanted.as_ref().is_none_or(|t| t.relevant(p.as_ref())))
        };
        if matters {
            self.hint();
        } else {
            self.ignore();
        }
    }
}

/// Watches a set of directories (non-recursive) and sends a hint per
/// relevant event.
pub struct DirWatcher {
    backend: Backend,
    dirs: BTreeSet<PathBuf>,
    targets: Arc<RwLock<Option<Targets>>>,
}

impl DirWatcher {
    /// Hints go to `hints`; a full channel drops them (one pending hint is
    /// as good as many). On Linux, needs a Tokio runtime (the events are read by a task).
    pub fn new(hints: mpsc::Sender<()>) -> io::Result<DirWatcher> {
        let targets: Arc<RwLock<Option<Targets>>> = Arc::default();
        let sink = Sink {
            targets: targets.clone(),
            hints,
            hinted: metrics::counter!(meters::CONFIG_WATCH_EVENTS, "result" => "hint"),
            ignored: metrics::counter!(meters::CONFIG_WATCH_EVENTS, "result" => "ignored"),
        };
        Ok(DirWatcher {
            backend: Backend::new(sink)?,
            dirs: BTreeSet::new(),
            targets,
        })
    }

    /// Watches exactly `targets` from now on. A directory that cannot be
    /// watched (missing) is logged; the periodic re-check still covers it.
    pub fn set(&mut self, targets: &Targets) {
        *self.targets.write().unwrap_or_else(|e| e.into_inner()) = Some(targets.clone());
        let wanted: BTreeSet<PathBuf> = targets.dirs.iter().cloned().collect();
        for gone in self.dirs.difference(&wanted) {
            self.backend.unwatch(gone);
        }
        let mut watching = BTreeSet::new();
        for dir in &wanted {
            if self.dirs.contains(dir) {
                watching.insert(dir.clone());
                continue;
            }
            match self.backend.watch(dir) {
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
mod tests;
