//! The validated routes of each included file, so a reload parses only the files whose text
//! changed: 100k routes over 1,000 files with one file edited parse one file.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::route::RouteSpec;

/// The routes of each included file a load read without problems, keyed by path, with a hash
/// of the text they came from. A [`super::Config`] carries the set for exactly the files it
/// read, so it never outgrows the current file set; the next load takes it as a hint
/// ([`super::load_reusing`]). The specs are the very `Arc` the configuration's routes hold, so
/// the route table recognises an unchanged file and keeps its routes.
#[derive(Debug, Clone, Default)]
pub struct RouteFiles(Arc<HashMap<PathBuf, Parsed>>);

#[derive(Debug)]
struct Parsed {
    text_hash: u64,
    routes: Arc<[RouteSpec]>,
}

impl RouteFiles {
    /// Number of files held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The routes read from the last text of `path` that was read without problems.
    pub(crate) fn earlier(&self, path: &Path) -> Option<&Arc<[RouteSpec]>> {
        self.0.get(path).map(|p| &p.routes)
    }

    /// The routes read earlier from this very text of `path`.
    pub(crate) fn get(&self, path: &Path, text_hash: u64) -> Option<&Arc<[RouteSpec]>> {
        self.0
            .get(path)
            .filter(|p| p.text_hash == text_hash)
            .map(|p| &p.routes)
    }
}

/// Collects the [`RouteFiles`] of one load.
#[derive(Default)]
pub(crate) struct Builder(HashMap<PathBuf, Parsed>);

impl Builder {
    pub fn add(&mut self, path: &Path, text_hash: u64, routes: Arc<[RouteSpec]>) {
        self.0
            .insert(path.to_path_buf(), Parsed { text_hash, routes });
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
