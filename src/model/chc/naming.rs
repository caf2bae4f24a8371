//! The official operator's object naming (`api/v1alpha1/clickhousecluster_types.go`,
//! `common.go` of ClickHouse/clickhouse-operator): every name starts from `SpecificName()`,
//! the cluster's name with `.` replaced by `-` (`normalizeName`) plus `-clickhouse`. Nothing is
//! cut or hashed: a name too long for Kubernetes is refused by Kubernetes, not shortened.

use std::fmt;

/// Longest DNS label (a pod's hostname, a label value): RFC 1123, as Kubernetes enforces it.
pub const DNS_LABEL_MAX: usize = 63;

/// One replica: shard and replica index, both 0-based (the operator's `ClickHouseReplicaID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId {
    pub shard: u32,
    pub replica: u32,
}

/// `<shard>-<replica>`, as in the StatefulSet's name.
impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.shard, self.replica)
    }
}

/// The cluster's name as the operator uses it in object names: `.` → `-`.
pub fn base(name: &str) -> String {
    name.replace('.', "-")
}

/// `SpecificName()`: `<n>-clickhouse`, also the pods' `app` label.
pub fn specific(name: &str) -> String {
    format!("{}-clickhouse", base(name))
}

/// The headless Service every replica's pod is named under: `<n>-clickhouse-headless`.
pub fn headless_service(name: &str) -> String {
    format!("{}-headless", specific(name))
}

/// A replica's StatefulSet (of one pod): `<n>-clickhouse-<shard>-<replica>`.
pub fn statefulset(name: &str, id: ReplicaId) -> String {
    format!("{}-{id}", specific(name))
}

/// A replica's pod (ordinal 0 of its StatefulSet), also its hostname.
pub fn pod(name: &str, id: ReplicaId) -> String {
    format!("{}-0", statefulset(name, id))
}

/// The pod's DNS name (`HostnameByID` → `formatPodHostname`):
/// `<pod>.<n>-clickhouse-headless.<ns>.svc.<clusterDomain>`.
pub fn pod_fqdn(name: &str, namespace: &str, cluster_domain: &str, id: ReplicaId) -> String {
    format!(
        "{}.{}.{namespace}.svc.{cluster_domain}",
        pod(name, id),
        headless_service(name)
    )
}

/// The pod labels that say which cluster and replica a pod is (`internal/controllerutil/labels.go`).
pub mod labels {
    /// `<n>-clickhouse` on every pod (and Service, ConfigMap, …) of the cluster.
    pub const APP: &str = "app";
    /// `clickhouse-server` on ClickHouse pods (`clickhouse-keeper` on Keeper's).
    pub const ROLE: &str = "clickhouse.com/role";
    pub const ROLE_SERVER: &str = "clickhouse-server";
    pub const SHARD_ID: &str = "clickhouse.com/shard-id";
    pub const REPLICA_ID: &str = "clickhouse.com/replica-id";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_operator() {
        let id = ReplicaId {
            shard: 1,
            replica: 0,
        };
        assert_eq!(specific("sample"), "sample-clickhouse");
        assert_eq!(headless_service("sample"), "sample-clickhouse-headless");
        assert_eq!(statefulset("sample", id), "sample-clickhouse-1-0");
        assert_eq!(pod("sample", id), "sample-clickhouse-1-0-0");
        assert_eq!(
            pod_fqdn("sample", "default", "cluster.local", id),
            "sample-clickhouse-1-0-0.sample-clickhouse-headless.default.svc.cluster.local"
        );
        // normalizeName: dots become dashes, nothing else changes.
        assert_eq!(specific("my.db"), "my-db-clickhouse");
    }
}
