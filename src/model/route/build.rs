//! Compiling route specs into a [`RouteTable`]: pattern normalisation, duplicate claims, the
//! runtime's address handles, and reuse of the previous table's routes for specs that did not
//! change (a reload of 100k routes rebuilds only what changed).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use ch_edge_wire::sni::normalize_pattern;

use super::claims::{duplicates, route_ref};
use super::earlier::Earlier;
use super::{
    Defaults, Route, RouteError, RouteSpec, RouteSpecs, RouteTable, SpecGroup, TlsMode, Upstream,
    UpstreamTls,
};
use crate::model::allow::AllowList;

/// Hands out what a route's upstream host carries in the table: the runtime's DNS cache handle
/// (shared per name, refreshed in the background). Called once per host when a route is
/// compiled, never per connection; on several threads for big tables.
pub trait Resolve: Sync {
    type Addrs: Clone + Send + Sync;
    /// What each route carries for the runtime (its metric handles, registered lazily).
    type Meters: Default + Send + Sync;

    /// The handle for `host`, a DNS name or an IP literal (IPv6 without brackets).
    fn addrs(&self, host: &Arc<str>) -> Self::Addrs;

    /// The handle of a refusal placeholder (no address, never looked up).
    fn refused(&self) -> Self::Addrs;
}

/// Specs a table's routes were built from, for reuse by the next build:
/// `routes[start..start + specs.len()]` came from `specs`.
#[derive(Debug)]
pub(super) struct Built {
    specs: Arc<[RouteSpec]>,
    start: usize,
}

/// A built route as tables share it.
type Shared<A, M> = Arc<Route<A, M>>;
/// A route built with resolver `R`'s handles.
type SharedBy<R> = Shared<<R as Resolve>::Addrs, <R as Resolve>::Meters>;
/// The routes compiled by one job.
type CompiledBy<R> = Vec<SharedBy<R>>;

/// With at least this many specs to compile, jobs run on every core (a
/// 100k-route file read at start or replaced as a whole).
pub(super) const PARALLEL_FROM: usize = 4096;
/// Specs per compile job: a bigger group is split.
const JOB: usize = 1024;

/// A group of the previous table: its specs and the routes built from them.
type Previous<'p, A, M> = (&'p [RouteSpec], &'p [Arc<Route<A, M>>]);

/// Routes to compile: `specs[range]` of group number `group`; `found[i]` is a route of the
/// previous table for `specs[i]`, if it has one.
struct Job<'a, 'p, A, M> {
    group: usize,
    specs: &'a [RouteSpec],
    range: std::ops::Range<usize>,
    found: &'a [Option<&'p Arc<Route<A, M>>>],
}

/// Compiles specs into routes; state shared across a build's groups.
struct Compiler<'a, 'r, R: Resolve> {
    defaults: &'a Defaults,
    default_allow: AllowList,
    resolver: &'r R,
    /// A name shared by many routes takes the resolver once.
    handles: HashMap<&'a str, R::Addrs>,
}

impl<'a, R: Resolve> Compiler<'a, '_, R> {
    /// A compiler for another thread, with its own copy of the shared
    /// defaults: routes built on different cores then count references on
    /// different cache lines instead of contending for one.
    fn fork(&self) -> Self {
        Compiler {
            defaults: self.defaults,
            default_allow: AllowList::new(&self.defaults.allow),
            resolver: self.resolver,
            handles: HashMap::new(),
        }
    }

    fn addrs(&mut self, host: &'a Arc<str>) -> R::Addrs {
        // Each literal is its own address: caching them would only fill the map.
        if host.parse::<IpAddr>().is_ok() {
            return self.resolver.addrs(host);
        }
        self.handles
            .entry(host)
            .or_insert_with(|| self.resolver.addrs(host))
            .clone()
    }

    /// Each job's routes, in job order, compiled on every core when there
    /// are many; the first error in spec order, as a sequential build finds.
    fn compile(
        &mut self,
        jobs: &[Job<'a, '_, R::Addrs, R::Meters>],
    ) -> Result<Vec<CompiledBy<R>>, RouteError> {
        use rayon::prelude::*;
        let specs = jobs
            .iter()
            .flat_map(|j| j.found.get(j.range.clone()).unwrap_or_default())
            .filter(|f| f.is_none())
            .count();
        let results: Vec<Result<CompiledBy<R>, RouteError>> = if specs < PARALLEL_FROM {
            jobs.iter()
                .map(|j| self.routes(j.specs, j.range.clone(), j.found))
                .collect()
        } else {
            let this = &*self;
            jobs.par_iter()
                .map(|j| this.fork().routes(j.specs, j.range.clone(), j.found))
                .collect()
        };
        results.into_iter().collect()
    }

    /// The routes of `specs[range]` (the whole group is passed so that errors number routes
    /// within their file): `found[i]` as it is, else compiled. Strings are shared with the
    /// specs, not copied.
    fn routes(
        &mut self,
        specs: &'a [RouteSpec],
        range: std::ops::Range<usize>,
        found: &[Option<&SharedBy<R>>],
    ) -> Result<CompiledBy<R>, RouteError> {
        let mut out = Vec::with_capacity(range.len());
        for i in range {
            let Some(spec) = specs.get(i) else { break };
            if let Some(Some(route)) = found.get(i) {
                out.push(Arc::clone(route));
                continue;
            }
            let patterns = patterns(specs, i)?;
            let (tls, upstream_tls) = tls(spec, self.defaults);
            let upstreams = spec
                .upstreams
                .iter()
                .map(|u| Upstream {
                    host: u.host.clone(),
                    port: u.port,
                    weight: u.weight,
                    refused: u.refused,
                    addrs: match u.refused {
                        None => self.addrs(&u.host),
                        Some(_) => self.resolver.refused(),
                    },
                })
                .collect();
            out.push(Arc::new(Route {
                name: spec.name.clone(),
                upstreams,
                allow: match &spec.allow {
                    Some(nets) => AllowList::new(nets),
                    None => self.default_allow.clone(),
                },
                proxy_protocol: spec.proxy_protocol.unwrap_or(self.defaults.proxy_protocol),
                balance: spec.balance.unwrap_or(self.defaults.balance),
                sticky: spec.sticky.unwrap_or(self.defaults.sticky),
                tls,
                upstream_tls,
                alpn: spec.tls.as_ref().and_then(|t| t.alpn.clone()),
                postgres: spec.postgres.unwrap_or_default(),
                source: spec.source.clone(),
                patterns,
                cursor: AtomicUsize::new(0),
                meters: R::Meters::default(),
            }));
        }
        Ok(out)
    }
}

impl<A: Clone + Send + Sync, M: Send + Sync> RouteTable<A, M> {
    /// Compiles `specs` (routes without `allow`/`proxy_protocol` take them
    /// from `defaults`). Patterns are normalised again, so specs from other
    /// producers (discovery) are safe. Fails on an invalid pattern, a route
    /// without SNI or upstream, or a duplicate claim (naming both routes).
    pub fn build<S, R>(specs: &S, defaults: &Defaults, resolver: &R) -> Result<Self, RouteError>
    where
        S: RouteSpecs + ?Sized,
        R: Resolve<Addrs = A, Meters = M>,
    {
        Self::build_reusing(specs, defaults, resolver, &RouteTable::default())
    }

    /// Like [`RouteTable::build`], but a shared spec group (one included
    /// file's routes, [`super::Routes`]) that `previous` was built
    /// from too, under equal `defaults`, takes `previous`'s routes (the same
    /// `Arc`s, with their DNS handles and round-robin state) instead of
    /// compiling them again. Nothing else a route holds depends on the
    /// build's inputs. Claims are still checked across all routes.
    pub fn build_reusing<S, R>(
        specs: &S,
        defaults: &Defaults,
        resolver: &R,
        previous: &Self,
    ) -> Result<Self, RouteError>
    where
        S: RouteSpecs + ?Sized,
        R: Resolve<Addrs = A, Meters = M>,
    {
        let groups: Vec<SpecGroup<'_>> = specs.spec_groups().collect();
        let total: usize = groups.iter().map(|g| g.0.len()).sum();
        if u32::try_from(total).is_err() {
            return Err(RouteError::TooMany { count: total });
        }
        // The previous table's groups, by identity (while both `Arc`s are alive, the same
        // address means the same specs) and, for a changed group, by source (a file).
        let mut same: HashMap<usize, &[Arc<Route<A, M>>]> = HashMap::new();
        let mut by_source: HashMap<&str, Previous<'_, A, M>> = HashMap::new();
        if previous.defaults == *defaults {
            for b in &previous.built {
                let Some(routes) = previous.routes.get(b.start..b.start + b.specs.len()) else {
                    continue;
                };
                same.insert(group_key(&b.specs), routes);
                if let Some(first) = b.specs.first() {
                    by_source.entry(&first.source).or_insert((&b.specs, routes));
                }
            }
        }
        // Per group: all the previous routes, or per spec a previous route or nothing.
        let reused: Vec<Option<&[Shared<A, M>]>> = groups
            .iter()
            .map(|&(slice, shared)| {
                shared
                    .and_then(|g| same.get(&group_key(g)).copied())
                    .filter(|routes| routes.len() == slice.len())
            })
            .collect();
        let found: Vec<Vec<Option<&Shared<A, M>>>> = groups
            .iter()
            .zip(&reused)
            .map(|(&(slice, shared), reused)| match (reused, shared) {
                (None, Some(_)) => {
                    let earlier = slice.first().and_then(|s| by_source.get(&*s.source));
                    match earlier {
                        Some(&(specs, routes)) => earlier_routes(slice, specs, routes),
                        None => vec![None; slice.len()],
                    }
                }
                (None, None) => vec![None; slice.len()],
                (Some(_), _) => Vec::new(),
            })
            .collect();
        let mut jobs = Vec::new();
        for (group, ((&(slice, _), reused), found)) in
            groups.iter().zip(&reused).zip(&found).enumerate()
        {
            if reused.is_some() {
                continue;
            }
            for at in (0..slice.len()).step_by(JOB) {
                jobs.push(Job {
                    group,
                    specs: slice,
                    range: at..(at + JOB).min(slice.len()),
                    found,
                });
            }
        }
        let mut compiler = Compiler {
            defaults,
            default_allow: AllowList::new(&defaults.allow),
            resolver,
            handles: HashMap::new(),
        };
        let compiled = compiler.compile(&jobs)?;
        let mut compiled = jobs.iter().map(|j| j.group).zip(compiled).peekable();
        let mut table = RouteTable {
            exact: HashMap::with_capacity_and_hasher(total, Default::default()),
            routes: Vec::with_capacity(total),
            defaults: defaults.clone(),
            ..RouteTable::default()
        };
        let mut clash = false;
        for (group, (&(_, shared), reused)) in groups.iter().zip(reused).enumerate() {
            let start = table.routes.len();
            match reused {
                Some(routes) => {
                    for route in routes {
                        clash |= table.add(route.clone());
                    }
                }
                None => {
                    while let Some((_, routes)) = compiled.next_if(|(g, _)| *g == group) {
                        for route in routes {
                            clash |= table.add(route);
                        }
                    }
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
            let normalised: Vec<Vec<Cow<'_, str>>> = all
                .iter()
                .map(|s| {
                    s.sni
                        .iter()
                        .map(|p| normalize_pattern(p).unwrap_or(Cow::Borrowed(p)))
                        .collect()
                })
                .collect();
            let borrowed: Vec<&[Cow<'_, str>]> = normalised.iter().map(Vec::as_slice).collect();
            if let Some(e) = duplicates(&all, &borrowed).into_iter().next() {
                return Err(e);
            }
        }
        Ok(table)
    }

    /// Adds one route; true if one of its patterns was already claimed.
    /// The build checked that every index fits in a `u32`.
    fn add(&mut self, route: Arc<Route<A, M>>) -> bool {
        let index = u32::try_from(self.routes.len()).unwrap_or(u32::MAX);
        let mut clash = false;
        for p in route.patterns.iter() {
            clash |= self.insert(p, index);
        }
        self.routes.push(route);
        clash
    }

    /// Adds one pattern; true if it was already claimed.
    fn insert(&mut self, pattern: &Arc<str>, index: u32) -> bool {
        if &**pattern == "*" {
            self.catch_all.replace(index).is_some()
        } else if let Some(suffix) = pattern.strip_prefix("*.") {
            let labels = suffix.split('.').count();
            self.max_wildcard_labels = self.max_wildcard_labels.max(labels);
            self.wildcards.insert(suffix.into(), index).is_some()
        } else {
            self.exact.insert(pattern.clone(), index).is_some()
        }
    }
}

/// For each of `specs` (a changed group), the route built before for the same spec in the
/// group's earlier version (`earlier`, built into `routes`), if there is one: found by
/// position, else by first pattern ([`Earlier`]), and equal in every part (a spec read again
/// from an unchanged entry is the earlier spec itself, so this is mostly pointer comparison).
fn earlier_routes<'p, A, M>(
    specs: &[RouteSpec],
    earlier: &'p [RouteSpec],
    routes: &'p [Arc<Route<A, M>>],
) -> Vec<Option<&'p Arc<Route<A, M>>>> {
    let mut search = Earlier::new(earlier, |s: &'p RouteSpec| s.sni.first().map(|p| &**p));
    specs
        .iter()
        .map(|spec| {
            let first = spec.sni.first().map_or("", |p| &**p);
            let (i, _) = search.find(first, |old| old == spec)?;
            routes.get(i)
        })
        .collect()
}

/// Identity of a shared spec group.
fn group_key(group: &Arc<[RouteSpec]>) -> usize {
    Arc::as_ptr(group).cast::<RouteSpec>() as usize
}

/// The normalised patterns of `specs[i]` (shared with the spec when
/// already normal, as configuration makes them); checks that the
/// spec has patterns and upstreams. Specs from other producers (discovery)
/// are checked and normalised the same way.
fn patterns(specs: &[RouteSpec], i: usize) -> Result<Arc<[Arc<str>]>, RouteError> {
    let Some(spec) = specs.get(i) else {
        return Ok(Arc::from([]));
    };
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
    let mut normal = true;
    let patterns: Vec<Arc<str>> = spec
        .sni
        .iter()
        .map(|p| match normalize_pattern(p) {
            Ok(Cow::Borrowed(_)) => Ok(p.clone()),
            Ok(Cow::Owned(n)) => {
                normal = false;
                Ok(n.into())
            }
            Err(reason) => Err(RouteError::InvalidPattern {
                route: route_ref(specs, i),
                pattern: p.to_string(),
                reason,
            }),
        })
        .collect::<Result<_, _>>()?;
    // Configuration normalises patterns: the route then shares the spec's list.
    Ok(if normal {
        spec.sni.clone()
    } else {
        patterns.into()
    })
}

/// A route's TLS mode and, for `reencrypt`, how it checks its upstream (the default CA filled
/// in; shared with the spec when there is nothing to fill).
fn tls(spec: &RouteSpec, defaults: &Defaults) -> (TlsMode, Option<Arc<UpstreamTls>>) {
    let written = spec.tls.as_deref();
    let mode = written.and_then(|t| t.mode).unwrap_or(defaults.tls);
    if mode != TlsMode::Reencrypt {
        return (mode, None);
    }
    let mut upstream = written.and_then(|t| t.upstream.clone()).unwrap_or_default();
    if upstream.ca.is_none() {
        upstream.ca.clone_from(&defaults.upstream_ca);
    }
    (mode, Some(Arc::new(upstream)))
}
