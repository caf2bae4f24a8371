//! The parts of the Gateway API objects (and of Services) the translation reads, as serde
//! types read leniently: unknown fields are ignored, missing ones take the API's defaults.
//! Shapes from `apis/v1/*_types.go` of kubernetes-sigs/gateway-api.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::selector::{LabelSelector, NAME_LABEL};

/// The API group of every Gateway API kind read here.
pub const GROUP: &str = "gateway.networking.k8s.io";
pub const KIND_GATEWAY_CLASS: &str = "GatewayClass";
pub const KIND_GATEWAY: &str = "Gateway";
pub const KIND_TLS_ROUTE: &str = "TLSRoute";
pub const KIND_REFERENCE_GRANT: &str = "ReferenceGrant";
pub const KIND_SERVICE: &str = "Service";
pub const KIND_NAMESPACE: &str = "Namespace";
/// The CRD whose `gateway.networking.k8s.io/bundle-version` annotation is read as the
/// cluster's Gateway API version (TLSRoute `v1` is what this controller depends on).
pub const TLS_ROUTE_CRD: &str = "tlsroutes.gateway.networking.k8s.io";
pub const BUNDLE_VERSION_ANNOTATION: &str = "gateway.networking.k8s.io/bundle-version";

/// Why manifests could not be read as objects.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("manifests are not YAML: {0}")]
    Yaml(String),
    #[error("{kind} #{index}: {source}")]
    Object {
        kind: String,
        index: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("kind: List with non-list items")]
    BadList,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Meta {
    pub name: String,
    pub namespace: Option<String>,
    pub generation: Option<i64>,
    pub creation_timestamp: Option<String>,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl Meta {
    /// The namespace, `default` when missing (as `kubectl apply` would place it).
    pub fn ns(&self) -> &str {
        self.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GatewayClass {
    pub metadata: Meta,
    pub spec: GatewayClassSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayClassSpec {
    pub controller_name: String,
    pub parameters_ref: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Gateway {
    pub metadata: Meta,
    pub spec: GatewaySpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewaySpec {
    pub gateway_class_name: String,
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Listener {
    pub name: String,
    pub hostname: Option<String>,
    pub port: u16,
    pub protocol: String,
    pub tls: Option<ListenerTls>,
    pub allowed_routes: AllowedRoutes,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListenerTls {
    /// `Terminate` (the API's default) or `Passthrough`.
    pub mode: Option<String>,
    pub certificate_refs: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AllowedRoutes {
    pub namespaces: RouteNamespaces,
    /// Empty: the kinds the listener's protocol supports.
    pub kinds: Vec<RouteGroupKind>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RouteNamespaces {
    /// `Same` (default), `All` or `Selector`.
    pub from: Option<String>,
    /// With `Selector`: which namespaces, by their labels.
    pub selector: Option<LabelSelector>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RouteGroupKind {
    /// Missing: `gateway.networking.k8s.io`.
    pub group: Option<String>,
    pub kind: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TlsRoute {
    pub metadata: Meta,
    pub spec: TlsRouteSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TlsRouteSpec {
    pub parent_refs: Vec<ParentRef>,
    pub hostnames: Vec<String>,
    pub rules: Vec<TlsRouteRule>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ParentRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TlsRouteRule {
    pub backend_refs: Vec<BackendRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BackendRef {
    /// Missing or `""`: the core group.
    pub group: Option<String>,
    /// Missing: `Service`.
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub port: Option<u16>,
    /// Missing: 1.
    pub weight: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReferenceGrant {
    pub metadata: Meta,
    pub spec: ReferenceGrantSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReferenceGrantSpec {
    pub from: Vec<GrantFrom>,
    pub to: Vec<GrantTo>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrantFrom {
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrantTo {
    pub group: String,
    pub kind: String,
    /// Missing: every object of the kind.
    pub name: Option<String>,
}

/// A Service: only its name and namespace matter (does the backend exist).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Service {
    pub metadata: Meta,
}

/// A Namespace: its labels, for listeners that select route namespaces.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Namespace {
    pub metadata: Meta,
}

/// Every object the translation reads.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub gateway_classes: Vec<GatewayClass>,
    pub gateways: Vec<Gateway>,
    pub tls_routes: Vec<TlsRoute>,
    pub reference_grants: Vec<ReferenceGrant>,
    /// `None`: Services are not known (not watched), so no backend is reported missing.
    pub services: Option<Vec<Service>>,
    /// `None`: not known (not watched); a namespace then has only its name label.
    pub namespaces: Option<Vec<Namespace>>,
    /// The `gateway.networking.k8s.io/bundle-version` of the Gateway API CRDs in the cluster,
    /// if known (for the GatewayClass `SupportedVersion` condition).
    pub bundle_version: Option<String>,
}

impl Objects {
    /// The labels of namespace `ns`: its Namespace object's, if known, plus [`NAME_LABEL`].
    pub fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .namespaces
            .iter()
            .flatten()
            .find(|n| n.metadata.name == ns)
            .map(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        labels
            .entry(NAME_LABEL.to_owned())
            .or_insert_with(|| ns.to_owned());
        labels
    }

    /// Adds one object, if it is of a kind read here (others are ignored). `default_namespace`
    /// applies to namespaced objects without one.
    pub fn push(&mut self, v: &Value, default_namespace: &str) -> Result<(), GatewayError> {
        let api = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
        let group = api.rsplit_once('/').map_or("", |(g, _)| g);
        let err = |source, index| GatewayError::Object {
            kind: kind.to_owned(),
            index,
            source,
        };
        let mut with_ns = v.clone();
        if let Some(m) = with_ns.get_mut("metadata").and_then(Value::as_object_mut) {
            let missing = m
                .get("namespace")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            let cluster_scoped = [
                KIND_GATEWAY_CLASS,
                KIND_NAMESPACE,
                "CustomResourceDefinition",
            ];
            if missing && !cluster_scoped.contains(&kind) {
                m.insert("namespace".into(), Value::from(default_namespace));
            }
        }
        let v = with_ns;
        match (group, kind) {
            (GROUP, KIND_GATEWAY_CLASS) => self.gateway_classes.push(
                serde_json::from_value(v).map_err(|e| err(e, self.gateway_classes.len() + 1))?,
            ),
            (GROUP, KIND_GATEWAY) => self
                .gateways
                .push(serde_json::from_value(v).map_err(|e| err(e, self.gateways.len() + 1))?),
            (GROUP, KIND_TLS_ROUTE) => self
                .tls_routes
                .push(serde_json::from_value(v).map_err(|e| err(e, self.tls_routes.len() + 1))?),
            (GROUP, KIND_REFERENCE_GRANT) => self.reference_grants.push(
                serde_json::from_value(v).map_err(|e| err(e, self.reference_grants.len() + 1))?,
            ),
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                let meta = &v["metadata"];
                if meta["name"] == TLS_ROUTE_CRD {
                    self.bundle_version = meta["annotations"][BUNDLE_VERSION_ANNOTATION]
                        .as_str()
                        .map(str::to_owned);
                }
            }
            ("", KIND_NAMESPACE) => {
                let namespaces = self.namespaces.get_or_insert_with(Vec::new);
                let index = namespaces.len() + 1;
                namespaces.push(serde_json::from_value(v).map_err(|e| err(e, index))?);
            }
            ("", KIND_SERVICE) => {
                let services = self.services.get_or_insert_with(Vec::new);
                let index = services.len() + 1;
                services.push(serde_json::from_value(v).map_err(|e| err(e, index))?);
            }
            _ => {}
        }
        Ok(())
    }

    /// The objects in `text` (YAML, `---`-separated documents, `kind: List` accepted).
    pub fn from_manifests(text: &str, default_namespace: &str) -> Result<Objects, GatewayError> {
        let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
            GatewayError::Yaml(
                e.render_with_options(serde_saphyr::render_options! {
                    snippets: serde_saphyr::SnippetMode::Off,
                })
                .to_string(),
            )
        })?;
        let mut objects = Objects::default();
        for doc in &docs {
            match (doc.get("kind").and_then(Value::as_str), doc.get("items")) {
                (Some("List"), Some(Value::Array(items))) => {
                    for item in items {
                        objects.push(item, default_namespace)?;
                    }
                }
                (Some("List"), None | Some(Value::Null)) => {}
                (Some("List"), Some(_)) => return Err(GatewayError::BadList),
                _ => objects.push(doc, default_namespace)?,
            }
        }
        Ok(objects)
    }
}
