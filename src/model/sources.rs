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
}

ch_edge_wire::keywords!(SourceKind {
    Chi => "chi",
    ClickHouseCluster => "clickhousecluster",
});

impl SourceKind {
    /// The object's kind, as in its manifest.
    pub fn kind(self) -> &'static str {
        match self {
            SourceKind::Chi => chi::KIND,
            SourceKind::ClickHouseCluster => chc::KIND,
        }
    }
}

/// What one manifest text yields.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FromManifests {
    pub routes: Vec<RouteSpec>,
    /// ClickHouseInstallations read.
    pub chis: usize,
    /// ClickHouseClusters read.
    pub clusters: usize,
}

/// Routes for every CHI and ClickHouseCluster in `text` (YAML documents, `kind: List`), in
/// document order. `default_namespace` applies to objects without `metadata.namespace`.
/// From manifests alone every ClickHouseCluster replica counts as ready.
pub fn routes_from_manifests(
    text: &str,
    default_namespace: &str,
    domain: &str,
) -> anyhow::Result<FromManifests> {
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
        }
    }
    Ok(out)
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
            FromManifests::default()
        );
        let bad = "apiVersion: clickhouse.com/v1alpha1\nkind: ClickHouseCluster\nmetadata: {name: x}\nspec: {replicas: no}\n";
        let e = format!(
            "{:#}",
            routes_from_manifests(bad, "ns", "d.test").unwrap_err()
        );
        assert!(e.contains("ClickHouseCluster ns/x: spec:"), "{e}");
    }
}
