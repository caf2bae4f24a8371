//! Conformance-style rows for what issue 22 left open: listeners that select route namespaces
//! by label (`allowedRoutes.namespaces.from: Selector`, over the conformance base's Namespaces
//! and their `gateway-conformance` labels), the GatewayClass `SupportedVersion` condition, and
//! Gateway `status.addresses`.

use serde_json::json;

use super::selector::LabelSelector;
use super::status::GatewayAddress;
use super::tests::{conformance, run, simple_route, INFRA};
use super::*;

const GW: &str = "gateway-tlsroute";
const ROUTE: &str = "gateway-conformance-infra-test";

/// The route's `Accepted` (status, reason, message) at the scenario's Gateway.
fn accepted(t: &Translation, route_ns: &str) -> (&'static str, &'static str, String) {
    let s = t
        .statuses
        .tls_route(route_ns, ROUTE)
        .unwrap_or_else(|| panic!("no status for {route_ns}/{ROUTE}"));
    let c = s.parents[0].condition("Accepted").unwrap();
    (c.status, c.reason, c.message.clone())
}

#[test]
fn listeners_select_route_namespaces_by_label() {
    let backend = "gateway-conformance-app-backend";
    // (selector as JSON; None: `from: Selector` without one), the route's namespace,
    // whether it attaches.
    let rows = [
        (
            Some(json!({"matchLabels": {"gateway-conformance": "infra"}})),
            INFRA,
            true,
        ),
        (
            Some(json!({"matchLabels": {"gateway-conformance": "backend"}})),
            INFRA,
            false,
        ),
        (
            Some(json!({"matchLabels": {"gateway-conformance": "backend"}})),
            backend,
            true,
        ),
        (
            Some(
                json!({"matchExpressions": [{"key": "gateway-conformance", "operator": "In", "values": ["backend", "web"]}]}),
            ),
            backend,
            true,
        ),
        (
            Some(
                json!({"matchExpressions": [{"key": "gateway-conformance", "operator": "NotIn", "values": ["infra"]}]}),
            ),
            INFRA,
            false,
        ),
        (
            Some(
                json!({"matchExpressions": [{"key": "gateway-conformance", "operator": "NotIn", "values": ["infra"]}]}),
            ),
            backend,
            true,
        ),
        (
            Some(
                json!({"matchExpressions": [{"key": "gateway-conformance", "operator": "Exists"}]}),
            ),
            backend,
            true,
        ),
        (
            Some(
                json!({"matchExpressions": [{"key": "gateway-conformance", "operator": "DoesNotExist"}]}),
            ),
            INFRA,
            false,
        ),
        // Both kinds of term: every one must hold.
        (
            Some(json!({"matchLabels": {"gateway-conformance": "backend"},
                "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [INFRA]}]})),
            backend,
            false,
        ),
        // The name label every namespace carries, even one with no Namespace object here.
        (
            Some(json!({"matchLabels": {"kubernetes.io/metadata.name": "not-in-the-manifests"}})),
            "not-in-the-manifests",
            true,
        ),
        // An empty selector selects every namespace (as in Kubernetes).
        (Some(json!({})), backend, true),
        (None, INFRA, false),
    ];
    for (selector, route_ns, attaches) in rows {
        let mut objects = conformance("tlsroute-simple-same-namespace");
        let gw = objects
            .gateways
            .iter_mut()
            .find(|g| g.metadata.name == GW)
            .unwrap();
        let ns = &mut gw.spec.listeners[0].allowed_routes.namespaces;
        ns.from = Some("Selector".into());
        ns.selector = selector
            .clone()
            .map(|s| serde_json::from_value::<LabelSelector>(s).unwrap());
        simple_route(&mut objects).metadata.namespace = Some(route_ns.into());
        let t = run(&objects, &[443], &[]);
        let (status, reason, message) = accepted(&t, route_ns);
        if attaches {
            assert_eq!(
                (status, reason),
                ("True", "Accepted"),
                "{selector:?} {route_ns}: {message}"
            );
            // (Elsewhere its backend, a Service of the infra namespace, needs a grant.)
            assert!(
                route_ns != INFRA || !t.routes.is_empty(),
                "{selector:?} {route_ns}"
            );
        } else {
            assert_eq!(
                (status, reason),
                ("False", "NotAllowedByListeners"),
                "{selector:?} {route_ns}"
            );
            assert!(t.routes.is_empty(), "{selector:?} {route_ns}");
        }
    }
}

#[test]
fn an_invalid_selector_selects_nothing_and_is_named() {
    for (expression, why) in [
        (
            json!({"key": "a", "operator": "Matches", "values": ["x"]}),
            "unknown operator",
        ),
        (json!({"key": "a", "operator": "In"}), "needs values"),
        (
            json!({"key": "a", "operator": "Exists", "values": ["x"]}),
            "takes no values",
        ),
    ] {
        let mut objects = conformance("tlsroute-simple-same-namespace");
        let gw = objects
            .gateways
            .iter_mut()
            .find(|g| g.metadata.name == GW)
            .unwrap();
        let ns = &mut gw.spec.listeners[0].allowed_routes.namespaces;
        ns.from = Some("Selector".into());
        ns.selector =
            Some(serde_json::from_value(json!({"matchExpressions": [expression]})).unwrap());
        let t = run(&objects, &[443], &[]);
        let (status, reason, message) = accepted(&t, INFRA);
        assert_eq!((status, reason), ("False", "NotAllowedByListeners"));
        assert!(
            message.contains("invalid selectors") && message.contains(why),
            "{message}"
        );
    }
}

#[test]
fn gateway_class_supported_version_follows_the_crd_bundle_version() {
    // Read from the CRD as a cluster (or a manifest) holds it.
    let crd = |version: &str| {
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  \
             name: tlsroutes.gateway.networking.k8s.io\n  annotations:\n    \
             gateway.networking.k8s.io/bundle-version: {version}\n"
        )
    };
    let objects = Objects::from_manifests(&crd("v1.6.0"), "default").unwrap();
    assert_eq!(objects.bundle_version.as_deref(), Some("v1.6.0"));
    let other = crd("v1.6.0").replace("tlsroutes.", "gateways.");
    assert_eq!(
        Objects::from_manifests(&other, "default")
            .unwrap()
            .bundle_version,
        None
    );
    for (bundle, status, reason) in [
        (Some("v1.5.0"), "True", "SupportedVersion"),
        (Some("v1.6.1"), "True", "SupportedVersion"),
        (Some("v1.5"), "True", "SupportedVersion"),
        (Some("v1.4.1"), "False", "UnsupportedVersion"),
        (Some("v1.50.0"), "False", "UnsupportedVersion"),
        (Some("v2.0.0"), "False", "UnsupportedVersion"),
        (None, "False", "UnsupportedVersion"),
    ] {
        let mut objects = conformance("tlsroute-simple-same-namespace");
        objects.bundle_version = bundle.map(str::to_owned);
        let t = run(&objects, &[443], &[]);
        let class = t.statuses.gateway_class("ch-edge-proxy").unwrap();
        let c = class
            .conditions
            .iter()
            .find(|c| c.kind == "SupportedVersion")
            .unwrap();
        assert_eq!(
            (c.status, c.reason),
            (status, reason),
            "{bundle:?}: {}",
            c.message
        );
        // Best effort: an unknown version does not un-accept the class, nor stop its routes.
        assert!(class.conditions[0].is_true(), "{bundle:?}");
        assert!(!t.routes.is_empty(), "{bundle:?}");
    }
}

#[test]
fn gateway_addresses_are_the_configured_ones() {
    let objects = conformance("tlsroute-simple-same-namespace");
    let t = run(&objects, &[443], &[]);
    assert_eq!(
        t.statuses.gateway(INFRA, GW).unwrap().addresses,
        None,
        "none configured: left alone"
    );
    let addresses = [
        GatewayAddress::new("ch-edge-proxy.edge.svc.cluster.local"),
        GatewayAddress::new("203.0.113.7"),
        GatewayAddress::new("2001:db8::7"),
    ];
    let no_cert = |_: &str| false;
    let t = translate(
        &objects,
        &Settings {
            controller_name: DEFAULT_CONTROLLER_NAME,
            cluster_domain: "cluster.local",
            listener_ports: &[443],
            has_certificate: &no_cert,
            addresses: &addresses,
        },
    );
    let status = t.statuses.gateway(INFRA, GW).unwrap();
    let json = serde_json::to_value(&status.addresses).unwrap();
    assert_eq!(
        json,
        json!([
            {"type": "Hostname", "value": "ch-edge-proxy.edge.svc.cluster.local"},
            {"type": "IPAddress", "value": "203.0.113.7"},
            {"type": "IPAddress", "value": "2001:db8::7"},
        ])
    );
    let patch = patch::gateway(None, status, "T").unwrap();
    assert_eq!(patch["status"]["addresses"], json);
}
