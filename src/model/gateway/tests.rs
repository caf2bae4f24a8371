//! Table tests of the translation on the Gateway API project's own manifests
//! (tests/fixtures/gateway-api, see SOURCES.md there).
//!
//! GATEWAY-TLS conformance profile (`conformance/utils/suite/profiles.go`: core features
//! Gateway, ReferenceGrant, TLSRoute), its TLSRoute scenarios reproduced here, by test name:
//! - core: `TLSRouteSimpleSameNamespace`, `TLSRouteInvalidReferenceGrant`,
//!   `TLSRouteHostnameIntersection`, `TLSRouteInvalidNoMatchingListener`,
//!   `TLSRouteInvalidNoMatchingListenerHostname`, `TLSRouteInvalidBackendRefNonexistent`,
//!   `TLSRouteInvalidBackendRefUnknownKind`, `TLSRouteListenerPassthroughSupportedKinds`;
//! - extended, supported here (the proxy terminates where it holds a certificate):
//!   `TLSRouteListenerTerminateSupportedKinds`, `TLSRouteTerminateSimpleSameNamespace`,
//!   `TLSRouteMixedTerminationSameNamespace`;
//! - not applicable: `TLSRouteListenerTerminateNotSupported` and
//!   `TLSRouteListenerMixedTerminationNotSupported` run only against implementations without
//!   Terminate/Mixed; `BackendTLSPolicyTLSRouteTerminate` needs BackendTLSPolicy (not read).
//!
//! Each conformance Gateway gets its own address there; here every Gateway of the class shares
//! the proxy's listeners, so scenarios that reuse a name across Gateways are checked one
//! Gateway at a time (as their subtests are).

use std::sync::Arc;

use crate::model::route::{Defaults, Resolve, RouteSpec, RouteTable, TlsMode};

use super::objects::TlsRoute;
use super::status::RouteParentStatus;
use super::*;

const CLASS: &str = "ch-edge-proxy";
pub(super) const INFRA: &str = "gateway-conformance-infra";

/// The GatewayClass under test (the conformance suite expects one to exist, named by a flag).
fn class_yaml(name: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: {name}\n  \
         generation: 1\nspec:\n  controllerName: {DEFAULT_CONTROLLER_NAME}\n"
    )
}

fn fixture(path: &str) -> String {
    let full = format!(
        "{}/tests/fixtures/gateway-api/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("{full}: {e}"))
        .replace("{GATEWAY_CLASS_NAME}", CLASS)
}

/// The class, the conformance base objects (Services) and the scenario's manifests.
pub(super) fn conformance(test: &str) -> Objects {
    let text = [
        class_yaml(CLASS),
        fixture("conformance/base/manifests.yaml"),
        fixture(&format!("conformance/tests/{test}.yaml")),
    ]
    .join("\n---\n");
    Objects::from_manifests(&text, "default").expect("fixtures parse")
}

/// Only `gateway` (of the scenario's Gateways) and the routes whose parents name it.
fn only(mut objects: Objects, gateway: &str) -> Objects {
    objects.gateways.retain(|g| g.metadata.name == gateway);
    objects
        .tls_routes
        .retain(|r| r.spec.parent_refs.iter().any(|p| p.name == gateway));
    objects
}

/// Runs the translation for a proxy listening on `ports`, holding certificates for `certs`
/// (names or `*.suffix` patterns).
pub(super) fn run(objects: &Objects, ports: &[u16], certs: &[&str]) -> Translation {
    let has_certificate = |name: &str| {
        certs.iter().any(|c| {
            *c == name
                || c.strip_prefix("*.").is_some_and(|s| {
                    name.strip_suffix(s)
                        .is_some_and(|head| head.ends_with('.') && head.len() > 1)
                })
        })
    };
    translate(
        objects,
        &Settings {
            controller_name: DEFAULT_CONTROLLER_NAME,
            cluster_domain: "cluster.local",
            listener_ports: ports,
            has_certificate: &has_certificate,
            addresses: &[],
        },
    )
}

fn parent<'a>(t: &'a Translation, route: &str, gateway: &str) -> &'a RouteParentStatus {
    let s = t
        .statuses
        .tls_route(INFRA, route)
        .unwrap_or_else(|| panic!("no status for TLSRoute {route}"));
    s.parents
        .iter()
        .find(|p| p.parent_ref.name == gateway)
        .unwrap_or_else(|| panic!("TLSRoute {route}: no parent {gateway}"))
}

fn cond(t: &Translation, route: &str, gateway: &str, kind: &str) -> (&'static str, &'static str) {
    let p = parent(t, route, gateway);
    assert_eq!(p.controller_name, DEFAULT_CONTROLLER_NAME);
    let c = p
        .condition(kind)
        .unwrap_or_else(|| panic!("{route}: no {kind}"));
    (c.status, c.reason)
}

fn listener<'a>(t: &'a Translation, gateway: &str, name: &str) -> &'a status::ListenerStatus {
    t.statuses
        .gateway(INFRA, gateway)
        .unwrap_or_else(|| panic!("no status for Gateway {gateway}"))
        .listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("{gateway}: no listener {name}"))
}

fn lcond(t: &Translation, gateway: &str, name: &str, kind: &str) -> (&'static str, &'static str) {
    let c = listener(t, gateway, name).condition(kind).unwrap();
    (c.status, c.reason)
}

/// Upstreams carry their host name.
struct Hosts;

impl Resolve for Hosts {
    type Addrs = Arc<str>;
    type Meters = ();

    fn addrs(&self, host: &Arc<str>) -> Arc<str> {
        host.clone()
    }

    fn refused(&self) -> Arc<str> {
        Arc::from("")
    }
}

/// Where a client asking for `sni` goes: `(route name, upstreams, TLS mode)`, as the table
/// built from the translation's routes decides.
fn reach(t: &Translation, sni: &str) -> Option<(String, Vec<String>, TlsMode)> {
    let table: RouteTable<Arc<str>, ()> =
        RouteTable::build(&t.routes, &Defaults::default(), &Hosts).expect("a valid table");
    let r = table.lookup(Some(sni.as_bytes())).ok()?;
    let spec = t.routes.iter().find(|s| s.name == r.name).unwrap();
    Some((
        spec.name.to_string(),
        spec.upstreams
            .iter()
            .map(|u| match u.refused {
                None => u.to_string(),
                Some(_) => format!("refused {u}"),
            })
            .collect(),
        spec.tls.as_ref().and_then(|t| t.mode).unwrap(),
    ))
}

pub(super) fn upstreams_of(t: &Translation, sni: &str) -> Vec<String> {
    reach(t, sni).map(|r| r.1).unwrap_or_default()
}

pub(super) fn svc(name: &str, port: u16) -> String {
    format!("{name}.{INFRA}.svc.cluster.local:{port}")
}

const T: &str = "True";
const F: &str = "False";

#[test]
fn gateway_class_with_this_controller_name_is_accepted() {
    let t = run(&conformance("tlsroute-simple-same-namespace"), &[443], &[]);
    let c = &t.statuses.gateway_class(CLASS).unwrap().conditions[0];
    assert_eq!((c.kind, c.status, c.reason), ("Accepted", T, "Accepted"));
    assert_eq!(c.observed_generation, Some(1));
    assert_eq!(
        t.statuses.gateway_class(CLASS).unwrap().supported_features,
        ["TLSRoute", "TLSRouteModeMixed", "TLSRouteModeTerminate"]
    );
    // Another controller's class (the project's example, with parametersRef) is not ours.
    let other = Objects::from_manifests(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: example}\n\
         spec:\n  controllerName: acme.io/gateway-controller\n  parametersRef: {name: example, group: acme.io, kind: Parameters}\n",
        "default",
    )
    .unwrap();
    let t = run(&other, &[443], &[]);
    assert!(t.statuses.gateway_classes.is_empty());
}

#[test]
fn tls_route_simple_same_namespace() {
    let t = run(&conformance("tlsroute-simple-same-namespace"), &[443], &[]);
    let (route, gw) = ("gateway-conformance-infra-test", "gateway-tlsroute");
    assert_eq!(cond(&t, route, gw, "Accepted"), (T, "Accepted"));
    assert_eq!(cond(&t, route, gw, "ResolvedRefs"), (T, "ResolvedRefs"));
    let l = listener(&t, gw, "https");
    assert_eq!(l.attached_routes, 1);
    assert_eq!(l.supported_kinds, [status::TLS_ROUTE_KIND]);
    for (kind, st, why) in [
        ("Accepted", T, "Accepted"),
        ("Programmed", T, "Programmed"),
        ("ResolvedRefs", T, "ResolvedRefs"),
        ("Conflicted", F, "NoConflicts"),
    ] {
        assert_eq!(lcond(&t, gw, "https", kind), (st, why), "{kind}");
    }
    let g = t.statuses.gateway(INFRA, gw).unwrap();
    let gc: Vec<_> = g
        .conditions
        .iter()
        .map(|c| (c.kind, c.status, c.reason))
        .collect();
    assert_eq!(
        gc,
        [("Accepted", T, "Accepted"), ("Programmed", T, "Programmed")]
    );
    assert_eq!(
        reach(&t, "abc.example.com"),
        Some((
            format!("tlsroute/{INFRA}/{route}"),
            vec![svc("tcp-backend", 8443)],
            TlsMode::Passthrough
        ))
    );
    assert_eq!(reach(&t, "other.example.com"), None);
}

#[test]
fn tls_route_invalid_reference_grant() {
    let objects = conformance("tlsroute-invalid-reference-grant");
    let t = run(&objects, &[443], &[]);
    let (route, gw) = (
        "gateway-conformance-infra-test",
        "gateway-tlsroute-referencegrant",
    );
    assert_eq!(cond(&t, route, gw, "Accepted"), (T, "Accepted"));
    assert_eq!(cond(&t, route, gw, "ResolvedRefs"), (F, "RefNotPermitted"));
    // Its name is still claimed, and its one ref's share (all of it) refused.
    assert_eq!(
        upstreams_of(&t, "abc.example.com"),
        ["refused Service/gateway-conformance-app-backend/tls-backend:443"],
        "{:?}",
        t.routes
    );

    // The grant the fixture's seven wrong ones each miss by one field.
    let mut objects = objects;
    let grant = Objects::from_manifests(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata:\n  name: right\n  \
         namespace: gateway-conformance-app-backend\nspec:\n  from:\n  - group: gateway.networking.k8s.io\n    \
         kind: TLSRoute\n    namespace: gateway-conformance-infra\n  to:\n  - group: \"\"\n    kind: Service\n    \
         name: tls-backend\n",
        "default",
    )
    .unwrap();
    objects.reference_grants.extend(grant.reference_grants);
    let t = run(&objects, &[443], &[]);
    assert_eq!(cond(&t, route, gw, "ResolvedRefs"), (T, "ResolvedRefs"));
    assert_eq!(
        upstreams_of(&t, "abc.example.com"),
        ["tls-backend.gateway-conformance-app-backend.svc.cluster.local:443"]
    );
}

#[test]
fn tls_route_hostname_intersection() {
    let objects = conformance("tlsroute-hostname-intersection");
    let t = run(&objects, &[443], &[]);
    for (route, gw) in [
        (
            "tlsroute-more-specific-wc-hostname-x-1",
            "gw-tlsroute-exact-hostname-x-1",
        ),
        (
            "tlsroute-exact-hostname-x-2",
            "gw-tlsroute-more-specific-wc-hostname-x-2",
        ),
        (
            "tlsroute-less-specific-wc-hostname-x-2",
            "gw-tlsroute-more-specific-wc-hostname-x-2",
        ),
        (
            "tlsroute-exact-hostname-x-3",
            "gw-tlsroute-less-specific-wc-hostname-x-3",
        ),
        (
            "tlsroute-more-specific-wc-hostname-x-3",
            "gw-tlsroute-less-specific-wc-hostname-x-3",
        ),
        (
            "tlsroute-exact-hostname-x-4",
            "gw-tlsroute-empty-hostname-x-4",
        ),
        (
            "tlsroute-less-specific-wc-hostname-x-4",
            "gw-tlsroute-empty-hostname-x-4",
        ),
    ] {
        assert_eq!(cond(&t, route, gw, "Accepted"), (T, "Accepted"), "{route}");
        assert_eq!(
            cond(&t, route, gw, "ResolvedRefs"),
            (T, "ResolvedRefs"),
            "{route}"
        );
    }
    let (b1, b2) = (svc("tls-backend", 443), svc("tls-backend-2", 443));
    // Per Gateway, as each conformance subtest sends its requests to one Gateway's address:
    // (SNI, backend reached; none: refused).
    for (gw, cases) in [
        (
            "gw-tlsroute-exact-hostname-x-1",
            vec![
                ("abc.example.com", Some(&b1)),
                ("non.matching.com", None),
                ("x.example.com", None),
            ],
        ),
        (
            "gw-tlsroute-more-specific-wc-hostname-x-2",
            vec![
                ("abc.example.com", Some(&b1)),
                ("other.example.com", Some(&b2)),
                ("non.matching.com", None),
            ],
        ),
        (
            "gw-tlsroute-less-specific-wc-hostname-x-3",
            vec![
                ("abc.example.com", Some(&b1)),
                ("other.example.com", Some(&b2)),
                ("non.matching.com", None),
            ],
        ),
        (
            "gw-tlsroute-empty-hostname-x-4",
            vec![
                ("abc.example.com", Some(&b1)),
                ("other.example.com", Some(&b2)),
                ("non.matching.com", Some(&b2)),
            ],
        ),
    ] {
        let t = run(&only(objects.clone(), gw), &[443], &[]);
        for (sni, backend) in cases {
            let got = reach(&t, sni).map(|r| r.1);
            assert_eq!(got, backend.map(|b| vec![b.clone()]), "{gw}: {sni}");
        }
    }
    // All Gateways at once share the proxy's port: the oldest route keeps a name (here, with no
    // creation times, the first by namespace/name); the others say so.
    assert_eq!(
        upstreams_of(&t, "abc.example.com"),
        std::slice::from_ref(&b1)
    );
    let (_, why) = cond(
        &t,
        "tlsroute-exact-hostname-x-3",
        "gw-tlsroute-less-specific-wc-hostname-x-3",
        "Accepted",
    );
    assert_eq!(why, "Accepted");
    let msg = &parent(
        &t,
        "tlsroute-exact-hostname-x-3",
        "gw-tlsroute-less-specific-wc-hostname-x-3",
    )
    .conditions[0]
        .message;
    assert!(
        msg.contains(
            "abc.example.com (by TLSRoute gateway-conformance-infra/tlsroute-exact-hostname-x-2)"
        ),
        "{msg}"
    );
}

#[test]
fn tls_route_invalid_no_matching_listener() {
    let t = run(
        &conformance("tlsroute-invalid-no-matching-listener"),
        &[443, 80],
        &[],
    );
    for (route, gw, expected) in [
        (
            "tlsroute-not-allowed-protocol-http",
            "gateway-tlsroute-http-only",
            "NotAllowedByListeners",
        ),
        (
            "tlsroute-not-allowed-protocol-https",
            "gateway-tlsroute-https-only",
            "NotAllowedByListeners",
        ),
        (
            "tlsroute-no-matching-section-name",
            "gateway-tlsroute-tls-passthrough-only",
            "NoMatchingParent",
        ),
    ] {
        assert_eq!(cond(&t, route, gw, "Accepted"), (F, expected), "{route}");
    }
    for (gw, l) in [
        ("gateway-tlsroute-http-only", "http"),
        ("gateway-tlsroute-https-only", "https"),
    ] {
        let ls = listener(&t, gw, l);
        assert_eq!(ls.attached_routes, 0, "{gw}");
        assert!(ls.supported_kinds.is_empty(), "{gw}");
        assert_eq!(
            lcond(&t, gw, l, "Accepted"),
            (F, "UnsupportedProtocol"),
            "{gw}"
        );
    }
    assert_eq!(
        listener(
            &t,
            "gateway-tlsroute-tls-passthrough-only",
            "tls-passthrough"
        )
        .attached_routes,
        0
    );
    assert!(t.routes.is_empty());
}

#[test]
fn tls_route_invalid_no_matching_listener_hostname() {
    let t = run(
        &conformance("tlsroute-invalid-no-matching-listener-hostname"),
        &[443],
        &[],
    );
    for (route, gw) in [
        ("tlsroute-hostname-mismatch-1", "gateway-tls-exact-hostname"),
        (
            "tlsroute-hostname-mismatch-2",
            "gateway-tls-wildcard-hostname",
        ),
    ] {
        assert_eq!(
            cond(&t, route, gw, "Accepted"),
            (F, "NoMatchingListenerHostname"),
            "{route}"
        );
    }
    assert!(t.routes.is_empty());
}

#[test]
fn tls_route_invalid_backend_ref_nonexistent() {
    let objects = conformance("tlsroute-invalid-backendref-nonexistent");
    let (route, gw) = (
        "invalid-backend-ref-nonexistent",
        "gateway-tlsroute-invalid-backend-ref-nonexistent",
    );
    let t = run(&objects, &[443], &[]);
    assert_eq!(cond(&t, route, gw, "Accepted"), (T, "Accepted"));
    assert_eq!(cond(&t, route, gw, "ResolvedRefs"), (F, "BackendNotFound"));
    // The name stays claimed; every connection falls to the invalid ref, refused.
    assert_eq!(
        upstreams_of(&t, "example.com"),
        ["refused Service/gateway-conformance-infra/nonexistent:443"],
        "{:?}",
        t.routes
    );
    assert_eq!(
        t.routes[0].upstreams[0].refused,
        Some("invalid backendRef: Service not found")
    );
    // Services not known (not watched): the reference cannot be judged, the name is routed.
    let mut unknown = objects;
    unknown.services = None;
    let t = run(&unknown, &[443], &[]);
    assert_eq!(cond(&t, route, gw, "ResolvedRefs"), (T, "ResolvedRefs"));
    assert_eq!(upstreams_of(&t, "example.com"), [svc("nonexistent", 443)]);
}

#[test]
fn tls_route_invalid_backend_ref_unknown_kind() {
    let t = run(
        &conformance("tlsroute-invalid-backendref-unknown-kind"),
        &[443],
        &[],
    );
    let (route, gw) = (
        "invalid-backend-ref-unknown-kind",
        "gateway-tlsroute-invalid-backend-ref-unknown-kind",
    );
    assert_eq!(cond(&t, route, gw, "Accepted"), (T, "Accepted"));
    assert_eq!(cond(&t, route, gw, "ResolvedRefs"), (F, "InvalidKind"));
    assert_eq!(t.routes.len(), 1, "{:?}", t.routes);
    let up = &t.routes[0].upstreams[0];
    assert_eq!(
        up.refused,
        Some("invalid backendRef: not a Service"),
        "{up:?}"
    );
}

#[test]
fn tls_route_listener_passthrough_supported_kinds() {
    let t = run(
        &conformance("tlsroute-listener-passthrough-supported-kinds"),
        &[443],
        &[],
    );
    let (gw, l) = (
        "gateway-tlsroute-passthrough-supported-kind",
        "tls-passthrough",
    );
    let ls = listener(&t, gw, l);
    assert_eq!(ls.supported_kinds, [status::TLS_ROUTE_KIND]);
    assert_eq!(ls.attached_routes, 0);
    assert_eq!(lcond(&t, gw, l, "ResolvedRefs"), (F, "InvalidRouteKinds"));
}

#[test]
fn tls_route_listener_terminate_supported_kinds() {
    let objects = conformance("tlsroute-listener-terminate-supported-kinds");
    let (gw, l) = ("gateway-tlsroute-terminate-supported", "tls-terminate");
    let t = run(&objects, &[8443], &["terminate.example.com"]);
    assert_eq!(
        listener(&t, gw, l).supported_kinds,
        [status::TLS_ROUTE_KIND]
    );
    assert_eq!(lcond(&t, gw, l, "Accepted"), (T, "Accepted"));
    assert_eq!(lcond(&t, gw, l, "Programmed"), (T, "Programmed"));
    // Without a certificate for its hostname the listener cannot be served.
    let t = run(&objects, &[8443], &[]);
    assert_eq!(
        lcond(&t, gw, l, "ResolvedRefs"),
        (F, "InvalidCertificateRef")
    );
    assert_eq!(lcond(&t, gw, l, "Programmed"), (F, "Invalid"));
}

#[test]
fn tls_route_terminate_simple_same_namespace() {
    let t = run(
        &conformance("tlsroute-terminate-simple-same-namespace"),
        &[8443],
        &["*.example.com"],
    );
    let (route, gw) = ("tlsroute-terminated-test", "gateway-tlsroute-terminate");
    assert_eq!(cond(&t, route, gw, "Accepted"), (T, "Accepted"));
    assert_eq!(
        reach(&t, "tls.example.com"),
        Some((
            format!("tlsroute/{INFRA}/{route}/terminate"),
            vec![svc("tcp-backend", 3000)],
            TlsMode::Terminate
        ))
    );
}

#[test]
fn tls_route_mixed_termination_same_namespace() {
    let t = run(
        &conformance("tlsroute-mixed-termination-same-namespace"),
        &[8883],
        &["tls.example.com"],
    );
    let gw = "gateway-tlsroute-mixed-termination";
    for l in ["tls-terminate", "tls-passthrough"] {
        assert_eq!(lcond(&t, gw, l, "Accepted"), (T, "Accepted"), "{l}");
        assert_eq!(lcond(&t, gw, l, "Conflicted"), (F, "NoConflicts"), "{l}");
        // One route each: attachment needs a hostname in common.
        assert_eq!(listener(&t, gw, l).attached_routes, 1, "{l}");
    }
    let pass = reach(&t, "abc.example.com").unwrap();
    assert_eq!(
        (pass.1, pass.2),
        (vec![svc("tcp-backend", 8443)], TlsMode::Passthrough)
    );
    let term = reach(&t, "tls.example.com").unwrap();
    assert_eq!(
        (term.1, term.2),
        (vec![svc("tcp-backend", 3000)], TlsMode::Terminate)
    );
}

#[test]
fn gateway_listener_without_a_proxy_listener_on_its_port() {
    let t = run(
        &conformance("tlsroute-simple-same-namespace"),
        &[9440, 8443],
        &[],
    );
    let (route, gw) = ("gateway-conformance-infra-test", "gateway-tlsroute");
    assert_eq!(lcond(&t, gw, "https", "Accepted"), (F, "PortUnavailable"));
    assert_eq!(lcond(&t, gw, "https", "Programmed"), (F, "Invalid"));
    let c = &listener(&t, gw, "https").conditions[0];
    assert!(
        c.message.contains("port 443") && c.message.contains("9440, 8443"),
        "{}",
        c.message
    );
    // Attachment counts whatever the listener's state (the spec's attachedRoutes rule).
    assert_eq!(listener(&t, gw, "https").attached_routes, 1);
    let g = t.statuses.gateway(INFRA, gw).unwrap();
    assert_eq!(
        (g.conditions[0].status, g.conditions[0].reason),
        (F, "ListenersNotValid")
    );
    assert_eq!(
        (g.conditions[1].status, g.conditions[1].reason),
        (F, "Invalid")
    );
    assert_eq!(
        cond(&t, route, gw, "Accepted"),
        (F, "NotAllowedByListeners")
    );
    assert!(t.routes.is_empty());
}

#[test]
fn the_projects_tls_routing_example() {
    let text = [
        class_yaml("example-gateway-class"),
        fixture("examples/standard/tls-routing/gateway.yaml"),
        fixture("examples/standard/tls-routing/tls-route.yaml"),
        fixture("examples/standard/tls-routing/tls-route-terminate.yaml"),
    ]
    .join("\n---\n");
    let objects = Objects::from_manifests(&text, "default").unwrap();
    let t = run(&objects, &[443, 8443], &[]);
    assert_eq!(
        reach(&t, "foo.example.com").map(|r| (r.1, r.2)),
        Some((
            vec!["foo-svc.default.svc.cluster.local:443".to_owned()],
            TlsMode::Passthrough
        ))
    );
    // Terminate without a certificate for bar.example.com: refused, and said so.
    let bar = &t
        .statuses
        .tls_route("default", "bar-route")
        .unwrap()
        .parents[0];
    let c = bar.condition("Accepted").unwrap();
    assert_eq!((c.status, c.reason), (F, "UnsupportedValue"));
    assert!(c.message.contains("bar.example.com"), "{}", c.message);
    assert_eq!(reach(&t, "bar.example.com"), None);
    let t = run(&objects, &[443, 8443], &["bar.example.com"]);
    assert_eq!(
        reach(&t, "bar.example.com").map(|r| (r.1, r.2)),
        Some((
            vec!["bar-svc.default.svc.cluster.local:8080".to_owned()],
            TlsMode::Terminate
        ))
    );
}

pub(super) fn simple_route(objects: &mut Objects) -> &mut TlsRoute {
    &mut objects.tls_routes[0]
}

#[test]
fn allowlist_and_proxy_version_from_the_chi_annotations() {
    let mut objects = conformance("tlsroute-simple-same-namespace");
    let a = &mut simple_route(&mut objects).metadata.annotations;
    a.insert("ch-edge-proxy/allow".into(), "10.0.0.0/8, 192.0.2.1".into());
    a.insert("ch-edge-proxy/proxy-protocol".into(), "v2".into());
    let t = run(&objects, &[443], &[]);
    let spec: &RouteSpec = &t.routes[0];
    let allow: Vec<String> = spec
        .allow
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(allow, ["10.0.0.0/8", "192.0.2.1/32"]);
    assert_eq!(
        spec.proxy_protocol.map(|p| p.to_string()).as_deref(),
        Some("v2")
    );

    simple_route(&mut objects)
        .metadata
        .annotations
        .insert("ch-edge-proxy/allow".into(), "not-a-cidr".into());
    let t = run(&objects, &[443], &[]);
    let (route, gw) = ("gateway-conformance-infra-test", "gateway-tlsroute");
    assert_eq!(cond(&t, route, gw, "Accepted"), (F, "UnsupportedValue"));
    assert!(parent(&t, route, gw).conditions[0]
        .message
        .contains("ch-edge-proxy/allow"));
    assert!(t.routes.is_empty(), "a bad allowlist never fails open");
}

/// backendRef weights, row by row: the refs' (Service, weight) in, the route's upstreams (with
/// their weights, as a route file writes them) and the Accepted message out.
#[test]
fn backend_ref_weights_become_upstream_weights() {
    let tcp = svc("tcp-backend", 8443);
    let tls = svc("tls-backend", 8443);
    type Row<'a> = (&'a [(&'a str, Option<u32>)], Vec<String>, &'a str);
    let rows: [Row<'_>; 6] = [
        (&[("tcp-backend", None)], vec![tcp.clone()], ""),
        (
            &[("tcp-backend", Some(3)), ("tls-backend", None)],
            vec![format!("{tcp} weight=3"), tls.clone()],
            "",
        ),
        (
            &[("tcp-backend", Some(0)), ("tls-backend", Some(2))],
            vec![format!("{tcp} weight=0"), format!("{tls} weight=2")],
            "",
        ),
        // Two refs to one Service and port: one upstream weighing both.
        (
            &[("tcp-backend", Some(2)), ("tcp-backend", Some(3))],
            vec![format!("{tcp} weight=5")],
            "",
        ),
        // All at 0: the spec forwards nothing; the route keeps its hostname and refuses.
        (
            &[("tcp-backend", Some(0)), ("tls-backend", Some(0))],
            vec![format!("{tcp} weight=0"), format!("{tls} weight=0")],
            "every backendRef has weight 0",
        ),
        // Above the CRD's bound (a lenient API server): clamped.
        (
            &[("tcp-backend", Some(2_000_000))],
            vec![format!("{tcp} weight=1000000")],
            "",
        ),
    ];
    for (refs, upstreams, note) in rows {
        let mut objects = conformance("tlsroute-simple-same-namespace");
        let rule = &mut simple_route(&mut objects).spec.rules[0];
        let template = rule.backend_refs[0].clone();
        rule.backend_refs = refs
            .iter()
            .map(|&(name, weight)| {
                let mut b = template.clone();
                b.name = name.into();
                b.weight = weight;
                b
            })
            .collect();
        let t = run(&objects, &[443], &[]);
        assert_eq!(upstreams_of(&t, "abc.example.com"), upstreams, "{refs:?}");
        assert_eq!(
            cond(
                &t,
                "gateway-conformance-infra-test",
                "gateway-tlsroute",
                "Accepted"
            ),
            (T, "Accepted"),
            "{refs:?}"
        );
        let msg =
            &parent(&t, "gateway-conformance-infra-test", "gateway-tlsroute").conditions[0].message;
        assert!(
            msg.contains(note) && (note.is_empty() == msg.is_empty()),
            "{refs:?}: {msg}"
        );
    }
}

#[test]
fn observed_generation_and_status_shape() {
    let mut objects = conformance("tlsroute-simple-same-namespace");
    simple_route(&mut objects).metadata.generation = Some(7);
    let t = run(&objects, &[443], &[]);
    let s = t
        .statuses
        .tls_route(INFRA, "gateway-conformance-infra-test")
        .unwrap();
    let json = serde_json::to_value(s).unwrap();
    let p = &json["parents"][0];
    assert_eq!(p["controllerName"], DEFAULT_CONTROLLER_NAME);
    assert_eq!(p["parentRef"]["name"], "gateway-tlsroute");
    assert_eq!(p["parentRef"]["namespace"], INFRA);
    assert_eq!(p["conditions"][0]["type"], "Accepted");
    assert_eq!(p["conditions"][0]["observedGeneration"], 7);
    let g = serde_json::to_value(t.statuses.gateway(INFRA, "gateway-tlsroute").unwrap()).unwrap();
    assert_eq!(g["listeners"][0]["attachedRoutes"], 1);
    assert_eq!(g["listeners"][0]["supportedKinds"][0]["kind"], "TLSRoute");
    assert_eq!(
        g["listeners"][0]["supportedKinds"][0]["group"],
        "gateway.networking.k8s.io"
    );
}

#[test]
fn same_port_and_hostname_in_one_gateway_conflict() {
    let mut objects = conformance("tlsroute-simple-same-namespace");
    let gw = objects
        .gateways
        .iter_mut()
        .find(|g| g.metadata.name == "gateway-tlsroute")
        .unwrap();
    let mut twin = gw.spec.listeners[0].clone();
    twin.name = "twin".into();
    gw.spec.listeners.push(twin);
    let t = run(&objects, &[443], &[]);
    for l in ["https", "twin"] {
        assert_eq!(
            lcond(&t, "gateway-tlsroute", l, "Conflicted"),
            (T, "HostnameConflict"),
            "{l}"
        );
        assert_eq!(
            lcond(&t, "gateway-tlsroute", l, "Programmed"),
            (F, "Invalid"),
            "{l}"
        );
    }
    assert!(t.routes.is_empty());
}

#[test]
fn manifests_of_other_kinds_are_ignored_and_bad_ones_named() {
    let o = Objects::from_manifests(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        "d",
    )
    .unwrap();
    assert!(o.gateways.is_empty() && o.services.is_none());
    let e = Objects::from_manifests(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: x}\nspec: {listeners: 3}\n",
        "d",
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("Gateway #1"), "{e}");
}

/// Invalid backendRefs keep their weighted share, refused (the spec: connections that would
/// have gone to an invalid ref are rejected, the valid refs keep theirs). Row by row: the refs'
/// (Service, weight) in (`nonexistent` is no Service of the fixture), the route's upstreams out.
#[test]
fn invalid_backend_refs_keep_their_weight_as_refusals() {
    let tcp = svc("tcp-backend", 8443);
    let gone = format!("refused Service/{INFRA}/nonexistent:8443");
    type Row<'a> = (&'a [(&'a str, Option<u32>)], Vec<String>);
    let rows: [Row<'_>; 4] = [
        (
            &[("tcp-backend", Some(3)), ("nonexistent", None)],
            vec![format!("{tcp} weight=3"), gone.clone()],
        ),
        // Weight 0: never chosen, so nothing refused for it.
        (
            &[("tcp-backend", None), ("nonexistent", Some(0))],
            vec![tcp.clone(), format!("{gone} weight=0")],
        ),
        // Two refs to the one missing Service: one placeholder weighing both.
        (
            &[
                ("nonexistent", Some(2)),
                ("tcp-backend", None),
                ("nonexistent", Some(5)),
            ],
            vec![format!("{gone} weight=7"), tcp.clone()],
        ),
        // Only invalid refs: the route keeps its name and refuses every connection.
        (
            &[("nonexistent", Some(4))],
            vec![format!("{gone} weight=4")],
        ),
    ];
    for (refs, upstreams) in rows {
        let mut objects = conformance("tlsroute-simple-same-namespace");
        let rule = &mut simple_route(&mut objects).spec.rules[0];
        let template = rule.backend_refs[0].clone();
        rule.backend_refs = refs
            .iter()
            .map(|&(name, weight)| {
                let mut b = template.clone();
                b.name = name.into();
                b.weight = weight;
                b
            })
            .collect();
        let t = run(&objects, &[443], &[]);
        assert_eq!(upstreams_of(&t, "abc.example.com"), upstreams, "{refs:?}");
        let route = "gateway-conformance-infra-test";
        assert_eq!(
            cond(&t, route, "gateway-tlsroute", "ResolvedRefs"),
            (F, "BackendNotFound"),
            "{refs:?}"
        );
        assert_eq!(
            cond(&t, route, "gateway-tlsroute", "Accepted"),
            (T, "Accepted"),
            "{refs:?}"
        );
    }
}
