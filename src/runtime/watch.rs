//! Directory watches that wake the reloader.
//!
//! Directories, never files: a watch on a file dies when an editor renames
//! a new version over it, and a Kubernetes ConfigMap update swaps a `..data`
//! symlink so that no event names the file at all. An event is only a hint
//! to re-read (the reloader decides by content); events about files that
//! cannot matter (a log file written next to the config) are dropped, so they
//! do not make the proxy re-read its route files over and over.
//!
//! Every path in [`Targets`] is absolute, made so once where the targets are derived: notify
//! names an event's path as the watched directory joined to the current directory, so a
//! target kept relative (`--config config.yaml`, an include written `routes.d`) would never
//! match one and every edit would wait for the periodic re-check.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use notify::event::RemoveKind;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::model::config::is_route_file;
use crate::runtime::meters;

/// What to watch for one configuration; every path absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Watches a set of directories (non-recursive) and sends a hint per
/// relevant event.
pub struct DirWatcher {
    watcher: notify::RecommendedWatcher,
    dirs: BTreeSet<PathBuf>,
    targets: Arc<RwLock<Option<Targets>>>,
}

impl DirWatcher {
    /// Hints go to `hints`; a full channel drops them (one pending hint is
    /// as good as many).
    pub fn new(hints: mpsc::Sender<()>) -> notify::Result<DirWatcher> {
        let targets: Arc<RwLock<Option<Targets>>> = Arc::default();
        let wanted = targets.clone();
        let ignored = metrics::counter!(meters::CONFIG_WATCH_EVENTS, "result" => "ignored");
        let hinted = metrics::counter!(meters::CONFIG_WATCH_EVENTS, "result" => "hint");
        // notify calls back on its own thread; `try_send` never blocks it.
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let matters = |e: &notify::Event| {
                let wanted = wanted.read().unwrap_or_else(|e| e.into_inner());
                e.paths
                    .iter()
                    .any(|p| wanted.as_ref().is_none_or(|t| t.relevant(p)))
            };
            match event {
                // Reads (ours included) change nothing: ignoring them keeps
                // a reload from waking the next one.
                Ok(e) if matches!(e.kind, EventKind::Access(_)) => ignored.increment(1),
                Ok(e)
                    if !e.paths.is_empty()
                        && !matches!(
                            e.kind,
                            EventKind::Remove(RemoveKind::Folder) | EventKind::Other
                        )
                        && !matters(&e) =>
                {
                    ignored.increment(1)
                }
                Ok(e) => {
                    tracing::trace!(kind = ?e.kind, paths = ?e.paths, "config watch event");
                    hinted.increment(1);
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
            targets,
        })
    }

    /// Watches exactly `targets` from now on. A directory that cannot be
    /// watched (missing) is logged; the periodic re-check still covers it.
    pub fn set(&mut self, targets: &Targets) {
        *self.targets.write().unwrap_or_else(|e| e.into_inner()) = Some(targets.clone());
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
        let t = Targets::of(
            Path::new("/etc/p/config.yaml"),
            &[PathBuf::from("/etc/p/routes.conf")],
        );
        // A directory entry must exist to count as one.
        let dir = tempfile::tempdir().unwrap();
        let routes_d = dir.path().join("routes.d");
        std::fs::create_dir(&routes_d).unwrap();
        let with_dir = Targets::of(
            Path::new("/etc/p/config.yaml"),
            std::slice::from_ref(&routes_d),
        );
        for p in [
            "/etc/p/config.yaml",
            "/etc/p/routes.conf",
            "/etc/p/..data",
            "/etc/p/..data_tmp",
            "/etc/p/..2026_11_22",
        ] {
            assert!(t.relevant(Path::new(p)), "{p}");
        }
        for p in [
            "/etc/p/proxy.log",
            "/etc/p/other.yaml", // not included: the config's directory is not an include
            "/etc/p/a.yaml.tmp~",
            "/etc/p/4913",
            "/etc/p/.config.yaml.swp",
            "/elsewhere/config.yaml",
        ] {
            assert!(!t.relevant(Path::new(p)), "{p}");
        }
        for name in ["a.yaml", "b.yml", "c.json"] {
            assert!(with_dir.relevant(&routes_d.join(name)), "{name}");
        }
        assert!(!with_dir.relevant(&routes_d.join("notes.txt")));
    }

    /// `--config config.yaml` and includes written relative to it: the targets are absolute,
    /// so the absolute paths notify reports match them.
    #[test]
    fn relative_paths_become_absolute_targets() {
        let cwd = std::env::current_dir().unwrap();
        let t = Targets::of(
            Path::new("config.yaml"),
            &[PathBuf::from("cfg/routes.yaml")],
        )
        .with_files(&[PathBuf::from("./certs/tls.crt")]);
        let mut dirs = vec![cwd.clone(), cwd.join("cfg"), cwd.join("certs")];
        dirs.sort();
        assert_eq!(t.dirs, dirs);
        assert!(t.files.iter().all(|(d, _)| d.is_absolute()), "{t:?}");
        for p in [
            "config.yaml",
            "cfg/routes.yaml",
            "certs/tls.crt",
            "cfg/..data",
        ] {
            assert!(t.relevant(&cwd.join(p)), "{p}");
        }
        // What notify reports for a directory watched as `./cfg`: the same directory.
        assert!(t.relevant(&cwd.join("./cfg/routes.yaml")));
        assert!(!t.relevant(&cwd.join("cfg/config.yaml")));
        // The same configuration named absolutely watches the same targets.
        assert_eq!(
            t,
            Targets::of(&cwd.join("config.yaml"), &[cwd.join("cfg/routes.yaml")])
                .with_files(&[cwd.join("certs/tls.crt")])
        );
    }

    #[test]
    fn certificate_files_are_targets_by_name() {
        let t = Targets::of(Path::new("/etc/p/config.yaml"), &[]).with_files(&[
            PathBuf::from("/etc/certs/tls.crt"),
            PathBuf::from("/etc/certs/tls.key"),
        ]);
        assert_eq!(
            t.dirs,
            vec![PathBuf::from("/etc/certs"), PathBuf::from("/etc/p")]
        );
        for p in [
            "/etc/certs/tls.crt",
            "/etc/certs/tls.key",
            "/etc/certs/..data",
            "/etc/p/config.yaml",
        ] {
            assert!(t.relevant(Path::new(p)), "{p}");
        }
        assert!(!t.relevant(Path::new("/etc/certs/ca.crt")));
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
            t.files,
            vec![
                (d.to_path_buf(), OsString::from("config.yaml")),
                (d.join("more"), OsString::from("extra.conf"))
            ]
        );
        assert_eq!(t.route_dirs, vec![d.join("routes.d")]);
    }
}
