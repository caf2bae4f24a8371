//! Kubernetes discovery through the real binary against a fake API server
//! on loopback (tests/support/fake_api.rs). Every wait is on the proxy's
//! own log lines or the fake's request log, never on time.
#![cfg(feature = "k8s")]

mod support;

use std::net::SocketAddr;

use serde_json::{json, Value};

use support::fake_api::FakeApi;
use support::*;

const NS: &str = "ch";

/// A CHI in namespace `ch` whose CHI service resolves to 127.0.0.1 (the
/// service template's name `127.0.0` + `namespaceDomainPattern` `1`), so
/// `<name>.ch.test` reaches the backend on the listener's upstream port.
/// Host services (`chi-<name>-<cluster>-0-0.1`) do not resolve.
fn chi(name: &str, created: &str, clusters: &[&str]) -> Value {
    let clusters: Vec<Value> = clusters.iter().map(|c| json!({"name": c})).collect();
    json!({
        "apiVersion": "clickhouse.altinity.com/v1",
        "kind": "ClickHouseInstallation",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": format!("uid-{name}"),
            "creationTimestamp": created,
            "labels": {"team": "ch"},
        },
        "spec": {
            "namespaceDomainPattern": "1",
            "defaults": {"templates": {"serviceTemplate": "loopback"}},
            "templates": {"serviceTemplates": [{"name": "loopback", "generateName": "127.0.0"}]},
            "configuration": {"clusters": clusters},
        },
    })
}

fn config(upstream_port: u16, file_routes: &str) -> String {
    format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: {upstream_port}\n\
         admin:\n  address: \"127.0.0.1:0\"\n\
         discovery:\n  kubernetes:\n    enabled: true\n    domain: ch.test\n    namespaces: [{NS}]\n    label_selector: team=ch\n\
         {file_routes}"
    )
}

/// Starts the proxy against `fake`; returns once its listeners are bound.
fn start(fake: &FakeApi, yaml: &str) -> (Proxy, tempfile::TempDir) {
    start_stalling_after(fake, yaml, None)
}

/// The stall timeout the watch tests set (the shortest accepted): the
/// fake's watches then end after `timeoutSeconds=1`.
const STALL: &str = "2s";
/// The stall timeout where a false stall is looked for: more headroom for a
/// loaded machine (`timeoutSeconds` stays 1).
const QUIET_STALL_SECS: u64 = 3;

/// Like [`start`], with the watch stall timeout shortened to `stall`
/// (`CH_EDGE_PROXY_WATCH_STALL_TIMEOUT`, for tests only).
fn start_stalling_after(
    fake: &FakeApi,
    yaml: &str,
    stall: Option<&str>,
) -> (Proxy, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path());
    let mut env = vec![("KUBECONFIG", kubeconfig.as_os_str())];
    if let Some(stall) = stall {
        env.push((
            "CH_EDGE_PROXY_WATCH_STALL_TIMEOUT",
            std::ffi::OsStr::new(stall),
        ));
    }
    let proxy = Proxy::start_with_env(yaml, &env);
    (proxy, dir)
}

const STALLED: &str = "kubernetes discovery: watch stalled; dropped it, watching again";

fn api_errors(proxy: &Proxy, kind: &str) -> f64 {
    let (_, m) = proxy.admin_get("/metrics");
    metric(
        &m,
        "ch_edge_proxy_discovery_api_errors_total",
        &[&format!("kind=\"{kind}\"")],
    )
}

/// The next successful discovery reload line.
fn wait_discovery(proxy: &mut Proxy) -> Value {
    proxy.wait_log(|l| l["message"] == "reload" && l["trigger"] == "discovery")
}

/// Waits for the next discovery reload; it must be `ok` with `field` = `expected`.
fn discovery_ok(proxy: &mut Proxy, field: &str, expected: Value) {
    let line = wait_discovery(proxy);
    assert_eq!(
        (&line["result"], &line[field]),
        (&json!("ok"), &expected),
        "{line}"
    );
}

fn routes_json(proxy: &Proxy) -> Value {
    let (status, body) = proxy.admin_get("/routes");
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

/// `(name, source)` of every live route.
fn live_routes(proxy: &Proxy) -> Vec<(String, String)> {
    let routes = routes_json(proxy);
    routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn has_route(proxy: &Proxy, name: &str) -> bool {
    live_routes(proxy).iter().any(|(n, _)| n == name)
}

/// A TLS round trip through the proxy with `sni` to `backend`.
async fn reaches(proxy_addr: SocketAddr, sni: &str, backend: &mut TlsBackend) {
    let mut tls = tls_connect(proxy_addr, b"", Some(sni))
        .await
        .unwrap_or_else(|e| panic!("{sni}: {e}"));
    echo(&mut tls, b"select 1").await;
    assert_eq!(backend.next().await.sni.as_deref(), Some(sni));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chi_add_modify_delete_follow_the_api() {
    let mut backend = TlsBackend::start(false).await;
    let fake = FakeApi::start().await;
    fake.apply(chi("alpha", "2024-01-01T00:00:00Z", &[]));
    // Another namespace and an unlabelled CHI: not selected.
    let mut elsewhere = chi("other", "2024-01-01T00:00:00Z", &[]);
    elsewhere["metadata"]["namespace"] = json!("elsewhere");
    fake.apply(elsewhere);
    let mut unlabelled = chi("nolabel", "2024-01-01T00:00:00Z", &[]);
    unlabelled["metadata"]["labels"] = json!({});
    fake.apply(unlabelled);

    let (mut proxy, _dir) = start(&fake, &config(backend.addr.port(), ""));
    let addr = proxy.addr("native");
    discovery_ok(&mut proxy, "generation", json!(2));
    assert_eq!(proxy.admin_get("/readyz").0, 200);
    let requests = fake.requests();
    assert!(
        requests.iter().all(|r| r.starts_with(
            "/apis/clickhouse.altinity.com/v1/namespaces/ch/clickhouseinstallations?"
        ) && r.contains("labelSelector=team%3Dch")),
        "{requests:?}"
    );
    let routes = live_routes(&proxy);
    assert_eq!(
        routes,
        [
            ("ch/alpha", "kubernetes:ch/alpha"),
            ("ch/alpha/cluster", "kubernetes:ch/alpha"),
            ("ch/alpha/cluster/0-0", "kubernetes:ch/alpha"),
        ]
        .map(|(n, s)| (n.to_owned(), s.to_owned()))
    );
    reaches(addr, "alpha.ch.test", &mut backend).await;

    fake.wait_watches_open(1).await;
    fake.apply(chi("beta", "2024-02-01T00:00:00Z", &[]));
    discovery_ok(&mut proxy, "routes", json!(6));
    reaches(addr, "beta.ch.test", &mut backend).await;

    // Modify: a second cluster appears, and the allowlist now excludes us.
    let mut alpha = chi("alpha", "2024-01-01T00:00:00Z", &["main", "extra"]);
    alpha["metadata"]["annotations"] = json!({"ch-edge-proxy/allow": "10.0.0.0/8"});
    fake.apply(alpha);
    let line = wait_discovery(&mut proxy);
    assert_eq!(line["result"], "ok", "{line}");
    assert!(has_route(&proxy, "ch/alpha/extra"));
    assert!(!has_route(&proxy, "ch/alpha/cluster"));
    let refused = tls_connect(addr, b"", Some("alpha.ch.test")).await;
    assert_eq!(alert_of(refused), rustls::AlertDescription::AccessDenied);

    fake.delete(NS, "beta");
    let line = wait_discovery(&mut proxy);
    assert_eq!(line["result"], "ok", "{line}");
    assert!(!has_route(&proxy, "ch/beta"));
    let gone = tls_connect(addr, b"", Some("beta.ch.test")).await;
    assert_eq!(alert_of(gone), rustls::AlertDescription::UnrecognisedName);

    let routes = routes_json(&proxy);
    assert_eq!(routes["discovery"]["chis"], 1, "{routes}");
    assert_eq!(routes["last_reload"]["trigger"], "discovery", "{routes}");
    let (_, m) = proxy.admin_get("/metrics");
    assert_eq!(metric(&m, "ch_edge_proxy_discovery_chis", &[]), 1.0, "{m}");
    assert_eq!(
        metric(&m, "ch_edge_proxy_discovery_routes", &[]),
        5.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "ch_edge_proxy_discovery_last_sync_timestamp_seconds",
            &[]
        ) > 1.7e9,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chi_conflicting_with_a_file_route_gets_only_its_free_routes() {
    let mut chi_backend = TlsBackend::start(false).await;
    let mut file_backend = TlsBackend::start(false).await;
    let file_routes = format!(
        "routes:\n  - name: pinned\n    sni: demo.ch.test\n    upstream: \"{}\"\n",
        file_backend.addr
    );
    let fake = FakeApi::start().await;
    fake.apply(chi("demo", "2024-01-01T00:00:00Z", &[]));
    let (mut proxy, _dir) = start(&fake, &config(chi_backend.addr.port(), &file_routes));
    let addr = proxy.addr("native");
    let refusal = proxy.wait_log(|l| l["message"] == "kubernetes discovery: route refused");
    assert_eq!(refusal["chi"], "ch/demo", "{refusal}");
    assert_eq!(refusal["route"], "ch/demo", "{refusal}");
    assert_eq!(refusal["reason"], "sni_claimed", "{refusal}");
    assert!(
        refusal["detail"]
            .as_str()
            .is_some_and(|d| d.contains("\"demo.ch.test\"") && d.contains("\"pinned\"")),
        "{refusal}"
    );
    let line = wait_discovery(&mut proxy);
    assert_eq!(line["result"], "ok", "{line}");
    // The file route keeps the name; the CHI's other routes apply.
    reaches(addr, "demo.ch.test", &mut file_backend).await;
    let names: Vec<String> = live_routes(&proxy).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["pinned", "ch/demo/cluster", "ch/demo/cluster/0-0"]);
    let routes = routes_json(&proxy);
    assert_eq!(
        routes["discovery"]["refused"][0]["reason"], "sni_claimed",
        "{routes}"
    );
    let (_, m) = proxy.admin_get("/metrics");
    let refused = |reason: &str| {
        metric(
            &m,
            "ch_edge_proxy_discovery_routes_refused",
            &[&format!("reason=\"{reason}\"")],
        )
    };
    assert_eq!(
        (refused("sni_claimed"), refused("name_claimed")),
        (1.0, 0.0),
        "{m}"
    );

    // A file reload keeps the discovered routes; dropping the file route
    // frees the name for the CHI.
    write_atomic(&proxy.config.clone(), &config(chi_backend.addr.port(), ""));
    let line = proxy.wait_reload("ok");
    assert_eq!(line["trigger"], "watch", "{line}");
    let names: Vec<String> = live_routes(&proxy).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["ch/demo", "ch/demo/cluster", "ch/demo/cluster/0-0"]);
    reaches(addr, "demo.ch.test", &mut chi_backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_errors_resync_and_api_failures_keep_the_last_table() {
    let mut backend = TlsBackend::start(false).await;
    let fake = FakeApi::start().await;
    fake.apply(chi("a", "2024-01-01T00:00:00Z", &[]));
    fake.apply(chi("b", "2024-01-02T00:00:00Z", &[]));
    fake.set_failing(true);
    let (mut proxy, _dir) = start(&fake, &config(backend.addr.port(), ""));
    let addr = proxy.addr("native");

    // The API fails: not ready, no discovered routes; kube backs off and retries.
    for _ in 0..2 {
        proxy.wait_log(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("API error"))
        });
    }
    let (status, body) = proxy.admin_get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("discovery"), "{body}");
    assert!(live_routes(&proxy).is_empty());
    fake.set_failing(false);
    discovery_ok(&mut proxy, "generation", json!(2));
    assert_eq!(proxy.admin_get("/readyz").0, 200);
    reaches(addr, "b.ch.test", &mut backend).await;

    // 410 Gone: the watcher relists; "b", deleted while no event reached
    // us, disappears; "c", added the same way, appears.
    fake.wait_watches_open(1).await;
    fake.delete_silently(NS, "b");
    fake.apply_silently(chi("c", "2024-01-03T00:00:00Z", &[]));
    fake.expire_watches();
    let error = proxy.wait_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("API error"))
    });
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("too old resource version")),
        "{error}"
    );
    discovery_ok(&mut proxy, "generation", json!(3));
    assert!(!has_route(&proxy, "ch/b") && has_route(&proxy, "ch/c"));

    // A dropped stream: the watch resumes from its resourceVersion and
    // receives what happened meanwhile.
    fake.wait_watches_open(1).await;
    let started = fake.requests().len();
    fake.drop_watches();
    fake.apply(chi("d", "2024-01-04T00:00:00Z", &[]));
    discovery_ok(&mut proxy, "generation", json!(4));
    reaches(addr, "d.ch.test", &mut backend).await;
    let relists = fake.requests()[started..]
        .iter()
        .filter(|r| !r.contains("watch=true"))
        .count();
    assert_eq!(relists, 0, "a resumed watch does not relist");

    // API outage: the watch expires and every relist fails with 500. The
    // last table stays and keeps routing.
    fake.wait_watches_open(1).await;
    fake.set_failing(true);
    fake.delete_silently(NS, "c");
    fake.expire_watches();
    // The watch error, then two failed relists.
    for _ in 0..3 {
        proxy.wait_log(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("API error"))
        });
    }
    let routes = routes_json(&proxy);
    assert_eq!(routes["generation"], 4, "{routes}");
    assert!(has_route(&proxy, "ch/c"));
    reaches(addr, "a.ch.test", &mut backend).await;
    assert_eq!(proxy.admin_get("/readyz").0, 200);
    let (_, m) = proxy.admin_get("/metrics");
    assert!(
        metric(
            &m,
            "ch_edge_proxy_discovery_api_errors_total",
            &["kind=\"list\""]
        ) >= 4.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "ch_edge_proxy_discovery_api_errors_total",
            &["kind=\"watch_event\""]
        ) >= 2.0,
        "{m}"
    );
    // Recovery resyncs: "c" goes.
    fake.set_failing(false);
    discovery_ok(&mut proxy, "generation", json!(5));
    assert!(!has_route(&proxy, "ch/c") && has_route(&proxy, "ch/a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_discovery_section_restarts_the_watch() {
    let backend = TlsBackend::start(false).await;
    let fake = FakeApi::start().await;
    fake.apply(chi("here", "2024-01-01T00:00:00Z", &[]));
    let mut there = chi("there", "2024-01-01T00:00:00Z", &[]);
    there["metadata"]["namespace"] = json!("other");
    fake.apply(there);
    let yaml = config(backend.addr.port(), "");
    let (mut proxy, _dir) = start(&fake, &yaml);
    assert_eq!(wait_discovery(&mut proxy)["result"], "ok");
    assert!(has_route(&proxy, "ch/here") && !has_route(&proxy, "other/there"));

    // Another namespace: the file reload keeps the routes discovered so far
    // (no gap), then the new watch's list replaces them.
    let path = proxy.config.clone();
    write_atomic(
        &path,
        &yaml.replace("namespaces: [ch]", "namespaces: [other]"),
    );
    let line = proxy.wait_reload("ok");
    assert_eq!(line["trigger"], "watch", "{line}");
    assert_eq!(line["routes"], 3, "ch/here's routes stay: {line}");
    let line = wait_discovery(&mut proxy);
    assert_eq!(line["result"], "ok", "{line}");
    assert!(!has_route(&proxy, "ch/here") && has_route(&proxy, "other/there"));
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.contains("/namespaces/other/clickhouseinstallations")));

    // Disabled: the discovered routes go with the same reload.
    write_atomic(&path, &yaml.replace("enabled: true", "enabled: false"));
    let line = proxy.wait_reload("ok");
    assert_eq!(line["routes"], 0, "{line}");
    let routes = routes_json(&proxy);
    assert_eq!(routes["discovery"]["enabled"], false, "{routes}");
    assert_eq!(proxy.admin_get("/readyz").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_all_namespaces_the_older_chi_keeps_a_contested_name() {
    let backend = TlsBackend::start(false).await;
    let fake = FakeApi::start().await;
    // CHI "demo" in two namespaces derives the same SNI names.
    let mut newer = chi("demo", "2024-06-01T00:00:00Z", &[]);
    newer["metadata"]["namespace"] = json!("a");
    let mut older = chi("demo", "2024-01-01T00:00:00Z", &[]);
    older["metadata"]["namespace"] = json!("b");
    fake.apply(newer);
    fake.apply(older);
    let yaml = config(backend.addr.port(), "").replace("    namespaces: [ch]\n", "");
    let (mut proxy, _dir) = start(&fake, &yaml);
    assert_eq!(wait_discovery(&mut proxy)["result"], "ok");
    assert!(fake
        .requests()
        .iter()
        .all(|r| r.starts_with("/apis/clickhouse.altinity.com/v1/clickhouseinstallations?")));
    let sources: Vec<String> = live_routes(&proxy).into_iter().map(|(_, s)| s).collect();
    assert_eq!(sources, ["kubernetes:b/demo"; 3]);
    for _ in 0..3 {
        let refusal = proxy.wait_log(|l| l["message"] == "kubernetes discovery: route refused");
        assert_eq!(refusal["chi"], "a/demo", "{refusal}");
        assert!(
            refusal["detail"]
                .as_str()
                .is_some_and(|d| d.contains("kubernetes:b/demo")),
            "{refusal}"
        );
    }

    // The older one goes: the names pass to the other.
    fake.wait_watches_open(1).await;
    fake.delete("b", "demo");
    assert_eq!(wait_discovery(&mut proxy)["result"], "ok");
    let sources: Vec<String> = live_routes(&proxy).into_iter().map(|(_, s)| s).collect();
    assert_eq!(sources, ["kubernetes:a/demo"; 3]);
    let routes = routes_json(&proxy);
    assert_eq!(routes["discovery"]["refused"], json!([]), "{routes}");
}

/// Refused files stay refused when a discovery rebuild goes live (it reuses the running file
/// routes, not the files on disk): `ChEdgeProxyConfigStale`'s gauge stays 0 until the files
/// are good again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_rebuild_does_not_make_refused_files_good() {
    let fake = FakeApi::start().await;
    fake.apply(chi("alpha", "2024-01-01T00:00:00Z", &[]));
    let yaml = config(9440, "");
    let (mut proxy, _dir) = start(&fake, &yaml);
    discovery_ok(&mut proxy, "generation", json!(2));
    let gauge = |proxy: &Proxy| {
        let (_, m) = proxy.admin_get("/metrics");
        metric(&m, "ch_edge_proxy_config_last_reload_successful", &[])
    };
    assert_eq!(gauge(&proxy), 1.0);

    let path = proxy.config.clone();
    write_atomic(&path, &format!("{yaml}routes:\n  - sni: [\n"));
    proxy.wait_reload("error");
    assert_eq!(gauge(&proxy), 0.0);
    fake.apply(chi("beta", "2024-01-02T00:00:00Z", &[]));
    discovery_ok(&mut proxy, "generation", json!(3));
    assert!(has_route(&proxy, "ch/beta"));
    assert_eq!(gauge(&proxy), 0.0);
    assert_eq!(routes_json(&proxy)["last_reload"]["successful"], false);

    // Back to the files that run: good again.
    write_atomic(&path, &yaml);
    proxy.wait_log(|l| {
        l["message"] == "reload"
            && l["detail"]
                .as_str()
                .is_some_and(|d| d.contains("match the running configuration again"))
    });
    assert_eq!(gauge(&proxy), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_watch_is_dropped_counted_and_watched_again() {
    let mut backend = TlsBackend::start(false).await;
    let fake = FakeApi::start().await;
    fake.apply(chi("a", "2024-01-01T00:00:00Z", &[]));
    // The first watch gets its headers, then nothing: no event, no bookmark, no end.
    fake.black_hole_watches(1);
    let (mut proxy, _dir) =
        start_stalling_after(&fake, &config(backend.addr.port(), ""), Some(STALL));
    let addr = proxy.addr("native");
    discovery_ok(&mut proxy, "generation", json!(2));
    assert_eq!(
        api_errors(&proxy, "stalled"),
        0.0,
        "exported from the start"
    );
    fake.wait_black_holed(1).await;
    let watch = fake
        .requests()
        .into_iter()
        .find(|r| r.contains("watch=true"))
        .unwrap();
    assert!(
        watch.contains("allowWatchBookmarks=true") && watch.contains("timeoutSeconds=1"),
        "{watch}"
    );

    let stalled = proxy.wait_log(|l| l["message"] == STALLED);
    assert_eq!(stalled["level"], "WARN", "{stalled}");
    assert_eq!(stalled["namespace"], NS, "{stalled}");
    assert!(
        stalled["error"]
            .as_str()
            .is_some_and(|e| e.contains("sent no bytes for 2s")),
        "{stalled}"
    );
    assert!(api_errors(&proxy, "stalled") >= 1.0);
    // Watched again (from the last resourceVersion): a CHI added now is routed.
    fake.wait_watches_started(1).await;
    fake.apply(chi("b", "2024-01-02T00:00:00Z", &[]));
    let line = wait_discovery(&mut proxy);
    assert_eq!(line["result"], "ok", "{line}");
    assert!(has_route(&proxy, "ch/b"));
    reaches(addr, "b.ch.test", &mut backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_request_answered_410_gone_relists() {
    let mut backend = TlsBackend::start(false).await;
    let fake = FakeApi::start().await;
    fake.apply(chi("a", "2024-01-01T00:00:00Z", &[]));
    let (mut proxy, _dir) = start(&fake, &config(backend.addr.port(), ""));
    let addr = proxy.addr("native");
    discovery_ok(&mut proxy, "generation", json!(2));
    fake.wait_watches_open(1).await;

    // "c" arrives without an event, the history is compacted, and the
    // stream drops: the watch resumes from a resourceVersion that is gone,
    // and the API server answers the watch request itself with 410.
    fake.apply_silently(chi("c", "2024-01-03T00:00:00Z", &[]));
    fake.compact();
    let before = fake.requests().len();
    fake.drop_watches();
    fake.wait_gone_answered(1).await;
    let gone = proxy.wait_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("410 Gone"))
    });
    assert!(
        gone["error"]
            .as_str()
            .is_some_and(|e| e.contains("too old resource version")),
        "{gone}"
    );
    // A relist, not the same resourceVersion again: "c" appears.
    discovery_ok(&mut proxy, "generation", json!(3));
    assert!(has_route(&proxy, "ch/c"));
    let after: Vec<String> = fake.requests()[before..].to_vec();
    let first_list = after.iter().position(|r| !r.contains("watch=true"));
    assert!(first_list.is_some_and(|i| i > 0), "{after:?}");
    assert!(api_errors(&proxy, "watch_start") >= 1.0);

    // Watching again from the list's resourceVersion: changes are live.
    fake.wait_watches_open(1).await;
    fake.apply(chi("d", "2024-01-04T00:00:00Z", &[]));
    discovery_ok(&mut proxy, "generation", json!(4));
    reaches(addr, "d.ch.test", &mut backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_healthy_watches_are_not_stalled() {
    let mut backend = TlsBackend::start(false).await;
    let fake = FakeApi::start().await;
    fake.apply(chi("a", "2024-01-01T00:00:00Z", &[]));
    let stall = format!("{QUIET_STALL_SECS}s");
    let (mut proxy, _dir) =
        start_stalling_after(&fake, &config(backend.addr.port(), ""), Some(&stall));
    let addr = proxy.addr("native");
    discovery_ok(&mut proxy, "generation", json!(2));

    // No events, no bookmarks: the server ends each watch after
    // timeoutSeconds (1 s), before the deadline, and kube watches again.
    fake.wait_watches_started(4).await;

    // A server that keeps the watch open and sends only bookmarks (every
    // eighth of the deadline): one stream for three deadlines.
    fake.honour_timeouts(false);
    let started = fake.watches_started();
    fake.wait_watches_started(started + 1).await;
    fake.wait_watches_open(1).await;
    let started = fake.watches_started();
    fake.send_bookmarks(std::time::Duration::from_millis(
        QUIET_STALL_SECS * 1000 / 8,
    ));
    fake.wait_bookmarks(3 * 8).await;
    assert_eq!(
        fake.watches_started(),
        started,
        "the bookmarked watch ended"
    );

    // TCP keepalive is on the API connections, probing after 30 s idle (a
    // socket with only SO_KEEPALIVE would wait the kernel's 2 h: "119min").
    if let Some(ss) = tool("ss") {
        let port = format!(":{}", fake.addr.port());
        let out = std::process::Command::new(ss)
            .args(["-tnoH", "state", "established", "dport", "=", &port])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        let timers: Vec<&str> = out
            .split("timer:(keepalive,")
            .skip(1)
            .map(|t| t.split(',').next().unwrap_or(""))
            .collect();
        assert!(
            !timers.is_empty()
                && timers
                    .iter()
                    .all(|t| t.ends_with("sec") || t.ends_with("ms")),
            "{out}"
        );
    }

    assert_eq!(api_errors(&proxy, "stalled"), 0.0);
    assert_eq!(proxy.seen_count(|l| l["message"] == STALLED), 0);
    fake.apply(chi("b", "2024-01-02T00:00:00Z", &[]));
    assert_eq!(wait_discovery(&mut proxy)["result"], "ok");
    reaches(addr, "b.ch.test", &mut backend).await;
}

/// The ClickHouseCluster of the official operator's sample `examples/cluster_with_ssl.yaml`
/// (tests/fixtures/chc), placed in namespace `ch` with the selected label and `replicas`.
fn sample_cluster(replicas: u64) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/chc/cluster_with_ssl.yaml"
    ))
    .unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let mut cluster = docs
        .into_iter()
        .find(|d| d["kind"] == "ClickHouseCluster")
        .expect("the sample has a ClickHouseCluster");
    cluster["metadata"]["namespace"] = json!(NS);
    cluster["metadata"]["labels"] = json!({"team": "ch"});
    cluster["metadata"]["uid"] = json!("uid-sample");
    cluster["metadata"]["creationTimestamp"] = json!("2024-03-01T00:00:00Z");
    cluster["spec"]["replicas"] = json!(replicas);
    cluster
}

fn config_with_clusters(upstream_port: u16) -> String {
    config(upstream_port, "").replace(
        "    label_selector: team=ch\n",
        "    label_selector: team=ch\n    sources: [chi, clickhousecluster]\n",
    )
}

/// `upstreams[].host` of the live route `name`.
fn upstream_hosts(proxy: &Proxy, name: &str) -> Vec<String> {
    let routes = routes_json(proxy);
    let route = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no route {name}: {routes}"));
    route["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["host"].as_str().unwrap().to_owned())
        .collect()
}

fn pod(replica: u32) -> String {
    format!("sample-clickhouse-0-{replica}-0.sample-clickhouse-headless.ch.svc.cluster.local")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhousecluster_add_modify_delete_follow_the_api() {
    let backend = TlsBackend::start(false).await;
    let fake = FakeApi::start().await;
    fake.apply(chi("alpha", "2024-01-01T00:00:00Z", &[]));
    let (mut proxy, _dir) = start(&fake, &config_with_clusters(backend.addr.port()));
    let addr = proxy.addr("native");
    discovery_ok(&mut proxy, "routes", json!(3));
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .any(|r| r
                .starts_with("/apis/clickhouse.com/v1alpha1/namespaces/ch/clickhouseclusters?")),
        "{requests:?}"
    );

    // Added: the cluster's, its shard's and its replica's routes.
    fake.wait_watches_open(2).await;
    fake.apply(sample_cluster(1));
    discovery_ok(&mut proxy, "routes", json!(6));
    let source = "kubernetes:ClickHouseCluster ch/sample";
    let routes = live_routes(&proxy);
    for name in ["ch/sample", "ch/sample/shard-0", "ch/sample/0-0"] {
        assert!(
            routes.contains(&(name.to_owned(), source.to_owned())),
            "{name}: {routes:?}"
        );
    }
    assert_eq!(upstream_hosts(&proxy, "ch/sample"), [pod(0)]);
    let routes = routes_json(&proxy);
    assert_eq!(routes["discovery"]["clickhouseclusters"], 1, "{routes}");
    // The name is routed (the pod name does not resolve here: not `unrecognized_name`).
    let refused = tls_connect(addr, b"", Some("sample-clickhouse-0-0.ch.test")).await;
    assert_ne!(
        alert_of(refused),
        rustls::AlertDescription::UnrecognisedName
    );

    // Modified: replicas 1 → 2, the new replica is routed and balanced over.
    fake.apply(sample_cluster(2));
    discovery_ok(&mut proxy, "routes", json!(7));
    assert_eq!(upstream_hosts(&proxy, "ch/sample"), [pod(0), pod(1)]);
    assert_eq!(
        upstream_hosts(&proxy, "ch/sample/shard-0"),
        [pod(0), pod(1)]
    );
    assert_eq!(upstream_hosts(&proxy, "ch/sample/0-1"), [pod(1)]);

    // Deleted: gone; the CHI stays.
    fake.delete_cluster(NS, "sample");
    discovery_ok(&mut proxy, "routes", json!(3));
    assert!(!has_route(&proxy, "ch/sample"));
    assert!(has_route(&proxy, "ch/alpha"));
    let gone = tls_connect(addr, b"", Some("sample.ch.test")).await;
    assert_eq!(alert_of(gone), rustls::AlertDescription::UnrecognisedName);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhousecluster_without_tls_or_certificate_is_refused_with_a_reason() {
    let backend = TlsBackend::start(false).await;
    let fake = FakeApi::start().await;
    let mut plain = sample_cluster(1);
    plain["spec"]["settings"] = json!(null);
    fake.apply(plain);
    let (mut proxy, _dir) = start(&fake, &config_with_clusters(backend.addr.port()));
    discovery_ok(&mut proxy, "routes", json!(0));
    let routes = routes_json(&proxy);
    let refused = routes["discovery"]["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 3, "{routes}");
    for r in refused {
        assert_eq!(
            (&r["kind"], &r["chi"], &r["reason"]),
            (
                &json!("clickhousecluster"),
                &json!("ClickHouseCluster ch/sample"),
                &json!("no_certificate")
            ),
            "{r}"
        );
        assert!(r["detail"].as_str().unwrap().contains("has no TLS"), "{r}");
    }
    let line = proxy.wait_log(|l| {
        l["message"] == "kubernetes discovery: route refused" && l["kind"] == "clickhousecluster"
    });
    assert_eq!(line["reason"], "no_certificate", "{line}");
}

/// A pod of the sample cluster as the operator labels it, `Ready` or not.
fn sample_pod(replica: u32, ready: bool) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("sample-clickhouse-0-{replica}-0"),
            "namespace": NS,
            "uid": format!("uid-pod-{replica}"),
            "labels": {
                "app": "sample-clickhouse",
                "clickhouse.com/role": "clickhouse-server",
                "clickhouse.com/shard-id": "0",
                "clickhouse.com/replica-id": replica.to_string(),
            },
        },
        "status": {"conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }},
        ]},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhousecluster_replica_whose_pod_is_not_ready_leaves_the_balanced_routes() {
    let backend = TlsBackend::start(false).await;
    let fake = FakeApi::start().await;
    fake.apply(sample_cluster(2));
    fake.apply(sample_pod(0, true));
    fake.apply(sample_pod(1, false));
    let (mut proxy, _dir) = start(&fake, &config_with_clusters(backend.addr.port()));
    discovery_ok(&mut proxy, "routes", json!(4));
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/api/v1/namespaces/ch/pods?")
                && r.contains("labelSelector=clickhouse.com%2Frole%3Dclickhouse-server")),
        "{requests:?}"
    );
    assert_eq!(upstream_hosts(&proxy, "ch/sample"), [pod(0)]);
    assert_eq!(upstream_hosts(&proxy, "ch/sample/shard-0"), [pod(0)]);
    assert_eq!(upstream_hosts(&proxy, "ch/sample/0-1"), [pod(1)]);

    // The pod turns ready: balanced over both.
    fake.wait_watches_open(3).await;
    fake.apply(sample_pod(1, true));
    discovery_ok(&mut proxy, "routes", json!(4));
    assert_eq!(upstream_hosts(&proxy, "ch/sample"), [pod(0), pod(1)]);
    // The first pod is deleted (rescheduling): out until it is back.
    fake.delete_pod(NS, "sample-clickhouse-0-0-0");
    discovery_ok(&mut proxy, "routes", json!(4));
    assert_eq!(upstream_hosts(&proxy, "ch/sample"), [pod(1)]);
}
