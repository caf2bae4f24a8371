//! Every Kubernetes source's manifests at once (`routes from-manifests`): the objects of
//! each file, in order, each kind through its own derivation; other kinds are ignored.

use crate::model::route::RouteSpec;
use crate::model::{chc, chi, manifests};

/// A kind of Kubernetes object that routes are derived from (`discovery.kubernetes.sources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    /// `clickhouseinstallations.clickhouse.altinity.com` (Altinity operator).
    Chi,
    /// `clickhouseclusters.clickhouse.com` (the official operator).
    ClickHouseCluster,
    /// `tlsroutes.gateway.networking.k8s.io`: switched on by `gateway_api.enabled`, not listed
    /// in `sources` (a Gateway API implementation watches more than one kind).
    TlsRoute,
}

ch_edge_wire::keywords!(SourceKind {
    Chi => "chi",
    ClickHouseCluster => "clickhousecluster",
    TlsRoute => "tlsroute",
});

impl SourceKind {
    /// The object's kind, as in its manifest.
    pub fn kind(self) -> &'static str {
        match self {
            SourceKind::Chi => chi::KIND,
            SourceKind::ClickHouseCluster => chc::KIND,
            SourceKind::TlsRoute => "TLSRoute",
        }
    }
}

/// Why a Kubernetes object (or manifest text) gives no routes, as each source's derivation
/// says it: discovery keeps it with the object (its log line, `/routes`), `routes
/// from-manifests` prints it with the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Manifest(#[from] manifests::ManifestError),
    #[error(transparent)]
    Chi(#[from] chi::ChiError),
    #[error(transparent)]
    Chc(#[from] chc::ChcError),
    /// A TLSRoute handed to the CHI watch's tracker (the Gateway API watcher reads them).
    #[error("TLSRoutes are read by the Gateway API watcher")]
    TlsRouteNotOfThisFeed,
}

/// What one manifest text yields.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FromManifests {
    pub routes: Vec<RouteSpec>,
    /// ClickHouseInstallations read.
    pub chis: usize,
    /// ClickHouseClusters read.
    pub clusters: usize,
    /// Each other `kind` seen, once, in order (`(no kind)` for an object without one; a kind
    /// of ours in another `apiVersion` with it, since that is why it was skipped).
    pub other_kinds: Vec<String>,
}

/// Routes for every CHI and ClickHouseCluster in `text` (YAML documents, `kind: List`), in
/// document order. `default_namespace` applies to objects without `metadata.namespace`.
/// From manifests alone every ClickHouseCluster replica counts as ready.
pub fn routes_from_manifests(
    text: &str,
    default_namespace: &str,
    domain: &str,
) -> Result<FromManifests, SourceError> {
    let mut out = FromManifests::default();
    for obj in manifests::objects(text)? {
        if chi::is_chi(&obj) {
            out.chis += 1;
            out.routes
                .extend(chi::routes_for_chi(&obj, default_namespace, domain)?);
        } else if chc::is_chc(&obj) {
            out.clusters += 1;
            let cluster = chc::Cluster::from_object(&obj, default_namespace)?;
            out.routes
                .extend(cluster.routes(domain, &Default::default())?);
        } else {
            let kind = other_kind(&obj);
            if !out.other_kinds.contains(&kind) {
                out.other_kinds.push(kind);
            }
        }
    }
    Ok(out)
}

/// How a skipped object is named in `from-manifests`' notes.
fn other_kind(obj: &serde_json::Value) -> String {
    let api = obj
        .get("apiVersion")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    match obj.get("kind").and_then(serde_json::Value::as_str) {
        Some(k) if k == chi::KIND || k == chc::KIND => format!("{k} ({api})"),
        Some(k) if !k.is_empty() => k.to_owned(),
        _ => "(no kind)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_in_document_order() {
        let text = "\
apiVersion: clickhouse.com/v1alpha1
kind: ClickHouseCluster
metadata: {name: b}
spec: {replicas: 1}
---
apiVersion: v1
kind: List
items:
  - apiVersion: clickhouse.altinity.com/v1
    kind: ClickHouseInstallation
    metadata: {name: a}
  - apiVersion: clickhouse.com/v1alpha1
    kind: KeeperCluster
    metadata: {name: k}
";
        let out = routes_from_manifests(text, "ns", "d.test").unwrap();
        let names: Vec<&str> = out.routes.iter().map(|r| r.name.as_ref()).collect();
        assert_eq!(
            names,
            [
                "ns/b",
                "ns/b/shard-0",
                "ns/b/0-0",
                "ns/a",
                "ns/a/cluster",
                "ns/a/cluster/0-0"
            ]
        );
        assert_eq!((out.chis, out.clusters), (1, 1));
        // Another operator's kind of the same name is not read.
        let other = "apiVersion: example.com/v1\nkind: ClickHouseCluster\nmetadata: {name: x}\n";
        assert_eq!(
            routes_from_manifests(other, "ns", "d.test").unwrap(),
            FromManifests {
                other_kinds: vec!["ClickHouseCluster (example.com/v1)".to_owned()],
                ..FromManifests::default()
            }
        );
        let bad = "apiVersion: clickhouse.com/v1alpha1\nkind: ClickHouseCluster\nmetadata: {name: x}\nspec: {replicas: no}\n";
        let e = format!(
            "{:#}",
            routes_from_manifests(bad, "ns", "d.test").unwrap_err()
        );
        assert!(e.contains("ClickHouseCluster ns/x: spec:"), "{e}");
    }

    #[test]
    fn other_kinds_are_named_once_in_order() {
        let text = "\
apiVersion: v1
kind: ConfigMap
---
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Service}
  - {apiVersion: v1, kind: ConfigMap}
  - {apiVersion: clickhouse.altinity.com/v2, kind: ClickHouseInstallation}
---
metadata: {name: kindless}
---
";
        let found = routes_from_manifests(text, "ns", "d.test").unwrap();
        assert_eq!((found.chis, found.clusters), (0, 0));
        assert!(found.routes.is_empty());
        assert_eq!(
            found.other_kinds,
            [
                "ConfigMap",
                "Service",
                "ClickHouseInstallation (clickhouse.altinity.com/v2)",
                "(no kind)"
            ]
        );
        let chi_text = format!(
            "{text}apiVersion: {}\nkind: {}\nmetadata: {{name: a}}\n",
            chi::API_VERSION,
            chi::KIND
        );
        let found = routes_from_manifests(&chi_text, "ns", "d.test").unwrap();
        assert_eq!(found.chis, 1);
        assert_eq!(found.routes.len(), 3);
        assert_eq!(
            routes_from_manifests("", "ns", "d.test").unwrap(),
            FromManifests::default()
        );
    }
}
