//! Finding, in an earlier version of a list, the item a new one repeats: what lets a reload of
//! an edited file keep the specs and routes of every entry it did not change, also when
//! entries were inserted or removed before them.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Misses in a row, before anything was found, that make a list count as unrelated to the
/// earlier one (a file replaced, not edited): the search stops.
const GIVE_UP: usize = 512;

/// An earlier version of a list, searched in the order the new one is read.
pub(crate) struct Earlier<'p, T, K> {
    items: &'p [T],
    /// Where the item after the last one found sits.
    next: usize,
    /// Items found so far, and searches that found nothing since the last one.
    found: usize,
    misses: usize,
    /// Position by key, built the first time the positions disagree.
    index: Option<HashMap<K, usize, foldhash::fast::RandomState>>,
    key: fn(&'p T) -> Option<K>,
}

impl<'p, T, K: Hash + Eq> Earlier<'p, T, K> {
    /// `key` names an item for the search by key (items without one are found by position only).
    pub fn new(items: &'p [T], key: fn(&'p T) -> Option<K>) -> Self {
        Earlier {
            items,
            next: 0,
            found: 0,
            misses: 0,
            index: None,
            key,
        }
    }

    /// The earlier item `is_same` accepts, with its position: the one after the last found
    /// (edits in place, appends: no index needed), else the one with `key` (insertions,
    /// removals, moves).
    pub fn find<Q>(&mut self, key: &Q, is_same: impl Fn(&T) -> bool) -> Option<(usize, &'p T)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.found == 0 && self.misses >= GIVE_UP {
            return None;
        }
        let found = self.search(key, is_same);
        match found {
            Some(_) => self.found += 1,
            None => self.misses += 1,
        }
        found
    }

    fn search<Q>(&mut self, key: &Q, is_same: impl Fn(&T) -> bool) -> Option<(usize, &'p T)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let at = match self.items.get(self.next) {
            Some(item) if is_same(item) => self.next,
            _ => {
                let (items, key_of) = (self.items, self.key);
                let index = self.index.get_or_insert_with(|| {
                    let mut index =
                        HashMap::with_capacity_and_hasher(items.len(), Default::default());
                    for (i, item) in items.iter().enumerate() {
                        if let Some(k) = key_of(item) {
                            index.entry(k).or_insert(i);
                        }
                    }
                    index
                });
                let at = *index.get(key)?;
                if !is_same(self.items.get(at)?) {
                    return None;
                }
                at
            }
        };
        self.next = at + 1;
        Some((at, self.items.get(at)?))
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
        let old = ["a", "b", "c", "d"];
        assert_eq!(found(&old, &old), [Some(0), Some(1), Some(2), Some(3)]);
        assert_eq!(
            found(&old, &["a", "x", "c", "d"]),
            [Some(0), None, Some(2), Some(3)]
        );
        assert_eq!(
            found(&old, &["x", "a", "b", "c", "d"]),
            [None, Some(0), Some(1), Some(2), Some(3)]
        );
        assert_eq!(found(&old, &["a", "c", "d"]), [Some(0), Some(2), Some(3)]);
        assert_eq!(found(&old, &["d", "c"]), [Some(3), Some(2)]);
        assert_eq!(found(&[], &["a"]), [None]);
        // Nothing in common for long: a replaced list, not searched any further.
        let new: Vec<String> = (0..GIVE_UP + 1).map(|i| format!("n{i}")).collect();
        let mut new: Vec<&str> = new.iter().map(String::as_str).collect();
        new.push("a");
        let mut e = Earlier::new(&old, |s: &&'static str| Some(*s));
        let last = new.iter().map(|n| e.find(*n, |o| o == n)).last();
        assert_eq!(last, Some(None));
    }
}
