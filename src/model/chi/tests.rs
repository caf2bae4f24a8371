use super::*;
use crate::model::route::TlsMode;
use ch_edge_wire::proxy_out::ProxyVersion;
use ipnet::IpNet;
use serde_json::json;

fn chi(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": spec,
    })
}

fn snis(routes: &[RouteSpec]) -> Vec<(&str, Vec<&str>)> {
    routes
        .iter()
        .map(|r| {
            (
                r.sni[0].as_ref(),
                r.upstreams.iter().map(|u| u.host.as_ref()).collect(),
            )
        })
        .collect()
}

#[test]
fn design_table_for_a_default_chi() {
    let routes = routes_for_chi(&chi("demo", json!({})), "ns", "ch.example.com").unwrap();
    assert_eq!(
        snis(&routes),
        [
            (
                "demo.ch.example.com",
                vec!["clickhouse-demo.ns.svc.cluster.local"]
            ),
            (
                "demo-cluster.ch.example.com",
                vec!["chi-demo-cluster-0-0.ns.svc.cluster.local"]
            ),
            (
                "chi-demo-cluster-0-0.ch.example.com",
                vec!["chi-demo-cluster-0-0.ns.svc.cluster.local"]
            ),
        ]
    );
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_ref()).collect();
    assert_eq!(names, ["ns/demo", "ns/demo/cluster", "ns/demo/cluster/0-0"]);
    assert!(routes.iter().all(|r| *r.source == *"chi:ns/demo"
        && r.allow.is_none()
        && r.proxy_protocol.is_none()
        && r.upstreams.iter().all(|u| u.port.is_none())));
}

#[test]
fn metadata_namespace_wins_over_the_default() {
    let mut c = chi("demo", json!({}));
    c["metadata"]["namespace"] = json!("prod");
    let routes = routes_for_chi(&c, "other", "d.test").unwrap();
    assert_eq!(
        &*routes[0].upstreams[0].host,
        "clickhouse-demo.prod.svc.cluster.local"
    );
    assert_eq!(&*routes[0].name, "prod/demo");
}

#[test]
fn namespace_domain_pattern_changes_the_fqdn() {
    let c = chi("demo", json!({"namespaceDomainPattern": "%s.svc.my.test"}));
    let routes = routes_for_chi(&c, "ns", "d.test").unwrap();
    assert_eq!(
        &*routes[0].upstreams[0].host,
        "clickhouse-demo.ns.svc.my.test"
    );
}

#[test]
fn service_templates_list_uses_its_first_entry() {
    let c = chi(
        "demo",
        json!({
            "defaults": {"templates": {"serviceTemplates": ["b", "a"]}},
            "templates": {"serviceTemplates": [
                {"name": "a", "generateName": "a-{chi}"},
                {"name": "b", "generateName": "lb-{chi}-{namespace}"},
            ]},
        }),
    );
    let routes = routes_for_chi(&c, "ns", "d.test").unwrap();
    assert_eq!(
        &*routes[0].upstreams[0].host,
        "lb-demo-ns.ns.svc.cluster.local"
    );
    assert_eq!(*routes[0].sni, [Arc::from("demo.d.test")]);
}

#[test]
fn template_without_generate_name_keeps_the_default_name() {
    let c = chi(
        "demo",
        json!({
            "defaults": {"templates": {"serviceTemplate": "t"}},
            "templates": {"serviceTemplates": [{"name": "t", "spec": {}}]},
        }),
    );
    let routes = routes_for_chi(&c, "ns", "d.test").unwrap();
    assert_eq!(
        &*routes[0].upstreams[0].host,
        "clickhouse-demo.ns.svc.cluster.local"
    );
}

#[test]
fn annotations_apply_to_every_route() {
    let mut c = chi("demo", json!({}));
    c["metadata"]["annotations"] = json!({
        ANNOTATION_ALLOW: "10.0.0.0/8, 2001:db8::/32,192.0.2.7",
        ANNOTATION_PROXY_PROTOCOL: "v2",
    });
    let routes = routes_for_chi(&c, "ns", "d.test").unwrap();
    let want: Vec<IpNet> = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(routes.len(), 3);
    for r in &routes {
        assert_eq!(r.allow.as_deref(), Some(&*want));
        assert_eq!(r.proxy_protocol, Some(ProxyVersion::V2));
    }
    // Keywords are spelled as in a config file: case does not matter.
    for (written, version) in [("V1", ProxyVersion::V1), (" Off ", ProxyVersion::Off)] {
        c["metadata"]["annotations"] = json!({ ANNOTATION_PROXY_PROTOCOL: written });
        let routes = routes_for_chi(&c, "ns", "d.test").unwrap();
        assert!(routes.iter().all(|r| r.proxy_protocol == Some(version)));
    }
}

#[test]
fn the_tls_annotation_sets_every_route_and_is_written_back() {
    let mut c = chi("demo", json!({}));
    c["metadata"]["annotations"] = json!({ ANNOTATION_TLS: "Terminate" });
    let routes = routes_for_chi(&c, "ns", "d.test").unwrap();
    assert_eq!(routes.len(), 3);
    for r in &routes {
        let tls = r.tls.as_deref().unwrap();
        assert_eq!(tls.mode, Some(TlsMode::Terminate));
        assert_eq!((tls.upstream.as_ref(), tls.alpn.as_ref()), (None, None));
    }
    // `routes from-chi` writes it as a route file says it, and reads it back the same.
    let text = crate::model::config::render_routes_file(&routes, Default::default()).unwrap();
    assert!(text.contains("tls: terminate"), "{text}");
    let back = crate::model::config::parse_routes_file(&text, "x.yaml", Default::default());
    let back: Vec<_> = back.unwrap().into_iter().map(|r| r.tls).collect();
    assert!(back
        .iter()
        .all(|t| t.as_ref().and_then(|t| t.mode) == Some(TlsMode::Terminate)));
    c["metadata"]["annotations"] = json!({ ANNOTATION_TLS: "reencrypt" });
    let routes = routes_for_chi(&c, "ns", "d.test").unwrap();
    assert!(routes
        .iter()
        .all(|r| r.tls.as_ref().and_then(|t| t.mode) == Some(TlsMode::Reencrypt)));
}

#[test]
fn bad_annotations_name_the_chi() {
    for (key, value) in [
        (ANNOTATION_ALLOW, "10.0.0.0/33"),
        (ANNOTATION_ALLOW, " , "),
        (ANNOTATION_PROXY_PROTOCOL, "v3"),
        (ANNOTATION_TLS, "offload"),
    ] {
        let mut c = chi("demo", json!({}));
        c["metadata"]["namespace"] = json!("ns");
        c["metadata"]["annotations"] = json!({ key: value });
        let e = format!("{:#}", routes_for_chi(&c, "x", "d.test").unwrap_err());
        assert!(e.contains("ClickHouseInstallation ns/demo"), "{e}");
        assert!(e.contains(key), "{e}");
    }
    let mut c = chi("demo", json!({}));
    c["metadata"]["annotations"] = json!({ ANNOTATION_PROXY_PROTOCOL: "v3" });
    let e = format!("{:#}", routes_for_chi(&c, "x", "d.test").unwrap_err());
    assert!(e.ends_with("\"v3\": expected one of off, v1, v2"), "{e}");
}

#[test]
fn invalid_objects_are_errors() {
    let no_name = json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": {}});
    assert!(routes_for_chi(&no_name, "ns", "d.test").is_err());
    let unnamed_cluster = chi("demo", json!({"configuration": {"clusters": [{}]}}));
    let e = format!(
        "{:#}",
        routes_for_chi(&unnamed_cluster, "ns", "d.test").unwrap_err()
    );
    assert!(e.contains("cluster #1"), "{e}");
    // A name the operator would cut to a label over 63 characters cannot be an SNI.
    let long = chi(&"x".repeat(60), json!({}));
    let e = format!("{:#}", routes_for_chi(&long, "ns", "d.test").unwrap_err());
    assert!(e.contains("longer than 63"), "{e}");
    assert!(routes_for_chi(&chi("demo", json!({})), "ns", "bad domain").is_err());
}

#[test]
fn manifests_accept_lists_and_skip_other_kinds() {
    let text = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: demo}
---
apiVersion: v1
kind: List
items:
  - apiVersion: clickhouse.altinity.com/v1
    kind: ClickHouseInstallation
    metadata: {name: a}
  - apiVersion: v1
    kind: Service
    metadata: {name: b}
---
apiVersion: clickhouse.altinity.com/v1
kind: ClickHouseInstallation
metadata: {name: c, namespace: other}
";
    let routes = routes_from_manifests(text, "ns", "d.test").unwrap();
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "ns/a",
            "ns/a/cluster",
            "ns/a/cluster/0-0",
            "other/c",
            "other/c/cluster",
            "other/c/cluster/0-0"
        ]
    );
    assert!(routes_from_manifests("a: [", "ns", "d.test").is_err());
    assert!(routes_from_manifests("kind: List\nitems: 3\n", "ns", "d.test").is_err());
    assert_eq!(routes_from_manifests("", "ns", "d.test").unwrap(), vec![]);
}

#[test]
fn rendered_route_files_read_back_as_the_same_routes() {
    use crate::model::config::{parse_routes_file, render_routes_file, Format};
    let mut c = chi(
        "demo",
        json!({"configuration": {"clusters": [{"name": "c", "layout": {"shardsCount": 2}}]}}),
    );
    c["metadata"]["annotations"] =
        json!({ANNOTATION_ALLOW: "10.0.0.0/8,::1", ANNOTATION_PROXY_PROTOCOL: "off"});
    let routes = routes_for_chi(&c, "ns", "d.test").unwrap();
    for format in [Format::Yaml, Format::Json] {
        let text = render_routes_file(&routes, format).unwrap();
        let back = parse_routes_file(&text, "chi:ns/demo", format).unwrap();
        assert_eq!(back, routes, "{format}:\n{text}");
        let empty = render_routes_file(&[], format).unwrap();
        assert_eq!(
            parse_routes_file(&empty, "x", format).unwrap(),
            vec![],
            "{empty}"
        );
    }
}

#[test]
fn replica_service_templates_rename_host_services_and_snis() {
    let c = chi(
        "demo",
        json!({
            "defaults": {"templates": {"replicaServiceTemplate": "per-host"}},
            "configuration": {"clusters": [
                {"name": "a", "layout": {"shardsCount": 2}},
                {"name": "b", "templates": {"replicaServiceTemplate": "plain"}},
                {"name": "c", "layout": {"shards": [
                    {"templates": {"replicaServiceTemplate": "by-index"}}
                ]}},
            ]},
            "templates": {"serviceTemplates": [
                {"name": "per-host", "generateName": "ext-{chi}-{cluster}-{shard}-{replica}"},
                {"name": "plain", "spec": {}},
                {"name": "by-index", "generateName": "{namespace}-{clusterIndex}-{shardIndex}-{replicaIndex}"},
            ]},
        }),
    );
    let routes = routes_for_chi(&c, "ns", "d.test").unwrap();
    let hosts: Vec<(&str, &str, &str)> = routes
        .iter()
        .filter(|r| r.name.matches('/').count() == 3)
        .map(|r| {
            (
                r.name.as_ref(),
                r.sni[0].as_ref(),
                r.upstreams[0].host.as_ref(),
            )
        })
        .collect();
    assert_eq!(
        hosts,
        [
            (
                "ns/demo/a/0-0",
                "ext-demo-a-0-0.d.test",
                "ext-demo-a-0-0.ns.svc.cluster.local"
            ),
            (
                "ns/demo/a/1-0",
                "ext-demo-a-1-0.d.test",
                "ext-demo-a-1-0.ns.svc.cluster.local"
            ),
            (
                "ns/demo/b/0-0",
                "chi-demo-b-0-0.d.test",
                "chi-demo-b-0-0.ns.svc.cluster.local"
            ),
            (
                "ns/demo/c/0-0",
                "ns-2-0-0.d.test",
                "ns-2-0-0.ns.svc.cluster.local"
            ),
        ]
    );
    // The cluster route balances over the renamed host services.
    let a = routes.iter().find(|r| *r.name == *"ns/demo/a").unwrap();
    let ups: Vec<&str> = a.upstreams.iter().map(|u| u.host.as_ref()).collect();
    assert_eq!(
        ups,
        [
            "ext-demo-a-0-0.ns.svc.cluster.local",
            "ext-demo-a-1-0.ns.svc.cluster.local"
        ]
    );
}

#[test]
fn unknown_macros_in_generate_name_are_errors() {
    let c = chi(
        "demo",
        json!({
            "defaults": {"templates": {"serviceTemplate": "t"}},
            "templates": {"serviceTemplates": [{"name": "t", "generateName": "svc-{chiID}"}]},
        }),
    );
    let e = format!("{:#}", routes_for_chi(&c, "ns", "d.test").unwrap_err());
    assert!(e.contains("svc-{chiID}"), "{e}");
}

/// Derived routes balance like any other: the cluster route over its replicas' services (a
/// sticky tag keeps to one replica, by service name, so a pod that comes back with a new IP
/// gets its tags back), each pod route to its own pod.
#[test]
fn cluster_routes_balance_over_replicas_and_pod_routes_stay_on_their_pod() {
    use crate::model::route::balance::{choose, Choose, Node, Pool, Seen};
    use crate::model::route::{Defaults, Resolve, RouteTable};

    struct Names;
    impl Resolve for Names {
        type Addrs = ();
        type Meters = ();
        fn addrs(&self, _: &Arc<str>) {}
        fn refused(&self) {}
    }
    struct Hosts<'a>(&'a [crate::model::route::Upstream<()>]);
    impl Pool for Hosts<'_> {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn seen(&self, _: usize) -> Option<Seen> {
            Some(Seen::default())
        }
        fn node(&self, i: usize) -> Node<'_> {
            Node {
                host: &self.0[i].host,
                port: self.0[i].port,
                ip: None,
            }
        }
    }

    let c = chi(
        "demo",
        json!({"configuration": {"clusters": [{"name": "cluster", "layout": {"replicasCount": 3}}]}}),
    );
    let specs = routes_for_chi(&c, "ns", "ch.example.com").unwrap();
    let table = RouteTable::build(&specs, &Defaults::default(), &Names).unwrap();
    let found = table
        .find(Some(b"etl.sticky.demo-cluster.ch.example.com"))
        .unwrap();
    let cluster = found.route;
    assert_eq!(&*cluster.name, "ns/demo/cluster");
    assert_eq!(cluster.upstreams.len(), 3);
    assert_eq!(cluster.balance, crate::model::route::Balance::LeastConn);
    let tag = found.sticky.unwrap();
    let replica = choose(&Hosts(&cluster.upstreams), Choose::Sticky(&tag)).unwrap();
    // The same replica every time; other tags reach the others.
    assert_eq!(
        choose(&Hosts(&cluster.upstreams), Choose::Sticky(&tag)),
        Some(replica)
    );
    let mut replicas = std::collections::BTreeSet::new();
    for i in 0..60 {
        let t = crate::model::route::Tag::new(&format!("t{i}")).unwrap();
        replicas.insert(choose(&Hosts(&cluster.upstreams), Choose::Sticky(&t)).unwrap());
    }
    assert_eq!(replicas.len(), 3);
    // A pod route has its pod only, sticky name or not.
    for sni in [
        &b"chi-demo-cluster-0-1.ch.example.com"[..],
        b"etl.sticky.chi-demo-cluster-0-1.ch.example.com",
    ] {
        let pod = table.find(Some(sni)).unwrap().route;
        assert_eq!(&*pod.name, "ns/demo/cluster/0-1");
        let hosts: Vec<&str> = pod.upstreams.iter().map(|u| &*u.host).collect();
        assert_eq!(hosts, ["chi-demo-cluster-0-1.ns.svc.cluster.local"]);
    }
}

#[test]
fn the_postgres_port_comes_from_the_settings() {
    // (settings.postgresql_port, the routes' postgres_port; Err: the CHI is refused)
    let cases: [(Value, Result<Option<u16>, ()>); 6] = [
        (json!(null), Ok(None)),
        (json!(9005), Ok(Some(9005))),
        (json!(15432), Ok(Some(15432))),
        (json!(" 9006 "), Ok(Some(9006))),
        (json!(0), Err(())),
        (json!("pg"), Err(())),
    ];
    for (port, want) in cases {
        let obj = chi(
            "demo",
            json!({"configuration": {"settings": {"postgresql_port": port}}}),
        );
        match (routes_for_chi(&obj, "ns", "ch.example.com"), want) {
            (Ok(routes), Ok(want)) => {
                for r in routes {
                    assert_eq!(r.postgres.and_then(|p| p.port), want, "{port}");
                    assert_eq!(r.tls.as_deref().and_then(|t| t.mode), None);
                }
            }
            (Err(e), Err(())) => assert!(e.to_string().contains("postgresql_port"), "{e}"),
            (got, want) => panic!("{port}: got {got:?}, want {want:?}"),
        }
    }
    // With the annotations: the mode and direct SSL beside the port.
    let mut obj = chi(
        "demo",
        json!({"configuration": {"settings": {"postgresql_port": 9005}}}),
    );
    obj["metadata"]["annotations"] = json!({
        ANNOTATION_TLS: "reencrypt",
        crate::model::annotations::POSTGRES_DIRECT_SSL: "true",
    });
    let routes = routes_for_chi(&obj, "ns", "ch.example.com").unwrap();
    let tls = routes[0].tls.as_deref().unwrap();
    let pg = routes[0].postgres.unwrap();
    assert_eq!(
        (tls.mode, pg.port, pg.direct_ssl),
        (Some(TlsMode::Reencrypt), Some(9005), true)
    );
}
