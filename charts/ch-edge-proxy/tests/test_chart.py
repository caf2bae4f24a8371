"""Chart tests without a cluster: render with the Helm library (helm-python-sdk), lint, validate
every manifest against the Kubernetes 1.30 schemas (kubernetes-validate), assert the properties
the proxy relies on, and run the real binary's `check` on the rendered proxy config.

Run: pytest charts/ch-edge-proxy/tests  (binary: $CH_EDGE_PROXY_BIN, default target/debug/ch-edge-proxy)
"""

import copy
import json
import os
import pathlib
import re
import subprocess

import kubernetes_validate
import pytest
import yaml
from helm_python.chart import Chart, lint

CHART = pathlib.Path(__file__).resolve().parents[1]
REPO = CHART.parents[1]
KUBE_VERSION = "1.30.0"
RELEASE = "edge"
NAMESPACE = "ch"
# Where the chart mounts the proxy's config and routes inside the pod.
POD_ROOT = "/etc/ch-edge-proxy"

INLINE_ROUTES = [
    {"sni": "demo.ch.example.com", "upstream": "clickhouse-demo.ch.svc.cluster.local"},
    {
        "name": "replica",
        "sni": ["chi-demo-cluster-0-0.ch.example.com"],
        "upstream": ["chi-demo-cluster-0-0.ch.svc.cluster.local:9440"],
        "allow": ["203.0.113.0/24"],
        "proxy_protocol": "v1",
    },
]

VARIANTS = {
    "default": {},
    "daemonset": {"kind": "DaemonSet"},
    "hostnetwork": {"hostNetwork": True, "kind": "DaemonSet"},
    "discovery": {
        "discovery": {
            "kubernetes": {
                "enabled": True,
                "namespaces": ["ch"],
                "labelSelector": "team=x",
                "gatewayApi": {"enabled": True},
            }
        },
        "routes": INLINE_ROUTES,
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    },
    # Everything of the operations kit on, /routes served to the network, per-client limits.
    "operations": {
        "limits": {"maxConnections": 50000, "perClient": {"maxConnections": 1000, "rate": 100, "burst": 200}},
        "admin": {"port": 9090, "routes": {"enabled": True, "address": "0.0.0.0", "port": 9091}},
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
            "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "ClickHouse"}},
        },
        "networkPolicy": {"enabled": True},
    },
    # TLS terminated at the proxy: a cert-manager Secret served for *.ch.example.com, a CA for
    # reencrypt routes, the plain ports set explicitly.
    "tls": {
        "listeners": [
            {"name": "native", "port": 9440, "upstreamPortPlain": 9000},
            {"name": "https", "port": 8443, "upstreamPortPlain": 8123},
        ],
        "defaults": {"tls": "terminate"},
        "tls": {"secrets": ["ch-edge-wildcard-tls"], "upstreamCA": {"secretName": "cluster-ca"}, "minVersion": "1.3"},
        "routes": INLINE_ROUTES,
    },
}
# Custom resources: no bundled schema; checked structurally by their own tests.
CRDS = {"ServiceMonitor", "PrometheusRule", "GatewayClass"}
DASHBOARD = CHART / "files" / "grafana-dashboard.json"
RULES = CHART / "files" / "prometheus-rules.yaml"


def render(values):
    out = Chart.load(str(CHART)).render(values, name=RELEASE, namespace=NAMESPACE)
    docs = []
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def workload(docs):
    found = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
    assert len(found) == 1
    return found[0]


def binary():
    path = pathlib.Path(os.environ.get("CH_EDGE_PROXY_BIN", "target/debug/ch-edge-proxy"))
    if not path.is_absolute():
        path = REPO / path
    assert path.is_file(), f"{path} missing: cargo build first or set CH_EDGE_PROXY_BIN"
    return path


def configmap_named(docs, name):
    found = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == name]
    assert len(found) == 1, f"ConfigMap {name} not rendered"
    return found[0]


def tls_secret_files(directory):
    """What a cert-manager Secret holds (tls.crt, tls.key, ca.crt), made by openssl for
    *.ch.example.com, written into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "30", "-subj", "/CN=ch.example.com",
         "-addext", "subjectAltName=DNS:*.ch.example.com,DNS:ch.example.com",
         "-keyout", str(directory / "tls.key"), "-out", str(directory / "tls.crt")],
        check=True, capture_output=True, timeout=60,
    )
    (directory / "ca.crt").write_text((directory / "tls.crt").read_text())


def materialize(docs, root):
    """Write the ConfigMaps (and test certificates for the Secrets) the pod mounts into `root`,
    at the pod's mount paths, as the kubelet would; return the path of the main config file
    there. Absolute pod paths in the config are rewritten under `root` so its include entries
    and certificate files resolve."""
    spec = workload(docs)["spec"]["template"]["spec"]
    volumes = {v["name"]: v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v}
    secrets = {v["name"] for v in spec["volumes"] if "secret" in v}
    mounts = spec["containers"][0]["volumeMounts"]
    for m in mounts:
        if m["name"] in secrets:
            tls_secret_files(root / m["mountPath"].lstrip("/"))
            continue
        cm = configmap_named(docs, volumes[m["name"]])
        target = root / m["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for key, text in cm["data"].items():
            (target / key).write_text(text.replace(POD_ROOT, str(root / POD_ROOT.lstrip("/"))))
    args = spec["containers"][0]["args"]
    assert args[:2] == ["run", "--config"]
    return root / args[2].lstrip("/")


def proxy_config(docs):
    spec = workload(docs)["spec"]["template"]["spec"]
    config_path = spec["containers"][0]["args"][2]
    name = next(v["configMap"]["name"] for v in spec["volumes"] if v["name"] == "config")
    return yaml.safe_load(configmap_named(docs, name)["data"][pathlib.PurePosixPath(config_path).name])


def run_check(config_file):
    return subprocess.run(
        [str(binary()), "check", "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(params=sorted(VARIANTS))
def variant(request):
    return request.param, VARIANTS[request.param]


def test_lint_strict(variant):
    _, values = variant
    report = lint(str(CHART), values, strict=True, kube_version="v" + KUBE_VERSION)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [] and report["errors"] == []


def test_manifests_validate_against_kubernetes_schemas(variant):
    _, values = variant
    docs = render(values)
    assert docs
    for doc in docs:
        if doc["kind"] in CRDS:
            continue
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_rendered_config_passes_binary_check(variant, tmp_path):
    _, values = variant
    config_file = materialize(render(values), tmp_path)
    result = run_check(config_file)
    assert result.returncode == 0, result.stdout + result.stderr
    # The include resolved: the inline routes from values were loaded from the routes ConfigMap.
    assert f"routes: {len(values.get('routes', []))} (" in result.stdout


def test_check_rejects_bad_routes_from_values(tmp_path):
    # Proves the check step above is meaningful: a route table the proxy refuses fails it.
    dup = [{"sni": "a.ch.example.com", "upstream": "x"}, {"sni": "a.ch.example.com", "upstream": "y"}]
    config_file = materialize(render({"routes": dup}), tmp_path)
    result = run_check(config_file)
    assert result.returncode != 0
    assert "a.ch.example.com" in result.stdout + result.stderr


def test_proxy_config_contents(variant):
    name, values = variant
    cfg = proxy_config(render(values))
    assert [(l["name"], l["address"]) for l in cfg["listeners"]] == [
        ("native", "0.0.0.0:9440"),
        ("https", "0.0.0.0:8443"),
    ]
    for listener in cfg["listeners"]:
        assert listener["proxy_protocol"]["mode"] == "required"
        assert listener["proxy_protocol"]["trusted"] == ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
    # The probes reach the admin server from the kubelet, so they listen on all interfaces;
    # /routes (every route, upstream and allowlist) on loopback unless asked otherwise.
    routes_host = "0.0.0.0" if name == "operations" else "127.0.0.1"
    assert cfg["admin"] == {
        "listeners": [
            {"address": "0.0.0.0:9090", "serve": ["probes", "metrics"]},
            {"address": f"{routes_host}:9091", "serve": ["routes"]},
        ]
    }
    assert cfg["timeouts"]["drain"] == "30s"
    assert (cfg["defaults"]["balance"], cfg["defaults"]["sticky"]) == ("least_conn", True)
    assert cfg["health"] == {"eject_after": 1, "eject_for": "5s"}
    if name == "operations":
        per_client = {"max_connections": 1000, "rate": 100, "burst": 200}
        assert cfg["limits"] == {"max_connections": 50000, "per_client": per_client}
    else:
        assert cfg["limits"] == {"max_connections": 100000}
    assert cfg["include"] == [f"{POD_ROOT}/routes.d"]
    assert cfg["discovery"]["kubernetes"]["enabled"] is (name == "discovery")
    assert cfg["discovery"]["kubernetes"]["sources"] == ["chi"]


def test_tls_secrets_mounted_and_listed_as_certificates(tmp_path):
    default = proxy_config(render({}))
    assert default["tls"] == {"certificates": [], "min_version": "1.2", "max_handshakes": 1024}
    assert default["defaults"]["tls"] == "passthrough" and "upstream_tls" not in default["defaults"]
    docs = render(VARIANTS["tls"])
    cfg = proxy_config(docs)
    secret_dir = f"{POD_ROOT}/tls/ch-edge-wildcard-tls"
    assert cfg["tls"] == {
        "certificates": [{"cert": f"{secret_dir}/tls.crt", "key": f"{secret_dir}/tls.key"}],
        "min_version": "1.3",
        "max_handshakes": 1024,
    }
    assert cfg["defaults"]["tls"] == "terminate"
    assert cfg["defaults"]["upstream_tls"] == {"ca": f"{POD_ROOT}/upstream-ca/ca.crt"}
    assert [l["upstream_port_plain"] for l in cfg["listeners"]] == [9000, 8123]
    spec = workload(docs)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert volumes["tls-0"]["secret"] == {"secretName": "ch-edge-wildcard-tls"}
    assert mounts["tls-0"] == secret_dir
    assert volumes["upstream-ca"]["secret"] == {"secretName": "cluster-ca"}
    assert mounts["upstream-ca"] == f"{POD_ROOT}/upstream-ca"
    # The proxy's check reads the mounted pair and sees both routes terminate.
    result = run_check(materialize(docs, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "*.ch.example.com" in result.stdout and "2 TLS here" in result.stdout
    # Without a Secret, terminating routes have no certificate: the check refuses them.
    no_cert = dict(VARIANTS["tls"], tls={"secrets": []})
    result = run_check(materialize(render(no_cert), tmp_path / "no-cert"))
    assert result.returncode != 0
    assert "tls.certificates is empty" in result.stdout + result.stderr


def test_inline_routes_land_in_routes_configmap():
    docs = render(VARIANTS["discovery"])
    cm = configmap_named(docs, f"{RELEASE}-ch-edge-proxy-routes")
    assert yaml.safe_load(cm["data"]["routes.yaml"]) == {"routes": INLINE_ROUTES}


def test_configmaps_mounted_as_directories(variant):
    _, values = variant
    docs = render(values)
    spec = workload(docs)["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    secrets = {v["name"] for v in spec["volumes"] if "secret" in v}
    assert set(mounts) == {"config", "routes"} | secrets
    for m in mounts.values():
        # subPath mounts never see ConfigMap or Secret updates: hot reload (routes, renewed
        # certificates) would silently stop working.
        assert "subPath" not in m and "subPathExpr" not in m
        assert m["readOnly"] is True
    config_arg = spec["containers"][0]["args"][2]
    assert str(pathlib.PurePosixPath(config_arg).parent) == mounts["config"]["mountPath"]
    assert mounts["routes"]["mountPath"] == proxy_config(docs)["include"][0]


def test_no_config_checksum_annotation(variant):
    _, values = variant
    pod_meta = workload(render(values))["spec"]["template"]["metadata"]
    assert not any(k.startswith("checksum/") for k in pod_meta.get("annotations", {}))


def test_existing_routes_configmap():
    docs = render({"existingRoutesConfigMap": "my-routes"})
    assert not [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-routes")]
    spec = workload(docs)["spec"]["template"]["spec"]
    routes = next(v for v in spec["volumes"] if v["name"] == "routes")
    assert routes["configMap"]["name"] == "my-routes"


def test_kind_and_host_network():
    default = workload(render({}))
    assert default["kind"] == "Deployment" and default["spec"]["replicas"] == 2
    assert "hostNetwork" not in default["spec"]["template"]["spec"]
    assert "dnsPolicy" not in default["spec"]["template"]["spec"]
    ds = workload(render(VARIANTS["daemonset"]))
    assert ds["kind"] == "DaemonSet" and "replicas" not in ds["spec"]
    hn = workload(render(VARIANTS["hostnetwork"]))["spec"]["template"]["spec"]
    assert hn["hostNetwork"] is True
    assert hn["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_rbac_only_with_discovery(variant):
    name, values = variant
    docs = render(values)
    roles = by_kind(docs, "ClusterRole")
    bindings = by_kind(docs, "ClusterRoleBinding")
    sa = one(docs, "ServiceAccount")
    pod = workload(docs)["spec"]["template"]["spec"]
    if name != "discovery":
        assert roles == [] and bindings == []
        assert pod["automountServiceAccountToken"] is False
        return
    assert pod["automountServiceAccountToken"] is True
    (role,) = roles
    assert role["rules"] == [
        {
            "apiGroups": ["clickhouse.altinity.com"],
            "resources": ["clickhouseinstallations"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["gatewayclasses", "gateways", "tlsroutes", "referencegrants"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["gatewayclasses/status", "gateways/status", "tlsroutes/status"],
            "verbs": ["patch"],
        },
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]},
    ]
    (binding,) = bindings
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]


def test_probes_lifecycle_and_grace(variant):
    name, values = variant
    pod = workload(render(values))["spec"]["template"]["spec"]
    c = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    exposed = {"routes": 9091} if name == "operations" else {}
    assert ports == {"native": 9440, "https": 8443, "admin": 9090, **exposed}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["startupProbe"]["httpGet"]["port"] == "admin"
    sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] >= sleep + 30


def test_grace_period_shorter_than_drain_is_refused():
    with pytest.raises(Exception, match="terminationGracePeriodSeconds"):
        render({"terminationGracePeriodSeconds": 20, "preStopSleepSeconds": 15})


def test_security_context(variant):
    _, values = variant
    pod = workload(render(values))["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    sc = pod["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}


def test_low_port_adds_net_bind_service():
    docs = render({"listeners": [{"name": "native", "port": 9440}, {"name": "https", "port": 443}]})
    kubernetes_validate.validate(workload(docs), KUBE_VERSION, strict=True)
    sc = workload(docs)["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}


ANN = "service.beta.kubernetes.io/aws-load-balancer-"
PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


def load_balancer(docs):
    return next(s for s in by_kind(docs, "Service") if s["spec"]["type"] == "LoadBalancer")


def notes(values):
    out = Chart.load(str(CHART)).render(values, name=RELEASE, namespace=NAMESPACE)
    return next(text for path, text in out.items() if path.endswith("NOTES.txt"))


def test_service_nlb_defaults_go_with_the_proxy_trust_settings(variant):
    """README "Behind an AWS NLB": IP targets with client-IP preservation off (the TCP peer is
    the NLB, inside the VPC ranges), PROXY v2 on, and every listener requiring the header from
    the private ranges only."""
    _, values = variant
    docs = render(values)
    svc = load_balancer(docs)
    ann = svc["metadata"]["annotations"]
    assert ann[ANN + "type"] == "external"  # the AWS Load Balancer Controller, not the in-tree one
    assert ann[ANN + "nlb-target-type"] == "ip"
    assert ann[ANN + "target-group-attributes"] == "preserve_client_ip.enabled=false"
    assert ann[ANN + "proxy-protocol"] == "*"
    assert ann[ANN + "scheme"] == "internet-facing"
    # IP targets: the NLB reaches pods directly; Local would only add a health-check node port.
    assert svc["spec"]["externalTrafficPolicy"] == "Cluster"
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(9440, "native"), (8443, "https")]
    assert svc["spec"]["selector"] == workload(docs)["spec"]["selector"]["matchLabels"]
    config = yaml.safe_load(configmap_named(docs, f"{RELEASE}-ch-edge-proxy")["data"]["ch-edge-proxy.yaml"])
    for listener in config["listeners"]:
        assert listener["proxy_protocol"] == {"mode": "required", "trusted": PRIVATE_RANGES}, listener


def test_service_options():
    svc = load_balancer(
        render({"service": {"externalTrafficPolicy": "Local", "extraAnnotations": {"x/y": "z"}}})
    )
    assert svc["spec"]["externalTrafficPolicy"] == "Local"
    assert svc["metadata"]["annotations"]["x/y"] == "z"
    assert svc["metadata"]["annotations"][ANN + "proxy-protocol"] == "*"
    # Another cloud: no AWS annotations at all.
    svc = load_balancer(render({"service": {"nlb": {"enabled": False}}}))
    assert not any(k.startswith(ANN) for k in svc["metadata"].get("annotations", {}))
    # An internal NLB; instance targets with preservation off still deliver the NLB's address.
    svc = load_balancer(render({"service": {"nlb": {"scheme": "internal", "targetType": "instance"}}}))
    ann = svc["metadata"]["annotations"]
    assert (ann[ANN + "scheme"], ann[ANN + "nlb-target-type"]) == ("internal", "instance")
    assert ann[ANN + "target-group-attributes"] == "preserve_client_ip.enabled=false"


@pytest.mark.parametrize(
    "values, reason",
    [
        # Instance targets preserving client IPs, PROXY on: every header from an untrusted peer.
        ({"service": {"nlb": {"targetType": "instance", "preserveClientIp": True}}}, "preserves client IPs"),
        # The same through annotations set by hand, on one listener's own PROXY settings.
        (
            {
                "service": {"extraAnnotations": {ANN + "target-group-attributes": "preserve_client_ip.enabled=true"}},
                "listeners": [{"name": "native", "port": 9440, "proxyProtocol": {"mode": "optional", "trusted": PRIVATE_RANGES}}],
                "proxyProtocol": {"mode": "off"},
            },
            "preserves client IPs",
        ),
        # The in-tree NLB (instance targets, preservation on by AWS's default) with PROXY on.
        ({"service": {"nlb": {"enabled": False}, "annotations": {ANN + "type": "nlb", ANN + "proxy-protocol": "*"}}}, "preserves client IPs"),
        ({"service": {"nlb": {"proxyProtocolV2": False}}}, "proxy_missing"),
        ({"proxyProtocol": {"mode": "off"}}, "not_tls"),
    ],
)
def test_nlb_combinations_that_refuse_every_client_are_refused(values, reason):
    with pytest.raises(Exception, match=reason):
        render(values)


def test_documented_alternative_instance_targets_without_proxy_protocol():
    """Instance targets preserving client IPs, PROXY off on both sides: renders, and warns
    unless externalTrafficPolicy is Local (kube-proxy would hide client addresses)."""
    alternative = {
        "proxyProtocol": {"mode": "off"},
        "service": {"nlb": {"targetType": "instance", "preserveClientIp": True, "proxyProtocolV2": False}},
    }
    docs = render(alternative)
    ann = load_balancer(docs)["metadata"]["annotations"]
    assert ann[ANN + "target-group-attributes"] == "preserve_client_ip.enabled=true"
    assert ANN + "proxy-protocol" not in ann
    config = yaml.safe_load(configmap_named(docs, f"{RELEASE}-ch-edge-proxy")["data"]["ch-edge-proxy.yaml"])
    assert all(listener["proxy_protocol"] == {"mode": "off"} for listener in config["listeners"])
    assert "WARNING" in notes(alternative) and "externalTrafficPolicy=Local" in notes(alternative)
    local = {**alternative, "service": {**alternative["service"], "externalTrafficPolicy": "Local"}}
    assert "WARNING" not in notes(local)
    assert "ChEdgeProxyProxyHeaderFromUntrustedPeer" in notes({})


def test_pdb_only_for_multi_replica_deployment():
    assert one(render({}), "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert by_kind(render({"replicaCount": 1}), "PodDisruptionBudget") == []
    assert by_kind(render(VARIANTS["daemonset"]), "PodDisruptionBudget") == []


def test_service_monitor():
    docs = render(VARIANTS["discovery"])
    sm = one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"] == [{"port": "admin", "path": "/metrics", "interval": "30s"}]
    assert sm["spec"]["jobLabel"] == "app.kubernetes.io/name"
    metrics_svc = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-metrics"))
    labels = metrics_svc["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    assert [p["name"] for p in metrics_svc["spec"]["ports"]] == ["admin"]
    assert by_kind(render({}), "ServiceMonitor") == []


def test_schema_rejects_bad_values():
    with pytest.raises(Exception, match="kind"):
        render({"kind": "StatefulSet"})
    with pytest.raises(Exception, match="mode"):
        render({"proxyProtocol": {"mode": "sometimes", "trusted": []}})


def test_per_client_limits_values(tmp_path):
    # Only what is set reaches the config; the binary accepts it.
    docs = render({"limits": {"perClient": {"maxConnections": 3}}})
    assert proxy_config(docs)["limits"] == {"max_connections": 100000, "per_client": {"max_connections": 3}}
    result = run_check(materialize(docs, tmp_path))
    assert result.returncode == 0, result.stderr
    # A burst needs a rate, and limits are positive.
    with pytest.raises(Exception, match="rate"):
        render({"limits": {"perClient": {"burst": 10}}})
    with pytest.raises(Exception, match="maxConnections"):
        render({"limits": {"perClient": {"maxConnections": 0}}})
    with pytest.raises(Exception, match="perClient"):
        render({"limits": {"perClient": {"connections": 3}}})


def test_routes_off_or_on_ipv6_loopback(tmp_path):
    off = {"admin": {"port": 9090, "routes": {"enabled": False, "address": "127.0.0.1", "port": 9091}}}
    docs = render(off)
    assert proxy_config(docs)["admin"] == {"listeners": [{"address": "0.0.0.0:9090", "serve": ["probes", "metrics"]}]}
    result = run_check(materialize(docs, tmp_path / "off"))
    assert result.returncode == 0, result.stderr
    assert "not served: routes" in result.stdout
    v6 = {"admin": {"port": 9090, "routes": {"enabled": True, "address": "::1", "port": 9091}}}
    docs = render(v6)
    assert proxy_config(docs)["admin"]["listeners"][1] == {"address": "[::1]:9091", "serve": ["routes"]}
    ports = [p["name"] for p in workload(docs)["spec"]["template"]["spec"]["containers"][0]["ports"]]
    assert "routes" not in ports
    result = run_check(materialize(docs, tmp_path / "v6"))
    assert result.returncode == 0, result.stderr
    assert "[::1]:9091 (routes)" in result.stdout


def test_admin_values_are_checked():
    with pytest.raises(Exception, match="admin.routes.port must differ"):
        render({"admin": {"port": 9090, "routes": {"enabled": True, "address": "0.0.0.0", "port": 9090}}})
    with pytest.raises(Exception, match="address"):
        render({"admin": {"port": 9090, "routes": {"enabled": True, "address": "localhost", "port": 9091}}})


def test_grafana_dashboard_configmap():
    assert not [d for d in by_kind(render({}), "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    docs = render(VARIANTS["operations"])
    cm = configmap_named(docs, f"{RELEASE}-ch-edge-proxy-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "ClickHouse"}
    assert cm["metadata"]["namespace"] == NAMESPACE
    # The repository's file, unchanged: one source of truth.
    assert json.loads(cm["data"]["ch-edge-proxy.json"]) == json.loads(DASHBOARD.read_text())
    other = render({"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "grafana", "label": "dash", "labelValue": "yes"}}})
    cm = configmap_named(other, f"{RELEASE}-ch-edge-proxy-dashboard")
    assert (cm["metadata"]["namespace"], cm["metadata"]["labels"]["dash"]) == ("grafana", "yes")


def rule_exprs(groups):
    return [r["expr"] for g in groups for r in g["rules"]]


def test_prometheus_rule_is_the_rules_file():
    assert by_kind(render({}), "PrometheusRule") == []
    rule = one(render(VARIANTS["operations"]), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prom"
    plain = yaml.safe_load(RULES.read_text())
    assert rule["spec"] == plain
    for g in plain["groups"]:
        for r in g["rules"]:
            assert r["alert"].startswith("ChEdgeProxy") and r["labels"]["severity"] in ("warning", "critical")
            assert r["annotations"]["summary"] and r["annotations"]["description"]
    # With another chart name the ServiceMonitor's job changes, and so do the rules' selectors.
    renamed = one(render({"nameOverride": "edge-proxy", "metrics": {"prometheusRule": {"enabled": True}}}), "PrometheusRule")
    jobs = {j for e in rule_exprs(renamed["spec"]["groups"]) for j in re.findall(r'job="([^"]*)"', e)}
    assert jobs == {"edge-proxy"}


def test_service_monitor_rules_and_dashboard_agree_on_labels():
    docs = render(VARIANTS["operations"])
    sm = one(docs, "ServiceMonitor")
    svc = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-metrics"))
    # The job label of every target is the metrics Service's value of jobLabel ...
    job = svc["metadata"]["labels"][sm["spec"]["jobLabel"]]
    assert job == "ch-edge-proxy"
    # ... which is the job the rules select ...
    rules = yaml.safe_load(RULES.read_text())
    jobs = {j for e in rule_exprs(rules["groups"]) for j in re.findall(r'job="([^"]*)"', e)}
    assert jobs == {job}
    # ... and the dashboard filters on labels every ServiceMonitor target has.
    target_labels = {"job", "namespace", "instance", "pod", "service", "endpoint", "container"}
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    filtered = set()
    for v in variables.values():
        m = re.match(r"label_values\((.*), (\w+)\)$", v.get("definition", ""))
        if m:
            filtered.add(m.group(2))
    assert filtered == {"job", "namespace", "instance"} and filtered <= target_labels
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for e in exprs:
        for label, var in re.findall(r'(\w+)=~"\$(\w+)"', e):
            assert label in filtered and var == label, e


def test_network_policy():
    assert by_kind(render({}), "NetworkPolicy") == []
    docs = render(VARIANTS["operations"])
    policy = one(docs, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == workload(docs)["spec"]["selector"]["matchLabels"]
    assert spec["policyTypes"] == ["Ingress"]
    listeners, admin = spec["ingress"]
    # Clients: open to all (no `from`); PROXY trust and allowlists decide.
    assert listeners == {"ports": [{"port": 9440, "protocol": "TCP"}, {"port": 8443, "protocol": "TCP"}]}
    # Admin: probes, metrics and (here, exposed) /routes, from the monitoring namespace only.
    assert admin["ports"] == [{"port": 9090, "protocol": "TCP"}, {"port": 9091, "protocol": "TCP"}]
    assert admin["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    # /routes on loopback is not a port of the pod; no `adminFrom`: no rule, so only the node.
    closed = render({"networkPolicy": {"enabled": True, "adminFrom": [], "listenersFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}})
    (listeners,) = one(closed, "NetworkPolicy")["spec"]["ingress"]
    assert listeners["from"] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]
    kubernetes_validate.validate(one(closed, "NetworkPolicy"), KUBE_VERSION, strict=True)


def test_log_format_from_values():
    # Default: JSON lines, access lines following the format (no `access` key).
    assert proxy_config(render({}))["log"] == {"format": "json", "sample": 1.0, "level": "info"}
    cfg = proxy_config(render({"log": {"format": "text"}}))
    assert cfg["log"]["format"] == "text" and "access" not in cfg["log"]
    cfg = proxy_config(render({"log": {"format": "text", "access": "off"}}))
    assert (cfg["log"]["format"], cfg["log"]["access"]) == ("text", "off")


def test_clickhousecluster_source_gets_its_rbac_and_config():
    values = copy.deepcopy(VARIANTS["discovery"])
    values["discovery"]["kubernetes"]["gatewayApi"] = {"enabled": False}
    values["discovery"]["kubernetes"]["sources"] = ["clickhousecluster", "chi"]
    docs = render(values)
    assert proxy_config(docs)["discovery"]["kubernetes"]["sources"] == ["clickhousecluster", "chi"]
    (role,) = by_kind(docs, "ClusterRole")
    assert role["rules"] == [
        {
            "apiGroups": ["clickhouse.altinity.com"],
            "resources": ["clickhouseinstallations"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["clickhouse.com"],
            "resources": ["clickhouseclusters"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    ]
    only = copy.deepcopy(VARIANTS["discovery"])
    only["discovery"]["kubernetes"]["gatewayApi"] = {"enabled": False}
    only["discovery"]["kubernetes"]["sources"] = ["clickhousecluster"]
    (role,) = by_kind(render(only), "ClusterRole")
    assert [r["resources"] for r in role["rules"]] == [["clickhouseclusters"], ["pods"]]


def test_gateway_api_class_lease_rbac_and_pod_identity():
    docs = render(VARIANTS["discovery"])
    (gc,) = by_kind(docs, "GatewayClass")
    assert gc["metadata"]["name"] == "ch-edge-proxy"
    assert gc["spec"]["controllerName"] == "ch-edge-proxy.io/gateway-controller"
    lease = lambda kind, d: [r for r in by_kind(d, kind) if r["metadata"]["name"].endswith("-gateway-lease")]
    (role,) = lease("Role", docs)
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    (binding,) = lease("RoleBinding", docs)
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["namespace"] == NAMESPACE
    env = {e["name"]: e for e in workload(docs)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    cfg = proxy_config(docs)["discovery"]["kubernetes"]["gateway_api"]
    assert cfg == {
        "enabled": True,
        "controller_name": "ch-edge-proxy.io/gateway-controller",
        "cluster_domain": "cluster.local",
    }
    # Off by default, and no class without discovery; a class can be left to the user.
    for values in [{}, {"discovery": {"kubernetes": {"gatewayApi": {"enabled": True}}}}]:
        docs = render(values)
        assert by_kind(docs, "GatewayClass") == [] and lease("Role", docs) == []
    own = {"discovery": {"kubernetes": {"enabled": True, "gatewayApi": {"enabled": True, "gatewayClass": {"create": False}}}}}
    assert by_kind(render(own), "GatewayClass") == []


def test_postgres_listener_from_values(tmp_path):
    # `protocol` reaches the listener as written (left out: the proxy's default, tls), and the
    # binary accepts the result.
    values = {
        "listeners": [
            {"name": "native", "port": 9440},
            {"name": "postgres", "port": 5432, "protocol": "postgres"},
        ]
    }
    docs = render(values)
    listeners = proxy_config(docs)["listeners"]
    assert [(l["name"], l.get("protocol")) for l in listeners] == [("native", None), ("postgres", "postgres")]
    result = run_check(materialize(docs, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "protocol postgres" in result.stdout
    with pytest.raises(Exception):
        render({"listeners": [{"name": "pg", "port": 5432, "protocol": "mysql"}]})
