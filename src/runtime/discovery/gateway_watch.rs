//! The Gateway API watcher task: watches GatewayClasses, Gateways, TLSRoutes, ReferenceGrants
//! and Services (every namespace), runs the pure translation ([`crate::model::gateway`]) after
//! each change once every watch has listed, publishes the routes into the catalog's
//! `tls_routes`, and — while this replica holds the Lease ([`super::lease`]) — writes the
//! statuses that changed ([`crate::model::gateway::patch`]) as merge patches on the `status`
//! subresource.
//!
//! Watches are [`watch_stream::watch`]es like the CHI one (bookmarks, silence deadline, 410
//! relists, backoff); errors are logged and counted the same way and keep the last routes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::{self, StreamExt};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::watcher::Event;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::catalog::{Catalog, ChiEntry, ChiKey};
use super::lease::{self, Decision};
use super::{kube_client, watch_stream};
use crate::model::config::GatewayApi;
use crate::model::gateway::{self, patch, Objects, Settings, Statuses};

/// `(group, version, kind, plural, namespaced)` of each watched kind, in [`Objects`] order.
const KINDS: [(&str, &str, &str, &str, bool); 5] = [
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
];
const CLASS: usize = 0;
const GATEWAY: usize = 1;
const ROUTE: usize = 2;

/// The Lease: held for this long unless renewed, renewed (and checked) this often.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const LEASE_TICK: Duration = Duration::from_secs(5);
const LEASE_NAME: &str = "ch-edge-proxy-gateway-api";

type Key = (String, String);

/// The objects as last seen, per kind, and the lists in progress.
#[derive(Default)]
struct Store {
    objects: [BTreeMap<Key, Value>; 5],
    listing: [Option<BTreeMap<Key, Value>>; 5],
    listed: [bool; 5],
}

impl Store {
    fn apply(&mut self, kind: usize, event: Event<DynamicObject>) {
        let json = |o: DynamicObject| serde_json::to_value(o).unwrap_or_default();
        match event {
            Event::Init => self.listing[kind] = Some(BTreeMap::new()),
            Event::InitApply(o) => {
                let v = json(o);
                self.listing[kind]
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key(&v), v);
            }
            Event::InitDone => {
                self.objects[kind] = self.listing[kind].take().unwrap_or_default();
                self.listed[kind] = true;
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

    fn ready(&self) -> bool {
        self.listed.iter().all(|l| *l)
    }

    /// Every object as the translation reads it; the keys of the ones it cannot read.
    fn objects(&self) -> (Objects, Vec<String>) {
        let mut objects = Objects {
            services: Some(Vec::new()),
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

fn resource(kind: usize) -> ApiResource {
    let (group, version, k, plural, _) = KINDS[kind];
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, k), plural)
}

/// Watches until aborted.
pub(super) async fn run(settings: GatewayApi, tx: watch::Sender<Option<Arc<Catalog>>>) {
    let silence = watch_stream::silence();
    let client = loop {
        match client(silence).await {
            Ok(c) => break c,
            Err(error) => {
                watch_stream::count_error("client");
                tracing::error!(
                    error = format!("{error:#}"),
                    "gateway api: no API client; retrying"
                );
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let config = watch_stream::config(silence);
    let watches = (0..KINDS.len()).map(|kind| {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource(kind));
        watch_stream::watch(api, config.clone())
            .map(move |e| (kind, e))
            .boxed()
    });
    let mut events = stream::select_all(watches);
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("ch-edge-proxy-{}", std::process::id()));
    let lease_ns =
        std::env::var("POD_NAMESPACE").unwrap_or_else(|_| client.default_namespace().to_owned());
    let mut writer = Writer {
        client: client.clone(),
        controller: settings.controller_name.clone(),
        leases: Api::namespaced_with(client.clone(), &lease_ns, &lease_resource()),
        identity,
        leader: false,
        waiting_for: None,
        written: HashMap::new(),
        failing: HashSet::new(),
    };
    tracing::info!(
        controller_name = settings.controller_name.as_str(),
        lease = format!("{lease_ns}/{LEASE_NAME}"),
        identity = writer.identity.as_str(),
        "gateway api: watching GatewayClasses, Gateways, TLSRoutes, ReferenceGrants, Services"
    );
    let mut store = Store::default();
    let mut published: Option<BTreeMap<ChiKey, Arc<ChiEntry>>> = None;
    let mut invalid_seen: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(LEASE_TICK);
    loop {
        tokio::select! {
            next = events.next() => {
                let Some((kind, event)) = next else { return };
                match event {
                    Ok(event) => store.apply(kind, event),
                    Err(error) => {
                        watch_stream::log_error(&error, None);
                        continue;
                    }
                }
            }
            _ = tick.tick() => writer.lease().await,
        }
        if !store.ready() {
            continue;
        }
        let (objects, invalid) = store.objects();
        if invalid != invalid_seen {
            for i in invalid.iter().filter(|i| !invalid_seen.contains(i)) {
                tracing::warn!(object = i.as_str(), "gateway api: object not read");
            }
            invalid_seen = invalid;
        }
        let has_certificate = |name: &str| settings.has_certificate(name);
        let translation = gateway::translate(
            &objects,
            &Settings {
                controller_name: &settings.controller_name,
                cluster_domain: &settings.cluster_domain,
                listener_ports: &settings.listener_ports,
                has_certificate: &has_certificate,
            },
        );
        let entries = entries(&store, translation.routes);
        if published.as_ref() != Some(&entries) && publish(&tx, &entries) {
            tracing::info!(routes = entries.len(), "gateway api: routes published");
            published = Some(entries);
        }
        if writer.leader {
            writer.write(&store, &translation.statuses).await;
        }
    }
}

/// The routes per TLSRoute (their `source` names it), with its creation time.
fn entries(
    store: &Store,
    routes: Vec<crate::model::route::RouteSpec>,
) -> BTreeMap<ChiKey, Arc<ChiEntry>> {
    let mut by_route: BTreeMap<ChiKey, Vec<_>> = BTreeMap::new();
    for r in routes {
        let (ns, name) = r
            .source
            .strip_prefix("tlsroute:")
            .and_then(|k| k.split_once('/'))
            .unwrap_or(("", &r.source));
        let k = ChiKey {
            namespace: ns.to_owned(),
            name: format!("tlsroute/{name}"),
        };
        by_route.entry(k).or_default().push(r.clone());
    }
    by_route
        .into_iter()
        .map(|(k, routes)| {
            let name = k.name.trim_start_matches("tlsroute/").to_owned();
            let created = store.objects[ROUTE]
                .get(&(k.namespace.clone(), name))
                .and_then(|v| v["metadata"]["creationTimestamp"].as_str())
                .map(str::to_owned);
            (k, Arc::new(ChiEntry::published(created, routes)))
        })
        .collect()
}

/// Into the catalog, once the CHI watch has published one (the first table waits for it).
fn publish(
    tx: &watch::Sender<Option<Arc<Catalog>>>,
    entries: &BTreeMap<ChiKey, Arc<ChiEntry>>,
) -> bool {
    let mut done = false;
    tx.send_if_modified(|slot| {
        let Some(old) = slot else { return false };
        let mut next = (**old).clone();
        next.tls_routes = entries.clone();
        *slot = Some(Arc::new(next));
        done = true;
        true
    });
    done
}

fn lease_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
        "leases",
    )
}

async fn client(silence: Duration) -> anyhow::Result<kube::Client> {
    let _ = (*crate::model::tls::provider()).clone().install_default();
    let config = kube::Config::infer().await?;
    kube_client::build(config, silence)
}

/// Writes statuses while holding the Lease.
struct Writer {
    client: kube::Client,
    controller: String,
    leases: Api<DynamicObject>,
    identity: String,
    leader: bool,
    /// The other replica holding the Lease, once logged.
    waiting_for: Option<String>,
    /// The last patch written per object: not written again before the watch shows it.
    written: HashMap<(usize, Key), Value>,
    /// Objects whose last status write failed (logged once).
    failing: HashSet<(usize, Key)>,
}

impl Writer {
    /// Takes or renews the Lease; `leader` says whether we hold it now.
    async fn lease(&mut self) {
        let now = SystemTime::now();
        let current = match self.leases.get_opt(LEASE_NAME).await {
            Ok(l) => l.map(|l| serde_json::to_value(l).unwrap_or_default()),
            Err(error) => {
                tracing::warn!(error = %error, "gateway api: cannot read the Lease");
                self.leader = false;
                return;
            }
        };
        let decision = lease::decide(current.as_ref(), &self.identity, now, LEASE_DURATION);
        if let Decision::Wait { holder, .. } = &decision {
            // Once per holder, not every check.
            if self.leader || self.waiting_for.as_deref() != Some(holder) {
                tracing::info!(
                    holder = holder.as_str(),
                    "gateway api: the Lease is held by another replica; not writing statuses"
                );
                self.waiting_for = Some(holder.clone());
            }
            self.leader = false;
            return;
        }
        self.waiting_for = None;
        let spec = lease::spec(
            current.as_ref(),
            &self.identity,
            now,
            LEASE_DURATION,
            &decision,
        );
        let mut obj = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME},
            "spec": spec,
        });
        let written = match &current {
            None => match serde_json::from_value::<DynamicObject>(obj) {
                Ok(o) => self
                    .leases
                    .create(&PostParams::default(), &o)
                    .await
                    .map(drop),
                Err(e) => Err(kube::Error::SerdeError(e)),
            },
            Some(cur) => {
                // With its resourceVersion: of two replicas taking it, one gets 409.
                obj["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
                match serde_json::from_value::<DynamicObject>(obj) {
                    Ok(o) => self
                        .leases
                        .replace(LEASE_NAME, &PostParams::default(), &o)
                        .await
                        .map(drop),
                    Err(e) => Err(kube::Error::SerdeError(e)),
                }
            }
        };
        let was = self.leader;
        self.leader = written.is_ok();
        match written {
            Ok(()) if !was => {
                tracing::info!(
                    identity = self.identity.as_str(),
                    "gateway api: holding the Lease; writing statuses"
                );
                self.written.clear();
            }
            Ok(()) => {}
            Err(error) => tracing::info!(error = %error, "gateway api: Lease not taken"),
        }
    }

    /// Patches every status that differs from what its object says.
    async fn write(&mut self, store: &Store, statuses: &Statuses) {
        let now = lease::micro_time(SystemTime::now());
        let now = now
            .split('.')
            .next()
            .map(|s| format!("{s}Z"))
            .unwrap_or(now);
        let status = |kind: usize, ns: &str, name: &str| {
            store.objects[kind]
                .get(&(ns.to_owned(), name.to_owned()))
                .and_then(|v| v.get("status"))
                .cloned()
        };
        let mut patches: Vec<(usize, Key, Value)> = Vec::new();
        for (k, s) in &statuses.gateway_classes {
            if let Some(p) = patch::gateway_class(status(CLASS, "", &k.name).as_ref(), s, &now) {
                patches.push((CLASS, (String::new(), k.name.clone()), p));
            }
        }
        for (k, s) in &statuses.gateways {
            if let Some(p) =
                patch::gateway(status(GATEWAY, &k.namespace, &k.name).as_ref(), s, &now)
            {
                patches.push((GATEWAY, (k.namespace.clone(), k.name.clone()), p));
            }
        }
        let empty = gateway::status::RouteStatus { parents: vec![] };
        for ((ns, name), v) in &store.objects[ROUTE] {
            // Routes no longer attached to a Gateway of ours lose our parents entries.
            let desired = statuses.tls_route(ns, name).unwrap_or(&empty);
            if let Some(p) = patch::tls_route(v.get("status"), desired, &self.controller, &now) {
                patches.push((ROUTE, (ns.clone(), name.clone()), p));
            }
        }
        for (kind, key, p) in patches {
            if self.written.get(&(kind, key.clone())) == Some(&p) {
                continue;
            }
            let api: Api<DynamicObject> = if KINDS[kind].4 {
                Api::namespaced_with(self.client.clone(), &key.0, &resource(kind))
            } else {
                Api::all_with(self.client.clone(), &resource(kind))
            };
            match api
                .patch_status(&key.1, &PatchParams::default(), &Patch::Merge(&p))
                .await
            {
                Ok(_) => {
                    self.failing.remove(&(kind, key.clone()));
                    self.written.insert((kind, key), p);
                }
                Err(error) => {
                    watch_stream::count_error("status");
                    // Once per object until it succeeds (retried on the next change).
                    if self.failing.insert((kind, key.clone())) {
                        tracing::warn!(
                            kind = KINDS[kind].2,
                            object = format!("{}/{}", key.0, key.1),
                            error = %error,
                            "gateway api: status not written"
                        );
                    }
                }
            }
        }
        // Forget what was written to objects that are gone.
        self.written
            .retain(|(kind, key), _| store.objects[*kind].contains_key(key));
        self.failing
            .retain(|(kind, key)| store.objects[*kind].contains_key(key));
    }
}
