//! Gateway API through the real binary against a fake API server on loopback
//! (tests/support/fake_api.rs) serving the Gateway API project's TLS routing example
//! (tests/fixtures/gateway-api): the Lease is taken, statuses are written as merge patches on
//! the status subresource, once, and again only when something changes.
#![cfg(feature = "k8s")]

mod support;

use serde_json::{json, Value};

use support::fake_api::FakeApi;
use support::*;

const CONTROLLER: &str = "ch-edge-proxy.io/gateway-controller";
const CLASSES: &str = "/apis/gateway.networking.k8s.io/v1/gatewayclasses";
const GATEWAYS: &str = "/apis/gateway.networking.k8s.io/v1/gateways";
const ROUTES: &str = "/apis/gateway.networking.k8s.io/v1/tlsroutes";
const LEASES: &str = "/apis/coordination.k8s.io/v1/leases";

/// The project's example objects, as a cluster would hold them (namespace `default`).
fn example(path: &str) -> Value {
    let full = format!(
        "{}/tests/fixtures/gateway-api/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(full).unwrap();
    let mut v: Value = serde_saphyr::from_str(&text).unwrap();
    v["metadata"]["namespace"] = json!("default");
    v["metadata"]["generation"] = json!(1);
    v["metadata"]["creationTimestamp"] = json!("2026-12-01T00:00:00Z");
    v
}

fn class() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "example-gateway-class", "generation": 1},
        "spec": {"controllerName": CONTROLLER},
    })
}

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}})
}

fn patches_of(fake: &FakeApi, resource: &str, name: &str) -> Vec<Value> {
    fake.patches()
        .into_iter()
        .filter(|(r, _, n, _)| r == resource && n == name)
        .map(|(_, _, _, p)| p)
        .collect()
}

fn condition<'a>(conditions: &'a Value, kind: &str) -> &'a Value {
    conditions
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {conditions}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_written_by_the_lease_holder_once_and_on_change() {
    let fake = FakeApi::start().await;
    fake.apply(class());
    fake.apply(example("examples/standard/tls-routing/gateway.yaml"));
    fake.apply(example("examples/standard/tls-routing/tls-route.yaml"));
    fake.apply(service("foo-svc"));

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path());
    // The proxy listens on 127.0.0.1:0: no Gateway listener port (443, 8443) is one of its.
    let yaml = "listeners:\n  - name: tls\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
                admin:\n  address: \"127.0.0.1:0\"\n\
                discovery:\n  kubernetes:\n    enabled: true\n    domain: ch.test\n    \
                gateway_api:\n      enabled: true\n";
    let env = [
        ("KUBECONFIG", kubeconfig.as_os_str()),
        ("POD_NAME", std::ffi::OsStr::new("replica-a")),
        ("POD_NAMESPACE", std::ffi::OsStr::new("default")),
    ];
    let _proxy = Proxy::start_with_env(yaml, &env);

    fake.wait("the TLSRoute's status", |f| {
        !patches_of(f, ROUTES, "foo-route").is_empty()
    })
    .await;
    let lease = fake
        .object(LEASES, "default", "ch-edge-proxy-gateway-api")
        .expect("a Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");

    let class = fake.object(CLASSES, "", "example-gateway-class").unwrap();
    let accepted = condition(&class["status"]["conditions"], "Accepted");
    assert_eq!(
        (&accepted["status"], &accepted["reason"]),
        (&json!("True"), &json!("Accepted"))
    );
    assert!(accepted["lastTransitionTime"].is_string());

    let gw = fake.object(GATEWAYS, "default", "example-gateway").unwrap();
    let listeners = gw["status"]["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 2);
    let tls = &listeners[0];
    assert_eq!(tls["name"], "tls");
    assert_eq!(
        tls["supportedKinds"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "TLSRoute"}])
    );
    assert_eq!(tls["attachedRoutes"], 1);
    let a = condition(&tls["conditions"], "Accepted");
    assert_eq!(
        (&a["status"], &a["reason"]),
        (&json!("False"), &json!("PortUnavailable"))
    );
    assert_eq!(a["observedGeneration"], 1);

    let route = fake.object(ROUTES, "default", "foo-route").unwrap();
    let parent = &route["status"]["parents"][0];
    assert_eq!(parent["controllerName"], CONTROLLER);
    assert_eq!(parent["parentRef"]["sectionName"], "tls");
    let a = condition(&parent["conditions"], "Accepted");
    assert_eq!(
        (&a["status"], &a["reason"]),
        (&json!("False"), &json!("NotAllowedByListeners"))
    );
    let r = condition(&parent["conditions"], "ResolvedRefs");
    assert_eq!(
        (&r["status"], &r["reason"]),
        (&json!("True"), &json!("ResolvedRefs"))
    );

    // A change to the route (a backend that does not exist, a new generation): its status is
    // written again, and only its status.
    let mut changed = example("examples/standard/tls-routing/tls-route.yaml");
    changed["metadata"]["generation"] = json!(2);
    changed["spec"]["rules"][0]["backendRefs"][0]["name"] = json!("gone-svc");
    changed["status"] = route["status"].clone();
    fake.apply(changed);
    fake.wait("the TLSRoute's second status", |f| {
        patches_of(f, ROUTES, "foo-route").len() >= 2
    })
    .await;
    let route = fake.object(ROUTES, "default", "foo-route").unwrap();
    let r = condition(&route["status"]["parents"][0]["conditions"], "ResolvedRefs");
    assert_eq!(
        (&r["status"], &r["reason"], &r["observedGeneration"]),
        (&json!("False"), &json!("BackendNotFound"), &json!(2))
    );
    // The Accepted condition did not change status: its time is the first one.
    let before = condition(&parent["conditions"], "Accepted")["lastTransitionTime"].clone();
    let after = condition(&route["status"]["parents"][0]["conditions"], "Accepted");
    assert_eq!(after["lastTransitionTime"], before);

    // One more change as a sync point: the class and the Gateway were written once each,
    // whatever the events in between (the proxy's own patches come back as MODIFIED events).
    fake.apply(service("gone-svc"));
    fake.wait("the TLSRoute's third status", |f| {
        patches_of(f, ROUTES, "foo-route").len() >= 3
    })
    .await;
    assert_eq!(patches_of(&fake, CLASSES, "example-gateway-class").len(), 1);
    assert_eq!(patches_of(&fake, GATEWAYS, "example-gateway").len(), 1);
    assert_eq!(patches_of(&fake, ROUTES, "foo-route").len(), 3);
}

fn start(fake: &FakeApi, dir: &tempfile::TempDir, pod: &str) -> Proxy {
    let kubeconfig = fake.kubeconfig(dir.path());
    let yaml = "listeners:\n  - name: tls\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
                admin:\n  address: \"127.0.0.1:0\"\n\
                discovery:\n  kubernetes:\n    enabled: true\n    domain: ch.test\n    \
                gateway_api:\n      enabled: true\n      addresses: [edge.example.com, 203.0.113.7]\n";
    let env = [
        ("KUBECONFIG", kubeconfig.as_os_str()),
        ("POD_NAME", std::ffi::OsStr::new(pod)),
        ("POD_NAMESPACE", std::ffi::OsStr::new("default")),
    ];
    Proxy::start_with_env(yaml, &env)
}

/// The live route of that name, from `/routes`.
fn live_route(proxy: &Proxy, name: &str) -> Option<Value> {
    let (status, body) = proxy.admin_get("/routes");
    assert_eq!(status, 200);
    let routes: Value = serde_json::from_str(&body).unwrap();
    routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
}

/// The TLSRoute's routes reach the live table, with the allowlist and PROXY version of its
/// annotations, and leave it when the route goes. End to end: the Gateway listener matches the
/// port the proxy listens on (bound at 127.0.0.1:0, so the Gateway is written once it is
/// known), it selects the route's namespace by label, the class reports the CRDs' version
/// and the Gateway the configured addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_route_becomes_a_live_route() {
    let fake = FakeApi::start().await;
    fake.apply(class());
    fake.apply(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "tlsroutes.gateway.networking.k8s.io",
            "annotations": {"gateway.networking.k8s.io/bundle-version": "v1.5.0",
                "gateway.networking.k8s.io/channel": "standard"}},
    }));
    fake.apply(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "default", "labels": {"team": "clickhouse"}},
    }));
    let mut route = example("examples/standard/tls-routing/tls-route.yaml");
    route["metadata"]["annotations"] = json!({
        "ch-edge-proxy/allow": "10.0.0.0/8",
        "ch-edge-proxy/proxy-protocol": "v2",
    });
    fake.apply(route);
    fake.apply(service("foo-svc"));
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = start(&fake, &dir, "replica-a");
    let mut gw = example("examples/standard/tls-routing/gateway.yaml");
    gw["spec"]["listeners"][0]["port"] = json!(proxy.addr("tls").port());
    gw["spec"]["listeners"][0]["allowedRoutes"] = json!({"namespaces": {"from": "Selector",
        "selector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["clickhouse"]}]}}});
    fake.apply(gw);
    let name = "tlsroute/default/foo-route";
    while live_route(&proxy, name).is_none() {
        proxy.wait_log(|l| l["message"] == "reload" && l["trigger"] == "discovery");
    }
    let r = live_route(&proxy, name).unwrap();
    assert_eq!(r["sni"], json!(["foo.example.com"]));
    assert_eq!(
        r["upstreams"][0]["host"],
        "foo-svc.default.svc.cluster.local"
    );
    assert_eq!(r["upstreams"][0]["port"], 443);
    assert_eq!(
        (&r["tls"], &r["proxy_protocol"]),
        (&json!("passthrough"), &json!("v2"))
    );
    assert_eq!(r["source"], "tlsroute:default/foo-route");
    fake.wait("Accepted", |f| {
        f.object(ROUTES, "default", "foo-route")
            .is_some_and(|r| r["status"]["parents"][0]["conditions"][0]["status"] == "True")
    })
    .await;
    fake.wait("the Gateway's status", |f| {
        f.object(GATEWAYS, "default", "example-gateway")
            .is_some_and(|g| g["status"]["listeners"][0]["attachedRoutes"] == 1)
    })
    .await;
    let gw = fake.object(GATEWAYS, "default", "example-gateway").unwrap();
    let tls = &gw["status"]["listeners"][0];
    for kind in ["Accepted", "Programmed"] {
        let c = condition(&tls["conditions"], kind);
        assert_eq!(c["status"], "True", "{kind}: {c}");
    }
    assert_eq!(
        gw["status"]["addresses"],
        json!([{"type": "Hostname", "value": "edge.example.com"},
            {"type": "IPAddress", "value": "203.0.113.7"}])
    );
    let class = fake.object(CLASSES, "", "example-gateway-class").unwrap();
    assert_eq!(
        class["status"]["supportedFeatures"],
        json!([{"name": "TLSRoute"}, {"name": "TLSRouteModeMixed"}, {"name": "TLSRouteModeTerminate"}])
    );
    let v = condition(&class["status"]["conditions"], "SupportedVersion");
    assert_eq!(
        (&v["status"], &v["reason"]),
        (&json!("True"), &json!("SupportedVersion"))
    );

    // The backend's weight becomes the upstream's.
    let weight_of =
        |proxy: &Proxy| live_route(proxy, name).map(|r| r["upstreams"][0]["weight"].clone());
    for weight in [3, 0] {
        let mut route = fake.object(ROUTES, "default", "foo-route").unwrap();
        route["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(weight);
        fake.apply(route);
        while weight_of(&proxy) != Some(json!(weight)) {
            proxy.wait_log(|l| l["message"] == "reload" && l["trigger"] == "discovery");
        }
    }
    // Weight 0 on its only backend: the route keeps its name and says why it refuses.
    fake.wait("the weight-0 message", |f| {
        f.object(ROUTES, "default", "foo-route").is_some_and(|r| {
            r["status"]["parents"][0]["conditions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("every backendRef has weight 0"))
        })
    })
    .await;

    // An invalid ref keeps its share, refused: here all of it (the valid one weighs 0). The
    // allowlist goes (in the same edit, so the same reload) to let this client (127.0.0.1) in.
    let mut route = fake.object(ROUTES, "default", "foo-route").unwrap();
    route["metadata"]["annotations"] = json!({});
    let missing = json!({"name": "missing-svc", "port": 443, "weight": 2});
    route["spec"]["rules"][0]["backendRefs"]
        .as_array_mut()
        .unwrap()
        .push(missing);
    fake.apply(route);
    let refused = |proxy: &Proxy| {
        live_route(proxy, name).and_then(|r| {
            let up = &r["upstreams"][1];
            (up["refused"] != Value::Null).then(|| up.clone())
        })
    };
    let up = loop {
        match refused(&proxy) {
            Some(up) => break up,
            None => {
                proxy.wait_log(|l| l["message"] == "reload" && l["trigger"] == "discovery");
            }
        }
    };
    assert_eq!(
        up["refused"], "invalid backendRef: Service not found",
        "{up}"
    );
    assert_eq!(up["weight"], 2, "{up}");
    let answer = peers::exchange(proxy.addr("tls"), &peers::client_hello("foo.example.com")).await;
    assert_eq!(answer, [0x15, 3, 3, 0, 2, 2, 80], "alert internal_error");
    let line = loop {
        let line = proxy.access();
        if line["sni"] == "foo.example.com" {
            break line;
        }
    };
    assert_eq!(line["outcome"], "upstream_unavailable", "{line}");
    assert_eq!(
        line["detail"], "invalid backendRef: Service not found",
        "{line}"
    );
}

/// Two replicas: the second finds the Lease held and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_writes_statuses() {
    let fake = FakeApi::start().await;
    fake.apply(class());
    fake.apply(example("examples/standard/tls-routing/gateway.yaml"));
    fake.apply(example("examples/standard/tls-routing/tls-route.yaml"));
    let dir = tempfile::tempdir().unwrap();
    let _a = start(&fake, &dir, "replica-a");
    fake.wait("the first statuses", |f| {
        !patches_of(f, ROUTES, "foo-route").is_empty()
    })
    .await;
    let mut b = start(&fake, &dir, "replica-b");
    let held = b.wait_log(|l| {
        l["message"] == "gateway api: the Lease is held by another replica; not writing statuses"
    });
    assert_eq!(held["holder"], "replica-a");
    let lease = fake
        .object(LEASES, "default", "ch-edge-proxy-gateway-api")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");
    assert_eq!(lease["spec"]["leaseTransitions"], 0);
    // A change: written once (by a), not twice.
    fake.apply(service("foo-svc"));
    fake.wait("the second route status", |f| {
        patches_of(f, ROUTES, "foo-route").len() >= 2
    })
    .await;
    fake.apply(service("other-svc"));
    let mut route = fake.object(ROUTES, "default", "foo-route").unwrap();
    route["metadata"]["generation"] = json!(5);
    fake.apply(route);
    fake.wait("the third route status", |f| {
        patches_of(f, ROUTES, "foo-route").len() >= 3
    })
    .await;
    assert_eq!(patches_of(&fake, CLASSES, "example-gateway-class").len(), 1);
    assert_eq!(patches_of(&fake, ROUTES, "foo-route").len(), 3);
}

/// `/readyz` waits for the Gateway API's first lists, not only the CHI one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_gateway_api_lists() {
    let fake = FakeApi::start().await;
    fake.apply(class());
    fake.set_failing_resource(CLASSES, true);
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = start(&fake, &dir, "replica-a");
    proxy.wait_log(|l| l["message"] == "kubernetes discovery: listed");
    proxy.wait_log(|l| l["message"] == "reload" && l["trigger"] == "discovery");
    assert_eq!(
        proxy.admin_get("/readyz").0,
        503,
        "the GatewayClasses are not listed yet"
    );
    fake.set_failing_resource(CLASSES, false);
    while proxy.admin_get("/readyz").0 != 200 {
        proxy.wait_log(|l| l["message"] == "reload" && l["trigger"] == "discovery");
    }
}

/// `discovery.kubernetes.namespaces` and `label_selector` apply to the Gateway API watches as
/// to CHIs: namespaced kinds are watched per listed namespace, TLSRoutes by label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_watches_honour_namespaces_and_label_selector() {
    let fake = FakeApi::start().await;
    fake.apply(class());
    let in_ns = |mut v: Value, ns: &str| {
        v["metadata"]["namespace"] = json!(ns);
        v
    };
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path());
    let yaml = "listeners:\n  - name: tls\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
                admin:\n  address: \"127.0.0.1:0\"\n\
                discovery:\n  kubernetes:\n    enabled: true\n    domain: ch.test\n    \
                namespaces: [team-a]\n    label_selector: edge=ch\n    \
                gateway_api:\n      enabled: true\n";
    let env = [
        ("KUBECONFIG", kubeconfig.as_os_str()),
        ("POD_NAME", std::ffi::OsStr::new("replica-a")),
        ("POD_NAMESPACE", std::ffi::OsStr::new("team-a")),
    ];
    let mut proxy = Proxy::start_with_env(yaml, &env);
    let port = proxy.addr("tls").port();
    for ns in ["team-a", "team-b"] {
        let mut gw = in_ns(example("examples/standard/tls-routing/gateway.yaml"), ns);
        gw["spec"]["listeners"][0]["port"] = json!(port);
        fake.apply(gw);
        fake.apply(in_ns(service("foo-svc"), ns));
        let mut route = in_ns(example("examples/standard/tls-routing/tls-route.yaml"), ns);
        route["metadata"]["labels"] = json!({"edge": "ch"});
        fake.apply(route);
    }
    // One more in team-a without the label: not watched.
    let mut unlabelled = in_ns(
        example("examples/standard/tls-routing/tls-route.yaml"),
        "team-a",
    );
    unlabelled["metadata"]["name"] = json!("unlabelled");
    unlabelled["spec"]["hostnames"] = json!(["other.example.com"]);
    fake.apply(unlabelled);
    while live_route(&proxy, "tlsroute/team-a/foo-route").is_none() {
        proxy.wait_log(|l| l["message"] == "reload" && l["trigger"] == "discovery");
    }
    assert!(live_route(&proxy, "tlsroute/team-b/foo-route").is_none());
    assert!(live_route(&proxy, "tlsroute/team-a/unlabelled").is_none());
    let requests = fake.requests();
    let gets: Vec<&String> = requests.iter().filter(|r| r.starts_with('/')).collect();
    for kind in ["gateways", "tlsroutes", "referencegrants", "services"] {
        assert!(
            gets.iter()
                .filter(|r| r.contains(&format!("/{kind}?")))
                .all(|r| r.contains(&format!("/namespaces/team-a/{kind}?"))),
            "{kind}: {gets:?}"
        );
    }
    assert!(gets
        .iter()
        .filter(|r| r.contains("/tlsroutes?"))
        .all(|r| r.contains("labelSelector=edge%3Dch")));
    assert!(
        gets.iter().any(|r| r.starts_with("/api/v1/namespaces?")),
        "Namespaces cluster-wide"
    );
}
