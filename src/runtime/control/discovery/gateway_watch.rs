//! The Gateway API watcher task: watches GatewayClasses, Gateways, TLSRoutes, ReferenceGrants,
//! Services (in `discovery.kubernetes.namespaces`, else every namespace; TLSRoutes by
//! `label_selector`), Namespaces and the TLSRoute CRD, runs the pure translation ([`crate::model::gateway`]) after
//! each change once every watch has listed, publishes the routes into the catalog's
//! `tls_routes`, and — while this replica holds the Lease ([`super::lease`]) — writes the
//! statuses that changed ([`crate::model::gateway::patch`]) as merge patches on the `status`
//! subresource.
//!
//! Watches are [`watch_stream::watch`]es like the CHI one (bookmarks, silence deadline, 410
//! relists, backoff); errors are logged and counted the same way and keep the last routes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use kube::api::{Api, DynamicObject};
use tokio::sync::watch;

use super::catalog::{Catalog, ChiEntry, ChiKey};
use super::gateway_store::{
    lease_resource, resource, Scope, Store, CRD, KINDS, LEASE_NAME, ROUTE, TLS_ROUTE_CRD,
};
use super::gateway_writer::Writer;
use super::{kube_client, watch_stream};
use crate::model::config::{GatewayApi, KubernetesDiscovery};
use crate::model::gateway::{self, Settings};
use crate::model::sources::SourceKind;

/// The Lease is renewed (and checked) this often.
const LEASE_TICK: Duration = Duration::from_secs(5);

/// Watches until aborted.
pub(super) async fn run(discovery: KubernetesDiscovery, tx: watch::Sender<Option<Arc<Catalog>>>) {
    let settings: &GatewayApi = &discovery.gateway_api;
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
    let scopes = scopes(&discovery);
    let config = watch_stream::config(silence);
    let watches = scopes.iter().enumerate().map(|(scope, (kind, ns))| {
        let resource = resource(*kind);
        let api: Api<DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let config = match *kind {
            // The routes are what the label selector picks, as it picks CHIs.
            ROUTE if !discovery.label_selector.is_empty() => {
                config.clone().labels(&discovery.label_selector)
            }
            CRD => config
                .clone()
                .fields(&format!("metadata.name={TLS_ROUTE_CRD}")),
            _ => config.clone(),
        };
        watch_stream::watch(api, config)
            .map(move |e| (scope, e))
            .boxed()
    });
    let mut events = stream::select_all(watches);
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("ch-edge-proxy-{}", std::process::id()));
    let lease_ns =
        std::env::var("POD_NAMESPACE").unwrap_or_else(|_| client.default_namespace().to_owned());
    let mut writer = Writer::new(
        client.clone(),
        settings.controller_name.clone(),
        Api::namespaced_with(client.clone(), &lease_ns, &lease_resource()),
        identity,
    );
    tracing::info!(
        controller_name = settings.controller_name.as_str(),
        lease = format!("{lease_ns}/{LEASE_NAME}"),
        identity = writer.identity.as_str(),
        namespaces = ?discovery.namespaces,
        label_selector = discovery.label_selector.as_str(),
        "gateway api: watching GatewayClasses, Gateways, TLSRoutes, ReferenceGrants, Services, \
         Namespaces and the TLSRoute CRD"
    );
    let mut store = Store::new(scopes);
    let mut published: Option<BTreeMap<ChiKey, Arc<ChiEntry>>> = None;
    let mut invalid_seen: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(LEASE_TICK);
    loop {
        tokio::select! {
            next = events.next() => {
                let Some((scope, event)) = next else { return };
                match event {
                    Ok(event) => store.apply(scope, event),
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
                addresses: &settings.addresses,
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

/// One watch per kind, or per kind and namespace where `namespaces` lists some (cluster-scoped
/// kinds are always watched whole).
fn scopes(discovery: &KubernetesDiscovery) -> Vec<Scope> {
    (0..KINDS.len())
        .flat_map(|kind| {
            if KINDS[kind].4 && !discovery.namespaces.is_empty() {
                discovery
                    .namespaces
                    .iter()
                    .map(|ns| (kind, Some(ns.clone())))
                    .collect::<Vec<_>>()
            } else {
                vec![(kind, None)]
            }
        })
        .collect()
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
            name: name.to_owned(),
            kind: SourceKind::TlsRoute,
        };
        by_route.entry(k).or_default().push(r.clone());
    }
    by_route
        .into_iter()
        .map(|(k, routes)| {
            let name = k.name.clone();
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
        next.tls_routes_listed = true;
        *slot = Some(Arc::new(next));
        done = true;
        true
    });
    done
}

async fn client(silence: Duration) -> anyhow::Result<kube::Client> {
    let _ = (*crate::model::tls::provider()).clone().install_default();
    let config = kube::Config::infer().await?;
    kube_client::build(config, silence)
}
