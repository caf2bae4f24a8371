use serde_json::{json, Value};

use super::catalog::{Change, ChiKey, Tracker};
use super::merge::merge;
use super::*;
use crate::model::route::{RouteSpec, UpstreamAddr};

fn chi(ns: &str, name: &str, created: &str, clusters: &[&str]) -> Value {
    let clusters: Vec<Value> = clusters.iter().map(|c| json!({"name": c})).collect();
    json!({
        "apiVersion": "clickhouse.altinity.com/v1",
        "kind": "ClickHouseInstallation",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
        "spec": {"configuration": {"clusters": clusters}},
    })
}

fn file_route(name: &str, sni: &str) -> RouteSpec {
    RouteSpec {
        name: name.into(),
        sni: Arc::from([Arc::from(sni)]),
        upstreams: Arc::from([UpstreamAddr::new("file.upstream", None)]),
        allow: None,
        proxy_protocol: None,
        balance: None,
        sticky: None,
        tls: None,
        postgres: None,
        source: "routes.yaml".into(),
    }
}

fn snis(specs: &[RouteSpec]) -> Vec<&str> {
    specs
        .iter()
        .flat_map(|s| s.sni.iter().map(|p| &**p))
        .collect()
}

fn listed(t: &mut Tracker, scope: usize, objs: &[Value]) -> bool {
    assert!(!t.apply(scope, Change::Restart));
    for o in objs {
        assert!(!t.apply(scope, Change::Listed(o.clone())));
    }
    t.apply(scope, Change::ListDone)
}

#[test]
fn nothing_is_published_before_every_watch_listed() {
    let mut t = Tracker::new("ch.test", vec![Some("a".into()), Some("b".into())]);
    assert!(!listed(
        &mut t,
        0,
        &[chi("a", "x", "2024-01-01T00:00:00Z", &[])]
    ));
    assert!(!t.apply(
        0,
        Change::Applied(chi("a", "y", "2024-01-02T00:00:00Z", &[]))
    ));
    // The first complete list is published even when empty.
    assert!(listed(&mut t, 1, &[]));
    assert_eq!(t.catalog().chis.len(), 2);
    // An unknown scope is ignored.
    assert!(!t.apply(7, Change::Applied(chi("a", "z", "", &[]))));
}

#[test]
fn apply_and_delete_change_one_entry_and_no_op_updates_are_quiet() {
    let mut t = Tracker::new("ch.test", vec![None]);
    assert!(listed(&mut t, 0, &[]));
    let demo = chi("ns", "demo", "2024-01-01T00:00:00Z", &["c1"]);
    assert!(t.apply(0, Change::Applied(demo.clone())));
    // A status-only update derives the same routes: no rebuild.
    let mut status = demo.clone();
    status["status"] = json!({"state": "Completed"});
    assert!(!t.apply(0, Change::Applied(status)));
    let entry = &t.catalog().chis[&ChiKey::chi("ns", "demo")];
    let routes = entry.routes.as_ref().unwrap();
    assert_eq!(
        snis(routes),
        ["demo.ch.test", "demo-c1.ch.test", "chi-demo-c1-0-0.ch.test"]
    );
    assert!(routes.iter().all(|r| *r.source == *"kubernetes:ns/demo"));
    assert!(t.apply(
        0,
        Change::Applied(chi("ns", "demo", "2024-01-01T00:00:00Z", &["c2"]))
    ));
    assert!(t.apply(0, Change::Deleted(demo.clone())));
    assert!(t.catalog().chis.is_empty());
    assert!(!t.apply(0, Change::Deleted(demo)), "already gone");
}

#[test]
fn a_relist_drops_what_was_deleted_meanwhile_in_its_own_scope_only() {
    let mut t = Tracker::new("ch.test", vec![Some("a".into()), Some("b".into())]);
    assert!(!listed(
        &mut t,
        0,
        &[chi("a", "gone", "", &[]), chi("a", "kept", "", &[])]
    ));
    assert!(listed(&mut t, 1, &[chi("b", "other", "", &[])]));
    assert!(listed(&mut t, 0, &[chi("a", "kept", "", &[])]));
    let names: Vec<String> = t.catalog().chis.keys().map(ToString::to_string).collect();
    assert_eq!(names, ["a/kept", "b/other"]);
    // The same list again changes nothing.
    assert!(!listed(&mut t, 0, &[chi("a", "kept", "", &[])]));
}

#[test]
fn an_invalid_chi_is_skipped_and_reported() {
    let mut t = Tracker::new("ch.test", vec![None]);
    let mut bad = chi("ns", "bad", "", &[]);
    bad["metadata"]["annotations"] = json!({"ch-edge-proxy/allow": "10.0.0.0/33"});
    assert!(listed(&mut t, 0, &[bad, chi("ns", "good", "", &[])]));
    // Without a name there is nothing to key it by.
    assert!(!t.apply(0, Change::Applied(json!({"metadata": {}}))));
    let (specs, merged) = merge(&[], t.catalog());
    assert_eq!(merged.chis, 2);
    assert_eq!(merged.invalid.len(), 1);
    assert_eq!(merged.invalid[0].0, "ns/bad");
    assert!(merged.invalid[0].1.contains("10.0.0.0/33"), "{merged:?}");
    assert_eq!(snis(&specs)[0], "good.ch.test");
}

#[test]
fn file_routes_win_and_the_older_chi_keeps_its_names() {
    let mut t = Tracker::new("ch.test", vec![None]);
    // "demo" in two namespaces: the same CHI name yields the same SNIs.
    let older = chi("b", "demo", "2024-01-01T00:00:00Z", &["c1"]);
    let newer = chi("a", "demo", "2024-06-01T00:00:00Z", &["c1"]);
    assert!(listed(&mut t, 0, &[newer, older]));
    let file = [file_route("mine", "chi-demo-c1-0-0.ch.test")];
    let (specs, merged) = merge(&file, t.catalog());
    assert_eq!(specs[0], file[0]);
    let sources: Vec<(&str, &str)> = specs.iter().map(|s| (&*s.name, &*s.source)).collect();
    assert_eq!(
        sources,
        [
            ("mine", "routes.yaml"),
            ("b/demo", "kubernetes:b/demo"),
            ("b/demo/c1", "kubernetes:b/demo"),
        ]
    );
    assert_eq!(merged.routes, 2);
    let refused: Vec<(&str, &str, RefusalReason)> = merged
        .refused
        .iter()
        .map(|r| (r.chi.as_str(), r.route.as_str(), r.reason))
        .collect();
    assert_eq!(
        refused,
        [
            ("b/demo", "b/demo/c1/0-0", RefusalReason::SniClaimed),
            ("a/demo", "a/demo", RefusalReason::SniClaimed),
            ("a/demo", "a/demo/c1", RefusalReason::SniClaimed),
            ("a/demo", "a/demo/c1/0-0", RefusalReason::SniClaimed),
        ]
    );
    assert!(
        merged.refused[0]
            .detail
            .contains("already claimed by route \"mine\" from routes.yaml"),
        "{merged:?}"
    );
    // The merged list builds: no clash is left for the table to find.
    crate::model::route::check_claims(&specs).unwrap();
}

#[test]
fn a_route_name_taken_by_a_file_route_is_refused() {
    let mut t = Tracker::new("ch.test", vec![None]);
    assert!(listed(&mut t, 0, &[chi("ns", "x", "", &[])]));
    let (specs, merged) = merge(&[file_route("ns/x", "other.test")], t.catalog());
    assert_eq!(merged.refused.len(), 1);
    assert_eq!(merged.refused[0].reason, RefusalReason::NameClaimed);
    assert_eq!(merged.refused[0].reason.keyword(), "name_claimed");
    assert!(!snis(&specs).contains(&"x.ch.test"));
    assert!(snis(&specs).contains(&"x-cluster.ch.test"));
}

#[test]
fn claim_order_is_age_then_namespace_and_name() {
    let mut t = Tracker::new("ch.test", vec![None]);
    assert!(listed(
        &mut t,
        0,
        &[
            chi("z", "undated", "", &[]),
            chi("b", "young", "2025-01-01T00:00:00Z", &[]),
            chi("a", "old", "2020-01-01T00:00:00Z", &[]),
            chi("a", "young", "2025-01-01T00:00:00Z", &[]),
        ]
    ));
    let mut no_ts = chi("a", "none", "", &[]);
    no_ts["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("creationTimestamp");
    assert!(t.apply(0, Change::Applied(no_ts)));
    let order: Vec<String> = t
        .catalog()
        .in_claim_order()
        .iter()
        .map(|(k, _)| k.to_string())
        .collect();
    // Without a timestamp (empty or missing): last.
    assert_eq!(
        order,
        ["a/old", "a/young", "b/young", "a/none", "z/undated"]
    );
}

#[test]
fn report_tracks_first_sync_and_refusals() {
    let settings = crate::model::config::KubernetesDiscovery {
        enabled: true,
        domain: "ch.test".into(),
        ..Default::default()
    };
    let start = Report::startup(&settings);
    assert!(start.awaiting_first_sync);
    let still = start.next(&settings, None);
    assert!(still.awaiting_first_sync, "a file reload before the list");
    let synced = still.next(&settings, Some(Merged::default()));
    assert!(!synced.awaiting_first_sync);
    // With the Gateway API on, its lists count too.
    let gateway = crate::model::config::KubernetesDiscovery {
        gateway_api: crate::model::config::GatewayApi {
            enabled: true,
            ..Default::default()
        },
        ..settings.clone()
    };
    let chis_only = start.next(&gateway, Some(Merged::default()));
    assert!(chis_only.awaiting_first_sync, "the CHI list alone");
    let listed = Merged {
        tls_routes_listed: true,
        ..Merged::default()
    };
    assert!(!chis_only.next(&gateway, Some(listed)).awaiting_first_sync);
    assert_eq!(synced.to_json()["synced"], true);
    let off = synced.next(&crate::model::config::KubernetesDiscovery::default(), None);
    assert!(!off.enabled && off.merged.is_none());
    assert_eq!(off.to_json()["chis"], 0);
}

/// Certificates for `names`, as `tls.certificates` holds them.
fn certificates_for(names: &[&str]) -> crate::model::tls::CertStore {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    let (cert, key) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    let path = std::path::Path::new("c.pem");
    let pair = crate::model::tls::load_pair(path, &cert, path, &key).unwrap();
    crate::model::tls::CertStore::new(vec![pair])
}

#[test]
fn a_terminating_chi_without_a_certificate_for_its_names_is_refused() {
    use crate::model::config::uncovered;
    use crate::model::route::Defaults;

    let mut x = chi("ns", "x", "2024-01-01T00:00:00Z", &[]);
    x["metadata"]["annotations"] = json!({"ch-edge-proxy/tls": "terminate"});
    let y = chi("ns", "y", "2024-01-02T00:00:00Z", &[]);
    let mut t = Tracker::new("ch.test", vec![None]);
    assert!(listed(&mut t, 0, &[x, y]));
    let defaults = Defaults::default();
    // A wildcard covers every derived name (one label under the domain).
    let wide = certificates_for(&["*.ch.test"]);
    let (accepted, merged) =
        merge::discovered(&[], 0, t.catalog(), |r| uncovered(r, &defaults, &wide));
    assert_eq!(accepted.len(), 6, "{merged:?}");
    assert!(merged.refused.is_empty(), "{merged:?}");
    // A certificate for x's CHI name only: x's other routes are refused, y (passthrough) stays.
    let narrow = certificates_for(&["x.ch.test"]);
    let (accepted, merged) =
        merge::discovered(&[], 0, t.catalog(), |r| uncovered(r, &defaults, &narrow));
    assert_eq!(
        snis(&accepted),
        [
            "x.ch.test",
            "y.ch.test",
            "y-cluster.ch.test",
            "chi-y-cluster-0-0.ch.test"
        ],
        "{merged:?}"
    );
    let refused: Vec<(&str, RefusalReason)> = merged
        .refused
        .iter()
        .map(|r| (r.route.as_str(), r.reason))
        .collect();
    assert_eq!(
        refused,
        [
            ("ns/x/cluster", RefusalReason::NoCertificate),
            ("ns/x/cluster/0-0", RefusalReason::NoCertificate),
        ]
    );
    assert!(
        merged.refused[0]
            .detail
            .contains("no certificate in tls.certificates covers \"x-cluster.ch.test\""),
        "{merged:?}"
    );
}

#[test]
fn a_sharded_cluster_is_discovered_with_a_route_per_shard() {
    let mut c = chi("ns", "x", "2024-01-01T00:00:00Z", &[]);
    c["spec"]["configuration"]["clusters"] =
        json!([{"name": "main", "layout": {"shardsCount": 2, "replicasCount": 2}}]);
    let mut t = Tracker::new("ch.test", vec![None]);
    assert!(listed(&mut t, 0, &[c]));
    let (accepted, merged) = merge::discovered(&[], 0, t.catalog(), |_| None);
    assert!(merged.refused.is_empty(), "{merged:?}");
    // The same derivation as `routes from-chi`: CHI, cluster, 2 shards, 4 hosts.
    assert_eq!(
        snis(&accepted),
        [
            "x.ch.test",
            "x-main.ch.test",
            "x-main-shard-0.ch.test",
            "x-main-shard-1.ch.test",
            "chi-x-main-0-0.ch.test",
            "chi-x-main-0-1.ch.test",
            "chi-x-main-1-0.ch.test",
            "chi-x-main-1-1.ch.test",
        ]
    );
    let shard = accepted
        .iter()
        .find(|r| &*r.name == "ns/x/main/shards/1")
        .unwrap();
    let hosts: Vec<&str> = shard.upstreams.iter().map(|u| &*u.host).collect();
    assert_eq!(
        hosts,
        [
            "chi-x-main-1-0.ns.svc.cluster.local",
            "chi-x-main-1-1.ns.svc.cluster.local"
        ]
    );
}

fn cluster(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "clickhouse.com/v1alpha1",
        "kind": "ClickHouseCluster",
        "metadata": {"namespace": ns, "name": name, "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": spec,
    })
}

#[test]
fn clickhouseclusters_are_tracked_beside_chis_and_refused_with_a_reason() {
    use crate::model::config::uncovered;
    use crate::model::route::Defaults;
    use crate::model::sources::SourceKind;

    let mut t = Tracker::with_sources(
        "ch.test",
        vec![
            (SourceKind::Chi, None),
            (SourceKind::ClickHouseCluster, None),
        ],
    );
    assert!(!listed(
        &mut t,
        0,
        &[chi("ns", "demo", "2024-01-01T00:00:00Z", &[])]
    ));
    let tls = json!({"replicas": 1, "settings": {"tls": {"enabled": true}}});
    // Same name as the CHI, another kind: two objects.
    assert!(listed(
        &mut t,
        1,
        &[
            cluster("ns", "demo", tls),
            cluster("ns", "plain", json!({"replicas": 1}))
        ]
    ));
    let keys: Vec<String> = t.catalog().chis.keys().map(|k| k.to_string()).collect();
    assert_eq!(
        keys,
        [
            "ns/demo",
            "ClickHouseCluster ns/demo",
            "ClickHouseCluster ns/plain"
        ]
    );
    let defaults = Defaults::default();
    let none = crate::model::tls::CertStore::new(vec![]);
    let (accepted, merged) =
        merge::discovered(&[], 0, t.catalog(), |r| uncovered(r, &defaults, &none));
    assert_eq!((merged.chis, merged.clusters), (1, 2));
    // The CHI is older by name order and keeps demo.ch.test; the cluster's own names stay.
    assert!(
        snis(&accepted).contains(&"demo-clickhouse-0-0.ch.test"),
        "{merged:?}"
    );
    let refused: Vec<(&str, SourceKind, RefusalReason)> = merged
        .refused
        .iter()
        .map(|r| (r.route.as_str(), r.kind, r.reason))
        .collect();
    assert_eq!(
        refused,
        [
            (
                "ns/demo",
                SourceKind::ClickHouseCluster,
                RefusalReason::SniClaimed
            ),
            (
                "ns/plain",
                SourceKind::ClickHouseCluster,
                RefusalReason::NoCertificate
            ),
            (
                "ns/plain/shard-0",
                SourceKind::ClickHouseCluster,
                RefusalReason::NoCertificate
            ),
            (
                "ns/plain/0-0",
                SourceKind::ClickHouseCluster,
                RefusalReason::NoCertificate
            ),
        ],
        "{merged:?}"
    );
    assert!(
        merged.refused[1].detail.contains("has no TLS"),
        "{merged:?}"
    );
    let json = Report::default().next(
        &crate::model::config::KubernetesDiscovery {
            enabled: true,
            ..Default::default()
        },
        Some(merged),
    );
    assert_eq!(json.to_json()["refused"][1]["kind"], "clickhousecluster");
    assert_eq!(
        json.to_json()["refused"][1]["chi"],
        "ClickHouseCluster ns/plain"
    );
    // A wildcard certificate serves the plaintext cluster's names.
    let wide = certificates_for(&["*.ch.test"]);
    let (_, merged) = merge::discovered(&[], 0, t.catalog(), |r| uncovered(r, &defaults, &wide));
    assert_eq!(merged.refused.len(), 1, "{merged:?}");
}

fn pod(name: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": "ns", "name": name},
        "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
    })
}

#[test]
fn a_clickhouseclusters_unready_pods_leave_its_balanced_routes() {
    use super::catalog::Feed;
    use crate::model::sources::SourceKind;

    let mut t = Tracker::with_feeds(
        "ch.test",
        vec![
            (Feed::Objects(SourceKind::ClickHouseCluster), None),
            (Feed::Pods, None),
        ],
    );
    let c = cluster(
        "ns",
        "c",
        json!({"replicas": 2, "settings": {"tls": {"enabled": true}}}),
    );
    assert!(!listed(&mut t, 0, &[c]), "the pods have not listed yet");
    assert!(listed(
        &mut t,
        1,
        &[
            pod("c-clickhouse-0-0-0", true),
            pod("c-clickhouse-0-1-0", false)
        ]
    ));
    let upstreams = |t: &Tracker, route: &str| -> Vec<String> {
        let (_, entry) = t.catalog().in_claim_order()[0];
        let routes = entry.routes.as_ref().unwrap();
        let r = routes.iter().find(|r| &*r.name == route).unwrap();
        r.upstreams
            .iter()
            .map(|u| u.host.split('.').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(upstreams(&t, "ns/c"), ["c-clickhouse-0-0-0"]);
    assert_eq!(upstreams(&t, "ns/c/shard-0"), ["c-clickhouse-0-0-0"]);
    assert_eq!(
        upstreams(&t, "ns/c/0-1"),
        ["c-clickhouse-0-1-0"],
        "its own route stays"
    );
    // Ready now: back in the balanced routes; a repeat changes nothing.
    assert!(t.apply(1, Change::Applied(pod("c-clickhouse-0-1-0", true))));
    assert!(!t.apply(1, Change::Applied(pod("c-clickhouse-0-1-0", true))));
    assert_eq!(
        upstreams(&t, "ns/c"),
        ["c-clickhouse-0-0-0", "c-clickhouse-0-1-0"]
    );
    // The first pod goes away.
    assert!(t.apply(1, Change::Deleted(pod("c-clickhouse-0-0-0", true))));
    assert_eq!(upstreams(&t, "ns/c"), ["c-clickhouse-0-1-0"]);
}

/// The Gateway API watcher's part of the catalog: routes per TLSRoute, merged after the file
/// routes and in claim order with the CHIs (the older claimant keeps a name).
#[test]
fn tls_routes_merge_with_file_and_chi_routes_in_claim_order() {
    let mut t = Tracker::new("ch.test", vec![None]);
    assert!(listed(
        &mut t,
        0,
        &[chi("ns", "demo", "2024-01-02T00:00:00Z", &[])]
    ));
    let mut catalog = t.catalog().clone();
    let mut route = |name: &str, sni: &str, created: &str| {
        let mut r = file_route(&format!("tlsroute/ns/{name}"), sni);
        r.source = format!("tlsroute:ns/{name}").into();
        catalog.tls_routes.insert(
            ChiKey {
                namespace: "ns".into(),
                name: name.to_owned(),
                kind: crate::model::sources::SourceKind::TlsRoute,
            },
            Arc::new(catalog::ChiEntry::published(Some(created.into()), vec![r])),
        );
    };
    // Older than the CHI: keeps demo.ch.test; newer one loses to the file route.
    route("old", "demo.ch.test", "2024-01-01T00:00:00Z");
    route("new", "file.example.com", "2024-01-03T00:00:00Z");
    route("own", "own.example.com", "2024-01-03T00:00:00Z");
    let file = [file_route("file", "file.example.com")];
    let (specs, merged) = merge(&file, &catalog);
    let names: Vec<&str> = specs.iter().map(|s| &*s.name).collect();
    assert!(names.contains(&"tlsroute/ns/old"), "{names:?}");
    assert!(names.contains(&"tlsroute/ns/own"), "{names:?}");
    assert!(!names.contains(&"tlsroute/ns/new"), "{names:?}");
    let refused: Vec<(&str, &str)> = merged
        .refused
        .iter()
        .map(|r| (r.chi.as_str(), r.route.as_str()))
        .collect();
    assert!(
        refused.contains(&("TLSRoute ns/new", "tlsroute/ns/new")),
        "{refused:?}"
    );
    assert!(refused.contains(&("ns/demo", "ns/demo")), "{refused:?}");
    assert_eq!(merged.chis, 1, "TLSRoutes are not counted as CHIs");
}
