//! File-based checks of the shipped example configuration.

use std::path::Path;

use ch_edge_proxy::model::config;
use ch_edge_proxy::runtime::table::RouteTable;
use ch_edge_proxy::runtime::upstream::resolve::Resolver;
use ch_edge_wire::proxy_in::ProxyInMode;
use ch_edge_wire::proxy_out::ProxyVersion;

#[test]
fn example_config_loads_and_routes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ch-edge-proxy.yaml");
    let c = config::load(&path).unwrap_or_else(|e| panic!("{e:#}"));

    let listeners: Vec<(&str, String, u16, ProxyInMode)> = c
        .listeners
        .iter()
        .map(|l| {
            (
                l.name.as_str(),
                l.address.to_string(),
                l.upstream_port,
                l.proxy_protocol.mode,
            )
        })
        .collect();
    assert_eq!(
        listeners,
        [
            (
                "native",
                "127.0.0.1:9440".to_owned(),
                9440,
                ProxyInMode::Off
            ),
            (
                "https",
                "127.0.0.1:8443".to_owned(),
                8443,
                ProxyInMode::Optional
            ),
        ]
    );
    assert!(c.listeners.iter().all(|l| l.address.ip().is_loopback()));
    assert_eq!(
        c.admin.as_ref().map(|a| a.describe()).as_deref(),
        Some("127.0.0.1:9090 (probes, metrics, routes)")
    );
    assert_eq!(c.timeouts, config::Timeouts::default());
    assert!(c.includes.is_empty());
    assert!(!c.discovery.kubernetes.enabled);

    let names: Vec<&str> = c.routes.iter().map(|r| &*r.name).collect();
    assert_eq!(
        names,
        [
            "demo",
            "chi-demo-cluster-0-0.ch.example.com",
            "ch-wildcard",
            "demo-cluster.ch.example.com"
        ]
    );
    assert_eq!(c.health, config::Health::default());
    assert_eq!(c.routes[1].proxy_protocol, Some(ProxyVersion::V1));
    assert!(c.routes[2].allow.is_some());

    // The routes compile into a table that routes the documented names.
    let table = RouteTable::build(&c.routes, &c.defaults, &Resolver::default()).unwrap();
    let route = |sni: &str| {
        table
            .lookup(Some(sni.as_bytes()))
            .map(|r| r.name.to_string())
    };
    assert_eq!(route("demo.ch.example.com").as_deref(), Ok("demo"));
    assert_eq!(
        route("CHI-DEMO-CLUSTER-0-0.ch.example.com.").as_deref(),
        Ok("chi-demo-cluster-0-0.ch.example.com")
    );
    assert_eq!(
        route("chi-demo-cluster-0-1.ch.example.com").as_deref(),
        Ok("ch-wildcard")
    );
    let wild = table.lookup(Some(b"x.ch.example.com")).unwrap();
    assert!(wild.allow.allows("127.0.0.1".parse().unwrap()));
    assert!(!wild.allow.allows("198.51.100.1".parse().unwrap()));
    let demo = table.lookup(Some(b"demo.ch.example.com")).unwrap();
    assert_eq!(demo.upstreams[0].port, Some(19440));
    assert_eq!(demo.proxy_protocol, ProxyVersion::Off);
    // The cluster route and its sticky names.
    let found = table
        .find(Some(b"etl-42.sticky.demo-cluster.ch.example.com"))
        .unwrap();
    assert_eq!(&*found.route.name, "demo-cluster.ch.example.com");
    assert_eq!(found.route.upstreams.len(), 2);
    assert_eq!(
        found.sticky.map(|t| t.as_str().to_owned()).as_deref(),
        Some("etl-42")
    );

    let summary = config::summary(&c);
    assert!(
        summary.contains("routes: 4 (3 exact names, 1 wildcard, catch-all: no; 0 TLS here)"),
        "{summary}"
    );
}

/// `check` on a configuration with several problems: every one on its own line, each file
/// named once, then the count; exit 1.
#[test]
fn check_reports_every_problem_once_per_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.yaml"),
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\ninclude: [routes.json, routes.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("routes.yaml"),
        "routes:\n  - name: web\n    sni: web.example.com\n    upstream: \"http://127.0.0.1:8123\"\n  - name: native\n    sni: native.example.com\n    upstream: 127.0.0.1:9000\n    tls: termiante\n  - name: spread\n    sni: spread.example.com\n    upstream: 127.0.0.1:9000\n    balance: leastconn\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("routes.json"),
        "{\"routes\": [\n  {\"sni\": \"a.example.com\", \"upstream\": \"h:1\",\n   \"sni\": \"b.example.com\"}\n]}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"))
        .args(["check", "--config", "main.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "error: routes.json:3: route \"a.example.com\" (#1): sni: written twice in this route: keep one",
            "error: routes.yaml:4: route \"web\" (#1): upstream: invalid upstream \"http://127.0.0.1:8123\": an upstream is host[:port], not a URL: drop `http://`",
            "error: routes.yaml:8: route \"native\" (#2): tls: invalid value \"termiante\": expected one of passthrough, terminate, reencrypt (did you mean \"terminate\"?)",
            "error: routes.yaml:12: route \"spread\" (#3): balance: invalid value \"leastconn\": expected one of least_conn, round_robin (did you mean \"least_conn\"?)",
            "4 configuration errors",
        ],
        "{stderr}"
    );

    // One problem in the main file: its name once.
    std::fs::write(
        dir.path().join("main.yaml"),
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    name: again\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"))
        .args(["check", "--config", "main.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: main.yaml:4: name: written twice in this section: keep one\n"
    );
}
