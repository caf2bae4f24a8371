//! The objects the watches last reported (ClickHouseInstallations and
//! ClickHouseClusters), each with the routes derived from it, as a pure state
//! machine fed by watch events.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

pub use super::change::Change;
use super::readiness::{Pods, Touched};
use crate::model::chc;
use crate::model::route::RouteSpec;
use crate::model::sources::{SourceError, SourceKind};

/// What one watch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "k8s"), allow(dead_code))]
pub enum Feed {
    /// Objects of a source kind.
    Objects(SourceKind),
    /// The official operator's ClickHouse pods, for their clusters' readiness.
    Pods,
}

/// An object's identity: namespace, name and kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChiKey {
    pub namespace: String,
    pub name: String,
    pub kind: SourceKind,
}

impl ChiKey {
    /// A ClickHouseInstallation's key.
    #[cfg(test)]
    pub fn chi(namespace: &str, name: &str) -> ChiKey {
        ChiKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kind: SourceKind::Chi,
        }
    }
}

/// `ns/name` for a CHI (as ever), `ClickHouseCluster ns/name` for the other kind.
impl fmt::Display for ChiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SourceKind::Chi => write!(f, "{}/{}", self.namespace, self.name),
            other => write!(f, "{} {}/{}", other.kind(), self.namespace, self.name),
        }
    }
}

/// One CHI as last seen.
#[derive(Debug, PartialEq, Eq)]
pub struct ChiEntry {
    /// `metadata.creationTimestamp` (RFC 3339 in UTC, so it sorts as text):
    /// the older CHI keeps a contested name.
    pub created: Option<String>,
    /// The watch (namespace) that reported it; a relist replaces only its own.
    scope: usize,
    /// The derived routes, or why they could not be derived (CHI skipped).
    pub routes: Result<Vec<RouteSpec>, SourceError>,
    /// A ClickHouseCluster without TLS: its routes terminate, so a refusal for want of a
    /// certificate says why they do.
    pub plaintext_only: bool,
    /// A ClickHouseCluster as read, to derive its routes again when its pods' readiness changes.
    cluster: Option<chc::Cluster>,
}

impl ChiEntry {
    /// An entry published by another watcher than the CHI [`Tracker`] (no watch scope).
    #[cfg_attr(not(feature = "k8s"), allow(dead_code))]
    pub fn published(created: Option<String>, routes: Vec<RouteSpec>) -> ChiEntry {
        ChiEntry {
            created,
            scope: usize::MAX,
            routes: Ok(routes),
            plaintext_only: false,
            cluster: None,
        }
    }
}

/// A consistent snapshot of every watched CHI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub chis: BTreeMap<ChiKey, Arc<ChiEntry>>,
    /// The routes of each TLSRoute (Gateway API, `gateway_watch`), keyed by the TLSRoute; they
    /// claim names in the same order as CHIs (oldest first).
    pub tls_routes: BTreeMap<ChiKey, Arc<ChiEntry>>,
    /// Whether the Gateway API watcher has listed every kind once (`/readyz` waits for it
    /// when the Gateway API is on).
    pub tls_routes_listed: bool,
}

impl Catalog {
    /// CHIs in claim order: oldest `creationTimestamp` first (CHIs without
    /// one last), then namespace/name.
    pub fn in_claim_order(&self) -> Vec<(&ChiKey, &ChiEntry)> {
        let mut chis: Vec<_> = self
            .chis
            .iter()
            .chain(&self.tls_routes)
            .map(|(k, e)| (k, &**e))
            .collect();
        chis.sort_by(|(ka, a), (kb, b)| {
            let age = |e: &ChiEntry| (e.created.is_none(), e.created.clone());
            age(a).cmp(&age(b)).then_with(|| ka.cmp(kb))
        });
        chis
    }
}

/// Folds watch events into a [`Catalog`].
#[derive(Debug)]
#[cfg_attr(not(feature = "k8s"), allow(dead_code))]
pub struct Tracker {
    domain: String,
    /// Per watch: what it watches and the namespace it covers (`None`: all).
    scopes: Vec<(Feed, Option<String>)>,
    /// What the pod watches reported; with no pod watch every replica counts as ready.
    pods: Pods,
    pods_watched: bool,
    catalog: Catalog,
    /// Per watch: the list being received, until its `ListDone`.
    listing: Vec<Option<BTreeMap<ChiKey, Arc<ChiEntry>>>>,
    /// Per watch: whether it completed a list at least once.
    listed: Vec<bool>,
    published: bool,
}

#[cfg_attr(not(feature = "k8s"), allow(dead_code))]
impl Tracker {
    /// One scope per CHI watch: `None` watches all namespaces.
    #[cfg(test)]
    pub fn new(domain: &str, scopes: Vec<Option<String>>) -> Tracker {
        let scopes = scopes.into_iter().map(|ns| (SourceKind::Chi, ns)).collect();
        Tracker::with_sources(domain, scopes)
    }

    /// One scope per watch of objects: its kind and namespace (`None`: all namespaces).
    #[cfg(test)]
    pub fn with_sources(domain: &str, scopes: Vec<(SourceKind, Option<String>)>) -> Tracker {
        let feeds = scopes
            .into_iter()
            .map(|(kind, ns)| (Feed::Objects(kind), ns))
            .collect();
        Tracker::with_feeds(domain, feeds)
    }

    /// One scope per watch: what it reports and its namespace (`None`: all namespaces).
    pub fn with_feeds(domain: &str, scopes: Vec<(Feed, Option<String>)>) -> Tracker {
        let n = scopes.len();
        let pods_watched = scopes.iter().any(|(feed, _)| *feed == Feed::Pods);
        Tracker {
            domain: domain.to_owned(),
            scopes,
            pods: Pods::default(),
            pods_watched,
            catalog: Catalog::default(),
            listing: vec![None; n],
            listed: vec![false; n],
            published: false,
        }
    }

    /// Applies one event from watch `scope`; true when the catalog should be
    /// published: it changed, every watch has listed once, and no partial
    /// list is pending. Events of an unknown scope are ignored.
    pub fn apply(&mut self, scope: usize, change: Change) -> bool {
        let Some((feed, _)) = self.scopes.get(scope) else {
            return false;
        };
        if *feed == Feed::Pods {
            let list_done = matches!(change, Change::ListDone);
            let changed = match self.pods.apply(scope, change) {
                Touched::Nothing => false,
                Touched::Namespace(ns) => self.rederive(Some(&ns)),
                Touched::All => self.rederive(None),
            };
            if list_done {
                if let Some(l) = self.listed.get_mut(scope) {
                    *l = true;
                }
            }
            let publish = self.synced() && (changed || !self.published);
            self.published |= publish;
            return publish;
        }
        let changed = match change {
            Change::Restart => {
                if let Some(l) = self.listing.get_mut(scope) {
                    *l = Some(BTreeMap::new());
                }
                false
            }
            Change::Listed(obj) => {
                if let Some((key, entry)) = self.entry(scope, &obj) {
                    if let Some(l) = self.listing.get_mut(scope) {
                        l.get_or_insert_with(BTreeMap::new).insert(key, entry);
                    }
                }
                false
            }
            Change::ListDone => {
                let fresh = self
                    .listing
                    .get_mut(scope)
                    .and_then(Option::take)
                    .unwrap_or_default();
                let before = self.catalog.chis.clone();
                // CHIs deleted while the watch was down vanish here.
                self.catalog.chis.retain(|_, e| e.scope != scope);
                self.catalog.chis.extend(fresh);
                if let Some(l) = self.listed.get_mut(scope) {
                    *l = true;
                }
                before != self.catalog.chis
            }
            Change::Applied(obj) => match self.entry(scope, &obj) {
                Some((key, entry)) => {
                    let same = self.catalog.chis.get(&key) == Some(&entry);
                    self.catalog.chis.insert(key, entry);
                    !same
                }
                None => false,
            },
            Change::Deleted(obj) => match self.key(scope, &obj) {
                Some(key) => self.catalog.chis.remove(&key).is_some(),
                None => false,
            },
        };
        let publish = self.synced() && (changed || !self.published);
        self.published |= publish;
        publish
    }

    /// Every watch has completed its first list.
    pub fn synced(&self) -> bool {
        self.listed.iter().all(|l| *l)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn key(&self, scope: usize, obj: &Value) -> Option<ChiKey> {
        let meta = obj.get("metadata")?;
        let name = meta.get("name")?.as_str().filter(|n| !n.is_empty())?;
        let namespace = match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() => ns,
            _ => self.default_namespace(scope),
        };
        Some(ChiKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kind: match self.scopes.get(scope)?.0 {
                Feed::Objects(kind) => kind,
                Feed::Pods => return None,
            },
        })
    }

    fn default_namespace(&self, scope: usize) -> &str {
        match self.scopes.get(scope) {
            Some((_, Some(ns))) => ns,
            _ => "default",
        }
    }

    /// The entry for `obj`; `None` (logged) for an object without a name.
    fn entry(&self, scope: usize, obj: &Value) -> Option<(ChiKey, Arc<ChiEntry>)> {
        let Some(key) = self.key(scope, obj) else {
            tracing::warn!(
                scope,
                "kubernetes discovery: object without metadata.name ignored"
            );
            return None;
        };
        let created = obj
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let mut cluster = None;
        let routes = match key.kind {
            SourceKind::Chi => crate::model::chi::routes_for_chi(obj, &key.namespace, &self.domain)
                .map(|routes| with_source(routes, &key))
                .map_err(SourceError::from),
            SourceKind::ClickHouseCluster => match chc::Cluster::from_object(obj, &key.namespace) {
                Ok(c) => {
                    let routes = self.cluster_routes(&c, &key);
                    cluster = Some(c);
                    routes
                }
                Err(e) => Err(e.into()),
            },
            // Not a feed of this tracker: the Gateway API watcher publishes its own entries.
            SourceKind::TlsRoute => Err(SourceError::TlsRouteNotOfThisFeed),
        };
        if let Err(error) = &routes {
            tracing::warn!(
                object = %key,
                error = error.to_string().as_str(),
                "kubernetes discovery: cannot derive routes; object skipped"
            );
        }
        Some((
            key,
            Arc::new(ChiEntry {
                created,
                scope,
                routes,
                plaintext_only: cluster.as_ref().is_some_and(chc::Cluster::plaintext_only),
                cluster,
            }),
        ))
    }

    /// A ClickHouseCluster's routes, its not-ready replicas left out of the balanced ones.
    fn cluster_routes(
        &self,
        c: &chc::Cluster,
        key: &ChiKey,
    ) -> Result<Vec<RouteSpec>, SourceError> {
        let not_ready = if self.pods_watched {
            self.pods.not_ready(c)
        } else {
            Default::default()
        };
        c.routes(&self.domain, &not_ready)
            .map(|routes| with_source(routes, key))
            .map_err(SourceError::from)
    }

    /// Derives the ClickHouseClusters of `namespace` (`None`: all) again after their pods
    /// changed; true if any route changed.
    fn rederive(&mut self, namespace: Option<&str>) -> bool {
        let mut updates = Vec::new();
        for (key, entry) in &self.catalog.chis {
            let Some(c) = &entry.cluster else { continue };
            if namespace.is_some_and(|ns| ns != key.namespace) {
                continue;
            }
            let routes = self.cluster_routes(c, key);
            if routes != entry.routes {
                let entry = ChiEntry {
                    created: entry.created.clone(),
                    scope: entry.scope,
                    routes,
                    plaintext_only: entry.plaintext_only,
                    cluster: entry.cluster.clone(),
                };
                updates.push((key.clone(), Arc::new(entry)));
            }
        }
        let changed = !updates.is_empty();
        self.catalog.chis.extend(updates);
        changed
    }
}

/// `routes` with the `source` of discovered routes: `kubernetes:<key>`.
fn with_source(routes: Vec<RouteSpec>, key: &ChiKey) -> Vec<RouteSpec> {
    let source: Arc<str> = format!("kubernetes:{key}").into();
    routes
        .into_iter()
        .map(|r| RouteSpec {
            source: source.clone(),
            ..r
        })
        .collect()
}
