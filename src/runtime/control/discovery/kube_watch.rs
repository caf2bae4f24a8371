//! The watcher task: kube-rs watches of each source kind
//! (`clickhouseinstallations.clickhouse.altinity.com`,
//! `clickhouseclusters.clickhouse.com`), one over all namespaces or one per
//! listed namespace, fed into a [`Tracker`].
//!
//! Each watch is a [`watch_stream::watch`]: kube's watcher relists after a
//! watch expires (410 Gone, in the stream or as the watch request's status)
//! and resumes after a dropped or silent stream ([`kube_client`]); every
//! error is logged, counted and retried with kube's default backoff (0.8 s
//! doubling to 30 s, jittered). Nothing is published on an error, so the
//! last table stays.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::{self, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::Event;
use tokio::sync::watch;

use super::catalog::{Catalog, Change, Feed, Tracker};
use super::kube_client;
use super::readiness;
use super::watch_stream;
use crate::model::config::KubernetesDiscovery;
use crate::runtime::meters;

use crate::model::sources::SourceKind;

/// The resource a feed watches.
fn resource_of(feed: Feed) -> ApiResource {
    let (group, version, kind, plural) = match feed {
        Feed::Objects(SourceKind::Chi) => (
            "clickhouse.altinity.com",
            "v1",
            SourceKind::Chi.kind(),
            "clickhouseinstallations",
        ),
        Feed::Objects(SourceKind::ClickHouseCluster) => (
            "clickhouse.com",
            "v1alpha1",
            SourceKind::ClickHouseCluster.kind(),
            "clickhouseclusters",
        ),
        // Watched by the Gateway API watcher (`gateway_watch`), never a feed of this one.
        Feed::Objects(SourceKind::TlsRoute) => (
            "gateway.networking.k8s.io",
            "v1",
            SourceKind::TlsRoute.kind(),
            "tlsroutes",
        ),
        Feed::Pods => ("", "v1", "Pod", "pods"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Between attempts to build a client (no kubeconfig, no in-cluster token).
const CLIENT_RETRY: Duration = Duration::from_secs(5);

/// Watches until aborted, publishing each new catalog on `tx`.
pub(super) async fn run(settings: KubernetesDiscovery, tx: watch::Sender<Option<Arc<Catalog>>>) {
    // Every kind exported from the start, at 0, so `increase(...)` sees the first error.
    watch_stream::export_error_kinds();
    let silence = watch_stream::silence();
    let client = loop {
        match client(silence).await {
            Ok(c) => break c,
            Err(error) => {
                api_error("client");
                tracing::error!(
                    error = format!("{error:#}"),
                    "kubernetes discovery: no API client; retrying"
                );
                tokio::time::sleep(CLIENT_RETRY).await;
            }
        }
    };
    let namespaces: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    // ClickHouseClusters' readiness comes from their pods (the user's label selector picks
    // clusters, not pods).
    let mut feeds: Vec<Feed> = settings.sources.iter().map(|&k| Feed::Objects(k)).collect();
    if settings.sources.contains(&SourceKind::ClickHouseCluster) {
        feeds.push(Feed::Pods);
    }
    let scopes: Vec<(Feed, Option<String>)> = feeds
        .iter()
        .flat_map(|&feed| namespaces.iter().map(move |ns| (feed, ns.clone())))
        .collect();
    let mut config = watch_stream::config(silence);
    let pod_config = config.clone().labels(readiness::POD_SELECTOR);
    if !settings.label_selector.is_empty() {
        config = config.labels(&settings.label_selector);
    }
    let watches = scopes.iter().enumerate().map(|(scope, (feed, ns))| {
        let resource = resource_of(*feed);
        let api: Api<DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let config = match feed {
            Feed::Pods => pod_config.clone(),
            Feed::Objects(_) => config.clone(),
        };
        watch_stream::watch(api, config)
            .map(move |event| (scope, event))
            .boxed()
    });
    let mut events = stream::select_all(watches);
    tracing::info!(
        sources = ?settings.sources.iter().map(|s| s.keyword()).collect::<Vec<_>>(),
        namespaces = ?settings.namespaces,
        label_selector = settings.label_selector.as_str(),
        domain = settings.domain.as_str(),
        stall_timeout = ?silence,
        "kubernetes discovery: watching"
    );
    let mut tracker = Tracker::with_feeds(&settings.domain, scopes.clone());
    while let Some((scope, event)) = events.next().await {
        let change = match event {
            Ok(event) => change(event),
            Err(error) => {
                watch_stream::log_error(&error, scopes[scope].1.as_deref());
                continue;
            }
        };
        let list_done = matches!(change, Change::ListDone);
        let publish = tracker.apply(scope, change);
        if list_done {
            metrics::gauge!(meters::DISCOVERY_LAST_SYNC)
                .set(meters::unix_seconds(SystemTime::now()));
            tracing::info!(
                chis = tracker.catalog().chis.len(),
                "kubernetes discovery: listed"
            );
        }
        if publish {
            // The Gateway API watcher's part of the catalog stays.
            let mut next = tracker.catalog().clone();
            tx.send_modify(|slot| {
                if let Some(old) = slot {
                    next.tls_routes = old.tls_routes.clone();
                    next.tls_routes_listed = old.tls_routes_listed;
                }
                *slot = Some(Arc::new(std::mem::take(&mut next)));
            });
        }
    }
}

async fn client(silence: Duration) -> anyhow::Result<kube::Client> {
    // kube builds its TLS from rustls's process-wide provider, which cannot be guessed with two
    // in the tree (kube's ring, our aws-lc-rs): make it ours. A second call keeps the first.
    let _ = (*crate::model::tls::provider()).clone().install_default();
    // KUBECONFIG / ~/.kube/config first, then the pod's service account.
    let config = kube::Config::infer().await?;
    kube_client::build(config, silence)
}

fn change(event: Event<DynamicObject>) -> Change {
    let json = |obj: DynamicObject| serde_json::to_value(obj).unwrap_or_default();
    match event {
        Event::Init => Change::Restart,
        Event::InitApply(obj) => Change::Listed(json(obj)),
        Event::InitDone => Change::ListDone,
        Event::Apply(obj) => Change::Applied(json(obj)),
        Event::Delete(obj) => Change::Deleted(json(obj)),
    }
}

fn api_error(kind: &'static str) {
    watch_stream::count_error(kind);
}
