//! What can be wrong with a ClickHouseInstallation, typed: the messages are those of the
//! `routes from-chi` output, the discovery log and `/routes` (each names the CHI, then the
//! cluster where there is one, then what is wrong).

use ch_edge_wire::sni::PatternError;

use super::layout::LayoutError;
use crate::model::annotations::AnnotationError;
use crate::model::manifests::ManifestError;

/// Why a CHI (or manifest text holding CHIs) gives no routes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChiError {
    #[error("ClickHouseInstallation without metadata.name")]
    NoName,
    /// `chi` is `<namespace>/<name>`.
    #[error("ClickHouseInstallation {chi}: {problem}")]
    Invalid { chi: String, problem: ChiProblem },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// What is wrong inside one CHI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChiProblem {
    #[error(transparent)]
    Annotation(#[from] AnnotationError),
    /// A field of the wrong type: `path` is dotted (`spec.namespaceDomainPattern`), `got` the
    /// value as JSON.
    #[error("{path}: expected a string, got {got}")]
    NotAString { path: String, got: String },
    #[error("spec.configuration.clusters: expected a list")]
    ClustersNotAList,
    /// `number` is 1-based.
    #[error("cluster #{number}: missing name")]
    UnnamedCluster { number: usize },
    #[error("cluster {cluster:?}: {error}")]
    Cluster { cluster: String, error: LayoutError },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("derived SNI {sni:?}: {error}")]
    DerivedSni { sni: String, error: PatternError },
    #[error("spec.configuration.settings.postgresql_port: expected a port (1-65535), got {got}")]
    PostgresPort { got: String },
    #[error("derived service name {host:?}: {error}")]
    DerivedServiceName { host: String, error: PatternError },
}
