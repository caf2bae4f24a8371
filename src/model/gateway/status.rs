//! Statuses as the Gateway API defines them (`apis/v1`): conditions with the spec's types and
//! reasons, serialised in the API's shape. `lastTransitionTime` is left to the writer, which
//! knows the time and the conditions already written (a condition whose status is unchanged
//! keeps its time).

use serde::Serialize;

use super::objects::{ParentRef, GROUP};

/// One `metav1.Condition` without its `lastTransitionTime`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `"True"` or `"False"`.
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub fn new(
        kind: &'static str,
        ok: bool,
        reason: &'static str,
        message: impl Into<String>,
        generation: Option<i64>,
    ) -> Condition {
        Condition {
            kind,
            status: if ok { "True" } else { "False" },
            reason,
            message: message.into(),
            observed_generation: generation,
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Condition types and reasons used here, spelled as in `apis/v1`.
pub mod reason {
    pub const ACCEPTED: &str = "Accepted";
    pub const PROGRAMMED: &str = "Programmed";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const CONFLICTED: &str = "Conflicted";
    // GatewayClass / Gateway.
    pub const INVALID_PARAMETERS: &str = "InvalidParameters";
    pub const SUPPORTED_VERSION: &str = "SupportedVersion";
    pub const UNSUPPORTED_VERSION: &str = "UnsupportedVersion";
    pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
    pub const INVALID: &str = "Invalid";
    // Listener.
    pub const PORT_UNAVAILABLE: &str = "PortUnavailable";
    pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    pub const INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
    pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";
    pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";
    pub const NO_CONFLICTS: &str = "NoConflicts";
    // Route.
    pub const NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
    pub const NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
    pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    pub const INVALID_KIND: &str = "InvalidKind";
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayClassStatus {
    pub conditions: Vec<Condition>,
    /// `status.supportedFeatures` (written as `[{name}]`): [`SUPPORTED_FEATURES`] for a class
    /// we accept, none for one we do not.
    pub supported_features: &'static [&'static str],
}

/// The conformance feature names (Gateway API v1.5, `pkg/features`) this implementation
/// supports, in ascending order as the spec requires: TLSRoute Passthrough, Terminate, and both
/// modes on one port. Not `Gateway` nor `ReferenceGrant`: their core conformance tests need
/// HTTP listeners and HTTPRoute, which an L4 TLS proxy does not serve.
pub const SUPPORTED_FEATURES: &[&str] = &["TLSRoute", "TLSRouteModeMixed", "TLSRouteModeTerminate"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayStatus {
    /// `None`: none configured, the written ones are left alone.
    pub addresses: Option<Vec<GatewayAddress>>,
    pub conditions: Vec<Condition>,
    pub listeners: Vec<ListenerStatus>,
}

/// One `status.addresses` entry: where clients reach the Gateway (the proxy's Service or load
/// balancer, as configured in `gateway_api.addresses`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayAddress {
    /// `IPAddress` or `Hostname`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: String,
}

impl GatewayAddress {
    /// An IP literal is an `IPAddress`, anything else a `Hostname`.
    pub fn new(value: &str) -> GatewayAddress {
        let kind = if value.parse::<std::net::IpAddr>().is_ok() {
            "IPAddress"
        } else {
            "Hostname"
        };
        GatewayAddress {
            kind,
            value: value.to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    pub name: String,
    pub supported_kinds: Vec<GroupKind>,
    pub attached_routes: u32,
    pub conditions: Vec<Condition>,
}

impl ListenerStatus {
    /// The condition of this type, if set.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupKind {
    pub group: &'static str,
    pub kind: &'static str,
}

/// `TLSRoute` in `gateway.networking.k8s.io`: the one kind a TLS listener here supports.
pub const TLS_ROUTE_KIND: GroupKind = GroupKind {
    group: GROUP,
    kind: super::objects::KIND_TLS_ROUTE,
};

/// This controller's entries of a route's `status.parents` (entries of other controllers are
/// the writer's to keep).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteStatus {
    pub parents: Vec<RouteParentStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentRef,
    pub controller_name: String,
    pub conditions: Vec<Condition>,
}

impl RouteParentStatus {
    /// The condition of this type, if set.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

/// `namespace/name` of a namespaced object (a GatewayClass: its name alone).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// Every status this controller owns, by object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statuses {
    pub gateway_classes: Vec<(ObjectKey, GatewayClassStatus)>,
    pub gateways: Vec<(ObjectKey, GatewayStatus)>,
    pub tls_routes: Vec<(ObjectKey, RouteStatus)>,
}

impl Statuses {
    pub fn gateway(&self, ns: &str, name: &str) -> Option<&GatewayStatus> {
        find(&self.gateways, ns, name)
    }

    pub fn tls_route(&self, ns: &str, name: &str) -> Option<&RouteStatus> {
        find(&self.tls_routes, ns, name)
    }

    pub fn gateway_class(&self, name: &str) -> Option<&GatewayClassStatus> {
        find(&self.gateway_classes, "", name)
    }
}

fn find<'a, T>(list: &'a [(ObjectKey, T)], ns: &str, name: &str) -> Option<&'a T> {
    list.iter()
        .find(|(k, _)| k.namespace == ns && k.name == name)
        .map(|(_, s)| s)
}
