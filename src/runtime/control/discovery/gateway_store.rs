//! What the Gateway API watcher ([`super::gateway_watch`]) and the status writer
//! ([`super::gateway_writer`]) share: the watched kinds, the objects as last seen, the Lease's
//! name and timing. A leaf, so neither of the two imports the other's internals.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::Event;
use serde_json::Value;

use crate::model::gateway::{self, Objects};

/// `(group, version, kind, plural, namespaced)` of each watched kind, in [`Objects`] order.
pub(super) const KINDS: [(&str, &str, &str, &str, bool); N] = [
    (
        gateway::objects::GROUP,
        "v1",
        "GatewayClass",
        "gatewayclasses",
        false,
    ),
    (gateway::objects::GROUP, "v1", "Gateway", "gateways", true),
    (gateway::objects::GROUP, "v1", "TLSRoute", "tlsroutes", true),
    (
        gateway::objects::GROUP,
        "v1",
        "ReferenceGrant",
        "referencegrants",
        true,
    ),
    ("", "v1", "Service", "services", true),
    // Their labels, for listeners that select route namespaces.
    ("", "v1", "Namespace", "namespaces", false),
    // The TLSRoute CRD alone (by name), for its bundle-version annotation.
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    ),
];
/// How many kinds are watched.
pub(super) const N: usize = 7;
pub(super) const CLASS: usize = 0;
pub(super) const GATEWAY: usize = 1;
pub(super) const ROUTE: usize = 2;
pub(super) const CRD: usize = 6;
pub(super) use gateway::objects::TLS_ROUTE_CRD;

/// The Lease: held for this long unless renewed, renewed (and checked) this often.
pub(super) const LEASE_DURATION: Duration = Duration::from_secs(15);
pub(super) const LEASE_NAME: &str = "ch-edge-proxy-gateway-api";

pub(super) type Key = (String, String);

/// One watch: a kind, in one namespace or all (`discovery.kubernetes.namespaces`).
pub(super) type Scope = (usize, Option<String>);

/// The objects as last seen, per kind, and the lists in progress, per watch.
#[derive(Default)]
pub(super) struct Store {
    pub(super) objects: [BTreeMap<Key, Value>; N],
    scopes: Vec<Scope>,
    listing: Vec<Option<BTreeMap<Key, Value>>>,
    listed: Vec<bool>,
}

impl Store {
    pub(super) fn new(scopes: Vec<Scope>) -> Store {
        Store {
            objects: Default::default(),
            listing: vec![None; scopes.len()],
            listed: vec![false; scopes.len()],
            scopes,
        }
    }

    /// Applies one event of watch `scope`.
    pub(super) fn apply(&mut self, scope: usize, event: Event<DynamicObject>) {
        let json = |o: DynamicObject| serde_json::to_value(o).unwrap_or_default();
        let Some((kind, ns)) = self.scopes.get(scope).cloned() else {
            return;
        };
        match event {
            Event::Init => self.listing[scope] = Some(BTreeMap::new()),
            Event::InitApply(o) => {
                let v = json(o);
                self.listing[scope]
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key(&v), v);
            }
            Event::InitDone => {
                // A list replaces what its own watch reported (its namespace, or all).
                let fresh = self.listing[scope].take().unwrap_or_default();
                self.objects[kind].retain(|(n, _), _| ns.as_ref().is_some_and(|ns| ns != n));
                self.objects[kind].extend(fresh);
                self.listed[scope] = true;
            }
            Event::Apply(o) => {
                let v = json(o);
                self.objects[kind].insert(key(&v), v);
            }
            Event::Delete(o) => {
                self.objects[kind].remove(&key(&json(o)));
            }
        }
    }

    pub(super) fn ready(&self) -> bool {
        self.listed.iter().all(|l| *l)
    }

    /// Every object as the translation reads it; the keys of the ones it cannot read.
    pub(super) fn objects(&self) -> (Objects, Vec<String>) {
        let mut objects = Objects {
            services: Some(Vec::new()),
            namespaces: Some(Vec::new()),
            ..Objects::default()
        };
        let mut invalid = Vec::new();
        for (kind, store) in self.objects.iter().enumerate() {
            for ((ns, name), v) in store {
                if let Err(e) = objects.push(v, "default") {
                    invalid.push(format!("{} {ns}/{name}: {e}", KINDS[kind].2));
                }
            }
        }
        (objects, invalid)
    }
}

fn key(v: &Value) -> Key {
    let s = |f: &str| {
        v.get("metadata")
            .and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (s("namespace"), s("name"))
}

pub(super) fn resource(kind: usize) -> ApiResource {
    let (group, version, k, plural, _) = KINDS[kind];
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, k), plural)
}

pub(super) fn lease_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
        "leases",
    )
}
