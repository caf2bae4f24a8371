//! Validated routes per included file, and per chunk of a big file, so a
//! reload re-parses only what changed: 100k routes over 1,000 files with
//! one file edited parse one file; 100k routes in one file with one route
//! edited parse the chunk around it ([`super::fast::chunks`]).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::RouteSpec;

/// The routes of each included file a load read without error, keyed by
/// path, with a hash of the text they came from. A [`super::Config`] carries
/// the set for exactly the files it read, so it never outgrows the current
/// file set; the next load takes it as a hint ([`super::load_reusing`]).
#[derive(Debug, Clone, Default)]
pub struct RouteFiles(Arc<HashMap<PathBuf, Parsed>>);

#[derive(Debug)]
struct Parsed {
    text_hash: u64,
    chunks: Vec<Chunk>,
}

/// The validated routes of one chunk of a file's text.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    pub key: ChunkKey,
    pub routes: Arc<[RouteSpec]>,
}

/// A chunk's text as hash and length (a chunk's routes depend on its text
/// and its file only: specs hold no line numbers).
pub(crate) type ChunkKey = (u64, usize);

impl RouteFiles {
    /// Number of files held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The chunks parsed earlier from this very text of `path`.
    pub(crate) fn get(&self, path: &Path, text_hash: u64) -> Option<&[Chunk]> {
        self.0
            .get(path)
            .filter(|p| p.text_hash == text_hash)
            .map(|p| p.chunks.as_slice())
    }

    /// The chunks parsed earlier from any text of `path`, by key.
    pub(crate) fn chunks(&self, path: &Path) -> HashMap<ChunkKey, Arc<[RouteSpec]>> {
        self.0
            .get(path)
            .map(|p| p.chunks.iter().map(|c| (c.key, c.routes.clone())).collect())
            .unwrap_or_default()
    }
}

/// Collects the [`RouteFiles`] of one load.
#[derive(Default)]
pub(crate) struct Builder(HashMap<PathBuf, Parsed>);

impl Builder {
    pub fn add(&mut self, path: &Path, text_hash: u64, chunks: Vec<Chunk>) {
        self.0
            .insert(path.to_path_buf(), Parsed { text_hash, chunks });
    }

    pub fn finish(self) -> RouteFiles {
        RouteFiles(Arc::new(self.0))
    }
}

/// Hash of a file's text (see [`super::include::content_hasher`]).
pub(crate) fn text_hash(text: &str) -> u64 {
    let mut h = super::include::content_hasher();
    text.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
