//! [`Routes`]: a configuration's route specs, shared per file.
//!
//! A reload takes an unchanged file's specs from the live configuration as
//! one `Arc` instead of copying each spec, and the route table recognises
//! the same `Arc` to reuse the routes it built from it.

use std::sync::Arc;

use super::RouteSpec;

/// Route specs in order: inline routes, then each included file's.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    groups: Vec<Arc<[RouteSpec]>>,
    len: usize,
}

impl Routes {
    /// Appends one file's routes (kept shared, not copied).
    pub fn push_group(&mut self, group: Arc<[RouteSpec]>) {
        self.len += group.len();
        self.groups.push(group);
    }

    /// The groups as added (empty ones included).
    pub fn groups(&self) -> &[Arc<[RouteSpec]>] {
        &self.groups
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &RouteSpec> + '_ {
        self.groups.iter().flat_map(|g| g.iter())
    }

    pub fn get(&self, mut i: usize) -> Option<&RouteSpec> {
        for g in &self.groups {
            match g.get(i) {
                Some(s) => return Some(s),
                None => i -= g.len(),
            }
        }
        None
    }

    /// A copy as one list.
    pub fn to_vec(&self) -> Vec<RouteSpec> {
        self.iter().cloned().collect()
    }
}

impl From<Vec<RouteSpec>> for Routes {
    fn from(specs: Vec<RouteSpec>) -> Routes {
        let mut r = Routes::default();
        r.push_group(specs.into());
        r
    }
}

impl<'a> IntoIterator for &'a Routes {
    type Item = &'a RouteSpec;
    type IntoIter = Box<dyn Iterator<Item = &'a RouteSpec> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Panics when out of range, like a slice (tests and tools index; the
/// proxy iterates).
impl std::ops::Index<usize> for Routes {
    type Output = RouteSpec;

    fn index(&self, i: usize) -> &RouteSpec {
        match self.get(i) {
            Some(s) => s,
            None => panic!("route index {i} out of range ({} routes)", self.len),
        }
    }
}

impl PartialEq for Routes {
    fn eq(&self, other: &Routes) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Routes {}

impl PartialEq<Vec<RouteSpec>> for Routes {
    fn eq(&self, other: &Vec<RouteSpec>) -> bool {
        self.len == other.len() && self.iter().eq(other.iter())
    }
}
