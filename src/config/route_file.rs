//! Reading one route file (`routes: [...]`) into validated specs, chunk by
//! chunk: a plain file ([`fast`]) is cut into content-defined chunks, the
//! chunks a previous load already read are taken from the cache, and the
//! others are parsed and validated — in parallel when there is much to read.
//! Anything outside the plain layout (and every syntax error) is read by
//! serde-saphyr as one chunk, so its messages stay its own.

use std::collections::HashMap;
use std::sync::Arc;

use super::cache::{text_hash, Chunk, ChunkKey};
use super::validate::Errors;
use super::{fast, raw, routes, RouteSpec};

/// Chunks holding at least this much text to parse are parsed on every
/// core (a big file read at start or replaced as a whole); less is parsed
/// on the calling thread.
pub(super) const PARALLEL_FROM: usize = 256 * 1024;

/// The routes of one file's `text`, as chunks; `earlier` holds the chunks a
/// previous load read from this file, by key. Problems go to `errs` (the
/// chunks returned then are incomplete and must not be used).
pub(crate) fn read(
    text: &str,
    source: &str,
    earlier: &HashMap<ChunkKey, Arc<[RouteSpec]>>,
    errs: &mut Errors,
) -> Vec<Chunk> {
    let blank = |l: &str| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    };
    if text.lines().all(blank) {
        // Refused rather than read as "no routes": a half-written file must not drop them.
        errs.add(source, None, "", "empty file (expected `routes: [...]`)");
        return Vec::new();
    }
    let name: Arc<str> = source.into();
    if let Some(chunks) = plain(text, &name, earlier, errs) {
        return chunks;
    }
    let specs = match raw::parse::<raw::RawRoutesFile>(text, source) {
        Ok(file) => {
            let raw = file.routes.into_iter().map(Into::into).collect();
            routes::routes(raw, 1, &name, errs)
        }
        Err(e) => {
            errs.push(e);
            Vec::new()
        }
    };
    vec![Chunk {
        key: (text_hash(text), text.len()),
        routes: specs.into(),
    }]
}

/// A file in the plain layout, or `None` when it is not plain.
fn plain(
    text: &str,
    source: &Arc<str>,
    earlier: &HashMap<ChunkKey, Arc<[RouteSpec]>>,
    errs: &mut Errors,
) -> Option<Vec<Chunk>> {
    use rayon::prelude::*;

    let pieces = fast::chunks(text)?;
    let keys: Vec<ChunkKey> = pieces
        .iter()
        .map(|p| (text_hash(p.text()), p.text().len()))
        .collect();
    let todo: Vec<usize> = (0..pieces.len())
        .filter(|&i| keys.get(i).is_none_or(|k| !earlier.contains_key(k)))
        .collect();
    let to_read: usize = todo
        .iter()
        .filter_map(|&i| pieces.get(i))
        .map(|p| p.text().len())
        .sum();
    let read_at = |&i: &usize| Some((i, read_piece(pieces.get(i)?, source)?));
    let read: Vec<(usize, (Vec<RouteSpec>, Errors))> = if to_read < PARALLEL_FROM {
        todo.iter().map(read_at).collect::<Option<_>>()?
    } else {
        todo.par_iter().map(read_at).collect::<Option<_>>()?
    };
    if read.iter().any(|(_, (_, e))| e.len() > 0) {
        // Messages number routes from the start of the file, and chunks
        // number their own: read the file again in one piece (errors are
        // rare; this keeps the common path simple).
        let (_, piece_errs) = read_piece(&fast::whole(text)?, source)?;
        errs.append(piece_errs);
        return Some(Vec::new());
    }
    let mut fresh: HashMap<usize, Vec<RouteSpec>> =
        read.into_iter().map(|(i, (specs, _))| (i, specs)).collect();
    let chunks = keys
        .into_iter()
        .enumerate()
        .map(|(i, key)| {
            let routes = match fresh.remove(&i) {
                Some(specs) => specs.into(),
                None => earlier.get(&key).cloned().unwrap_or_default(),
            };
            Chunk { key, routes }
        })
        .collect();
    Some(chunks)
}

/// One piece's routes, each validated as soon as it is read (no list of
/// parsed routes is built); `None` when the piece is not plain. Routes are
/// numbered from the piece's start in messages.
fn read_piece(piece: &fast::Piece<'_>, source: &Arc<str>) -> Option<(Vec<RouteSpec>, Errors)> {
    // Its own copy of the name per piece: every spec counts a reference to
    // it, and threads sharing one counter would contend for it.
    let source: Arc<str> = Arc::from(&**source);
    let mut specs = Vec::with_capacity(piece.text().len() / 48);
    let (mut errs, mut index) = (Errors::default(), 0);
    piece.for_each_route(|raw| {
        index += 1;
        if let Some(spec) = routes::route(raw, index, &source, &mut errs) {
            specs.push(spec);
        }
    })?;
    Some((specs, errs))
}
