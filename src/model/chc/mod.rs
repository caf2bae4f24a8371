//! Routes derived from ClickHouseClusters (`clickhouse.com/v1alpha1`) of ClickHouse Inc.'s
//! official operator: `routes from-manifests` and Kubernetes discovery share this.
//!
//! Per cluster `<n>` in namespace `<ns>`, domain `D` (DESIGN.md, "Derived from
//! ClickHouseCluster"): `<n>.D` → every replica's pod, `<n>-shard-<s>.D` → the replicas of
//! shard `<s>`, `<n>-clickhouse-<s>-<r>.D` → that replica's pod. The operator makes no
//! per-replica and no load-balanced Service, so upstreams are the pods' DNS names under the
//! headless Service (stable: each replica is a StatefulSet of one pod).
//!
//! The shard routes exist for every shard count, `shards: 1` included: a name that appears
//! and vanishes with the shard count would break clients on a scale change.
//!
//! TLS: the secure ports (9440/8443) exist only with `spec.settings.tls.enabled`; a cluster
//! without it can only be reached through routes that terminate TLS here (to 9000/8123), so
//! its routes are `tls: terminate` (discovery refuses them, `no_certificate`, when no
//! certificate covers the names).

pub mod naming;

use std::collections::BTreeSet;
use std::sync::Arc;

use ch_edge_wire::sni::{check_name, normalize_pattern, PatternError};
use serde::Deserialize;
use serde_json::Value;

pub use naming::ReplicaId;

use crate::model::annotations::{self, route_tls, AnnotationError, RouteAnnotations};
use crate::model::manifests::{self, ManifestError};
use crate::model::route::{RouteSpec, TlsMode, UpstreamAddr};

pub const API_VERSION: &str = "clickhouse.com/v1alpha1";
pub const KIND: &str = "ClickHouseCluster";
/// The CRD's defaults (`+kubebuilder:default`).
pub const DEFAULT_REPLICAS: u32 = 3;
pub const DEFAULT_SHARDS: u32 = 1;
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// Most replicas one cluster may have: more is a typo, not a cluster.
pub const MAX_REPLICAS: u64 = 10_000;

/// A ClickHouseCluster whose routes cannot be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChcError {
    #[error("ClickHouseCluster without metadata.name")]
    NoName,
    #[error("ClickHouseCluster {cluster}: {problem}")]
    Invalid { cluster: String, problem: Problem },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// What is wrong with one ClickHouseCluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A field of the wrong type (the message says which).
    #[error("spec: {0}")]
    Spec(String),
    #[error("{shards} shards x {replicas} replicas exceeds {MAX_REPLICAS} replicas")]
    TooLarge { shards: u32, replicas: u32 },
    #[error(transparent)]
    Annotation(#[from] AnnotationError),
    #[error(
        "the operator would name a {object} {name:?} ({len} characters), longer than a DNS \
         label (63): Kubernetes refuses it; shorten the ClickHouseCluster's name"
    )]
    NameTooLong {
        object: &'static str,
        name: String,
        len: usize,
    },
    #[error("derived name {name:?}: {error}")]
    Name { name: String, error: PatternError },
    #[error(
        "annotation {}: {mode} needs the secure ports 9440/8443, which exist only with \
         spec.settings.tls.enabled",
        annotations::TLS
    )]
    NoSecurePorts { mode: TlsMode },
    #[error(
        "annotation {}: terminate needs the plaintext ports 9000/8123, which \
         spec.settings.tls.required closes",
        annotations::TLS
    )]
    NoPlaintextPorts,
}

/// What the routes need of a ClickHouseCluster, read leniently (the API is alpha): unknown
/// fields are ignored, missing ones take the operator's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub namespace: String,
    pub shards: u32,
    /// Per shard.
    pub replicas: u32,
    pub cluster_domain: String,
    /// `spec.settings.tls.enabled`: the secure ports 9440/8443 are open.
    pub tls_enabled: bool,
    /// `spec.settings.tls.required`: the plaintext ports 9000/8123 are closed.
    pub tls_required: bool,
    /// The port of `spec.additionalPorts`'s entry named `postgres` (or `postgresql`): the
    /// operator turns PostgreSQL off unless a port is added for it, which its routes then reach
    /// on a `postgres` listener.
    pub postgres_port: Option<u16>,
    pub annotations: RouteAnnotations,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec {
    replicas: Option<u32>,
    shards: Option<u32>,
    cluster_domain: Option<String>,
    settings: Option<Settings>,
    additional_ports: Option<Vec<AdditionalPort>>,
}

/// One of `spec.additionalPorts`: a port the operator adds to the pods and the Service.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AdditionalPort {
    name: Option<String>,
    port: Option<u16>,
}

/// The names an `additionalPorts` entry for PostgreSQL goes by (the operator's example:
/// `postgres`), compared ignoring case.
const POSTGRES_PORT_NAMES: [&str; 2] = ["postgres", "postgresql"];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Settings {
    tls: Option<Tls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Tls {
    enabled: Option<bool>,
    required: Option<bool>,
}

/// Whether `obj` is a ClickHouseCluster of the official operator (group `clickhouse.com`:
/// other operators use the same kind name).
pub fn is_chc(obj: &Value) -> bool {
    manifests::is_kind(obj, API_VERSION, KIND)
}

/// Routes for every ClickHouseCluster in `text` (documents, `kind: List`); other kinds are
/// ignored. From manifests alone every replica counts as ready.
pub fn routes_from_manifests(
    text: &str,
    default_namespace: &str,
    domain: &str,
) -> Result<Vec<RouteSpec>, ChcError> {
    let mut routes = Vec::new();
    for obj in manifests::objects(text)?.iter().filter(|o| is_chc(o)) {
        let cluster = Cluster::from_object(obj, default_namespace)?;
        routes.extend(cluster.routes(domain, &BTreeSet::new())?);
    }
    Ok(routes)
}

impl Cluster {
    /// Reads one ClickHouseCluster object; `default_namespace` applies without
    /// `metadata.namespace`.
    pub fn from_object(obj: &Value, default_namespace: &str) -> Result<Cluster, ChcError> {
        let meta = |key: &str| {
            obj.get("metadata")
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let name = meta("name").ok_or(ChcError::NoName)?;
        let namespace = meta("namespace").unwrap_or(default_namespace);
        let invalid = |problem: Problem| ChcError::Invalid {
            cluster: format!("{namespace}/{name}"),
            problem,
        };
        let spec = match obj.get("spec") {
            None | Some(Value::Null) => Spec::default(),
            Some(spec) => {
                Spec::deserialize(spec).map_err(|e| invalid(Problem::Spec(e.to_string())))?
            }
        };
        let tls = spec.settings.and_then(|s| s.tls).unwrap_or_default();
        let annotations = RouteAnnotations::read(obj).map_err(|e| invalid(e.into()))?;
        let cluster = Cluster {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            shards: spec.shards.unwrap_or(DEFAULT_SHARDS),
            replicas: spec.replicas.unwrap_or(DEFAULT_REPLICAS),
            cluster_domain: spec
                .cluster_domain
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| DEFAULT_CLUSTER_DOMAIN.to_owned()),
            tls_enabled: tls.enabled.unwrap_or(false),
            tls_required: tls.required.unwrap_or(false),
            postgres_port: spec.additional_ports.iter().flatten().find_map(|p| {
                let name = p.name.as_deref()?;
                POSTGRES_PORT_NAMES
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name))
                    .then_some(p.port)?
            }),
            annotations,
        };
        if u64::from(cluster.shards) * u64::from(cluster.replicas) > MAX_REPLICAS {
            return Err(invalid(Problem::TooLarge {
                shards: cluster.shards,
                replicas: cluster.replicas,
            }));
        }
        cluster.tls_mode().map_err(invalid)?;
        Ok(cluster)
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Every replica, shard by shard.
    pub fn replica_ids(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        (0..self.shards).flat_map(move |shard| {
            (0..self.replicas).map(move |replica| ReplicaId { shard, replica })
        })
    }

    /// Without TLS on the cluster, its routes terminate TLS here (and need a certificate).
    pub fn plaintext_only(&self) -> bool {
        !self.tls_enabled
    }

    /// The routes' TLS mode: as annotated, forced to `terminate` without secure ports;
    /// `None` (the defaults) when the cluster has them and no annotation says otherwise.
    fn tls_mode(&self) -> Result<Option<TlsMode>, Problem> {
        match (self.annotations.tls, self.tls_enabled) {
            (None | Some(TlsMode::Terminate), false) => Ok(Some(TlsMode::Terminate)),
            (Some(mode), false) => Err(Problem::NoSecurePorts { mode }),
            (Some(TlsMode::Terminate), true) if self.tls_required => Err(Problem::NoPlaintextPorts),
            (mode, true) => Ok(mode),
        }
    }

    /// The routes: the cluster's, then per shard the shard's and its replicas'. Replicas in
    /// `not_ready` are left out of the cluster and shard routes (their own route stays);
    /// when none of a group is ready, the group keeps them all, so that its name still
    /// reaches a server once one comes back, and connect errors say why meanwhile.
    /// A cluster of no replicas has no routes.
    pub fn routes(
        &self,
        domain: &str,
        not_ready: &BTreeSet<ReplicaId>,
    ) -> Result<Vec<RouteSpec>, ChcError> {
        self.derive(domain, not_ready)
            .map_err(|problem| ChcError::Invalid {
                cluster: self.key(),
                problem,
            })
    }

    fn derive(
        &self,
        domain: &str,
        not_ready: &BTreeSet<ReplicaId>,
    ) -> Result<Vec<RouteSpec>, Problem> {
        let ids: Vec<ReplicaId> = self.replica_ids().collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mode = self.tls_mode()?;
        let tls = route_tls(mode);
        let postgres = self.annotations.route_postgres(self.postgres_port);
        let (ns, name) = (self.namespace.as_str(), self.name.as_str());
        let source: Arc<str> = format!("chc:{ns}/{name}").into();
        // The operator does not shorten names; Kubernetes refuses a Service or pod whose
        // name is not a DNS label, so such a cluster never has a pod to route to.
        let label = |object: &'static str, name: String| match name.len() {
            len if len > naming::DNS_LABEL_MAX => Err(Problem::NameTooLong { object, name, len }),
            _ => Ok(()),
        };
        label("Service", naming::headless_service(name))?;
        let mut fqdns = Vec::with_capacity(ids.len());
        for &id in &ids {
            label("pod", naming::pod(name, id))?;
            let fqdn = naming::pod_fqdn(name, ns, &self.cluster_domain, id);
            check_name(&fqdn).map_err(|error| Problem::Name {
                name: fqdn.clone(),
                error,
            })?;
            fqdns.push(fqdn);
        }
        let route = |route_name: String, sni: String, members: &[usize]| {
            let sni = normalize_pattern(&sni)
                .map_err(|error| Problem::Name {
                    name: sni.clone(),
                    error,
                })?
                .into_owned();
            let upstreams: Vec<UpstreamAddr> = members
                .iter()
                .map(|&i| UpstreamAddr::new(fqdns[i].as_str(), None))
                .collect();
            Ok::<_, Problem>(RouteSpec {
                name: route_name.into(),
                sni: Arc::from([Arc::from(sni)]),
                upstreams: upstreams.into(),
                allow: self.annotations.allow.clone(),
                proxy_protocol: self.annotations.proxy_protocol,
                balance: None,
                sticky: None,
                tls: tls.clone(),
                postgres,
                source: source.clone(),
            })
        };
        // Indexes into `ids` of the ready members of a group, or all of them if none is.
        let balanced = |members: Vec<usize>| {
            let ready: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&i| !not_ready.contains(&ids[i]))
                .collect();
            if ready.is_empty() {
                members
            } else {
                ready
            }
        };
        let base = naming::base(name);
        let mut routes = Vec::with_capacity(ids.len() + self.shards as usize + 1);
        routes.push(route(
            format!("{ns}/{name}"),
            format!("{base}.{domain}"),
            &balanced((0..ids.len()).collect()),
        )?);
        for shard in 0..self.shards {
            let members: Vec<usize> = (0..ids.len()).filter(|&i| ids[i].shard == shard).collect();
            routes.push(route(
                format!("{ns}/{name}/shard-{shard}"),
                format!("{base}-shard-{shard}.{domain}"),
                &balanced(members.clone()),
            )?);
            for i in members {
                routes.push(route(
                    format!("{ns}/{name}/{}", ids[i]),
                    format!("{}.{domain}", naming::statefulset(name, ids[i])),
                    &[i],
                )?);
            }
        }
        Ok(routes)
    }
}

#[cfg(test)]
mod tests;
