//! Shard routes (`<chi>-<cluster>-shard-<shard>.D`) and what a manifest file held.

use super::*;
use serde_json::json;

fn chi(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    })
}

/// (name, SNI, upstream hosts) of the routes whose name has `/shards/`.
fn shard_routes(routes: &[RouteSpec]) -> Vec<(String, String, Vec<String>)> {
    routes
        .iter()
        .filter(|r| r.name.contains("/shards/"))
        .map(|r| {
            (
                r.name.to_string(),
                r.sni[0].to_string(),
                r.upstreams.iter().map(|u| u.host.to_string()).collect(),
            )
        })
        .collect()
}

fn cluster(name: &str, layout: Value) -> Value {
    json!({"configuration": {"clusters": [{"name": name, "layout": layout}]}})
}

#[test]
fn a_shard_route_balances_over_the_shards_hosts() {
    let c = chi(
        "demo",
        cluster("main", json!({"shardsCount": 2, "replicasCount": 2})),
    );
    let routes = routes_for_chi(&c, "ns", "d.test").unwrap();
    let host = |h: &str| format!("chi-demo-main-{h}.ns.svc.cluster.local");
    assert_eq!(
        shard_routes(&routes),
        [
            (
                "ns/demo/main/shards/0".to_owned(),
                "demo-main-shard-0.d.test".to_owned(),
                vec![host("0-0"), host("0-1")]
            ),
            (
                "ns/demo/main/shards/1".to_owned(),
                "demo-main-shard-1.d.test".to_owned(),
                vec![host("1-0"), host("1-1")]
            ),
        ]
    );
    // After the cluster route, before the hosts'.
    let names: Vec<&str> = routes.iter().map(|r| &*r.name).collect();
    assert_eq!(
        names[1..4],
        [
            "ns/demo/main",
            "ns/demo/main/shards/0",
            "ns/demo/main/shards/1"
        ]
    );
    assert_eq!(routes.len(), 1 + 1 + 2 + 4);
    // Every name is claimed once.
    assert!(crate::model::route::duplicate_claims(&routes).is_empty());
}

#[test]
fn explicit_shard_names_name_the_route() {
    let layout = json!({"shards": [
        {"name": "east", "replicasCount": 2},
        {"name": "west", "replicas": [{"name": "w-special"}]},
    ]});
    let c = chi("demo", cluster("main", layout));
    let routes = routes_for_chi(&c, "ns", "d.test").unwrap();
    let got: Vec<(String, String, usize)> = shard_routes(&routes)
        .into_iter()
        .map(|(name, sni, up)| (name, sni, up.len()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "ns/demo/main/shards/east".to_owned(),
                "demo-main-shard-east.d.test".to_owned(),
                2
            ),
            (
                "ns/demo/main/shards/west".to_owned(),
                "demo-main-shard-west.d.test".to_owned(),
                1
            ),
        ]
    );
    let west = routes
        .iter()
        .find(|r| &*r.name == "ns/demo/main/shards/west")
        .unwrap();
    assert_eq!(
        &*west.upstreams[0].host,
        "chi-demo-main-w-special.ns.svc.cluster.local"
    );
}

#[test]
fn one_shard_has_no_shard_route() {
    // The cluster route already is that shard's route.
    let c = chi("demo", cluster("main", json!({"replicasCount": 3})));
    let routes = routes_for_chi(&c, "ns", "d.test").unwrap();
    assert!(shard_routes(&routes).is_empty());
    assert_eq!(routes.len(), 1 + 1 + 3);
}

#[test]
fn shard_names_are_cut_like_the_operators_and_left_out_past_a_label() {
    assert_eq!(
        naming::shard_label("demo", "a-very-long-cluster-name", "a-very-long-shard-name"),
        "demo-a-very-long-clu-shard-a-very-long-sha"
    );
    // 45 + 1 + 4 + 7 + 1 = 58 for the host services, 45 + 1 + 4 + 7 + 2 = 59 for a shard: fits.
    let name = "c".repeat(45);
    let c = chi(&name, cluster("main", json!({"shardsCount": 2})));
    assert_eq!(
        shard_routes(&routes_for_chi(&c, "ns", "d.test").unwrap()).len(),
        2
    );
    // Host names short enough, the shard's label too long: the CHI still yields its other routes.
    let name = "c".repeat(50);
    let layout = json!({"shards": [
        {"name": "long-shard-name", "replicas": [{"name": "h0"}]},
        {"name": "other-shard-nam", "replicas": [{"name": "h1"}]},
    ]});
    let c = chi(&name, cluster("main", layout));
    let routes = routes_for_chi(&c, "ns", "d.test").unwrap();
    assert!(shard_routes(&routes).is_empty());
    assert_eq!(routes.len(), 1 + 1 + 2);
}
