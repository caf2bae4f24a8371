//! Finding, in an earlier version of a list, the item a new one repeats: what lets a reload of
//! an edited file keep the specs and routes of every entry it did not change, also when
//! entries were inserted or removed before them.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Positions after the expected one that are tried before the index (a few entries removed).
const LOOKAHEAD: usize = 4;

/// An earlier version of a list, searched in the order the new one is read.
pub(crate) struct Earlier<'p, T, K> {
    items: &'p [T],
    /// Where the item after the last one found sits.
    next: usize,
    /// Whether anything was found yet: until then the lists may be unrelated (a file replaced,
    /// not edited), and no index is built for them.
    related: bool,
    /// Position by key, built the first time the positions disagree after a find.
    index: Option<HashMap<K, usize, foldhash::fast::RandomState>>,
    key: fn(&'p T) -> Option<K>,
}

impl<'p, T, K: Hash + Eq> Earlier<'p, T, K> {
    /// `key` names an item for the search by key (items without one are found by position only).
    pub fn new(items: &'p [T], key: fn(&'p T) -> Option<K>) -> Self {
        Earlier {
            items,
            next: 0,
            related: false,
            index: None,
            key,
        }
    }

    /// The earlier item `is_same` accepts, with its position: the one after the last found or
    /// one of the few after it (edits in place, appends, insertions, short removals: no index
    /// needed), else — once the lists have proved related — the one with `key` (longer
    /// removals, moves).
    pub fn find<Q>(&mut self, key: &Q, is_same: impl Fn(&T) -> bool) -> Option<(usize, &'p T)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let near = (self.next..self.next + 1 + LOOKAHEAD)
            .find(|&i| self.items.get(i).is_some_and(&is_same));
        let at = match near {
            Some(at) => at,
            None if !self.related => return None,
            None => {
                let at = *self.index().get(key)?;
                if !is_same(self.items.get(at)?) {
                    return None;
                }
                at
            }
        };
        self.related = true;
        self.next = at + 1;
        Some((at, self.items.get(at)?))
    }

    fn index(&mut self) -> &HashMap<K, usize, foldhash::fast::RandomState> {
        let (items, key_of) = (self.items, self.key);
        self.index.get_or_insert_with(|| {
            let mut index = HashMap::with_capacity_and_hasher(items.len(), Default::default());
            for (i, item) in items.iter().enumerate() {
                if let Some(k) = key_of(item) {
                    index.entry(k).or_insert(i);
                }
            }
            index
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(earlier: &[&'static str], new: &[&'static str]) -> Vec<Option<usize>> {
        let mut e = Earlier::new(earlier, |s: &&'static str| Some(*s));
        new.iter()
            .map(|n| e.find(*n, |o| o == n).map(|(i, _)| i))
            .collect()
    }

    #[test]
    fn finds_by_position_then_by_key() {
        let old = ["a", "b", "c", "d", "e", "f", "g", "h"];
        assert_eq!(found(&old, &old), (0..8).map(Some).collect::<Vec<_>>());
        // Edited in place, inserted, removed (a few, then many), moved.
        assert_eq!(found(&old, &["a", "x", "c"]), [Some(0), None, Some(2)]);
        assert_eq!(
            found(&old, &["x", "y", "a", "b"]),
            [None, None, Some(0), Some(1)]
        );
        assert_eq!(found(&old, &["c", "d"]), [Some(2), Some(3)]);
        assert_eq!(found(&old, &["a", "h"]), [Some(0), Some(7)]);
        assert_eq!(found(&old, &["b", "a"]), [Some(1), Some(0)]);
        // Nothing found by position yet: no search by key (a replaced list).
        assert_eq!(found(&old, &["x", "h"]), [None, None]);
        assert_eq!(found(&[], &["a"]), [None]);
    }
}
