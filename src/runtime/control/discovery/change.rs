//! A watch event as the catalog and the pods' readiness read it: a leaf, shared by both.

use serde_json::Value;

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
