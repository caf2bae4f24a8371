//! The operations kit against a real Prometheus (Debian's `prometheus` and `promtool`): the
//! Grafana dashboard's every query returns data from a proxy that serves real traffic
//! (relayed, TLS terminated with a test certificate, refused for several reasons, a client over
//! its per-client limit, a failing upstream held out by passive health, connections held open,
//! a burst of refusals whose log lines are suppressed, reloads, Kubernetes discovery against
//! the fake API server), the alert rules load and evaluate on those metrics, and promtool's
//! unit tests make each alert fire and not fire.
#![cfg(feature = "k8s")]

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use support::certs::{connect_verified, Ca};
use support::fake_kube::FakeKube;
use support::peers::{self, RawBackend};
use support::prometheus::Prometheus;
use support::*;

/// The job name the rules and the dashboard expect (the chart's ServiceMonitor sets it).
const JOB: &str = "ch-edge-proxy";
/// `limits.per_client.max_connections` of the scenario: above what its sequential traffic from
/// 127.0.0.1 holds at once (one connection, and one the proxy may still be closing).
const PER_CLIENT: usize = 4;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/ch-edge-proxy")
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(chart().join("files/grafana-dashboard.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn rules_file() -> PathBuf {
    chart().join("files/prometheus-rules.yaml")
}

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every `(panel title, expr)` of the dashboard, rows' nested panels included.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            walk(&p["panels"], out);
            if p["type"] == "row" {
                continue;
            }
            let title = p["title"].as_str().unwrap().to_owned();
            let targets = p["targets"].as_array().map_or(&[][..], Vec::as_slice);
            assert!(!targets.is_empty(), "panel {title:?} has no query");
            for t in targets {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{title}: no expr"));
                out.push((title.clone(), expr.to_owned()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// `expr` as Grafana would send it with every variable at its default (all namespaces and
/// instances, the proxy's job); `$__rate_interval` covers the whole test.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$topn", "10")
        .replace("$job", JOB)
        .replace("$namespace", ".*")
        .replace("$instance", ".*")
}

/// `label_values(selector, label)` → a query returning one series per value.
fn label_values_query(definition: &str) -> (String, String) {
    let inner = definition
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(): {definition}"));
    let (selector, label) = inner.rsplit_once(',').unwrap();
    let label = label.trim().to_owned();
    (format!("count by ({label}) ({})", selector.trim()), label)
}

/// Whether an instant-query result has a sample with a finite value.
fn has_finite_sample(data: &Value) -> bool {
    data["result"].as_array().into_iter().flatten().any(|r| {
        r["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    })
}

/// Metric names (`ch_edge_proxy_*`, `process_*`) an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = ["ch_edge_proxy_", "process_"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        names.insert(name);
    }
    names
}

/// One connection through the terminating route `tls.ch.test`, verified against `ca`.
async fn terminated(ca: &Ca, addr: std::net::SocketAddr, backend: &mut RawBackend) {
    let mut tls = connect_verified(&ca.client(&[]), addr, "tls.ch.test")
        .await
        .unwrap();
    echo(&mut tls, b"SELECT 1").await;
    drop(tls);
    backend.next().await;
}

/// A CHI whose service resolves to 127.0.0.1 (as in tests/discovery.rs).
fn chi(name: &str) -> Value {
    json!({
        "apiVersion": "clickhouse.altinity.com/v1",
        "kind": "ClickHouseInstallation",
        "metadata": {"name": name, "namespace": "ch", "uid": format!("uid-{name}"),
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {
            "namespaceDomainPattern": "1",
            "defaults": {"templates": {"serviceTemplate": "loopback"}},
            "templates": {"serviceTemplates": [{"name": "loopback", "generateName": "127.0.0"}]},
        },
    })
}

/// A connection from `source` (another loopback address: a client of its own for the
/// per-client limits) that sent a ClientHello for `sni`, and whether the proxy relayed it (the
/// echo backend sends the hello back) rather than refusing it with an alert.
async fn hello_from(source: &str, proxy: SocketAddr, sni: &str) -> (TcpStream, bool) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut tcp = socket.connect(proxy).await.unwrap();
    tcp.write_all(&peers::client_hello(sni)).await.unwrap();
    let mut first = [0u8; 1];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut first))
        .await
        .expect("an answer in time")
        .expect("a first byte");
    match first[0] {
        0x16 => (tcp, true),  // the echoed hello
        0x15 => (tcp, false), // an alert record
        other => panic!("unexpected first byte {other:#x}"),
    }
}

/// PostgreSQL clients on the `pg` listener: one whose SSLRequest is answered `S` and whose
/// ClientHello is routed, but the echo backend answers the proxy's own SSLRequest with its
/// bytes, not `S` (`upstream_ssl_refused`); one that starts in plaintext (`postgres_plaintext`).
async fn postgres_clients(proxy: &mut Proxy, backend: &mut RawBackend) {
    let pg = proxy.addr("pg");
    let mut tcp = TcpStream::connect(pg).await.unwrap();
    tcp.write_all(&ch_edge_wire::postgres::SSL_REQUEST)
        .await
        .unwrap();
    let mut answer = [0u8; 1];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    assert_eq!(&answer, b"S");
    tcp.write_all(&peers::client_hello("files.ch.test"))
        .await
        .unwrap();
    peers::read_until_eof(&mut tcp).await;
    backend.next().await;
    proxy.wait_log(|l| l["target"] == "access" && l["outcome"] == "upstream_ssl_refused");
    // A StartupMessage: length, protocol 3.0, user=u, the list's end.
    let startup = [
        &15u32.to_be_bytes()[..],
        &0x0003_0000u32.to_be_bytes(),
        b"user\0u\0\0",
    ]
    .concat();
    peers::exchange(pg, &startup).await;
    proxy.wait_log(|l| l["target"] == "access" && l["outcome"] == "postgres_plaintext");
}

/// `n` connections at once that each send bytes that are not TLS (refused as `not_tls`).
async fn not_tls_burst(proxy: SocketAddr, n: usize) {
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..n {
        running.spawn(async move { peers::exchange(proxy, b"GET / HTTP/1.0\r\n\r\n").await });
    }
    while let Some(done) = running.join_next().await {
        done.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_and_alert_rule_works_on_a_real_prometheus() {
    let Some(prometheus_bin) = tool("prometheus") else {
        return;
    };
    let mut backend = RawBackend::start(false).await;
    let fake = FakeKube::start().await;
    fake.apply(chi("demo"));
    // Nothing listens here: connects are refused at once. With `eject_after: 2` its first
    // failure leaves it live, so Prometheus sees its series before the ejection (the series is
    // born with the first connection); `eject_for: 5m` keeps it ejected for the whole test.
    let closed = peers::closed_port();
    let down = format!("127.0.0.1:{}", closed.port);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path());
    // A certificate for a terminating route (the TLS panels and the expiry alert's metric).
    let ca = Ca::new("test CA");
    let (cert, key) = ca.leaf(&["tls.ch.test"], 90).write(dir.path(), "leaf");
    let base = format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: {port}\n\
         \x20 - name: https\n    address: \"127.0.0.1:0\"\n    upstream_port: {port}\n\
         \x20 - name: nlb\n    address: \"127.0.0.1:0\"\n    upstream_port: {port}\n\
         \x20   proxy_protocol: {{mode: optional, trusted: [\"127.0.0.9/32\"]}}\n\
         \x20 - name: pg\n    address: \"127.0.0.1:0\"\n    protocol: postgres\n    upstream_port: {port}\n\
         admin:\n  listeners:\n    - {{address: \"127.0.0.1:0\", serve: [probes, metrics]}}\n    - {{address: \"127.0.0.1:0\", serve: [routes]}}\n\
         timeouts:\n  connect: 2s\n\
         health:\n  eject_after: 2\n  eject_for: 5m\n\
         limits:\n  per_client:\n    max_connections: {per_client}\n\
         discovery:\n  kubernetes:\n    enabled: true\n    domain: ch.test\n    namespaces: [ch]\n\
         tls:\n  certificates:\n    - cert: {cert}\n      key: {key}\n\
         routes:\n  - name: files\n    sni: files.ch.test\n    upstream: \"localhost:{port}\"\n\
         \x20 - name: private\n    sni: private.ch.test\n    upstream: \"localhost:{port}\"\n    allow: [\"203.0.113.0/24\"]\n\
         \x20 - name: broken\n    sni: broken.ch.test\n    upstream: \"{down}\"\n\
         \x20 - name: terminated\n    sni: tls.ch.test\n    upstream: \"localhost:{port}\"\n    tls: terminate\n",
        port = backend.addr.port(),
        per_client = PER_CLIENT,
        cert = cert.display(),
        key = key.display(),
    );
    let mut proxy = Proxy::start_with_env(&base, &[("KUBECONFIG", kubeconfig.as_os_str())]);
    proxy.wait_log(|l| l["message"] == "reload" && l["trigger"] == "discovery");
    let metrics_addr = proxy.admin_serving("metrics");

    // Prometheus scrapes before the traffic, so rates and quantiles have a "before". The
    // target carries the labels a ServiceMonitor's target has, which the dashboard filters on.
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files: [\"{rules}\"]\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [\"{metrics_addr}\"]\n        labels: {{namespace: ch-edge, pod: ch-edge-proxy-0}}\n",
        rules = rules_file().display()
    );
    let prometheus = Prometheus::start(&prometheus_bin, &prom_config);
    prometheus.wait_for("first scrape", || {
        has_finite_sample(&prometheus.query(&format!("up{{job=\"{JOB}\"}} == 1")))
    });

    // Everything that feeds a histogram or a rate happens twice, a scrape apart: Prometheus
    // sees a series from its first sample, so a rate needs an increase after that.
    // First: a relayed connection, one to the failing upstream (its first failure), a reload
    // that works, and a client (127.0.0.2) that holds its per-client limit of connections open
    // (they stay open to the end: open connections per address) and is refused one more.
    let hello = peers::client_hello("files.ch.test");
    assert_eq!(peers::exchange(proxy.addr("native"), &hello).await, hello);
    backend.next().await;
    peers::exchange(proxy.addr("native"), &peers::client_hello("broken.ch.test")).await;
    proxy.wait_log(|l| l["target"] == "access" && l["outcome"] == "upstream_unavailable");
    terminated(&ca, proxy.addr("native"), &mut backend).await;
    postgres_clients(&mut proxy, &mut backend).await;
    let route = |name: &str| {
        format!("  - name: {name}\n    sni: {name}.ch.test\n    upstream: \"localhost:1\"\n")
    };
    write_atomic(&proxy.config, &format!("{base}{}", route("more")));
    proxy.wait_reload("ok");
    let native = proxy.addr("native");
    let mut held = Vec::new();
    for _ in 0..PER_CLIENT {
        let (tcp, relayed) = hello_from("127.0.0.2", native, "files.ch.test").await;
        assert!(relayed, "127.0.0.2 refused under its limit");
        held.push(tcp);
    }
    let (_, relayed) = hello_from("127.0.0.2", native, "files.ch.test").await;
    assert!(!relayed, "127.0.0.2 went over its limit");
    proxy.wait_log(|l| l["target"] == "access" && l["outcome"] == "client_over_limit");
    // A PROXY header from a peer outside `trusted` (we connect from 127.0.0.1), as an NLB
    // that preserves client IPs delivers it. Only the header: all of it is read before the
    // refusal, so the close is clean.
    let untrusted_header = b"PROXY TCP4 203.0.113.1 127.0.0.1 40000 9440\r\n";
    peers::exchange(proxy.addr("nlb"), untrusted_header).await;
    proxy.wait_log(|l| l["target"] == "access" && l["outcome"] == "proxy_untrusted");
    let broken = format!("upstream=\"{down}\"");
    for selector in [
        "ch_edge_proxy_client_hello_seconds_count{}".to_owned(),
        "ch_edge_proxy_upstream_connect_seconds_count{}".to_owned(),
        "ch_edge_proxy_reload_seconds_count{}".to_owned(),
        "ch_edge_proxy_connections_total{outcome=\"client_over_limit\"}".to_owned(),
        "ch_edge_proxy_connections_total{outcome=\"proxy_untrusted\"}".to_owned(),
        format!("ch_edge_proxy_upstream_ejections_total{{{broken}}} == 0"),
        "ch_edge_proxy_tls_handshake_seconds_count{}".to_owned(),
        "ch_edge_proxy_connections_total{outcome=\"postgres_plaintext\"}".to_owned(),
    ] {
        let query = selector.replacen('{', &format!("{{job=\"{JOB}\", "), 1);
        prometheus.wait_for(&format!("{query} scraped"), || {
            has_finite_sample(&prometheus.query(&query))
        });
    }

    // Then: relayed on the other listener (a discovered route), each refusal, the failing
    // upstream again (its second failure ejects it), more refusals of the client over its
    // limit (over one a minute: the alert's threshold), a burst of refusals whose log lines
    // are suppressed, another reload that works and one that is refused (and stays refused).
    let hello = peers::client_hello("demo.ch.test");
    assert_eq!(peers::exchange(proxy.addr("https"), &hello).await, hello);
    backend.next().await;
    terminated(&ca, native, &mut backend).await;
    postgres_clients(&mut proxy, &mut backend).await;
    for (bytes, outcome) in [
        (peers::client_hello("nobody.ch.test"), "unknown_sni"),
        (peers::client_hello("private.ch.test"), "access_denied"),
        (b"GET / HTTP/1.0\r\n\r\n".to_vec(), "not_tls"),
        (
            peers::client_hello("broken.ch.test"),
            "upstream_unavailable",
        ),
    ] {
        peers::exchange(native, &bytes).await;
        proxy.wait_log(|l| l["target"] == "access" && l["outcome"] == outcome);
    }
    for _ in 0..10 {
        let (_, relayed) = hello_from("127.0.0.2", native, "files.ch.test").await;
        assert!(!relayed, "127.0.0.2 went over its limit");
        // And over one a minute from an untrusted peer: that alert's threshold.
        peers::exchange(proxy.addr("nlb"), untrusted_header).await;
    }
    // Past 100 refusal lines per outcome and second, lines are suppressed (and counted). A
    // burst that straddles a second may stay under that in both: another one then.
    let suppressed = || {
        let (status, text) = http_get(metrics_addr, "/metrics");
        assert_eq!(status, 200);
        metric(
            &text,
            "ch_edge_proxy_log_lines_suppressed_total",
            &["outcome=\"not_tls\""],
        )
    };
    for burst in 1.. {
        not_tls_burst(native, 250).await;
        if suppressed() > 0.0 {
            break;
        }
        assert!(
            burst < 5,
            "250 refusals at once, five times, and no line suppressed"
        );
    }
    proxy
        .wait_log(|l| l["outcome"] == "not_tls" && l["suppressed"].as_u64().is_some_and(|n| n > 0));
    write_atomic(
        &proxy.config,
        &format!("{base}{}{}", route("more"), route("evenmore")),
    );
    proxy.wait_reload("ok");
    write_atomic(&proxy.config, &format!("{base}  - sni: [\n"));
    proxy.wait_reload("error");
    // A Kubernetes API error: the watch expires (410 Gone) and the watcher relists.
    fake.wait_watches_open(1).await;
    fake.expire_watches();
    proxy.wait_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("API error"))
    });

    // Every panel query returns data, with at least one finite value.
    let dashboard = dashboard();
    let mut pending: Vec<(String, String)> = panel_queries(&dashboard)
        .into_iter()
        .map(|(title, expr)| (title, substitute(&expr)))
        .collect();
    let panels = pending.len();
    assert!(panels >= 30, "{panels} queries");
    // The variables' queries too: each label has values.
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" {
            let (query, label) = label_values_query(var["definition"].as_str().unwrap());
            let name = var["name"].as_str().unwrap();
            pending.push((format!("variable {name} ({label})"), substitute(&query)));
        }
    }
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        pending.retain(|(_, expr)| !has_finite_sample(&prometheus.query(expr)));
        if pending.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dashboard queries without data: {pending:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    // What the scenario did is what the new families say: the failing address held out, the
    // connections of 127.0.0.2 open on the live one, that client tracked.
    let live = format!(
        "upstream=\"localhost:{port}\", address=\"127.0.0.1:{port}\"",
        port = backend.addr.port()
    );
    for check in [
        format!("ch_edge_proxy_upstream_ejected{{job=\"{JOB}\", {broken}}} == 1"),
        format!("ch_edge_proxy_upstream_ejections_total{{job=\"{JOB}\", {broken}}} == 1"),
        format!("ch_edge_proxy_upstream_open_connections{{job=\"{JOB}\", {live}}} == {PER_CLIENT}"),
        format!("ch_edge_proxy_clients_tracked{{job=\"{JOB}\"}} >= 1"),
    ] {
        prometheus.wait_for(&check, || has_finite_sample(&prometheus.query(&check)));
    }
    // Annotation queries are valid PromQL (they have data only around a reload).
    for a in dashboard["annotations"]["list"].as_array().unwrap() {
        if let Some(expr) = a["expr"].as_str() {
            prometheus.query(&substitute(expr));
        }
    }

    // The rules: every metric they read is one the proxy exports, every rule evaluates
    // without error, and the alerts this scenario provokes are there.
    let rules = yaml(&rules_file());
    let rule_list: Vec<&Value> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    let names: BTreeSet<String> = rule_list
        .iter()
        .flat_map(|r| metric_names(r["expr"].as_str().unwrap()))
        .collect();
    for name in &names {
        let data = prometheus.query(&format!("count({{__name__=\"{name}\", job=\"{JOB}\"}})"));
        assert!(
            has_finite_sample(&data),
            "the rules read {name}, which the proxy does not export"
        );
    }
    prometheus.wait_for("every rule evaluated", || {
        let groups = prometheus.api("/api/v1/rules")["data"]["groups"].clone();
        let evaluated: Vec<&Value> = groups
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        evaluated.len() == rule_list.len()
            && evaluated.iter().all(|r| {
                assert_ne!(r["health"], "err", "rule failed: {r}");
                r["health"] == "ok"
            })
    });
    let active = |prometheus: &Prometheus| -> Vec<(String, String)> {
        prometheus.api("/api/v1/alerts")["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let name = a["labels"]["alertname"].as_str().unwrap().to_owned();
                (name, a["state"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    let expected = [
        ("ChEdgeProxyReloadFailing", "firing"),
        ("ChEdgeProxyConfigStale", "pending"),
        ("ChEdgeProxyUpstreamUnavailable", "pending"),
        ("ChEdgeProxyUpstreamsEjected", "pending"),
        ("ChEdgeProxyClientOverLimit", "pending"),
        ("ChEdgeProxyProxyHeaderFromUntrustedPeer", "pending"),
    ];
    let mut now = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while !expected
        .iter()
        .all(|(n, s)| now.contains(&(n.to_string(), s.to_string())))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "alerts active: {now:?}; expected among them: {expected:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
        now = active(&prometheus);
    }
    for quiet in [
        "ChEdgeProxyDown",
        "ChEdgeProxyAbsent",
        "ChEdgeProxyNotReady",
        "ChEdgeProxyDiscoveryNotSynced",
        "ChEdgeProxyLogLinesDropped",
        "ChEdgeProxyCertificateExpiringSoon",
    ] {
        assert!(
            !now.iter().any(|(n, _)| n == quiet),
            "{quiet} active: {now:?}"
        );
    }
    drop(held);
}

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(&promtool).args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool {args:?}:\n{text}");
        text
    };
    let rules = rules_file();
    let tests = chart().join("tests/prometheus-rules.test.yaml");
    let checked = run(&["check".as_ref(), "rules".as_ref(), rules.as_os_str()]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run(&["test".as_ref(), "rules".as_ref(), tests.as_os_str()]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Each alert has a case where it fires and one where it does not.
    let alerts: BTreeSet<String> = yaml(&rules)["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in yaml(&tests)["tests"].as_array().unwrap() {
        for case in test["alert_rule_test"].as_array().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_owned();
            let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected > 0 { &mut fires } else { &mut quiet }.insert(name);
        }
    }
    assert_eq!(fires, alerts, "alerts without a firing case");
    assert_eq!(quiet, alerts, "alerts without a case where they stay quiet");
}

#[test]
fn dashboard_is_well_formed() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "ch-edge-proxy");
    let mut ids = BTreeSet::new();
    for p in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate id {}",
            p["id"]
        );
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            let g = &p["gridPos"];
            assert!(
                g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
                "{}",
                p["title"]
            );
        }
    }
    // Every query filters on the variables, so one dashboard serves several releases.
    for (title, expr) in panel_queries(&dashboard) {
        for name in metric_names(&expr) {
            let after = &expr[expr.find(&name).unwrap() + name.len()..];
            assert!(
                after.starts_with(
                    "{job=~\"$job\", namespace=~\"$namespace\", instance=~\"$instance\""
                ),
                "{title}: {name} is not filtered by the dashboard's variables: {expr}"
            );
        }
    }
}
