//! The route table: SNI → route, as one immutable snapshot shared by `Arc`.
//!
//! Lookup cost depends on the length of the name, never on the number of routes:
//! one hash probe for the exact name, then one per suffix that could match a
//! wildcard (longest first), then the catch-all.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::allow::AllowList;
use crate::config::{Defaults, ProxyVersion};
use crate::resolve::Addrs;

/// Longest name we route (RFC 1035: 253 characters, plus one trailing dot).
const MAX_NAME: usize = 255;

/// Pattern → index into [`RouteTable::routes`] (an index, not an `Arc`:
/// building and freeing 100k entries touches no reference counts).
/// foldhash (randomly seeded) instead of SipHash: keys come from
/// configuration, never from clients (who only look up), and it is cheaper
/// both to build and to probe.
type PatternMap = HashMap<Arc<str>, u32, foldhash::fast::RandomState>;

/// One immutable snapshot of all routes.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Exact names (keys shared with [`Route::patterns`]).
    exact: PatternMap,
    /// `*.suffix` patterns, keyed by `suffix`.
    wildcards: PatternMap,
    /// The `*` route's index.
    catch_all: Option<u32>,
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
    #[error("{count} routes: a table holds at most {} (u32 indices)", u32::MAX)]
    TooMany { count: usize },
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
/// Borrows `raw` when it is already normal (the common case: no copy).
pub fn normalize_pattern(raw: &str) -> Result<Cow<'_, str>, PatternError> {
    let normal = !raw.ends_with('.') && !raw.bytes().any(|b| b.is_ascii_uppercase());
    if normal {
        if raw != "*" {
            check_name(raw.strip_prefix("*.").unwrap_or(raw))?;
        }
        return Ok(Cow::Borrowed(raw));
    }
    let mut s = raw.to_ascii_lowercase();
    if s.ends_with('.') {
        s.pop();
    }
    if s != "*" {
        check_name(s.strip_prefix("*.").unwrap_or(&s))?;
    }
    Ok(Cow::Owned(s))
}

/// Checks a normalised DNS-ish name (no wildcard, no trailing dot).
pub fn check_name(name: &str) -> Result<(), PatternError> {
    if name.is_empty() {
        return Err(PatternError::Empty);
    }
    if name.len() > 253 {
        return Err(PatternError::TooLong);
    }
    // One pass over the bytes for the common, valid name (checked three
    // times per route while loading 100k); anything else takes the path
    // below, which finds the exact problem.
    let mut label = 0usize;
    let mut plain = true;
    for &b in name.as_bytes() {
        match b {
            b'.' => {
                plain &= label > 0;
                label = 0;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => label += 1,
            _ => plain = false,
        }
        plain &= label <= 63;
    }
    if plain && label > 0 {
        return Ok(());
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

impl RouteTable {
    /// `sni`: raw bytes from the ClientHello (may be any bytes).
    /// Case-insensitive; one trailing dot ignored. Exact beats wildcard beats
    /// `*`; among wildcards the longest suffix wins, at any depth
    /// (`*.ch.example.com` matches `a.b.ch.example.com`, not `ch.example.com`).
    /// A name that is not a valid host name (non-ASCII, overlong, empty labels)
    /// matches only `*`. No SNI → the `*` route if any, else [`Miss::NoSni`].
    pub fn lookup(&self, sni: Option<&[u8]>) -> Result<&Arc<Route>, Miss> {
        let Some(raw) = sni else {
            return self.route(self.catch_all).ok_or(Miss::NoSni);
        };
        let mut buf = [0u8; MAX_NAME];
        if let Some((name, labels)) = normalise_name(raw, &mut buf) {
            if let Some(r) = self.route(self.exact.get(name).copied()) {
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
                    let found = name.get(i + 1..).and_then(|s| self.wildcards.get(s));
                    if let Some(r) = self.route(found.copied()) {
                        return Ok(r);
                    }
                }
            }
        }
        self.route(self.catch_all).ok_or(Miss::UnknownName)
    }

    fn route(&self, index: Option<u32>) -> Option<&Arc<Route>> {
        self.routes.get(usize::try_from(index?).ok()?)
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

mod build;

use build::Built;
#[cfg(test)]
use build::PARALLEL_FROM;
pub use build::{check_claims, duplicate_claims, RouteSpecs, SpecGroup};

#[cfg(test)]
mod tests;
