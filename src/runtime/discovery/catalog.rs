//! The ClickHouseInstallations the watches last reported, each with the
//! routes derived from it, as a pure state machine fed by watch events.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::model::route::RouteSpec;

/// A CHI's identity: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChiKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ChiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
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
    pub routes: Result<Vec<RouteSpec>, String>,
}

impl ChiEntry {
    /// An entry published by another watcher than the CHI [`Tracker`] (no watch scope).
    #[cfg_attr(not(feature = "k8s"), allow(dead_code))]
    pub fn published(created: Option<String>, routes: Vec<RouteSpec>) -> ChiEntry {
        ChiEntry {
            created,
            scope: usize::MAX,
            routes: Ok(routes),
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

/// One watch event, independent of the Kubernetes client. (Fed by the watcher, which only a
/// build with the `k8s` feature has.)
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "k8s"), allow(dead_code))]
pub enum Change {
    /// The watch (re)starts with a full list.
    Restart,
    /// One object of that list.
    Listed(Value),
    /// The list is complete: it replaces what this watch reported before.
    ListDone,
    /// Added or modified.
    Applied(Value),
    Deleted(Value),
}

/// Folds watch events into a [`Catalog`].
#[derive(Debug)]
#[cfg_attr(not(feature = "k8s"), allow(dead_code))]
pub struct Tracker {
    domain: String,
    /// Per watch: the namespace it covers (`None`: all).
    scopes: Vec<Option<String>>,
    catalog: Catalog,
    /// Per watch: the list being received, until its `ListDone`.
    listing: Vec<Option<BTreeMap<ChiKey, Arc<ChiEntry>>>>,
    /// Per watch: whether it completed a list at least once.
    listed: Vec<bool>,
    published: bool,
}

#[cfg_attr(not(feature = "k8s"), allow(dead_code))]
impl Tracker {
    /// One scope per watch: `None` watches all namespaces.
    pub fn new(domain: &str, scopes: Vec<Option<String>>) -> Tracker {
        let n = scopes.len();
        Tracker {
            domain: domain.to_owned(),
            scopes,
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
        if scope >= self.scopes.len() {
            return false;
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
        })
    }

    fn default_namespace(&self, scope: usize) -> &str {
        match self.scopes.get(scope) {
            Some(Some(ns)) => ns,
            _ => "default",
        }
    }

    /// The entry for `obj`; `None` (logged) for an object without a name.
    fn entry(&self, scope: usize, obj: &Value) -> Option<(ChiKey, Arc<ChiEntry>)> {
        let Some(key) = self.key(scope, obj) else {
            tracing::warn!(
                "kubernetes discovery: ClickHouseInstallation without metadata.name ignored"
            );
            return None;
        };
        let created = obj
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let source: std::sync::Arc<str> = format!("kubernetes:{key}").into();
        let routes = crate::model::chi::routes_for_chi(obj, &key.namespace, &self.domain)
            .map(|routes| {
                routes
                    .into_iter()
                    .map(|r| RouteSpec {
                        source: source.clone(),
                        ..r
                    })
                    .collect()
            })
            .map_err(|e| format!("{e:#}"));
        if let Err(error) = &routes {
            tracing::warn!(
                chi = %key,
                error = error.as_str(),
                "kubernetes discovery: cannot derive routes; CHI skipped"
            );
        }
        Some((
            key,
            Arc::new(ChiEntry {
                created,
                scope,
                routes,
            }),
        ))
    }
}
