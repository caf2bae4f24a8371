//! Duplicate SNI claims: a pattern may belong to one route only. Checked when configuration is
//! loaded (every clash listed) and again by the table builder (specs from other producers).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use super::{RouteError, RouteSpec, RouteSpecs};

/// A route as named in error messages: `route "demo" (#2) in routes.d/a.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRef {
    pub name: String,
    /// 1-based position among the routes of `source`.
    pub index: usize,
    pub source: String,
}

impl std::fmt::Display for RouteRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "route {:?} (#{}) in {}",
            self.name, self.index, self.source
        )
    }
}

/// Rejects a pattern claimed by two routes (or twice by one). `specs` hold normalised
/// patterns, as configuration produces them.
pub fn check_claims<S: RouteSpecs + ?Sized>(specs: &S) -> Result<(), RouteError> {
    match duplicate_claims(specs).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every duplicate claim in `specs` (normalised patterns), in spec order.
pub fn duplicate_claims<S: RouteSpecs + ?Sized>(specs: &S) -> Vec<RouteError> {
    let specs: Vec<&RouteSpec> = specs.spec_groups().flat_map(|g| g.0).collect();
    let patterns: Vec<&[Arc<str>]> = specs.iter().map(|s| &*s.sni).collect();
    duplicates(&specs, &patterns)
}

/// `patterns[i]` are the normalised patterns of `specs[i]`.
pub(super) fn duplicates<P: AsRef<str>>(
    specs: &[&RouteSpec],
    patterns: &[&[P]],
) -> Vec<RouteError> {
    // foldhash: patterns come from configuration, not from clients, and SipHash made this
    // check ~15 ms of a 100k-route reload.
    let mut seen: HashMap<&str, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(specs.len(), Default::default());
    let mut clashes = Vec::new();
    for (i, pats) in patterns.iter().enumerate() {
        for p in pats.iter() {
            match seen.entry(p.as_ref()) {
                Entry::Occupied(first) => clashes.push((p.as_ref(), *first.get(), i)),
                Entry::Vacant(v) => {
                    v.insert(i);
                }
            }
        }
    }
    if clashes.is_empty() {
        return Vec::new();
    }
    // Error path: number the routes per source.
    let refs = route_refs(specs);
    clashes
        .into_iter()
        .filter_map(|(pattern, first, second)| {
            Some(RouteError::DuplicateClaim {
                pattern: pattern.to_owned(),
                first: Box::new(refs.get(first)?.clone()),
                second: Box::new(refs.get(second)?.clone()),
            })
        })
        .collect()
}

/// Names each spec as `route "name" (#n) in source`, `n` counted per source.
fn route_refs(specs: &[&RouteSpec]) -> Vec<RouteRef> {
    let mut per_source: HashMap<&str, usize> = HashMap::new();
    specs
        .iter()
        .map(|s| {
            let n = per_source.entry(&s.source).or_insert(0);
            *n += 1;
            RouteRef {
                name: s.name.to_string(),
                index: *n,
                source: s.source.to_string(),
            }
        })
        .collect()
}

/// [`RouteRef`] of `specs[i]` (error path only). A source's routes are all in one group, so
/// counting within `specs` numbers them right.
pub(super) fn route_ref(specs: &[RouteSpec], i: usize) -> RouteRef {
    let spec = specs.get(i);
    let source = spec.map_or("", |s| &*s.source);
    RouteRef {
        name: spec.map_or_else(String::new, |s| s.name.to_string()),
        index: specs
            .iter()
            .take(i + 1)
            .filter(|s| *s.source == *source)
            .count(),
        source: source.to_owned(),
    }
}
