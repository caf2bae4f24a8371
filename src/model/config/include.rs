//! Reading files and expanding `include` entries.
//!
//! A directory entry means its `*.yaml`, `*.yml` and `*.json` route files,
//! non-recursive, sorted by name, hidden names skipped, symlinks followed. That is exactly what a
//! Kubernetes ConfigMap volume needs: its real files live under `..data/`
//! (and `..2026_…/`), reached through top-level symlinks.

use std::fs;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest file read (100k routes are ~7 MiB of JSON, ~15 MiB of YAML).
const MAX_FILE: u64 = 64 << 20;

/// Why a file, or an `include` entry, could not be read. Messages as the configuration's
/// problems show them (after the file's name, for [`IncludeError::Read`] and
/// [`IncludeError::TooLarge`]).
#[derive(Debug, thiserror::Error)]
pub enum IncludeError {
    #[error("cannot read: {0}")]
    Read(io::Error),
    #[error("larger than {} MiB", MAX_FILE >> 20)]
    TooLarge,
    /// An entry, or a file in an entry's directory, that cannot be opened.
    #[error("cannot read {}: {error}", path.display())]
    Entry { path: PathBuf, error: io::Error },
    #[error("cannot list {}: {error}", path.display())]
    List { path: PathBuf, error: io::Error },
}

/// The same failure: variant, path and the kind of I/O error (an `io::Error` has no `==`).
impl PartialEq for IncludeError {
    fn eq(&self, other: &Self) -> bool {
        use IncludeError::*;
        match (self, other) {
            (Read(a), Read(b)) => a.kind() == b.kind(),
            (TooLarge, TooLarge) => true,
            (Entry { path, error }, Entry { path: p, error: e })
            | (List { path, error }, List { path: p, error: e }) => {
                path == p && error.kind() == e.kind()
            }
            _ => false,
        }
    }
}

/// Reads a UTF-8 text file of at most [`MAX_FILE`] bytes.
pub(crate) fn read(path: &Path) -> Result<String, IncludeError> {
    let file = fs::File::open(path).map_err(IncludeError::Read)?;
    // Sized up front: growing a multi-megabyte buffer step by step costs
    // copies, and each freed step makes glibc consolidate its free lists.
    let size = file.metadata().map_or(0, |m| m.len().min(MAX_FILE + 1));
    let mut text = String::with_capacity(usize::try_from(size).unwrap_or(0).saturating_add(1));
    let n = file
        .take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(IncludeError::Read)?;
    if n as u64 > MAX_FILE {
        return Err(IncludeError::TooLarge);
    }
    Ok(text)
}

/// The files one `include` entry stands for.
pub(crate) fn files(entry: &Path) -> Result<Vec<PathBuf>, IncludeError> {
    let list = |error| IncludeError::List {
        path: entry.to_path_buf(),
        error,
    };
    let meta = fs::metadata(entry).map_err(|error| IncludeError::Entry {
        path: entry.to_path_buf(),
        error,
    })?;
    if !meta.is_dir() {
        return Ok(vec![entry.to_path_buf()]);
    }
    let dir = fs::read_dir(entry).map_err(list)?;
    let mut out = Vec::new();
    for item in dir {
        let item = item.map_err(list)?;
        let name = item.file_name();
        let name = Path::new(&name);
        let hidden = name.as_os_str().as_encoded_bytes().first() == Some(&b'.');
        if hidden || !is_route_file(name) {
            continue;
        }
        let path = item.path();
        // `metadata` follows symlinks: a dangling one is an error, a directory is skipped.
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(error) => return Err(IncludeError::Entry { path, error }),
        };
        if meta.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a directory entry named `name` is a route file: `*.yaml`, `*.yml` or `*.json`.
pub fn is_route_file(name: &Path) -> bool {
    matches!(
        name.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// A hasher for file contents: foldhash (quality variant) with a fixed
/// seed. Fast on megabytes of routes (SipHash took ~5 ms per pass over a
/// 100k-route file, and a reload makes three); stable for a given build,
/// which is all change detection and the `config_hash` shown need.
pub(crate) fn content_hasher() -> foldhash::quality::FoldHasher<'static> {
    foldhash::quality::FixedState::with_seed(0x6368_6564_6765).build_hasher()
}

/// Hashes what a load read, in the order it read it.
pub(crate) struct Fingerprint(foldhash::quality::FoldHasher<'static>);

impl Fingerprint {
    pub fn new(main: &str) -> Self {
        let mut h = content_hasher();
        main.hash(&mut h);
        Fingerprint(h)
    }

    /// One include entry's expansion (file names, or why it failed, as its message).
    pub fn files(&mut self, files: &Result<Vec<PathBuf>, IncludeError>) {
        files
            .as_ref()
            .map_err(ToString::to_string)
            .hash(&mut self.0);
    }

    /// One included file's text (or why it could not be read, as its message).
    pub fn text(&mut self, text: &Result<String, IncludeError>) {
        text.as_ref().map_err(ToString::to_string).hash(&mut self.0);
    }

    pub fn finish(&self) -> u64 {
        self.0.finish()
    }
}
