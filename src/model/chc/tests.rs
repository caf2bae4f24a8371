use super::*;
use ch_edge_wire::proxy_out::ProxyVersion;
use ipnet::IpNet;
use serde_json::json;

const D: &str = "ch.example.com";

fn chc(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    })
}

fn routes(obj: &Value) -> Vec<RouteSpec> {
    Cluster::from_object(obj, "default")
        .unwrap()
        .routes(D, &BTreeSet::new())
        .unwrap()
}

/// `(name, sni, upstreams)` of each route.
fn table(routes: &[RouteSpec]) -> Vec<(String, String, Vec<String>)> {
    routes
        .iter()
        .map(|r| {
            assert_eq!(r.sni.len(), 1);
            (
                r.name.to_string(),
                r.sni[0].to_string(),
                r.upstreams.iter().map(|u| u.host.to_string()).collect(),
            )
        })
        .collect()
}

fn pod(s: u32, r: u32) -> String {
    format!("demo-clickhouse-{s}-{r}-0.demo-clickhouse-headless.ns.svc.cluster.local")
}

fn row(name: &str, sni: &str, upstreams: &[String]) -> (String, String, Vec<String>) {
    (name.to_owned(), sni.to_owned(), upstreams.to_vec())
}

#[test]
fn name_table_of_a_two_by_two_cluster() {
    let routes = routes(&chc("demo", json!({"shards": 2, "replicas": 2})));
    assert_eq!(
        table(&routes),
        [
            row(
                "ns/demo",
                "demo.ch.example.com",
                &[pod(0, 0), pod(0, 1), pod(1, 0), pod(1, 1)]
            ),
            row(
                "ns/demo/shard-0",
                "demo-shard-0.ch.example.com",
                &[pod(0, 0), pod(0, 1)]
            ),
            row(
                "ns/demo/0-0",
                "demo-clickhouse-0-0.ch.example.com",
                &[pod(0, 0)]
            ),
            row(
                "ns/demo/0-1",
                "demo-clickhouse-0-1.ch.example.com",
                &[pod(0, 1)]
            ),
            row(
                "ns/demo/shard-1",
                "demo-shard-1.ch.example.com",
                &[pod(1, 0), pod(1, 1)]
            ),
            row(
                "ns/demo/1-0",
                "demo-clickhouse-1-0.ch.example.com",
                &[pod(1, 0)]
            ),
            row(
                "ns/demo/1-1",
                "demo-clickhouse-1-1.ch.example.com",
                &[pod(1, 1)]
            ),
        ]
    );
    for r in &routes {
        assert_eq!(&*r.source, "chc:ns/demo");
        // No port: the listener's (9440/8443 passthrough, 9000/8123 after termination).
        assert!(r.upstreams.iter().all(|u| u.port.is_none()));
        assert_eq!((r.balance, r.sticky), (None, None));
        assert_eq!((&r.allow, r.proxy_protocol), (&None, None));
    }
}

#[test]
fn defaults_are_the_operators_and_one_shard_keeps_its_shard_route() {
    // No spec at all: 1 shard x 3 replicas, cluster.local.
    let obj = json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "demo"}});
    let cluster = Cluster::from_object(&obj, "ns").unwrap();
    assert_eq!(
        (
            cluster.shards,
            cluster.replicas,
            cluster.cluster_domain.as_str()
        ),
        (1, 3, "cluster.local")
    );
    let routes = cluster.routes(D, &BTreeSet::new()).unwrap();
    let snis: Vec<String> = table(&routes).into_iter().map(|r| r.1).collect();
    assert_eq!(
        snis,
        [
            "demo.ch.example.com",
            "demo-shard-0.ch.example.com",
            "demo-clickhouse-0-0.ch.example.com",
            "demo-clickhouse-0-1.ch.example.com",
            "demo-clickhouse-0-2.ch.example.com",
        ]
    );
    assert_eq!(*routes[0].upstreams, *routes[1].upstreams);
}

#[test]
fn cluster_domain_and_dotted_names() {
    let mut obj = chc(
        "my.db",
        json!({"replicas": 1, "clusterDomain": "k8s.internal"}),
    );
    obj["metadata"]["namespace"] = json!("prod");
    let t = table(&routes(&obj));
    assert_eq!(t[0].1, "my-db.ch.example.com");
    assert_eq!(t[0].0, "prod/my.db");
    assert_eq!(
        t[2],
        row(
            "prod/my.db/0-0",
            "my-db-clickhouse-0-0.ch.example.com",
            &["my-db-clickhouse-0-0-0.my-db-clickhouse-headless.prod.svc.k8s.internal".to_owned()]
        )
    );
}

#[test]
fn tls_on_leaves_the_mode_to_annotations_and_defaults() {
    let obj = chc(
        "demo",
        json!({"replicas": 1, "settings": {"tls": {"enabled": true}}}),
    );
    assert!(routes(&obj).iter().all(|r| r.tls.is_none()));
    let cluster = Cluster::from_object(&obj, "x").unwrap();
    assert!(!cluster.plaintext_only());
    for (mode, required) in [
        (TlsMode::Passthrough, true),
        (TlsMode::Reencrypt, true),
        (TlsMode::Terminate, false),
    ] {
        let mut obj = chc(
            "demo",
            json!({"replicas": 1, "settings": {"tls": {"enabled": true, "required": required}}}),
        );
        obj["metadata"]["annotations"] = json!({ annotations::TLS: mode.keyword() });
        assert!(routes(&obj)
            .iter()
            .all(|r| r.tls.as_ref().and_then(|t| t.mode) == Some(mode)));
    }
}

#[test]
fn tls_off_terminates_and_refuses_other_modes() {
    let obj = chc(
        "demo",
        json!({"replicas": 1, "settings": {"tls": {"enabled": false}}}),
    );
    assert!(Cluster::from_object(&obj, "x").unwrap().plaintext_only());
    assert!(routes(&obj)
        .iter()
        .all(|r| r.tls.as_ref().and_then(|t| t.mode) == Some(TlsMode::Terminate)));
    for mode in [TlsMode::Passthrough, TlsMode::Reencrypt] {
        let mut obj = obj.clone();
        obj["metadata"]["annotations"] = json!({ annotations::TLS: mode.keyword() });
        let e = Cluster::from_object(&obj, "x").unwrap_err();
        assert_eq!(
            e,
            ChcError::Invalid {
                cluster: "ns/demo".to_owned(),
                problem: Problem::NoSecurePorts { mode }
            }
        );
        assert!(e.to_string().contains("spec.settings.tls.enabled"), "{e}");
    }
    // TLS required: no plaintext port to terminate to.
    let mut obj = chc(
        "demo",
        json!({"settings": {"tls": {"enabled": true, "required": true}}}),
    );
    obj["metadata"]["annotations"] = json!({ annotations::TLS: "terminate" });
    let e = Cluster::from_object(&obj, "x").unwrap_err();
    assert!(matches!(
        e,
        ChcError::Invalid {
            problem: Problem::NoPlaintextPorts,
            ..
        }
    ));
}

#[test]
fn annotations_apply_to_every_route() {
    let mut obj = chc("demo", json!({"shards": 2, "replicas": 1}));
    obj["metadata"]["annotations"] = json!({
        annotations::ALLOW: "10.0.0.0/8, 192.0.2.7",
        annotations::PROXY_PROTOCOL: "v1",
    });
    let want: Vec<IpNet> = vec![
        "10.0.0.0/8".parse().unwrap(),
        "192.0.2.7/32".parse().unwrap(),
    ];
    let routes = routes(&obj);
    assert_eq!(routes.len(), 5);
    for r in &routes {
        assert_eq!(r.allow.as_deref(), Some(&*want));
        assert_eq!(r.proxy_protocol, Some(ProxyVersion::V1));
    }
    obj["metadata"]["annotations"] = json!({ annotations::PROXY_PROTOCOL: "v3" });
    let e = Cluster::from_object(&obj, "x").unwrap_err().to_string();
    assert!(
        e.starts_with("ClickHouseCluster ns/demo: annotation ch-edge-proxy/proxy-protocol"),
        "{e}"
    );
}

#[test]
fn not_ready_replicas_leave_the_balanced_routes_only() {
    let obj = chc("demo", json!({"shards": 2, "replicas": 2}));
    let cluster = Cluster::from_object(&obj, "x").unwrap();
    let id = |shard, replica| ReplicaId { shard, replica };
    // Shard 1 has no ready replica: its shard route keeps both.
    let not_ready = BTreeSet::from([id(0, 1), id(1, 0), id(1, 1)]);
    let t = table(&cluster.routes(D, &not_ready).unwrap());
    assert_eq!(t[0].2, [pod(0, 0)]);
    assert_eq!(t[1].2, [pod(0, 0)]);
    assert_eq!(t[3].2, [pod(0, 1)], "a replica's own route stays");
    assert_eq!(t[4].2, [pod(1, 0), pod(1, 1)]);
    // Nothing ready at all: every group keeps every replica.
    let none: BTreeSet<ReplicaId> = cluster.replica_ids().collect();
    let t = table(&cluster.routes(D, &none).unwrap());
    assert_eq!(t[0].2.len(), 4);
}

#[test]
fn zero_replicas_or_shards_make_no_routes() {
    assert!(routes(&chc("demo", json!({"replicas": 0}))).is_empty());
    assert!(routes(&chc("demo", json!({"shards": 0}))).is_empty());
}

#[test]
fn lenient_reading() {
    // Unknown fields anywhere, nulls for optional sections: ignored.
    let obj = chc(
        "demo",
        json!({
            "replicas": 1,
            "futureField": {"x": 1},
            "settings": {"tls": null, "somethingNew": true},
            "clusterDomain": null,
        }),
    );
    assert_eq!(routes(&obj).len(), 3);
    assert_eq!(routes(&chc("demo", json!(null))).len(), 5);
    // Wrong types and out-of-range counts are errors that name the cluster.
    for spec in [
        json!({"replicas": "2"}),
        json!({"replicas": -1}),
        json!({"shards": 2.5}),
        json!({"settings": {"tls": {"enabled": "yes"}}}),
        json!({"shards": 1000, "replicas": 1000}),
    ] {
        let e = Cluster::from_object(&chc("demo", spec.clone()), "x").unwrap_err();
        assert!(
            e.to_string().starts_with("ClickHouseCluster ns/demo: "),
            "{spec}: {e}"
        );
    }
    let unnamed = json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": {}});
    assert_eq!(Cluster::from_object(&unnamed, "x"), Err(ChcError::NoName));
}

#[test]
fn names_longer_than_a_dns_label_are_refused_not_cut() {
    let derive = |name: &str, spec: Value| {
        Cluster::from_object(&chc(name, spec), "x")
            .unwrap()
            .routes(D, &BTreeSet::new())
    };
    // `<n>-clickhouse-headless` is 63 characters for a 43-character name: the longest that works.
    let ok = "a".repeat(43);
    let t = table(&derive(&ok, json!({"replicas": 1})).unwrap());
    assert_eq!(t[2].2[0].split('.').nth(1).unwrap().len(), 63);
    let e = derive(&"a".repeat(44), json!({"replicas": 1})).unwrap_err();
    assert!(
        matches!(
            &e,
            ChcError::Invalid {
                problem: Problem::NameTooLong {
                    object: "Service",
                    len: 64,
                    ..
                },
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("shorten"), "{e}");
    // The pods' names (`<n>-clickhouse-<s>-<r>-0`) then fit too, up to MAX_REPLICAS.
    let t = table(&derive(&ok, json!({"shards": 10_000, "replicas": 1})).unwrap());
    let last = &t.last().unwrap().2[0];
    assert_eq!(last.split('.').next().unwrap().len(), 63, "{last}");
    // A domain that makes an SNI invalid.
    let e = Cluster::from_object(&chc("demo", json!({})), "x")
        .unwrap()
        .routes("bad domain", &BTreeSet::new())
        .unwrap_err();
    assert!(
        matches!(
            &e,
            ChcError::Invalid {
                problem: Problem::Name { .. },
                ..
            }
        ),
        "{e}"
    );
}

/// The operator's own samples, as published (tests/fixtures/chc/README.md).
#[test]
fn the_operators_samples() {
    let fixture = |name: &str| {
        let path = format!("{}/tests/fixtures/chc/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).unwrap()
    };
    // config/samples: 1 shard (default) x 2 replicas, no TLS.
    let r = routes_from_manifests(&fixture("v1alpha1_clickhouse.yaml"), "default", D).unwrap();
    let t = table(&r);
    assert_eq!(t.len(), 4);
    assert_eq!(
        t[0],
        row(
            "default/sample",
            "sample.ch.example.com",
            &[
                "sample-clickhouse-0-0-0.sample-clickhouse-headless.default.svc.cluster.local"
                    .into(),
                "sample-clickhouse-0-1-0.sample-clickhouse-headless.default.svc.cluster.local"
                    .into(),
            ]
        )
    );
    assert!(r
        .iter()
        .all(|r| r.tls.as_ref().and_then(|t| t.mode) == Some(TlsMode::Terminate)));
    // The KeeperCluster of the same file is not a ClickHouseCluster.
    let minimal = routes_from_manifests(&fixture("minimal.yaml"), "default", D).unwrap();
    assert_eq!(minimal, r);
    assert_eq!(
        routes_from_manifests(&fixture("custom_configuration.yaml"), "default", D)
            .unwrap()
            .len(),
        4
    );
    // TLS enabled and required: 3 replicas, passthrough (the defaults), among cert-manager objects.
    let ssl = routes_from_manifests(&fixture("cluster_with_ssl.yaml"), "default", D).unwrap();
    assert_eq!(ssl.len(), 5);
    assert!(ssl.iter().all(|r| r.tls.is_none()));
    for (file, replicas) in [("gcp_gke_ssd.yaml", 2), ("aws_eks_gp3.yaml", 3)] {
        let r = routes_from_manifests(&fixture(file), "default", D).unwrap();
        assert_eq!(r.len(), 2 + replicas, "{file}");
        assert!(r.iter().all(|r| r.tls.is_none()), "{file}");
    }
}

#[test]
fn the_postgres_port_comes_from_additional_ports() {
    // (additionalPorts, annotation, the routes' postgres_port, postgres_direct_ssl)
    let cases = [
        (json!(null), None, None, false),
        (json!([{"name": "mysql", "port": 9004}]), None, None, false),
        (
            json!([{"name": "mysql", "port": 9004}, {"name": "postgres", "port": 9005}]),
            None,
            Some(9005),
            false,
        ),
        (
            json!([{"name": "PostgreSQL", "port": 15432}]),
            None,
            Some(15432),
            false,
        ),
        (json!([{"name": "postgres"}]), None, None, false),
        (
            json!([{"name": "postgres", "port": 9005}]),
            Some("true"),
            Some(9005),
            true,
        ),
        (json!(null), Some("true"), None, true),
    ];
    for (ports, direct, port, want_direct) in cases {
        let mut obj = chc(
            "demo",
            json!({"replicas": 1, "settings": {"tls": {"enabled": true}}, "additionalPorts": ports}),
        );
        if let Some(v) = direct {
            obj["metadata"]["annotations"] = json!({ annotations::POSTGRES_DIRECT_SSL: v });
        }
        for r in routes(&obj) {
            let tls = r.tls.as_deref();
            assert_eq!(r.postgres.and_then(|p| p.port), port, "{ports}");
            assert_eq!(
                r.postgres.is_some_and(|p| p.direct_ssl),
                want_direct,
                "{ports}"
            );
            assert_eq!(
                tls.and_then(|t| t.mode),
                None,
                "TLS on: the mode is the defaults'"
            );
        }
    }
    // TLS off: terminate, and the port with it.
    let obj = chc(
        "demo",
        json!({"replicas": 1, "additionalPorts": [{"name": "postgres", "port": 9005}]}),
    );
    for r in routes(&obj) {
        let tls = r.tls.as_deref().unwrap();
        assert_eq!(
            (tls.mode, r.postgres.and_then(|p| p.port)),
            (Some(TlsMode::Terminate), Some(9005))
        );
    }
}
