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
use super::{Defaults, Route, RouteError, RouteSpec, RouteSpecs, RouteTable, SpecGroup, Upstream};
use crate::model::allow::AllowList;

/// Hands out what a route's upstream host carries in the table: the runtime's DNS cache handle
/// (shared per name, refreshed in the background). Called once per host when a route is
/// compiled, never per connection; on several threads for big tables.
pub trait Resolve: Sync {
    type Addrs: Clone + Send + Sync;

    /// The handle for `host`, a DNS name or an IP literal (IPv6 without brackets).
    fn addrs(&self, host: &Arc<str>) -> Self::Addrs;
}

/// Specs a table's routes were built from, for reuse by the next build:
/// `routes[start..start + specs.len()]` came from `specs`.
#[derive(Debug)]
pub(super) struct Built {
    specs: Arc<[RouteSpec]>,
    start: usize,
}

/// The routes compiled by one job.
type Compiled<A> = Vec<Arc<Route<A>>>;

/// A changed file's previous specs and the routes built from them.
type Earlier<'p, A> = (&'p [RouteSpec], &'p [Arc<Route<A>>]);

/// With at least this many specs to compile, jobs run on every core (a
/// 100k-route file read at start or replaced as a whole).
pub(super) const PARALLEL_FROM: usize = 4096;
/// Specs per compile job: a bigger group is split.
const JOB: usize = 1024;

/// Routes to compile: `specs[range]` of group number `group`, with the
/// previous version of that group for reuse by position.
struct Job<'a, 'p, A> {
    group: usize,
    specs: &'a [RouteSpec],
    range: std::ops::Range<usize>,
    earlier: Option<Earlier<'p, A>>,
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
        jobs: &[Job<'a, '_, R::Addrs>],
    ) -> Result<Vec<Compiled<R::Addrs>>, RouteError> {
        use rayon::prelude::*;
        let specs: usize = jobs.iter().map(|j| j.range.len()).sum();
        let results: Vec<Result<Compiled<R::Addrs>, RouteError>> = if specs < PARALLEL_FROM {
            jobs.iter()
                .map(|j| self.routes(j.specs, j.range.clone(), j.earlier))
                .collect()
        } else {
            let this = &*self;
            jobs.par_iter()
                .map(|j| this.fork().routes(j.specs, j.range.clone(), j.earlier))
                .collect()
        };
        results.into_iter().collect()
    }

    /// The routes of `specs[range]` (the whole group is passed so that
    /// errors number routes within their file). Strings are shared with the
    /// specs, not copied.
    fn routes(
        &mut self,
        specs: &'a [RouteSpec],
        range: std::ops::Range<usize>,
        earlier: Option<Earlier<'_, R::Addrs>>,
    ) -> Result<Compiled<R::Addrs>, RouteError> {
        let mut out = Vec::with_capacity(range.len());
        for i in range {
            let Some(spec) = specs.get(i) else { break };
            let same = earlier
                .filter(|(old, _)| old.get(i) == Some(spec))
                .and_then(|(_, routes)| routes.get(i));
            if let Some(route) = same {
                out.push(route.clone());
                continue;
            }
            let patterns = patterns(specs, i)?;
            let upstreams = spec
                .upstreams
                .iter()
                .map(|u| Upstream {
                    host: u.host.clone(),
                    port: u.port,
                    addrs: self.addrs(&u.host),
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
                source: spec.source.clone(),
                patterns,
                cursor: AtomicUsize::new(0),
            }));
        }
        Ok(out)
    }
}

impl<A: Clone + Send + Sync> RouteTable<A> {
    /// Compiles `specs` (routes without `allow`/`proxy_protocol` take them
    /// from `defaults`). Patterns are normalised again, so specs from other
    /// producers (discovery) are safe. Fails on an invalid pattern, a route
    /// without SNI or upstream, or a duplicate claim (naming both routes).
    pub fn build<S, R>(specs: &S, defaults: &Defaults, resolver: &R) -> Result<Self, RouteError>
    where
        S: RouteSpecs + ?Sized,
        R: Resolve<Addrs = A>,
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
        R: Resolve<Addrs = A>,
    {
        let groups: Vec<SpecGroup<'_>> = specs.spec_groups().collect();
        let total: usize = groups.iter().map(|g| g.0.len()).sum();
        if u32::try_from(total).is_err() {
            return Err(RouteError::TooMany { count: total });
        }
        // Keyed by the group's address (equal while both `Arc`s are alive
        // means the same specs), and by source and ordinal among that
        // source's groups (a file's chunks) for a changed group.
        let mut reusable: HashMap<usize, &[Arc<Route<A>>]> = HashMap::new();
        let mut by_source: HashMap<(&str, usize), Earlier<'_, A>> = HashMap::new();
        if previous.defaults == *defaults {
            let mut ordinals = Ordinals::default();
            for b in &previous.built {
                let Some(routes) = previous.routes.get(b.start..b.start + b.specs.len()) else {
                    continue;
                };
                reusable.insert(group_key(&b.specs), routes);
                if let Some(key) = ordinals.next(&b.specs) {
                    by_source.insert(key, (&b.specs, routes));
                }
            }
        }
        // Per group: the previous routes, or jobs to compile.
        let mut ordinals = Ordinals::default();
        let mut jobs = Vec::new();
        let reused: Vec<Option<&[Arc<Route<A>>]>> = groups
            .iter()
            .enumerate()
            .map(|(group, &(slice, shared))| {
                let key = shared.and_then(|g| ordinals.next(g));
                let reused = shared
                    .and_then(|g| reusable.get(&group_key(g)).copied())
                    .filter(|routes| routes.len() == slice.len());
                if reused.is_none() {
                    let earlier = key.and_then(|k| by_source.get(&k)).copied();
                    for at in (0..slice.len()).step_by(JOB) {
                        jobs.push(Job {
                            group,
                            specs: slice,
                            range: at..(at + JOB).min(slice.len()),
                            earlier,
                        });
                    }
                }
                reused
            })
            .collect();
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
    fn add(&mut self, route: Arc<Route<A>>) -> bool {
        let index = u32::try_from(self.routes.len()).unwrap_or(u32::MAX);
        let mut clash = false;
        for p in &route.patterns {
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

/// Numbers the shared groups of each source in order (a file's chunks):
/// `(source, n)` names the same chunk of a file across builds as long as
/// the chunks before it did not change number.
#[derive(Default)]
struct Ordinals<'a>(HashMap<&'a str, usize>);

impl<'a> Ordinals<'a> {
    fn next(&mut self, group: &'a [RouteSpec]) -> Option<(&'a str, usize)> {
        let source = &*group.first()?.source;
        let n = self.0.entry(source).or_insert(0);
        *n += 1;
        Some((source, *n - 1))
    }
}

/// Identity of a shared spec group.
fn group_key(group: &Arc<[RouteSpec]>) -> usize {
    Arc::as_ptr(group).cast::<RouteSpec>() as usize
}

/// The normalised patterns of `specs[i]` (shared with the spec when
/// already normal, as configuration makes them); checks that the
/// spec has patterns and upstreams. Specs from other producers (discovery)
/// are checked and normalised the same way.
fn patterns(specs: &[RouteSpec], i: usize) -> Result<Vec<Arc<str>>, RouteError> {
    let Some(spec) = specs.get(i) else {
        return Ok(Vec::new());
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
    spec.sni
        .iter()
        .map(|p| match normalize_pattern(p) {
            Ok(Cow::Borrowed(_)) => Ok(p.clone()),
            Ok(Cow::Owned(n)) => Ok(n.into()),
            Err(reason) => Err(RouteError::InvalidPattern {
                route: route_ref(specs, i),
                pattern: p.to_string(),
                reason,
            }),
        })
        .collect()
}
