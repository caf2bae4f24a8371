//! Which ClickHouseCluster replicas are ready, from the pods' `Ready` condition: the pods
//! the watches of [`Feed::Pods`](super::catalog::Feed) last reported, folded like the objects
//! (a list replaces what its own watch reported).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::change::Change;
use crate::model::chc::{naming, Cluster, ReplicaId};

/// The label selector of the pod watches: the official operator's ClickHouse server pods.
#[cfg_attr(not(feature = "k8s"), allow(dead_code))]
pub const POD_SELECTOR: &str = "clickhouse.com/role=clickhouse-server";

/// A pod: namespace and name.
type PodKey = (String, String);

/// Every reported pod's readiness.
#[derive(Debug, Default)]
pub struct Pods {
    /// Ready, and the watch (scope) that reported it.
    pods: BTreeMap<PodKey, (usize, bool)>,
    /// Per scope: the list being received, until its `ListDone`.
    listing: BTreeMap<usize, BTreeMap<PodKey, (usize, bool)>>,
}

/// What a pod event changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Touched {
    Nothing,
    /// Pods of this namespace.
    Namespace(String),
    /// Any namespace (a list was replaced).
    All,
}

impl Pods {
    /// Applies one event of pod watch `scope`.
    pub fn apply(&mut self, scope: usize, change: Change) -> Touched {
        match change {
            Change::Restart => {
                self.listing.insert(scope, BTreeMap::new());
                Touched::Nothing
            }
            Change::Listed(pod) => {
                if let Some((key, ready)) = pod_state(&pod) {
                    self.listing
                        .entry(scope)
                        .or_default()
                        .insert(key, (scope, ready));
                }
                Touched::Nothing
            }
            Change::ListDone => {
                let fresh = self.listing.remove(&scope).unwrap_or_default();
                let before = self.pods.clone();
                self.pods.retain(|_, (s, _)| *s != scope);
                self.pods.extend(fresh);
                if before == self.pods {
                    Touched::Nothing
                } else {
                    Touched::All
                }
            }
            Change::Applied(pod) => match pod_state(&pod) {
                Some((key, ready)) => {
                    let old = self.pods.insert(key.clone(), (scope, ready));
                    if old.map(|(_, r)| r) == Some(ready) {
                        Touched::Nothing
                    } else {
                        Touched::Namespace(key.0)
                    }
                }
                None => Touched::Nothing,
            },
            Change::Deleted(pod) => match pod_state(&pod) {
                Some((key, _)) if self.pods.remove(&key).is_some() => Touched::Namespace(key.0),
                _ => Touched::Nothing,
            },
        }
    }

    /// The replicas of `cluster` whose pod is missing or not ready.
    pub fn not_ready(&self, cluster: &Cluster) -> BTreeSet<ReplicaId> {
        cluster
            .replica_ids()
            .filter(|&id| {
                let key = (cluster.namespace.clone(), naming::pod(&cluster.name, id));
                !self.pods.get(&key).is_some_and(|(_, ready)| *ready)
            })
            .collect()
    }
}

/// A pod's key and whether it is ready: condition `Ready` is `True` and it is not being
/// deleted. `None` without a name or namespace.
fn pod_state(pod: &Value) -> Option<(PodKey, bool)> {
    let meta = pod.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    let namespace = meta.get("namespace")?.as_str()?;
    let deleting = meta.get("deletionTimestamp").is_some_and(|t| !t.is_null());
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    Some(((namespace.to_owned(), name.to_owned()), ready && !deleting))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn pod(ns: &str, name: &str, ready: bool) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"namespace": ns, "name": name},
            "status": {"conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": if ready { "True" } else { "False" }},
            ]},
        })
    }

    #[test]
    fn missing_unready_and_terminating_pods_are_not_ready() {
        let obj = json!({
            "apiVersion": "clickhouse.com/v1alpha1", "kind": "ClickHouseCluster",
            "metadata": {"namespace": "ns", "name": "c"}, "spec": {"replicas": 4},
        });
        let cluster = Cluster::from_object(&obj, "x").unwrap();
        let mut pods = Pods::default();
        pods.apply(0, Change::Restart);
        pods.apply(0, Change::Listed(pod("ns", "c-clickhouse-0-0-0", true)));
        pods.apply(0, Change::Listed(pod("ns", "c-clickhouse-0-1-0", false)));
        let mut deleting = pod("ns", "c-clickhouse-0-2-0", true);
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        pods.apply(0, Change::Listed(deleting));
        // Another namespace's pod of the same name is another pod.
        pods.apply(0, Change::Listed(pod("other", "c-clickhouse-0-3-0", true)));
        assert_eq!(pods.apply(0, Change::ListDone), Touched::All);
        let ids = |r: &[u32]| -> BTreeSet<ReplicaId> {
            r.iter()
                .map(|&replica| ReplicaId { shard: 0, replica })
                .collect()
        };
        assert_eq!(pods.not_ready(&cluster), ids(&[1, 2, 3]));
        assert_eq!(
            pods.apply(0, Change::Applied(pod("ns", "c-clickhouse-0-1-0", true))),
            Touched::Namespace("ns".into())
        );
        assert_eq!(
            pods.apply(0, Change::Applied(pod("ns", "c-clickhouse-0-1-0", true))),
            Touched::Nothing,
            "no change"
        );
        assert_eq!(pods.not_ready(&cluster), ids(&[2, 3]));
        pods.apply(0, Change::Deleted(pod("ns", "c-clickhouse-0-0-0", true)));
        assert_eq!(pods.not_ready(&cluster), ids(&[0, 2, 3]));
    }
}
