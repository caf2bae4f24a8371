//! The route table: SNI → route, as one immutable snapshot shared by `Arc`.
//!
//! This module owns the route types: specs as configured ([`RouteSpec`], [`UpstreamAddr`],
//! [`Defaults`], [`Routes`]) and the compiled table; `config` parses into them, CHI derivation
//! and discovery produce them, and nothing here knows either. The table is generic over what
//! the runtime attaches to each upstream host (its DNS cache handle, via [`Resolve`]), so a
//! connection reaches its addresses without any lookup.
//!
//! Lookup cost depends on the length of the name, never on the number of routes: one hash probe
//! for the exact name, one for the route a sticky name (`<tag>.sticky.<name>`) names, then one
//! per suffix that could match a wildcard (longest first), then the catch-all.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use ch_edge_wire::proxy_out::ProxyVersion;
use ch_edge_wire::sni::{lookup_key, PatternError, MAX_NAME};

use crate::model::allow::AllowList;

pub mod balance;
mod build;
mod claims;
pub(crate) mod earlier;
mod spec;
pub mod tls;
pub mod weighted;

pub use balance::{Balance, Tag};
pub use build::Resolve;
pub use claims::{check_claims, duplicate_claims, RouteRef};
pub use spec::{
    Defaults, RoutePostgres, RouteSpec, RouteSpecs, RouteTls, Routes, SpecGroup, UpstreamAddr,
    UpstreamAddrError, DEFAULT_WEIGHT, MAX_WEIGHT,
};
pub use tls::{TlsMode, UpstreamTls};

use build::Built;

/// Pattern → index into [`RouteTable::routes`] (an index, not an `Arc`: building and freeing
/// 100k entries touches no reference counts). foldhash (randomly seeded) instead of SipHash:
/// keys come from configuration, never from clients (who only look up), and it is cheaper both
/// to build and to probe.
type PatternMap = HashMap<Arc<str>, u32, foldhash::fast::RandomState>;

/// One immutable snapshot of all routes; `A` is what each upstream host carries (the runtime's
/// address handle), `M` what each route carries (the runtime's metric handles).
#[derive(Debug)]
pub struct RouteTable<A, M> {
    /// Exact names (keys shared with [`Route::patterns`]).
    exact: PatternMap,
    /// `*.suffix` patterns, keyed by `suffix`.
    wildcards: PatternMap,
    /// The `*` route's index.
    catch_all: Option<u32>,
    /// Most labels in any wildcard suffix: longer suffixes need no probe.
    max_wildcard_labels: usize,
    /// Every route once, in spec order.
    routes: Vec<Arc<Route<A, M>>>,
    /// The defaults the routes were built with.
    defaults: Defaults,
    /// The shared spec groups the routes were built from.
    built: Vec<Built>,
}

impl<A, M> Default for RouteTable<A, M> {
    fn default() -> Self {
        RouteTable {
            exact: PatternMap::default(),
            wildcards: PatternMap::default(),
            catch_all: None,
            max_wildcard_labels: 0,
            routes: Vec::new(),
            defaults: Defaults::default(),
            built: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct Route<A, M> {
    /// Shared so metric labels and log records take it without copying.
    pub name: Arc<str>,
    /// The route's SNI patterns, normalised (for `/routes`).
    pub patterns: Arc<[Arc<str>]>,
    pub upstreams: Vec<Upstream<A>>,
    pub allow: AllowList,
    pub proxy_protocol: ProxyVersion,
    pub balance: Balance,
    /// Whether `<tag>.sticky.<name>`, for an exact `<name>` of this route, is served here.
    pub sticky: bool,
    /// Shared by the routes of one file.
    pub source: Arc<str>,
    pub tls: TlsMode,
    /// How a `reencrypt` route checks its upstream (CA from `defaults` filled in).
    pub upstream_tls: Option<Arc<UpstreamTls>>,
    /// ALPN protocols a terminating route accepts (`None`: none).
    pub alpn: Option<Arc<[Arc<str>]>>,
    /// Its settings for a `postgres` listener's clients: direct SSL passed through as it came
    /// (no `SSLRequest` upstream), the upstreams' port when they are written without one.
    pub postgres: RoutePostgres,
    /// Rotation over the route's addresses (round robin, and least_conn's ties), advanced by
    /// each connection.
    pub cursor: AtomicUsize,
    /// What the runtime records per route (its metric handles), kept with the route while a
    /// reload reuses it.
    pub meters: M,
}

/// A route found for a name, with the sticky tag if the name was `<tag>.sticky.<name>`.
#[derive(Debug)]
pub struct Found<'t, A, M> {
    pub route: &'t Arc<Route<A, M>>,
    pub sticky: Option<Tag>,
}

#[derive(Debug)]
pub struct Upstream<A> {
    pub host: Arc<str>,
    /// `None`: the listener's `upstream_port`.
    pub port: Option<u16>,
    /// Its weight in balancing (0: never chosen).
    pub weight: u32,
    /// A refusal placeholder (an invalid backendRef): chosen by its weight, never connected
    /// to; the access log's detail. Its `addrs` are [`Resolve::refused`]'s.
    pub refused: Option<&'static str>,
    pub addrs: A,
}

/// Why a lookup found no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// A name was sent and nothing matches it (TLS alert `unrecognized_name`).
    UnknownName,
    /// No SNI was sent and there is no `*` route (TLS alert `missing_extension`).
    NoSni,
}

/// Why specs do not make a table.
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

impl RouteError {
    /// The route the error is about (the second claimant of a pattern).
    pub fn route(&self) -> Option<&RouteRef> {
        match self {
            RouteError::DuplicateClaim { second, .. } => Some(second),
            RouteError::InvalidPattern { route, .. }
            | RouteError::NoSni { route }
            | RouteError::NoUpstream { route } => Some(route),
            RouteError::TooMany { .. } => None,
        }
    }
}

impl<A, M> RouteTable<A, M> {
    /// `sni`: raw bytes from the ClientHello (may be any bytes). Case-insensitive; one trailing
    /// dot ignored. Exact beats wildcard beats `*`; among wildcards the longest suffix wins, at
    /// any depth (`*.ch.example.com` matches `a.b.ch.example.com`, not `ch.example.com`). A name
    /// that is not a valid host name (non-ASCII, overlong, empty labels) matches only `*`. No
    /// SNI → the `*` route if any, else [`Miss::NoSni`].
    pub fn lookup(&self, sni: Option<&[u8]>) -> Result<&Arc<Route<A, M>>, Miss> {
        self.find(sni).map(|f| f.route)
    }

    /// [`RouteTable::lookup`], and sticky names: `<tag>.sticky.<name>`, where `<name>` is an
    /// exact name of a route with `sticky` on, is served by that route with `<tag>` (after an
    /// exact route for the whole name, before any wildcard).
    pub fn find(&self, sni: Option<&[u8]>) -> Result<Found<'_, A, M>, Miss> {
        let plain = |route| Found {
            route,
            sticky: None,
        };
        let Some(raw) = sni else {
            return self.route(self.catch_all).map(plain).ok_or(Miss::NoSni);
        };
        let mut buf = [0u8; MAX_NAME];
        if let Some((name, labels)) = lookup_key(raw, &mut buf) {
            if let Some(r) = self.route(self.exact.get(name).copied()) {
                return Ok(plain(r));
            }
            if let Some(found) = self.sticky(name) {
                return Ok(found);
            }
            if self.max_wildcard_labels > 0 {
                // Suffixes after each dot, longest first; `remaining` is the number of labels
                // in the suffix after this dot.
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
                        return Ok(plain(r));
                    }
                }
            }
        }
        self.route(self.catch_all)
            .map(plain)
            .ok_or(Miss::UnknownName)
    }

    /// `name` (normalised) as `<tag>.sticky.<exact name of a sticky route>`.
    fn sticky(&self, name: &str) -> Option<Found<'_, A, M>> {
        let (tag, rest) = name.split_once('.')?;
        let target = rest
            .strip_prefix(balance::STICKY_LABEL)?
            .strip_prefix('.')?;
        let route = self.route(self.exact.get(target).copied())?;
        if !route.sticky {
            return None;
        }
        Some(Found {
            route,
            sticky: Some(Tag::new(tag)?),
        })
    }

    fn route(&self, index: Option<u32>) -> Option<&Arc<Route<A, M>>> {
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
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route<A, M>>> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests;
