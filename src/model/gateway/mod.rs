//! Gateway API (`gateway.networking.k8s.io/v1`) for TLS → route specs and statuses: a pure
//! translation, shared by Kubernetes discovery and tests (DESIGN.md, "Gateway API").
//!
//! - a `GatewayClass` whose `controllerName` is this proxy's is `Accepted`;
//!   (and says in `SupportedVersion` whether it knows the CRDs' bundle version);
//! - a `Gateway` of such a class: each listener of protocol `TLS` is matched to the proxy's
//!   listeners by port (none: `Accepted=False`, `PortUnavailable`), mode `Passthrough`, or
//!   `Terminate` where the proxy holds a certificate for the listener's hostname (its
//!   `certificateRefs` are not read); it takes routes from its namespace, all, or those whose
//!   Namespace labels its selector matches; its `status.addresses` are the configured ones;
//! - a `TLSRoute` attached through `parentRefs` (`sectionName`, `port`) serves its hostnames
//!   intersected with each listener's, to its `backendRefs` (Services, as
//!   `<svc>.<ns>.svc.<clusterDomain>:<port>`, each with its `weight`; another namespace only
//!   with a `ReferenceGrant`);
//!   the annotations `ch-edge-proxy/allow` and `ch-edge-proxy/proxy-protocol` set its allowlist
//!   and PROXY version, as on CHIs.
//!
//! No I/O: objects in, routes and statuses out; the writer adds `lastTransitionTime`.

pub mod backends;
pub mod hostname;
pub mod listeners;
pub mod objects;
pub mod patch;
pub mod selector;
mod specs;
pub mod status;
mod translate;

pub use objects::{GatewayError, Objects};
pub use status::Statuses;
pub use translate::translate;

use crate::model::route::RouteSpec;

/// The default `controllerName` (a domain-prefixed path, as the spec requires).
pub const DEFAULT_CONTROLLER_NAME: &str = "ch-edge-proxy.io/gateway-controller";

/// What the translation needs to know of the proxy.
pub struct Settings<'a> {
    /// The `controllerName` of GatewayClasses this proxy implements.
    pub controller_name: &'a str,
    /// `cluster.local` unless the cluster says otherwise.
    pub cluster_domain: &'a str,
    /// The ports the proxy's listeners listen on.
    pub listener_ports: &'a [u16],
    /// Whether the proxy holds a certificate for a name or pattern (for `Terminate`).
    pub has_certificate: &'a dyn Fn(&str) -> bool,
    /// Every Gateway's `status.addresses` (empty: not written).
    pub addresses: &'a [status::GatewayAddress],
}

/// The Gateway API releases (the CRDs' `gateway.networking.k8s.io/bundle-version`) this
/// build knows: TLSRoute `v1` is in the Standard channel since v1.5.
pub const SUPPORTED_BUNDLE_VERSIONS: [&str; 2] = ["v1.5", "v1.6"];

/// Whether a bundle version (`v1.5.0`, `v1.6.1`…) is one of [`SUPPORTED_BUNDLE_VERSIONS`].
pub fn supported_bundle_version(version: &str) -> bool {
    SUPPORTED_BUNDLE_VERSIONS.iter().any(|v| {
        version
            .strip_prefix(v)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

/// What the objects become.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translation {
    /// Routes of accepted TLSRoutes, oldest route first; an SNI name is claimed by the oldest
    /// route asking for it (creation time, then namespace/name), as the spec orders conflicts.
    pub routes: Vec<RouteSpec>,
    pub statuses: Statuses,
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_namespaces;
