//! Kubernetes discovery: ClickHouseInstallations and ClickHouseClusters (and, with
//! `gateway_api`, Gateway API TLSRoutes: [`gateway_watch`], which also writes their statuses)
//! become routes.
//!
//! A watcher task (feature `k8s`, [`kube_watch`]) folds watch events into a
//! [`Catalog`] ([`catalog::Tracker`]) and publishes a snapshot after every
//! change once each watch has listed fully. The reloader merges the latest
//! snapshot with the file routes ([`merge::merge`]) into every table it
//! builds, and rebuilds on each new snapshot; a snapshot is only replaced by
//! a newer one, so API errors keep the last table.

pub mod catalog;
pub mod change;
#[cfg(feature = "k8s")]
mod gateway_store;
#[cfg(feature = "k8s")]
mod gateway_watch;
#[cfg(feature = "k8s")]
mod gateway_writer;
#[cfg(feature = "k8s")]
mod kube_client;
#[cfg(feature = "k8s")]
mod kube_watch;
#[cfg_attr(not(feature = "k8s"), allow(dead_code))]
pub mod lease;
pub mod merge;
pub mod readiness;
#[cfg(feature = "k8s")]
mod watch_stream;

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::watch;

pub use catalog::Catalog;
pub use merge::{Merged, Refusal, RefusalReason};

use crate::model::config::{self, Config, ConfigError, KubernetesDiscovery, Problem};
use crate::model::route::RouteSpec;
use crate::runtime::meters;
use crate::runtime::table::RouteTable;
use crate::runtime::upstream::resolve::Resolver;

/// Discovery as the live table reflects it (for `/routes` and `/readyz`).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub enabled: bool,
    /// Started with discovery on, and the first full lists of every enabled source (CHIs,
    /// ClickHouseClusters, and the Gateway API's kinds when on) have not all made it into the
    /// table yet: the proxy is not ready (it would refuse their names).
    pub awaiting_first_sync: bool,
    /// The merge behind the live table; `None` until a list is live.
    pub merged: Option<Merged>,
}

impl Report {
    /// Before any table: no discovered list has made it into one. (The first table's report
    /// is its [`Report::next`], as every later one's.)
    pub fn empty() -> Report {
        Report {
            enabled: false,
            awaiting_first_sync: true,
            merged: None,
        }
    }

    /// The first table's report, before it has discovered routes: [`Report::empty`]'s next.
    pub fn startup(settings: &KubernetesDiscovery) -> Report {
        Report::empty().next(settings, None)
    }

    /// The report once a table built under `settings` (with `merged`, if a
    /// catalog was merged) is live; logs refusals that are new since `self`.
    pub fn next(&self, settings: &KubernetesDiscovery, merged: Option<Merged>) -> Report {
        let old: HashSet<&Refusal> = self.merged.iter().flat_map(|m| m.refused.iter()).collect();
        for r in merged.iter().flat_map(|m| m.refused.iter()) {
            if !old.contains(r) {
                tracing::warn!(
                    chi = r.chi.as_str(),
                    kind = r.kind.keyword(),
                    route = r.route.as_str(),
                    reason = r.reason.keyword(),
                    detail = r.detail.as_str(),
                    "kubernetes discovery: route refused"
                );
            }
        }
        let complete = merged
            .as_ref()
            .is_some_and(|m| m.tls_routes_listed || !settings.gateway_api.enabled);
        let report = Report {
            enabled: settings.enabled,
            awaiting_first_sync: settings.enabled && self.awaiting_first_sync && !complete,
            merged: if settings.enabled { merged } else { None },
        };
        report.record();
        report
    }

    fn record(&self) {
        use meters::*;
        let empty = Merged::default();
        let m = self.merged.as_ref().unwrap_or(&empty);
        metrics::gauge!(DISCOVERY_ENABLED).set(f64::from(u8::from(self.enabled)));
        metrics::gauge!(DISCOVERY_SYNCED).set(f64::from(u8::from(self.merged.is_some())));
        metrics::gauge!(DISCOVERY_CHIS).set(m.chis as f64);
        metrics::gauge!(DISCOVERY_ROUTES).set(m.routes as f64);
        metrics::gauge!(DISCOVERY_CHIS_INVALID).set(m.invalid.len() as f64);
        for reason in RefusalReason::ALL {
            let n = m.refused.iter().filter(|r| r.reason == reason).count();
            metrics::gauge!(DISCOVERY_ROUTES_REFUSED, "reason" => reason.keyword()).set(n as f64);
        }
    }

    /// For `/routes`.
    pub fn to_json(&self) -> serde_json::Value {
        let merged = self.merged.as_ref();
        serde_json::json!({
            "enabled": self.enabled,
            "synced": merged.is_some(),
            "chis": merged.map_or(0, |m| m.chis),
            "clickhouseclusters": merged.map_or(0, |m| m.clusters),
            "routes": merged.map_or(0, |m| m.routes),
            "refused": merged.map(|m| m.refused.iter().map(|r| serde_json::json!({
                "chi": r.chi,
                "kind": r.kind.keyword(),
                "route": r.route,
                "reason": r.reason.keyword(),
                "detail": r.detail,
            })).collect::<Vec<_>>()).unwrap_or_default(),
            "invalid": merged.map(|m| m.invalid.iter().map(|(chi, error)| serde_json::json!({
                "chi": chi,
                "error": error,
            })).collect::<Vec<_>>()).unwrap_or_default(),
        })
    }
}

/// The table for `config`'s file routes plus `catalog`'s, reusing the
/// routes of `previous` built from unchanged files
/// ([`RouteTable::build_reusing`]). Blocking.
pub fn build_table(
    config: &Config,
    catalog: &Catalog,
    resolver: &Resolver,
    previous: &RouteTable,
) -> Result<(RouteTable, Merged), ConfigError> {
    let certificates = &config.tls.certificates;
    let uncovered = |r: &RouteSpec| config::uncovered(r, &config.defaults, certificates);
    let (accepted, merged) = merge::discovered(
        config.routes.iter(),
        config.routes.len(),
        catalog,
        uncovered,
    );
    // File routes stay shared per file; the discovered ones are one more group.
    let mut specs = config.routes.clone();
    specs.push_group(accepted.into());
    let table =
        RouteTable::build_reusing(&specs, &config.defaults, resolver, previous).map_err(|e| {
            ConfigError::from(Problem {
                message: format!("discovered routes: {e}"),
                ..Problem::from(e)
            })
        })?;
    Ok((table, merged))
}

/// The running discovery for one set of settings: owns the watcher task.
#[derive(Debug)]
pub struct Discovery {
    settings: KubernetesDiscovery,
    updates: Option<watch::Receiver<Option<Arc<Catalog>>>>,
    /// The latest snapshot; survives a watcher restart until the new
    /// watcher has listed (a settings change never empties the table).
    current: Option<Arc<Catalog>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Discovery {
    /// Starts watching if `settings.enabled`. Needs a Tokio runtime.
    pub fn start(settings: &KubernetesDiscovery) -> Discovery {
        let mut d = Discovery {
            settings: KubernetesDiscovery::default(),
            updates: None,
            current: None,
            task: None,
        };
        d.configure(settings);
        d
    }

    /// Applies new settings: a change restarts the watcher; disabling drops
    /// the discovered routes.
    pub fn configure(&mut self, settings: &KubernetesDiscovery) {
        if *settings == self.settings && (self.task.is_some() || !settings.enabled) {
            return;
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.updates = None;
        self.settings = settings.clone();
        if !settings.enabled {
            self.current = None;
            return;
        }
        let (tx, rx) = watch::channel(None);
        self.updates = Some(rx);
        self.task = spawn_watcher(settings, tx);
    }

    /// The latest listed catalog, if any.
    pub fn current(&self) -> Option<&Arc<Catalog>> {
        self.current.as_ref()
    }

    /// Resolves when the watcher published a new catalog (cancel-safe);
    /// never when discovery is off.
    pub async fn changed(&mut self) {
        let Some(rx) = &mut self.updates else {
            return std::future::pending().await;
        };
        if rx.changed().await.is_err() {
            // The watcher ended (it only does when aborted): nothing more comes.
            self.updates = None;
            return std::future::pending().await;
        }
        if let Some(catalog) = rx.borrow_and_update().clone() {
            self.current = Some(catalog);
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(feature = "k8s")]
fn spawn_watcher(
    settings: &KubernetesDiscovery,
    tx: watch::Sender<Option<Arc<Catalog>>>,
) -> Option<tokio::task::JoinHandle<()>> {
    if settings.gateway_api.enabled {
        // Shares the catalog: each watcher replaces only its own part.
        let gateway = tokio::spawn(gateway_watch::run(settings.clone(), tx.clone()));
        let chis = kube_watch::run(settings.clone(), tx);
        return Some(tokio::spawn(async move {
            // Aborting this task (a settings change) must end the Gateway API watch too.
            struct AbortOnDrop(tokio::task::JoinHandle<()>);
            impl Drop for AbortOnDrop {
                fn drop(&mut self) {
                    self.0.abort();
                }
            }
            let _gateway = AbortOnDrop(gateway);
            chis.await
        }));
    }
    Some(tokio::spawn(kube_watch::run(settings.clone(), tx)))
}

#[cfg(not(feature = "k8s"))]
fn spawn_watcher(
    _settings: &KubernetesDiscovery,
    _tx: watch::Sender<Option<Arc<Catalog>>>,
) -> Option<tokio::task::JoinHandle<()>> {
    // Validation refuses `enabled: true` in such a build; this is a backstop.
    tracing::error!("discovery.kubernetes: this binary was built without the k8s feature");
    None
}

#[cfg(test)]
mod tests;
