//! The route table: SNI → route, as one immutable snapshot shared by `Arc`.
//!
//! Lookup cost depends on the length of the name, never on the number of routes:
//! one hash probe for the exact name, then one per suffix that could match a
//! wildcard (longest first), then the catch-all.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::allow::AllowList;
use crate::config::{Defaults, ProxyVersion, RouteSpec, Routes};
use crate::resolve::{Addrs, Resolver};

/// Longest name we route (RFC 1035: 253 characters, plus one trailing dot).
const MAX_NAME: usize = 255;

/// One immutable snapshot of all routes.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Exact names (keys shared with [`Route::patterns`]).
    exact: HashMap<Arc<str>, Arc<Route>>,
    /// `*.suffix` patterns, keyed by `suffix`.
    wildcards: HashMap<Arc<str>, Arc<Route>>,
    /// The `*` route.
    catch_all: Option<Arc<Route>>,
    /// Most labels in any wildcard suffix: longer suffixes need no probe.
    max_wildcard_labels: usize,
    /// Every route once, in spec order.
    routes: Vec<Arc<Route>>,
    /// The defaults the routes were built with.
    defaults: Defaults,
    /// The shared spec groups the routes were built from.
    built: Vec<Built>,
}

#[derive(Debug)]
pub struct Route {
    /// Shared so metric labels and log records take it without copying.
    pub name: Arc<str>,
    /// The route's SNI patterns, normalised (for `/routes`).
    pub patterns: Vec<Arc<str>>,
    pub upstreams: Vec<Upstream>,
    pub allow: AllowList,
    pub proxy_protocol: ProxyVersion,
    /// Shared by the routes of one file.
    pub source: Arc<str>,
    /// Round-robin cursor over the route's resolved addresses (used by the connect phase).
    pub cursor: AtomicUsize,
}

#[derive(Debug)]
pub struct Upstream {
    pub host: Arc<str>,
    /// `None`: the listener's `upstream_port`.
    pub port: Option<u16>,
    pub addrs: Arc<Addrs>,
}

/// Why a lookup found no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// A name was sent and nothing matches it (TLS alert `unrecognized_name`).
    UnknownName,
    /// No SNI was sent and there is no `*` route (TLS alert `missing_extension`).
    NoSni,
}

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("SNI {pattern:?} is claimed twice: {first} and {second}")]
    DuplicateClaim {
        pattern: String,
        first: Box<RouteRef>,
        second: Box<RouteRef>,
    },
    #[error("{route}: invalid SNI pattern {pattern:?}: {reason}")]
    InvalidPattern {
        route: RouteRef,
        pattern: String,
        reason: PatternError,
    },
    #[error("{route}: no SNI pattern")]
    NoSni { route: RouteRef },
    #[error("{route}: no upstream")]
    NoUpstream { route: RouteRef },
}

/// Why an SNI pattern or name is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("empty")]
    Empty,
    #[error("longer than 253 characters")]
    TooLong,
    #[error("empty label (leading dot or two dots in a row)")]
    EmptyLabel,
    #[error("a label is longer than 63 characters")]
    LabelTooLong,
    #[error("not ASCII (write internationalised names in their xn-- form)")]
    NotAscii,
    #[error("invalid character {0:?} (names hold letters, digits, '-', '_' and '.')")]
    BadChar(char),
    #[error("'*' is allowed only alone or as the whole leftmost label (\"*.example.com\")")]
    MisplacedWildcard,
}

/// Normalises an SNI pattern: lower-case, one trailing dot removed. Valid
/// patterns are `*`, `*.name` and `name`, where a name is dot-separated
/// non-empty labels of letters, digits, `-` and `_`.
pub fn normalize_pattern(raw: &str) -> Result<String, PatternError> {
    let normal = !raw.ends_with('.') && !raw.bytes().any(|b| b.is_ascii_uppercase());
    if normal {
        // The common case, without the copies below.
        if raw != "*" {
            check_name(raw.strip_prefix("*.").unwrap_or(raw))?;
        }
        return Ok(raw.to_owned());
    }
    let lower = raw.to_ascii_lowercase();
    let s = lower.strip_suffix('.').unwrap_or(&lower).to_owned();
    if s == "*" {
        return Ok(s);
    }
    check_name(s.strip_prefix("*.").unwrap_or(&s))?;
    Ok(s)
}

/// Checks a normalised DNS-ish name (no wildcard, no trailing dot).
pub fn check_name(name: &str) -> Result<(), PatternError> {
    if name.is_empty() {
        return Err(PatternError::Empty);
    }
    if name.len() > 253 {
        return Err(PatternError::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(PatternError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(PatternError::LabelTooLong);
        }
        if let Some(c) = label.chars().find(|c| !is_name_char(*c)) {
            return Err(match c {
                '*' => PatternError::MisplacedWildcard,
                c if !c.is_ascii() => PatternError::NotAscii,
                c => PatternError::BadChar(c),
            });
        }
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Route specs as the table builder takes them: one or more slices, each
/// with the `Arc` that shares it, if any (only shared groups are reused by
/// [`RouteTable::build_reusing`]).
pub trait RouteSpecs {
    fn spec_groups(&self) -> impl Iterator<Item = SpecGroup<'_>>;
}

/// One slice of specs and the `Arc` it is shared by, if any.
pub type SpecGroup<'a> = (&'a [RouteSpec], Option<&'a Arc<[RouteSpec]>>);

impl RouteSpecs for [RouteSpec] {
    fn spec_groups(&self) -> impl Iterator<Item = SpecGroup<'_>> {
        std::iter::once((self, None))
    }
}

impl RouteSpecs for Vec<RouteSpec> {
    fn spec_groups(&self) -> impl Iterator<Item = SpecGroup<'_>> {
        std::iter::once((self.as_slice(), None))
    }
}

impl<const N: usize> RouteSpecs for [RouteSpec; N] {
    fn spec_groups(&self) -> impl Iterator<Item = SpecGroup<'_>> {
        std::iter::once((self.as_slice(), None))
    }
}

impl RouteSpecs for Routes {
    fn spec_groups(&self) -> impl Iterator<Item = SpecGroup<'_>> {
        self.groups().iter().map(|g| (&**g, Some(g)))
    }
}

/// Rejects a pattern claimed by two routes (or twice by one). `specs` hold
/// normalised patterns, as [`crate::config::load`] produces them.
pub fn check_claims<S: RouteSpecs + ?Sized>(specs: &S) -> Result<(), RouteError> {
    match duplicate_claims(specs).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every duplicate claim in `specs` (normalised patterns), in spec order.
pub fn duplicate_claims<S: RouteSpecs + ?Sized>(specs: &S) -> Vec<RouteError> {
    let specs: Vec<&RouteSpec> = specs.spec_groups().flat_map(|g| g.0).collect();
    let patterns: Vec<&[String]> = specs.iter().map(|s| s.sni.as_slice()).collect();
    duplicates(&specs, &patterns)
}

/// `patterns[i]` are the normalised patterns of `specs[i]`.
fn duplicates<P: AsRef<str>>(specs: &[&RouteSpec], patterns: &[&[P]]) -> Vec<RouteError> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(specs.len());
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
                name: s.name.clone(),
                index: *n,
                source: s.source.clone(),
            }
        })
        .collect()
}

/// [`RouteRef`] of `specs[i]` (error path only). A source's routes are
/// all in one group, so counting within `specs` numbers them right.
fn route_ref(specs: &[RouteSpec], i: usize) -> RouteRef {
    let spec = specs.get(i);
    let source = spec.map_or("", |s| s.source.as_str());
    RouteRef {
        name: spec.map_or_else(String::new, |s| s.name.clone()),
        index: specs
            .iter()
            .take(i + 1)
            .filter(|s| s.source == source)
            .count(),
        source: source.to_owned(),
    }
}

/// Specs a table's routes were built from, for reuse by the next build:
/// `routes[start..start + specs.len()]` came from `specs`.
#[derive(Debug)]
struct Built {
    specs: Arc<[RouteSpec]>,
    start: usize,
}

/// A changed file's previous specs and the routes built from them.
type Earlier<'p> = (&'p [RouteSpec], &'p [Arc<Route>]);

/// Compiles specs into routes; state shared across a build's groups.
struct Compiler<'a, 'r> {
    defaults: &'a Defaults,
    default_allow: AllowList,
    resolver: &'r Resolver,
    /// A name shared by many routes takes the resolver's lock once.
    handles: HashMap<&'a str, Arc<Addrs>>,
    /// Strings are shared where equal (a file's routes share their source).
    source: Arc<str>,
}

impl<'a> Compiler<'a, '_> {
    fn addrs(&mut self, host: &'a str) -> Arc<Addrs> {
        // Literals need no resolver.
        match host.parse::<IpAddr>() {
            Ok(ip) => Arc::new(Addrs::literal(ip, host)),
            Err(_) => self
                .handles
                .entry(host)
                .or_insert_with(|| self.resolver.handle(host))
                .clone(),
        }
    }

    /// Appends `specs`' routes to `table`; true if a pattern was claimed
    /// twice. `earlier`: the specs and routes of the previous version of
    /// this file (same defaults); a spec equal to the one at its position
    /// there takes that route (an edit to a few routes of a big file).
    fn compile(
        &mut self,
        specs: &'a [RouteSpec],
        table: &mut RouteTable,
        earlier: Option<Earlier<'_>>,
    ) -> Result<bool, RouteError> {
        let (normalised, ends) = normalise_all(specs)?;
        let mut clash = false;
        let mut start = 0;
        for (i, (spec, &end)) in specs.iter().zip(&ends).enumerate() {
            let patterns = normalised.get(start..end).unwrap_or_default();
            start = end;
            let same = earlier
                .filter(|(old, _)| old.get(i) == Some(spec))
                .and_then(|(_, routes)| routes.get(i));
            if let Some(route) = same {
                clash |= table.add(route);
                continue;
            }
            let patterns: Vec<Arc<str>> = patterns.iter().map(|p| Arc::from(p.as_ref())).collect();
            // A name is usually its first pattern: one string for both.
            let name = match patterns.first() {
                Some(p) if **p == *spec.name => p.clone(),
                _ => spec.name.as_str().into(),
            };
            if *self.source != *spec.source {
                self.source = spec.source.as_str().into();
            }
            let upstreams = spec
                .upstreams
                .iter()
                .map(|u| {
                    let addrs = self.addrs(&u.host);
                    Upstream {
                        host: addrs.host_as_written(&u.host),
                        port: u.port,
                        addrs,
                    }
                })
                .collect();
            let route = Arc::new(Route {
                name,
                upstreams,
                allow: match &spec.allow {
                    Some(nets) => AllowList::new(nets),
                    None => self.default_allow.clone(),
                },
                proxy_protocol: spec.proxy_protocol.unwrap_or(self.defaults.proxy_protocol),
                source: self.source.clone(),
                patterns,
                cursor: AtomicUsize::new(0),
            });
            clash |= table.add(&route);
        }
        Ok(clash)
    }
}

impl RouteTable {
    /// Compiles `specs` (routes without `allow`/`proxy_protocol` take them
    /// from `defaults`). Patterns are normalised again, so specs from other
    /// producers (discovery) are safe. Fails on an invalid pattern, a route
    /// without SNI or upstream, or a duplicate claim (naming both routes).
    pub fn build<S: RouteSpecs + ?Sized>(
        specs: &S,
        defaults: &Defaults,
        resolver: &Resolver,
    ) -> Result<RouteTable, RouteError> {
        Self::build_reusing(specs, defaults, resolver, &RouteTable::default())
    }

    /// Like [`RouteTable::build`], but a shared spec group (one included
    /// file's routes, [`crate::config::Routes`]) that `previous` was built
    /// from too, under equal `defaults`, takes `previous`'s routes (the same
    /// `Arc`s, with their DNS handles and round-robin state) instead of
    /// compiling them again. Nothing else a route holds depends on the
    /// build's inputs. Claims are still checked across all routes.
    pub fn build_reusing<S: RouteSpecs + ?Sized>(
        specs: &S,
        defaults: &Defaults,
        resolver: &Resolver,
        previous: &RouteTable,
    ) -> Result<RouteTable, RouteError> {
        let groups: Vec<SpecGroup<'_>> = specs.spec_groups().collect();
        let total: usize = groups.iter().map(|g| g.0.len()).sum();
        // Keyed by the group's address (equal while both `Arc`s are alive
        // means the same specs), and by source for a changed file.
        let mut reusable: HashMap<usize, &[Arc<Route>]> = HashMap::new();
        let mut by_source: HashMap<&str, Earlier<'_>> = HashMap::new();
        if previous.defaults == *defaults {
            for b in &previous.built {
                let Some(routes) = previous.routes.get(b.start..b.start + b.specs.len()) else {
                    continue;
                };
                reusable.insert(group_key(&b.specs), routes);
                if let Some(first) = b.specs.first() {
                    by_source.insert(&first.source, (&b.specs, routes));
                }
            }
        }
        let mut compiler = Compiler {
            defaults,
            default_allow: AllowList::new(&defaults.allow),
            resolver,
            handles: HashMap::new(),
            source: Arc::from(""),
        };
        let mut table = RouteTable {
            exact: HashMap::with_capacity(total),
            routes: Vec::with_capacity(total),
            defaults: defaults.clone(),
            ..RouteTable::default()
        };
        let mut clash = false;
        for &(slice, shared) in &groups {
            let start = table.routes.len();
            let reused = shared
                .and_then(|g| reusable.get(&group_key(g)))
                .filter(|routes| routes.len() == slice.len());
            match reused {
                Some(routes) => {
                    for route in routes.iter() {
                        clash |= table.add(route);
                    }
                }
                None => {
                    let earlier = slice.first().and_then(|s| by_source.get(&*s.source));
                    clash |= compiler.compile(slice, &mut table, earlier.copied())?;
                }
            }
            if let Some(g) = shared {
                table.built.push(Built {
                    specs: g.clone(),
                    start,
                });
            }
        }
        if clash {
            // Rare: find the clash again, with both routes named.
            let all: Vec<&RouteSpec> = groups.iter().flat_map(|g| g.0).collect();
            let normalised: Vec<Vec<String>> = all
                .iter()
                .map(|s| {
                    s.sni
                        .iter()
                        .map(|p| normalize_pattern(p).unwrap_or_else(|_| p.clone()))
                        .collect()
                })
                .collect();
            let borrowed: Vec<&[String]> = normalised.iter().map(Vec::as_slice).collect();
            if let Some(e) = duplicates(&all, &borrowed).into_iter().next() {
                return Err(e);
            }
        }
        Ok(table)
    }

    /// Adds one route; true if one of its patterns was already claimed.
    fn add(&mut self, route: &Arc<Route>) -> bool {
        let mut clash = false;
        for p in &route.patterns {
            clash |= self.insert(p, route);
        }
        self.routes.push(route.clone());
        clash
    }

    /// Adds one pattern; true if it was already claimed.
    fn insert(&mut self, pattern: &Arc<str>, route: &Arc<Route>) -> bool {
        if &**pattern == "*" {
            self.catch_all.replace(route.clone()).is_some()
        } else if let Some(suffix) = pattern.strip_prefix("*.") {
            let labels = suffix.split('.').count();
            self.max_wildcard_labels = self.max_wildcard_labels.max(labels);
            self.wildcards
                .insert(suffix.into(), route.clone())
                .is_some()
        } else {
            self.exact.insert(pattern.clone(), route.clone()).is_some()
        }
    }

    /// `sni`: raw bytes from the ClientHello (may be any bytes).
    /// Case-insensitive; one trailing dot ignored. Exact beats wildcard beats
    /// `*`; among wildcards the longest suffix wins, at any depth
    /// (`*.ch.example.com` matches `a.b.ch.example.com`, not `ch.example.com`).
    /// A name that is not a valid host name (non-ASCII, overlong, empty labels)
    /// matches only `*`. No SNI → the `*` route if any, else [`Miss::NoSni`].
    pub fn lookup(&self, sni: Option<&[u8]>) -> Result<&Arc<Route>, Miss> {
        let Some(raw) = sni else {
            return self.catch_all.as_ref().ok_or(Miss::NoSni);
        };
        let mut buf = [0u8; MAX_NAME];
        if let Some((name, labels)) = normalise_name(raw, &mut buf) {
            if let Some(r) = self.exact.get(name) {
                return Ok(r);
            }
            if self.max_wildcard_labels > 0 {
                // Suffixes after each dot, longest first; `remaining` is the
                // number of labels in the suffix after this dot.
                let mut remaining = labels;
                for (i, b) in name.bytes().enumerate() {
                    if b != b'.' {
                        continue;
                    }
                    remaining -= 1;
                    if remaining > self.max_wildcard_labels {
                        continue;
                    }
                    if let Some(r) = name.get(i + 1..).and_then(|s| self.wildcards.get(s)) {
                        return Ok(r);
                    }
                }
            }
        }
        self.catch_all.as_ref().ok_or(Miss::UnknownName)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every route once, in configuration order.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }
}

/// Identity of a shared spec group.
fn group_key(group: &Arc<[RouteSpec]>) -> usize {
    Arc::as_ptr(group).cast::<RouteSpec>() as usize
}

/// Every spec's normalised patterns in one list; `ends[i]` is where spec
/// `i`'s patterns end (one allocation instead of one per route).
type Normalised<'a> = (Vec<Cow<'a, str>>, Vec<usize>);

fn normalise_all(specs: &[RouteSpec]) -> Result<Normalised<'_>, RouteError> {
    let mut out = Vec::with_capacity(specs.len());
    let mut ends = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        if spec.sni.is_empty() {
            return Err(RouteError::NoSni {
                route: route_ref(specs, i),
            });
        }
        if spec.upstreams.is_empty() {
            return Err(RouteError::NoUpstream {
                route: route_ref(specs, i),
            });
        }
        for p in &spec.sni {
            let already =
                p != "*" && !p.ends_with('.') && !p.bytes().any(|b| b.is_ascii_uppercase());
            let checked = if already {
                check_name(p.strip_prefix("*.").unwrap_or(p)).map(|()| Cow::Borrowed(p.as_str()))
            } else if p == "*" {
                Ok(Cow::Borrowed(p.as_str()))
            } else {
                normalize_pattern(p).map(Cow::Owned)
            };
            match checked {
                Ok(c) => out.push(c),
                Err(reason) => {
                    return Err(RouteError::InvalidPattern {
                        route: route_ref(specs, i),
                        pattern: p.clone(),
                        reason,
                    })
                }
            }
        }
        ends.push(out.len());
    }
    Ok((out, ends))
}

/// Lower-cases `raw` into `buf` and strips one trailing dot. Returns the name
/// and its label count, or `None` if it is not a plausible host name.
fn normalise_name<'b>(raw: &[u8], buf: &'b mut [u8; MAX_NAME]) -> Option<(&'b str, usize)> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty() || raw.len() > buf.len() {
        return None;
    }
    // Branch-free per byte: problems are collected and checked once at the end.
    let mut bad = false;
    let mut prev_dot = true; // a leading dot is an empty label
    let mut labels = 1;
    for (dst, &b) in buf.iter_mut().zip(raw) {
        let m = NAME_BYTE[usize::from(b)];
        let dot = m == b'.';
        bad |= (m == 0) | (dot & prev_dot);
        labels += usize::from(dot);
        prev_dot = dot;
        *dst = m;
    }
    if bad || prev_dot {
        return None;
    }
    let name = std::str::from_utf8(buf.get(..raw.len())?).ok()?;
    Some((name, labels))
}

/// Byte → its lower-case form if it may appear in a host name, else 0.
static NAME_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            b'A'..=b'Z' => b + 32,
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => b,
            _ => 0,
        };
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests;
