use std::fs;
use std::path::Path;
use std::sync::Arc;

use ch_edge_wire::proxy_in::ProxyInMode;
use ch_edge_wire::proxy_out::ProxyVersion;
use ipnet::IpNet;

use super::raw::Keyword;
use super::*;
use crate::model::route::{Balance, RouteSpec, UpstreamAddr};

const LISTENER: &str = "listeners:\n  - name: native\n    address: \"127.0.0.1:9440\"\n";

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    from_str(yaml, Path::new("cfg.yaml"))
}

/// The error text for `yaml`, which must fail.
fn error(yaml: &str) -> String {
    match parse(yaml) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => format!("{e:#}"),
    }
}

/// `LISTENER` plus `rest`.
fn with_listener(rest: &str) -> String {
    format!("{LISTENER}{rest}")
}

fn assert_contains(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "{p:?} not in:\n{text}");
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(LISTENER).unwrap();
    assert_eq!(c.path, Path::new("cfg.yaml"));
    assert_eq!(c.listeners.len(), 1);
    let l = &c.listeners[0];
    assert_eq!(
        (
            l.name.as_str(),
            l.address.to_string().as_str(),
            l.upstream_port
        ),
        ("native", "127.0.0.1:9440", 9440)
    );
    assert_eq!(
        l.proxy_protocol,
        Policy {
            mode: ProxyInMode::Off,
            trusted: vec![]
        }
    );
    assert!(c.admin.is_none());
    assert_eq!(c.timeouts, Timeouts::default());
    assert_eq!(c.timeouts.idle, Duration::from_secs(3600));
    assert_eq!(c.limits.max_connections, 100_000);
    assert_eq!(c.defaults.allow, vec![net("0.0.0.0/0"), net("::/0")]);
    assert_eq!(c.defaults.proxy_protocol, ProxyVersion::Off);
    assert!(c.routes.is_empty() && c.includes.is_empty());
    assert_eq!(c.discovery, Discovery::default());
}

#[test]
fn design_example_loads() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("routes.d")).unwrap();
    let yaml = r#"
listeners:
  - name: native
    address: "0.0.0.0:9440"
    upstream_port: 9440
    proxy_protocol:
      mode: optional
      trusted: ["10.0.0.0/8"]
  - name: https
    address: "0.0.0.0:8443"
admin:
  address: "127.0.0.1:9090"
timeouts:
  client_hello: 5s
  connect: 3s
  idle: 1h
  drain: 30s
limits:
  max_connections: 100000
defaults:
  allow: ["0.0.0.0/0", "::/0"]
  proxy_protocol: off
routes:
  - name: demo
    sni: demo.ch.example.com
    upstream: clickhouse-demo.ns.svc.cluster.local
    allow: ["203.0.113.0/24"]
    proxy_protocol: v1
include:
  - routes.d
discovery:
  kubernetes:
    enabled: false
    domain: ch.example.com
    namespaces: []
    label_selector: ""
"#;
    let path = dir.path().join("c.yaml");
    fs::write(&path, yaml).unwrap();
    let c = load(&path).unwrap();
    assert_eq!(c.listeners[0].proxy_protocol.mode, ProxyInMode::Optional);
    assert_eq!(
        c.listeners[0].proxy_protocol.trusted,
        vec![net("10.0.0.0/8")]
    );
    assert_eq!(c.listeners[1].upstream_port, 8443);
    assert_eq!(
        c.admin.unwrap().listeners,
        vec![AdminListener {
            address: "127.0.0.1:9090".parse().unwrap(),
            serve: AdminEndpoint::ALL.to_vec(),
        }]
    );
    assert_eq!(
        c.routes,
        vec![RouteSpec {
            name: "demo".into(),
            sni: Arc::from([Arc::from("demo.ch.example.com")]),
            upstreams: Arc::from([UpstreamAddr::new(
                "clickhouse-demo.ns.svc.cluster.local",
                None
            )]),
            allow: Some(Arc::from([net("203.0.113.0/24")])),
            proxy_protocol: Some(ProxyVersion::V1),
            balance: None,
            sticky: None,
            tls: None,
            postgres: None,
            source: path.display().to_string().into(),
        }]
    );
    assert_eq!(c.includes, vec![dir.path().join("routes.d")]);
    assert_eq!(c.discovery.kubernetes.domain, "ch.example.com");
}

#[test]
fn unknown_keys_are_refused_with_file_and_line() {
    let cases = [
        ("bogus: 1\n", 4),
        ("timeouts:\n  conect: 3s\n", 5),
        (
            "routes:\n  - sni: a.example.com\n    upstream: x\n    alow: []\n",
            7,
        ),
        ("discovery:\n  kubernetes:\n    enable: true\n", 6),
        ("admin:\n  address: \"127.0.0.1:9090\"\n  port: 1\n", 6),
    ];
    for (rest, line) in cases {
        let e = error(&with_listener(rest));
        let key = rest
            .lines()
            .nth(line - 4)
            .unwrap()
            .trim()
            .trim_start_matches("- ")
            .split(':')
            .next()
            .unwrap();
        assert_contains(
            &e,
            &[
                &format!("cfg.yaml:{line}: "),
                &format!("{key}: unknown key (expected one of "),
            ],
        );
    }
    let e = error("listeners:\n  - name: a\n    address: \"127.0.0.1:1\"\n    proxy_protocol: {mode: off, trust: []}\n");
    assert_contains(
        &e,
        &[
            "cfg.yaml:4: ",
            "trust: unknown key",
            "did you mean \"trusted\"?",
        ],
    );
}

#[test]
fn route_errors_name_file_line_route_and_field() {
    let e = error(&with_listener(
        "routes:\n  - sni: ok.example.com\n    upstream: x\n  - name: demo\n    sni: demo.example.com\n    upstream: x\n    allow: [\"10.0.0.0/33\"]\n",
    ));
    assert_eq!(
        e,
        "cfg.yaml:10: route \"demo\" (#2): allow: invalid CIDR \"10.0.0.0/33\""
    );
}

#[test]
fn bad_cidrs_everywhere() {
    let e = error(&with_listener(
        "defaults:\n  allow: [\"10.0.0.0/8\", \"banana\"]\n",
    ));
    assert_eq!(e, "cfg.yaml:5: defaults.allow: invalid CIDR \"banana\"");
    let e = error("listeners:\n  - name: n\n    address: \"127.0.0.1:1\"\n    proxy_protocol:\n      mode: required\n      trusted: [\"300.0.0.0/8\"]\n");
    assert_eq!(
        e,
        "cfg.yaml:6: listener \"n\" (#1): proxy_protocol.trusted: invalid CIDR \"300.0.0.0/8\""
    );
    // A bare address is that one host.
    let c = parse(&with_listener(
        "defaults:\n  allow: [\"192.0.2.7\", \"2001:db8::1\"]\n",
    ))
    .unwrap();
    assert_eq!(
        c.defaults.allow,
        vec![net("192.0.2.7/32"), net("2001:db8::1/128")]
    );
    // An empty list is allowed: routes without their own `allow` deny everyone.
    let c = parse(&with_listener("defaults:\n  allow: []\n")).unwrap();
    assert!(c.defaults.allow.is_empty());
}

#[test]
fn proxy_in_modes_need_trusted_peers() {
    for mode in ["optional", "required"] {
        for trusted in ["", "      trusted: []\n"] {
            let e = error(&format!(
                "listeners:\n  - name: nlb\n    address: \"0.0.0.0:9440\"\n    proxy_protocol:\n      mode: {mode}\n{trusted}"
            ));
            assert_contains(
                &e,
                &[
                    "cfg.yaml:5: listener \"nlb\" (#1): proxy_protocol: ",
                    &format!("mode {mode} needs `trusted`"),
                ],
            );
        }
    }
    let c = parse("listeners:\n  - name: nlb\n    address: \"0.0.0.0:9440\"\n    proxy_protocol: {mode: required, trusted: [10.0.0.0/8]}\n").unwrap();
    assert_eq!(c.listeners[0].proxy_protocol.mode, ProxyInMode::Required);
}

#[test]
fn yaml_off_is_a_keyword_not_a_boolean() {
    let yaml = "listeners:\n  - name: a\n    address: \"127.0.0.1:1\"\n    proxy_protocol:\n      mode: off\n  - name: b\n    address: \"127.0.0.1:2\"\n    proxy_protocol: {mode: OFF}\ndefaults:\n  proxy_protocol: off\nroutes:\n  - sni: a.b\n    upstream: x\n    proxy_protocol: off\n  - sni: c.d\n    upstream: x\n    proxy_protocol: \"Off\"\n  - sni: e.f\n    upstream: x\n    proxy_protocol: V2\n";
    let c = parse(yaml).unwrap();
    assert!(c
        .listeners
        .iter()
        .all(|l| l.proxy_protocol.mode == ProxyInMode::Off));
    assert_eq!(c.defaults.proxy_protocol, ProxyVersion::Off);
    let pp: Vec<_> = c.routes.iter().map(|r| r.proxy_protocol).collect();
    assert_eq!(
        pp,
        [
            Some(ProxyVersion::Off),
            Some(ProxyVersion::Off),
            Some(ProxyVersion::V2)
        ]
    );
    // A deserializer that already turned `off` into a boolean still works.
    let v: Keyword<ProxyVersion> =
        serde::Deserialize::deserialize(serde::de::value::BoolDeserializer::<
            serde::de::value::Error,
        >::new(false))
        .unwrap();
    assert_eq!(v.known(), Some(ProxyVersion::Off));
    let e = error(&with_listener("defaults:\n  proxy_protocol: v3\n"));
    assert_contains(&e, &["cfg.yaml:5: ", "v3", "one of off, v1, v2"]);
}

#[test]
fn durations() {
    let c = parse(&with_listener(
        "timeouts:\n  client_hello: 1500ms\n  idle: 2h 30m\n",
    ))
    .unwrap();
    assert_eq!(c.timeouts.client_hello, Duration::from_millis(1500));
    assert_eq!(c.timeouts.idle, Duration::from_secs(9000));
    assert_eq!(
        c.timeouts.connect,
        Duration::from_secs(3),
        "unset keys keep their default"
    );
    let e = error(&with_listener("timeouts:\n  connect: 5 parsecs\n"));
    assert_contains(
        &e,
        &[
            "cfg.yaml:5: timeouts.connect: invalid duration \"5 parsecs\"",
            "parsecs",
        ],
    );
    let e = error(&with_listener("timeouts:\n  idle: 0s\n"));
    assert_eq!(
        e,
        "cfg.yaml:5: timeouts.idle: \"0s\": must be greater than zero"
    );
    let e = error(&with_listener("timeouts:\n  drain: 5\n"));
    assert_contains(&e, &["timeouts.drain: invalid duration \"5\""]);
    let e = error(&with_listener("timeouts:\n  drain: 1000y\n"));
    assert_contains(&e, &["timeouts.drain: \"1000y\": at most 365d"]);
}

#[test]
fn listener_errors() {
    let e = error("listeners:\n  - name: a\n    address: \"localhost:9440\"\n");
    assert_contains(
        &e,
        &["cfg.yaml:3: listener \"a\" (#1): address: invalid address \"localhost:9440\""],
    );
    let e = error("listeners:\n  - name: a\n    address: \"1.2.3.4\"\n");
    assert_contains(&e, &["invalid address \"1.2.3.4\" (expected ip:port"]);
    let e = error("listeners:\n  - address: \"1.2.3.4:1\"\n");
    assert_contains(&e, &["cfg.yaml:2: listener #1: name: missing or empty"]);
    let e = error("listeners:\n  - name: a\n");
    assert_contains(&e, &["listener \"a\" (#1): address: missing"]);
    let e = error("listeners:\n  - name: a\n    address: \"127.0.0.1:1\"\n  - name: a\n    address: \"127.0.0.1:2\"\n");
    assert_eq!(e, "cfg.yaml: listeners: two listeners are named \"a\"");
    let e = error("listeners:\n  - name: a\n    address: \"127.0.0.1:1\"\n  - name: b\n    address: \"127.0.0.1:1\"\n");
    assert_contains(
        &e,
        &["listeners \"a\" (127.0.0.1:1) and \"b\" (127.0.0.1:1) bind the same address"],
    );
    let e = error("listeners:\n  - name: a\n    address: \"0.0.0.0:1\"\n  - name: b\n    address: \"10.1.1.1:1\"\n");
    assert_contains(&e, &["bind the same address"]);
    // Different families, or different ports, do not clash.
    parse("listeners:\n  - name: a\n    address: \"0.0.0.0:1\"\n  - name: b\n    address: \"[::]:1\"\n  - name: c\n    address: \"0.0.0.0:2\"\n").unwrap();
    let e = error("listeners:\n  - name: a\n    address: \"127.0.0.1:1\"\n    upstream_port: 0\n");
    assert_contains(
        &e,
        &["cfg.yaml:4: listener \"a\" (#1): upstream_port: must be 1-65535"],
    );
    let e = error("listeners:\n  - name: a\n    address: \"127.0.0.1:0\"\n");
    assert_contains(&e, &["upstream_port: required when the address has port 0"]);
    let c = parse("listeners:\n  - name: a\n    address: \"[::1]:0\"\n    upstream_port: 9000\n")
        .unwrap();
    assert_eq!(c.listeners[0].upstream_port, 9000);
}

#[test]
fn no_listeners() {
    for yaml in ["", "listeners: []\n", "routes: []\n"] {
        assert_eq!(
            error(yaml),
            "cfg.yaml: listeners: at least one listener is required"
        );
    }
}

#[test]
fn route_shape_errors() {
    let e = error(&with_listener("routes:\n  - sni: a.example.com\n"));
    assert_eq!(
        e,
        "cfg.yaml:5: route \"a.example.com\" (#1): upstream: missing or empty"
    );
    let e = error(&with_listener(
        "routes:\n  - sni: a.example.com\n    upstream: []\n",
    ));
    assert_eq!(
        e,
        "cfg.yaml:5: route \"a.example.com\" (#1): upstream: missing or empty"
    );
    let e = error(&with_listener("routes:\n  - name: x\n    upstream: h\n"));
    assert_eq!(e, "cfg.yaml:5: route \"x\" (#1): sni: missing or empty");
    let e = error(&with_listener("routes:\n  - sni: []\n    upstream: h\n"));
    assert_eq!(e, "cfg.yaml:5: route #1: sni: missing or empty");
    let e = error(&with_listener("routes:\n  - sni: \"\"\n    upstream: h\n"));
    assert_eq!(
        e,
        "cfg.yaml:5: route \"\" (#1): sni: invalid pattern \"\": empty"
    );
    let e = error(&with_listener(
        "routes:\n  - sni: a\n    upstream: h\n    name: \"\"\n",
    ));
    assert_contains(&e, &["cfg.yaml:7: ", "name: empty"]);
}

#[test]
fn sni_patterns_are_checked_and_normalised() {
    let e = error(&with_listener(
        "routes:\n  - sni: [ok.example.com, \"a.*.b\"]\n    upstream: h\n",
    ));
    assert_contains(
        &e,
        &["cfg.yaml:5: route \"ok.example.com\" (#1): sni: invalid pattern \"a.*.b\": '*' is allowed only alone or as the whole leftmost label"],
    );
    for bad in [
        "\"a..b\"",
        "\"a b\"",
        "\"*a.b\"",
        "\"d\u{e9}mo.example.com\"",
        "\"a/b\"",
    ] {
        let e = error(&with_listener(&format!(
            "routes:\n  - sni: {bad}\n    upstream: h\n"
        )));
        assert_contains(&e, &["sni: invalid pattern"]);
    }
    // An unquoted `*` is YAML alias syntax: the error says to quote it.
    let e = error(&with_listener(
        "routes:\n  - sni: *.example.com\n    upstream: h\n",
    ));
    assert_contains(
        &e,
        &["cfg.yaml:5:", "hint: quote values that start with '*'"],
    );
    let c = parse(&with_listener(
        "routes:\n  - sni: [Demo.CH.example.com., \"*.Pods.example.com\", \"*\"]\n    upstream: h\n",
    ))
    .unwrap();
    assert_eq!(
        *c.routes[0].sni,
        ["demo.ch.example.com", "*.pods.example.com", "*"].map(Arc::from)
    );
    assert_eq!(
        &*c.routes[0].name, "demo.ch.example.com",
        "name defaults to the first sni"
    );
    assert_eq!(&*c.routes[0].source, "cfg.yaml");
}

#[test]
fn upstream_syntax() {
    let ok = [
        ("host", "host", None),
        (
            "host.ns.svc.cluster.local:9440",
            "host.ns.svc.cluster.local",
            Some(9440),
        ),
        ("Host-1_x.example.com.", "Host-1_x.example.com.", None),
        ("1.2.3.4:9440", "1.2.3.4", Some(9440)),
        ("1.2.3.4", "1.2.3.4", None),
        ("[::1]:9440", "::1", Some(9440)),
        ("[2001:db8::5]", "2001:db8::5", None),
        ("::1", "::1", None),
        ("2001:db8::5", "2001:db8::5", None),
    ];
    for (text, host, port) in ok {
        assert_eq!(
            text.parse::<UpstreamAddr>(),
            Ok(UpstreamAddr::new(host, port)),
            "{text}"
        );
    }
    let bad = [
        ("", "empty"),
        ("host:", "invalid port \"\""),
        ("host:0", "invalid port \"0\""),
        ("host:65536", "invalid port"),
        ("host:http", "invalid port"),
        ("::1:9440:x", "[addr]:port"),
        ("[::1", "missing ']'"),
        ("[::1]9440", "expected ':port'"),
        ("[nope]:1", "not an IPv6 address"),
        ("a b", "invalid character ' '"),
        ("a..b", "empty label"),
        ("1.2.3.999", "not a valid IPv4 address"),
        (
            "https://host",
            "an upstream is host[:port], not a URL: drop `https://`",
        ),
    ];
    for (text, why) in bad {
        let e = text.parse::<UpstreamAddr>().unwrap_err().to_string();
        assert!(e.contains(why), "{text}: {e}");
    }
    let e = error(&with_listener(
        "routes:\n  - sni: a\n    upstream: [ok, \"h:99999\"]\n",
    ));
    assert_eq!(e, "cfg.yaml:6: route \"a\" (#1): upstream: invalid upstream \"h:99999\": invalid port \"99999\" (1-65535)");
}

#[test]
fn upstream_weights_are_read_with_file_and_line() {
    let cfg = parse(&with_listener(
        "routes:\n  - sni: a\n    upstream: [\"x:9440 weight=3\", y, \"z weight=0\"]\n",
    ))
    .unwrap();
    let weights: Vec<u32> = cfg.routes[0].upstreams.iter().map(|u| u.weight).collect();
    assert_eq!(weights, [3, 1, 0]);
    let e = error(&with_listener(
        "routes:\n  - sni: a\n    upstream:\n      - ok\n      - \"h weight=x\"\n",
    ));
    assert_eq!(
        e,
        "cfg.yaml:8: route \"a\" (#1): upstream: invalid upstream \"h weight=x\": invalid weight \"x\" \
         (an integer 0-1000000, after one space: `host:port weight=3`)"
    );
    // Every upstream at 0 is a route that keeps its names and refuses every connection (as a
    // TLSRoute whose backendRefs all weigh 0), not an error.
    let cfg = parse(&with_listener(
        "routes:\n  - sni: a\n    upstream: [\"h weight=0\", \"i:1 weight=0\"]\n",
    ))
    .unwrap();
    assert!(cfg.routes[0].upstreams.iter().all(|u| u.weight == 0));
}

#[test]
fn limits_and_discovery() {
    let e = error(&with_listener("limits:\n  max_connections: 0\n"));
    assert_eq!(e, "cfg.yaml:5: limits.max_connections: must be at least 1");
    let e = error(&with_listener("limits:\n  max_connections: -1\n"));
    assert_contains(&e, &["cfg.yaml:5"]);
    let e = error(&with_listener(
        "discovery:\n  kubernetes:\n    enabled: true\n",
    ));
    assert_eq!(
        e,
        "cfg.yaml: discovery.kubernetes: enabled needs a `domain` (routes are <name>.<domain>)"
    );
    let e = error(&with_listener(
        "discovery:\n  kubernetes:\n    enabled: true\n    domain: \"\"\n",
    ));
    assert_contains(&e, &["enabled needs a `domain`"]);
    let e = error(&with_listener(
        "discovery:\n  kubernetes:\n    domain: \"*.x\"\n",
    ));
    assert_contains(
        &e,
        &["cfg.yaml:6: discovery.kubernetes.domain: invalid domain \"*.x\""],
    );
    let enabled = with_listener(
        "discovery:\n  kubernetes:\n    enabled: true\n    domain: CH.Example.com.\n    namespaces: [a, b, a]\n    label_selector: team=x\n",
    );
    if !cfg!(feature = "k8s") {
        assert_eq!(
            error(&enabled),
            "cfg.yaml: discovery.kubernetes.enabled: this binary was built without the k8s feature (build with `--features k8s`)"
        );
        return;
    }
    let c = parse(&enabled).unwrap();
    let k = c.discovery.kubernetes;
    assert!(k.enabled);
    assert_eq!(
        (k.domain.as_str(), k.namespaces, k.label_selector.as_str()),
        (
            "ch.example.com",
            vec!["a".to_owned(), "b".to_owned()],
            "team=x"
        )
    );
    assert_eq!(k.sources, [SourceKind::Chi], "the default");
}

#[test]
fn discovery_sources() {
    let with = |sources: &str| {
        with_listener(&format!(
            "discovery:\n  kubernetes:\n    domain: ch.example.com\n    sources: {sources}\n"
        ))
    };
    let c = parse(&with("[ClickHouseCluster, chi, clickhousecluster]")).unwrap();
    assert_eq!(
        c.discovery.kubernetes.sources,
        [SourceKind::ClickHouseCluster, SourceKind::Chi]
    );
    assert_contains(
        &error(&with("[chi, gateway]")),
        &["discovery.kubernetes.sources: \"gateway\": expected one of chi, clickhousecluster"],
    );
    assert_contains(&error(&with("[]")), &["needs at least one source"]);
}

#[test]
fn several_problems_are_listed_together() {
    let e = error("listeners:\n  - name: a\n    address: nope\ntimeouts:\n  idle: 0s\nlimits:\n  max_connections: 0\n");
    assert_contains(
        &e,
        &[
            "3 configuration errors:",
            "\n  cfg.yaml:3: listener \"a\" (#1): address",
            "\n  cfg.yaml:5: timeouts.idle",
            "\n  cfg.yaml:7: limits.max_connections",
        ],
    );
}

/// Writes `files` (relative path → content) under a new temp dir.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    dir
}

fn route_yaml(sni: &str) -> String {
    format!("routes:\n  - sni: {sni}\n    upstream: h\n")
}

#[test]
fn include_file_and_directory() {
    let dir = tree(&[
        ("etc/c.yaml", &with_listener("routes:\n  - sni: main.example.com\n    upstream: h\ninclude: [routes.d, one.yml]\n")),
        ("etc/routes.d/b.yaml", &route_yaml("b.example.com")),
        ("etc/routes.d/a.yml", &route_yaml("a.example.com")),
        ("etc/routes.d/notes.txt", "not yaml"),
        ("etc/routes.d/.hidden.yaml", "garbage: ["),
        ("etc/routes.d/sub/c.yaml", &route_yaml("c.example.com")),
        ("etc/one.yml", &route_yaml("one.example.com")),
    ]);
    let etc = dir.path().join("etc");
    let c = load(&etc.join("c.yaml")).unwrap();
    let got: Vec<(&str, &str)> = c.routes.iter().map(|r| (&*r.name, &*r.source)).collect();
    let src = |p: &str| etc.join(p).display().to_string();
    let (main, a, b, one) = (
        src("c.yaml"),
        src("routes.d/a.yml"),
        src("routes.d/b.yaml"),
        src("one.yml"),
    );
    assert_eq!(
        got,
        [
            ("main.example.com", main.as_str()),
            ("a.example.com", a.as_str()),
            ("b.example.com", b.as_str()),
            ("one.example.com", one.as_str()),
        ]
    );
    assert_eq!(c.includes, vec![etc.join("routes.d"), etc.join("one.yml")]);
}

#[cfg(unix)]
#[test]
fn include_kubelet_configmap_layout() {
    use std::os::unix::fs::symlink;
    let dir = tree(&[
        ("c.yaml", &with_listener("include: [routes.d]\n")),
        (
            "routes.d/..2026_01_01_00_00_00.123/routes.yaml",
            &route_yaml("demo.example.com"),
        ),
        (
            "routes.d/..2026_01_01_00_00_00.123/more.yaml",
            &route_yaml("more.example.com"),
        ),
    ]);
    let d = dir.path().join("routes.d");
    symlink("..2026_01_01_00_00_00.123", d.join("..data")).unwrap();
    symlink("..data/routes.yaml", d.join("routes.yaml")).unwrap();
    symlink("..data/more.yaml", d.join("more.yaml")).unwrap();
    let c = load(&dir.path().join("c.yaml")).unwrap();
    let got: Vec<(&str, String)> = c
        .routes
        .iter()
        .map(|r| (&*r.name, r.source.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "more.example.com",
                d.join("more.yaml").display().to_string()
            ),
            (
                "demo.example.com",
                d.join("routes.yaml").display().to_string()
            ),
        ],
        "each file once, through its top-level symlink"
    );
    // A dangling symlink is an unreadable include.
    symlink("..data/gone.yaml", d.join("gone.yaml")).unwrap();
    let e = format!("{:#}", load(&dir.path().join("c.yaml")).unwrap_err());
    assert_contains(&e, &["include: cannot read ", "gone.yaml"]);
}

#[test]
fn include_errors() {
    let dir = tree(&[("c.yaml", &with_listener("include:\n  - missing.d\n"))]);
    let e = format!("{:#}", load(&dir.path().join("c.yaml")).unwrap_err());
    let missing = dir.path().join("missing.d").display().to_string();
    assert_contains(
        &e,
        &["c.yaml:5: include: cannot read ", &missing, "No such file"],
    );

    let dir = tree(&[
        ("c.yaml", &with_listener("include: [r.yaml]\n")),
        (
            "r.yaml",
            "routes:\n  - sni: a.example.com\n    upstream: [h\n",
        ),
    ]);
    let e = format!("{:#}", load(&dir.path().join("c.yaml")).unwrap_err());
    assert_contains(&e, &[&format!("{}:", dir.path().join("r.yaml").display())]);

    // An included file holds `routes` only.
    let dir = tree(&[
        ("c.yaml", &with_listener("include: [r.yaml]\n")),
        ("r.yaml", &format!("{LISTENER}routes: []\n")),
    ]);
    let e = format!("{:#}", load(&dir.path().join("c.yaml")).unwrap_err());
    assert_contains(
        &e,
        &["r.yaml:1: listeners: unknown key (expected one of routes)"],
    );

    // An empty file is refused (a half-written file must not drop its routes).
    let dir = tree(&[
        ("c.yaml", &with_listener("include: [r.yaml]\n")),
        ("r.yaml", ""),
    ]);
    let e = format!("{:#}", load(&dir.path().join("c.yaml")).unwrap_err());
    assert_contains(&e, &["r.yaml", "routes"]);

    let e = format!(
        "{:#}",
        load(Path::new("/nonexistent/ch-edge-proxy.yaml")).unwrap_err()
    );
    assert_contains(
        &e,
        &["/nonexistent/ch-edge-proxy.yaml: cannot read: No such file"],
    );
}

#[test]
fn route_errors_in_included_files_name_the_file() {
    let dir = tree(&[
        ("c.yaml", &with_listener("include: [routes.d]\n")),
        (
            "routes.d/a.yaml",
            "routes:\n  - sni: x.example.com\n    upstream: h\n  - name: demo\n    sni: demo.example.com\n    upstream: h\n    allow: [\"10.0.0.0/33\"]\n",
        ),
    ]);
    let e = format!("{:#}", load(&dir.path().join("c.yaml")).unwrap_err());
    let a = dir.path().join("routes.d/a.yaml").display().to_string();
    assert_eq!(
        e,
        format!("{a}:7: route \"demo\" (#2): allow: invalid CIDR \"10.0.0.0/33\"")
    );
}

#[test]
fn duplicate_claims_across_files() {
    let dir = tree(&[
        ("c.yaml", &with_listener("routes:\n  - name: main\n    sni: Demo.Example.com.\n    upstream: h\ninclude: [r.yaml]\n")),
        ("r.yaml", "routes:\n  - sni: other.example.com\n    upstream: h\n  - name: dup\n    sni: [x.example.com, demo.example.com]\n    upstream: h\n"),
    ]);
    let e = format!("{:#}", load(&dir.path().join("c.yaml")).unwrap_err());
    let (c, r) = (
        dir.path().join("c.yaml").display().to_string(),
        dir.path().join("r.yaml").display().to_string(),
    );
    // At the second claim's line, naming the first's.
    assert_eq!(
        e,
        format!("{r}:5: route \"dup\" (#2): sni: \"demo.example.com\" is already claimed by route \"main\" (#1) at {c}:6")
    );
    let e = error(&with_listener(
        "routes:\n  - sni: \"*.a\"\n    upstream: h\n  - sni: \"*.A.\"\n    upstream: h\n",
    ));
    assert_contains(
        &e,
        &["cfg.yaml:7: route \"*.a\" (#2): sni: \"*.a\" is already claimed by route \"*.a\" (#1) at cfg.yaml:5"],
    );
}

#[test]
fn parse_routes_file_checks_like_an_include() {
    let routes = parse_routes_file(&route_yaml("a.example.com"), "gen.yaml", Format::Yaml).unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(&*routes[0].source, "gen.yaml");
    let e = format!(
        "{:#}",
        parse_routes_file(
            "routes:\n  - sni: a\n    upstream: h\n  - sni: A\n    upstream: h\n",
            "gen.yaml",
            Format::Yaml
        )
        .unwrap_err()
    );
    assert_contains(
        &e,
        &["gen.yaml:4: route \"a\" (#2): sni: \"a\" is already claimed by route \"a\" (#1) at gen.yaml:2"],
    );
    let e = format!(
        "{:#}",
        parse_routes_file("routes: []\nextra: 1\n", "gen.yaml", Format::Yaml).unwrap_err()
    );
    assert_contains(
        &e,
        &["gen.yaml:2: extra: unknown key (expected one of routes)"],
    );
}

#[test]
fn summary_describes_the_config() {
    let dir = tree(&[
        (
            "c.yaml",
            "listeners:\n  - name: native\n    address: \"0.0.0.0:9440\"\n    proxy_protocol: {mode: required, trusted: [10.0.0.0/8]}\n  - name: https\n    address: \"0.0.0.0:8443\"\n    upstream_port: 8444\nadmin: {address: \"127.0.0.1:9090\"}\ntimeouts: {idle: 90m}\nroutes:\n  - sni: [a.example.com, \"*.b.example.com\"]\n    upstream: h\ninclude: [r.yaml]\n",
        ),
        ("r.yaml", "routes:\n  - sni: \"*\"\n    upstream: h\n  - sni: c.example.com\n    upstream: h\n"),
    ]);
    let c = load(&dir.path().join("c.yaml")).unwrap();
    let s = summary(&c);
    let r = dir.path().join("r.yaml").display().to_string();
    assert_contains(
        &s,
        &[
            "listeners (2):",
            "native  0.0.0.0:9440  upstream port 9440 (plain 9000)  PROXY in: required from 10.0.0.0/8",
            "https   0.0.0.0:8443  upstream port 8444 (plain 8444)  PROXY in: off",
            "admin: 127.0.0.1:9090 (probes, metrics, routes)",
            "timeouts: client_hello 5s, connect 3s, idle 1h 30m, drain 30s",
            "limits: max_connections 100000",
            "defaults: allow 0.0.0.0/0, ::/0; proxy_protocol to upstreams off; balance least_conn; sticky on",
            "health: eject_after 1, eject_for 5s (doubling per repeat, at most 5m)",
            "routes: 3 (2 exact names, 1 wildcard, catch-all: yes; 0 TLS here)",
            &format!("       2  {r}"),
            "includes:\n  ",
            "discovery: kubernetes off",
        ],
    );
}

#[test]
fn large_files_fit_the_parser_budget() {
    // serde-saphyr's default budget stops at 250k nodes (~50k routes in one
    // file); ours must take more. A flat list keeps this fast in debug builds.
    let n = 255_000;
    let yaml = format!("[{}0]", "0,".repeat(n - 1));
    let v: Vec<u8> = raw::parse(Format::Yaml, &yaml, "big.yaml").unwrap();
    assert_eq!(v.len(), n);
}

#[test]
fn empty_sections_mean_defaults() {
    // Every route commented out leaves `routes:` empty: that is no routes, not an error.
    let c = parse(&with_listener(
        "routes:\n#  - sni: a\ninclude:\ntimeouts:\ndefaults:\ndiscovery:\n  kubernetes:\n",
    ))
    .unwrap();
    assert!(c.routes.is_empty() && c.includes.is_empty());
    assert_eq!(c.timeouts, Timeouts::default());
    assert_eq!(c.defaults, Defaults::default());
    assert_eq!(
        parse_routes_file("routes:\n", "r.yaml", Format::Yaml).unwrap(),
        vec![]
    );
    let e = error("listeners:\n");
    assert_eq!(e, "cfg.yaml: listeners: at least one listener is required");
}

#[test]
fn log_section() {
    let c = parse(LISTENER).unwrap();
    assert_eq!(c.log, LogConfig::default());
    let c = parse(&with_listener(
        "log:\n  access: text\n  sample: 0.25\n  level: \"warn,access=info\"\n",
    ))
    .unwrap();
    assert_eq!(c.log.access, AccessLogFormat::Text);
    assert_eq!(c.log.sample, 0.25);
    assert_eq!(c.log.level, "warn,access=info");
    // A plain `off` is YAML 1.1's false: still the keyword.
    let c = parse(&with_listener("log:\n  access: off\n")).unwrap();
    assert_eq!(c.log.access, AccessLogFormat::Off);
    assert_contains(
        &error(&with_listener("log:\n  sample: 1.5\n")),
        &["cfg.yaml:5:", "log.sample", "1.5"],
    );
    assert_contains(
        &error(&with_listener("log:\n  level: \"info,=[\"\n")),
        &["cfg.yaml:5:", "log.level"],
    );
    assert_contains(
        &error(&with_listener("log:\n  access: xml\n")),
        &["json, text, off"],
    );
    assert_contains(
        &error(&with_listener("log:\n  format: logfmt\n")),
        &["logfmt", "json, text"],
    );
    assert!(summary(&parse(LISTENER).unwrap()).contains("log: format json, access json, sample 1"));
}

#[test]
fn access_log_follows_log_format_unless_set() {
    let c = parse(LISTENER).unwrap();
    assert_eq!(
        (c.log.format, c.log.access),
        (LogFormat::Json, AccessLogFormat::Json)
    );
    let c = parse(&with_listener("log:\n  format: text\n")).unwrap();
    assert_eq!(
        (c.log.format, c.log.access),
        (LogFormat::Text, AccessLogFormat::Text)
    );
    let c = parse(&with_listener("log:\n  format: text\n  access: json\n")).unwrap();
    assert_eq!(
        (c.log.format, c.log.access),
        (LogFormat::Text, AccessLogFormat::Json)
    );
    let c = parse(&with_listener("log:\n  format: json\n  access: text\n")).unwrap();
    assert_eq!(
        (c.log.format, c.log.access),
        (LogFormat::Json, AccessLogFormat::Text)
    );
    let c = parse(&with_listener("log:\n  format: text\n  access: off\n")).unwrap();
    assert_eq!(c.log.access, AccessLogFormat::Off);
    assert!(summary(&c).contains("log: format text, access off"));
}

#[test]
fn content_hash_follows_every_file_and_fingerprint_matches_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("routes.d")).unwrap();
    fs::write(
        d.join("routes.d/a.yaml"),
        "routes:\n  - sni: a.test\n    upstream: up\n",
    )
    .unwrap();
    let main = d.join("config.yaml");
    fs::write(&main, with_listener("include: [routes.d]\n")).unwrap();
    let first = load(&main).unwrap();
    assert_eq!(
        fingerprint(&main, &first.includes, &[]),
        Ok(first.content_hash)
    );
    // A new file in an included directory changes the hash.
    fs::write(
        d.join("routes.d/b.yaml"),
        "routes:\n  - sni: b.test\n    upstream: up\n",
    )
    .unwrap();
    let second = load(&main).unwrap();
    assert_ne!(second.content_hash, first.content_hash);
    assert_eq!(
        fingerprint(&main, &second.includes, &[]),
        Ok(second.content_hash)
    );
    // An edit to one included file too.
    fs::write(
        d.join("routes.d/b.yaml"),
        "routes:\n  - sni: c.test\n    upstream: up\n",
    )
    .unwrap();
    assert_ne!(
        fingerprint(&main, &second.includes, &[]),
        Ok(second.content_hash)
    );
}

#[test]
fn a_big_route_file_reports_every_problem_with_line_and_number() {
    let n = 8_000;
    let mut text = "routes:\n".to_owned();
    for k in 0..n {
        let sni = match k {
            9 => "bad..name".to_owned(),
            7_000 => "also bad!".to_owned(),
            _ => format!("r{k}.ch.test"),
        };
        text.push_str(&format!(
            "  - sni: {sni:?}\n    upstream: \"10.0.{}.{}:9440\"\n",
            k / 256,
            k % 256
        ));
    }
    let e = parse_routes_file(&text, "big.yaml", Format::Yaml)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "2 configuration errors:\n  \
         big.yaml:20: route \"bad..name\" (#10): sni: invalid pattern \"bad..name\": empty label (leading dot or two dots in a row)\n  \
         big.yaml:14002: route \"also bad!\" (#7001): sni: invalid pattern \"also bad!\": invalid character ' ' (names hold letters, digits, '-', '_' and '.')"
    );
    let good = text
        .replace("bad..name", "r9.ch.test")
        .replace("also bad!", "r7000.ch.test");
    let routes = parse_routes_file(&good, "big.yaml", Format::Yaml).unwrap();
    assert_eq!(routes.len(), n);
    assert_eq!(
        *routes[n - 1].sni,
        [Arc::from(format!("r{}.ch.test", n - 1))]
    );
}

#[test]
fn per_client_limits() {
    let c = parse(LISTENER).unwrap();
    assert!(c.limits.per_client.is_off(), "off unless configured");
    let c = parse(&with_listener(
        "limits:\n  per_client:\n    max_connections: 1000\n    rate: 100\n    burst: 200\n",
    ))
    .unwrap();
    let p = &c.limits.per_client;
    assert_eq!(p.max_connections, Some(1000));
    assert_eq!(
        p.rate,
        Some(Rate {
            per_second: 100.0,
            burst: 200.0
        })
    );
    let c = parse(&with_listener("limits:\n  per_client: {rate: 0.5}\n")).unwrap();
    assert_eq!(
        c.limits.per_client.rate,
        Some(Rate {
            per_second: 0.5,
            burst: 1.0
        }),
        "the burst is the rate, and at least one"
    );
    for (rest, wanted) in [
        (
            "limits:\n  per_client: {burst: 5}\n",
            "cfg.yaml:5: limits.per_client.burst: needs `rate`",
        ),
        (
            "limits:\n  per_client: {rate: 0}\n",
            "cfg.yaml:5: limits.per_client.rate: 0 is not a number above 0",
        ),
        (
            "limits:\n  per_client: {rate: 5, burst: -1}\n",
            "limits.per_client.burst: -1 is not",
        ),
        (
            "limits:\n  per_client: {max_connections: 0}\n",
            "limits.per_client.max_connections: must be at least 1",
        ),
        (
            "limits:\n  per_client: {max: 1}\n",
            "max: unknown key (expected one of max_connections, rate, burst)",
        ),
    ] {
        let e = error(&with_listener(rest));
        assert!(e.contains(wanted), "{rest}: {e}");
    }
}

#[test]
fn admin_listeners_each_serve_their_endpoints() {
    let c = parse(&with_listener(
        "admin:\n  listeners:\n    - address: \"0.0.0.0:9090\"\n      serve: [probes, metrics, probes]\n    - {address: \"127.0.0.1:9091\", serve: [Routes]}\n",
    ))
    .unwrap();
    let admin = c.admin.unwrap();
    assert_eq!(
        admin.listeners,
        vec![
            AdminListener {
                address: "0.0.0.0:9090".parse().unwrap(),
                serve: vec![AdminEndpoint::Probes, AdminEndpoint::Metrics],
            },
            AdminListener {
                address: "127.0.0.1:9091".parse().unwrap(),
                serve: vec![AdminEndpoint::Routes],
            },
        ]
    );
    assert_eq!(
        admin.describe(),
        "0.0.0.0:9090 (probes, metrics); 127.0.0.1:9091 (routes)"
    );
    let probes_only = parse(&with_listener(
        "admin:\n  listeners: [{address: \"0.0.0.0:9090\", serve: [probes]}]\n",
    ))
    .unwrap();
    assert_eq!(
        probes_only.admin.unwrap().describe(),
        "0.0.0.0:9090 (probes); not served: metrics, routes"
    );
}

#[test]
fn admin_problems_are_refused_with_a_reason() {
    let cases = [
        ("admin: {}\n", "admin: needs `address` or `listeners`"),
        (
            "admin:\n  address: \"127.0.0.1:9090\"\n  listeners: [{address: \"127.0.0.1:9091\", serve: [routes]}]\n",
            "cfg.yaml:5: admin: give either `address`",
        ),
        (
            "admin:\n  listeners:\n    - address: \"127.0.0.1:9091\"\n",
            "admin.listeners #1: serve: list what it serves: one or more of probes, metrics, routes",
        ),
        (
            "admin:\n  listeners:\n    - {serve: [routes]}\n",
            "admin.listeners #1: address: missing",
        ),
        (
            "admin:\n  listeners:\n    - {address: \"127.0.0.1:9091\", serve: [status]}\n",
            "\"status\": expected one of probes, metrics, routes",
        ),
        (
            "admin:\n  listeners:\n    - {address: \"127.0.0.1:9091\", serve: [metrics]}\n    - {address: \"127.0.0.1:9092\", serve: [probes, metrics]}\n",
            "metrics is served by more than one listener (127.0.0.1:9091, 127.0.0.1:9092)",
        ),
        (
            "admin:\n  listeners:\n    - {address: \"0.0.0.0:9091\", serve: [metrics]}\n    - {address: \"127.0.0.1:9091\", serve: [routes]}\n",
            "0.0.0.0:9091 and 127.0.0.1:9091 bind the same address",
        ),
        (
            "admin:\n  address: \"0.0.0.0:9440\"\n",
            "admin: 0.0.0.0:9440 binds the same address as listener \"native\" (127.0.0.1:9440)",
        ),
    ];
    for (rest, want) in cases {
        assert_contains(&error(&with_listener(rest)), &[want]);
    }
}

#[test]
fn balance_sticky_and_health() {
    let c = parse(&with_listener(
        "defaults:\n  balance: round_robin\n  sticky: false\nhealth:\n  eject_after: 3\n  eject_for: 2s\nroutes:\n  - sni: a.b\n    upstream: x\n    balance: LEAST_CONN\n    sticky: true\n  - sni: c.d\n    upstream: x\n",
    ))
    .unwrap();
    assert_eq!(c.defaults.balance, Balance::RoundRobin);
    assert!(!c.defaults.sticky);
    assert_eq!(
        c.health,
        Health {
            eject_after: 3,
            eject_for: Duration::from_secs(2)
        }
    );
    assert_eq!(c.routes[0].balance, Some(Balance::LeastConn));
    assert_eq!(c.routes[0].sticky, Some(true));
    assert_eq!((c.routes[1].balance, c.routes[1].sticky), (None, None));
    // Defaults: least_conn, sticky, one failure ejects for 5s.
    let d = parse(&with_listener("")).unwrap();
    assert_eq!(
        (d.defaults.balance, d.defaults.sticky),
        (Balance::LeastConn, true)
    );
    assert_eq!(d.health, Health::default());
    assert_eq!(d.health.eject_after, 1);
    assert_eq!(d.health.eject_for, Duration::from_secs(5));
    // Doubling per repeat, at most 5 minutes.
    let h = Health::default();
    let secs: Vec<u64> = (1..=8).map(|n| h.ejection(n).as_secs()).collect();
    assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300]);
    assert_eq!(h.ejection(u32::MAX), MAX_EJECTION);

    let e = error(&with_listener(
        "routes:\n  - sni: a.b\n    upstream: x\n    balance: random\n",
    ));
    assert!(
        e.contains("cfg.yaml:7:")
            && e.contains("\"random\": expected one of least_conn, round_robin"),
        "{e}"
    );
    let e = error(&with_listener(
        "health:\n  eject_after: 0\n  eject_for: 10m\n",
    ));
    assert_contains(
        &e,
        &[
            "health.eject_after: must be at least 1",
            "health.eject_for: \"10m\": at most 5m",
        ],
    );
    let e = error(&with_listener("health:\n  eject_for: 0s\n"));
    assert!(e.contains("health.eject_for"), "{e}");
    let e = error(&with_listener("health:\n  probe: 1s\n"));
    assert!(e.contains("probe"), "{e}");
}

#[test]
fn gateway_api_settings() {
    let on = |rest: &str| {
        with_listener(&format!(
            "discovery:\n  kubernetes:\n    enabled: true\n    domain: ch.test\n    gateway_api:\n      enabled: true\n{rest}"
        ))
    };
    let c = parse(&on("")).unwrap();
    let g = &c.discovery.kubernetes.gateway_api;
    assert!(g.enabled);
    assert_eq!(g.controller_name, "ch-edge-proxy.io/gateway-controller");
    assert_eq!(g.cluster_domain, "cluster.local");
    // The translation matches Gateway listeners to these ports.
    assert_eq!(g.listener_ports, [9440]);
    let c = parse(&on(
        "      controller_name: example.com/edge\n      cluster_domain: corp.internal\n",
    ))
    .unwrap();
    let g = &c.discovery.kubernetes.gateway_api;
    assert_eq!(
        (&*g.controller_name, &*g.cluster_domain),
        ("example.com/edge", "corp.internal")
    );
    let e = error(&on("      controller_name: edge\n"));
    assert_contains(&e, &["controller_name", "domain-prefixed path"]);
    let e = error(&with_listener(
        "discovery:\n  kubernetes:\n    gateway_api:\n      enabled: true\n",
    ));
    assert_contains(&e, &["enabled needs discovery.kubernetes.enabled"]);
    let e = error(&on("      color: blue\n"));
    assert_contains(&e, &["color"]);
    // status.addresses: IPs and names, typed; anything else refused with its line.
    let c = parse(&on(
        "      addresses: [nlb.example.com., 203.0.113.7, \"2001:db8::7\"]\n",
    ))
    .unwrap();
    let a: Vec<(&str, &str)> = c
        .discovery
        .kubernetes
        .gateway_api
        .addresses
        .iter()
        .map(|a| (a.kind, &*a.value))
        .collect();
    assert_eq!(
        a,
        [
            ("Hostname", "nlb.example.com"),
            ("IPAddress", "203.0.113.7"),
            ("IPAddress", "2001:db8::7")
        ]
    );
    let e = error(&on(
        "      addresses:\n        - ok.example.com\n        - \"not a name\"\n",
    ));
    assert_eq!(
        e,
        "cfg.yaml:12: discovery.kubernetes.gateway_api.addresses: \"not a name\" is neither an IP address nor a DNS name"
    );
}

#[test]
fn gateway_api_certificate_cover() {
    let g = GatewayApi {
        certificate_names: vec!["*.example.com".into(), "tls.example.org".into()],
        ..GatewayApi::default()
    };
    for (name, covered) in [
        ("a.example.com", true),
        ("*.example.com", true),
        ("a.b.example.com", false),
        ("example.com", false),
        ("tls.example.org", true),
        ("x.example.org", false),
    ] {
        assert_eq!(g.has_certificate(name), covered, "{name}");
    }
}

#[test]
fn defer_accept_is_off_unless_a_listener_asks_for_it() {
    assert!(!parse(LISTENER).unwrap().listeners[0].defer_accept);
    let c = parse(&format!("{LISTENER}    defer_accept: true\n")).unwrap();
    assert!(c.listeners[0].defer_accept);
    let e = error(&format!("{LISTENER}    defer_accept: sometimes\n"));
    assert_contains(&e, &["cfg.yaml:4", "boolean"]);
}

#[test]
fn listener_protocol_and_its_upstream_port() {
    use ch_edge_wire::postgres::ListenerProtocol;
    // (listener lines, protocol, upstream_port, upstream_port_plain)
    let cases: &[(&str, ListenerProtocol, u16, u16)] = &[
        (
            "address: \"127.0.0.1:9440\"",
            ListenerProtocol::Tls,
            9440,
            9000,
        ),
        (
            "address: \"127.0.0.1:9440\"\n    protocol: tls",
            ListenerProtocol::Tls,
            9440,
            9000,
        ),
        // ClickHouse's PostgreSQL port, whatever port the listener takes (clients use 5432);
        // it serves SSLRequest and plaintext alike, so `terminate` uses it too.
        (
            "address: \"0.0.0.0:5432\"\n    protocol: postgres",
            ListenerProtocol::Postgres,
            9005,
            9005,
        ),
        (
            "address: \"127.0.0.1:0\"\n    protocol: postgres",
            ListenerProtocol::Postgres,
            9005,
            9005,
        ),
        (
            "address: \"0.0.0.0:5432\"\n    protocol: postgres\n    upstream_port: 5433",
            ListenerProtocol::Postgres,
            5433,
            5433,
        ),
    ];
    for (lines, protocol, port, plain) in cases {
        let c = parse(&format!("listeners:\n  - name: a\n    {lines}\n")).unwrap();
        let l = &c.listeners[0];
        assert_eq!(
            (l.protocol, l.upstream_port, l.upstream_port_plain),
            (*protocol, *port, *plain),
            "{lines}"
        );
    }
    let e = error("listeners:\n  - name: a\n    address: \"127.0.0.1:1\"\n    protocol: mysql\n");
    assert_contains(&e, &["cfg.yaml:4: listener \"a\" (#1): protocol", "mysql"]);
}

#[test]
fn route_postgres_direct_ssl() {
    let yaml =
        |extra: &str| format!("{LISTENER}routes:\n  - sni: a.example\n    upstream: h\n{extra}");
    let direct = |c: &Config| {
        c.routes
            .iter()
            .next()
            .unwrap()
            .postgres
            .map(|p| p.direct_ssl)
    };
    assert_eq!(direct(&parse(&yaml("")).unwrap()), None);
    assert_eq!(
        direct(&parse(&yaml("    postgres_direct_ssl: true\n")).unwrap()),
        Some(true)
    );
    assert_eq!(
        direct(&parse(&yaml("    postgres_direct_ssl: false\n")).unwrap()),
        Some(false)
    );
    let c = parse(&yaml(
        "    tls: passthrough\n    postgres_direct_ssl: true\n",
    ))
    .unwrap();
    assert_eq!(direct(&c), Some(true));
    let e = error(&yaml("    postgres_direct_ssl: maybe\n"));
    assert!(!e.is_empty());
    let e = error(&yaml("    postgres_direct_sll: true\n"));
    assert_contains(&e, &["did you mean \"postgres_direct_ssl\""]);
}
