//! End-to-end: a real ClickHouse server (Debian's 18.16) behind haproxy
//! (the NLB stand-in, PROXY v2) and ch-edge-proxy, driven by real clients
//! (Python clickhouse-driver over native TLS, curl over HTTPS). Every
//! assertion is on what a client sees, or on what the PROXY v1 reader logged.
//! Topology: tests/e2e/env.rs. Tools missing: skipped locally, failed in CI.

#[path = "e2e/env.rs"]
mod env;
mod support;

use env::*;
use serde_json::Value;

fn start() -> Option<E2e> {
    Some(E2e::start(Tools::find()?))
}

/// n(n-1)/2: the sum of `SELECT number FROM system.numbers LIMIT n`.
fn sum_below(n: u64) -> u64 {
    n * (n - 1) / 2
}

/// Rows of the streamed queries: enough that a lost or reordered byte
/// anywhere in ~40 MB of TLS records cannot go unnoticed.
const STREAM_ROWS: u64 = 5_000_000;

fn assert_stream_complete(result: &Value, rows: u64) {
    assert_eq!(result["count"], rows, "{result}");
    assert_eq!(result["sum"], sum_below(rows), "{result}");
}

fn is_access(outcome: &'static str, client_ip: &'static str) -> impl Fn(&Value) -> bool {
    move |l: &Value| {
        l["target"] == "access"
            && l["outcome"] == outcome
            && l["client"]
                .as_str()
                .is_some_and(|c| c.starts_with(&format!("{client_ip}:")))
    }
}

/// Native TLS by CHI name and by pod name (each reaching its own upstream),
/// HTTPS with curl, an unknown SNI, the allowlist, and PROXY v1 out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_sni_allowlist_and_proxy_v1_with_real_clients() {
    let Some(mut e2e) = start() else { return };
    let ca = e2e.ca.ca_pem.to_str().unwrap().to_string();

    // Native protocol, certificate verified against the test CA for the SNI name.
    let chi = e2e.python_run(CHI_SNI, &["--ca", &ca], &["whoami"]);
    assert_eq!(chi["version"], "18.16.1", "{chi}");
    assert_eq!(
        chi["server_saw"],
        e2e.hops.chi.as_str(),
        "CHI name misrouted"
    );
    let pod = e2e.python_run(POD_SNI, &["--ca", &ca], &["whoami"]);
    assert_eq!(
        pod["server_saw"],
        e2e.hops.pod.as_str(),
        "pod name misrouted"
    );

    // HTTPS through the 8443-style listener: same routes, the HTTPS port upstream.
    let version = e2e.curl(CHI_SNI, None, "SELECT version()");
    assert!(version.success, "{version:?}");
    assert_eq!(version.stdout, "18.16.1\n");
    let marker = "e2e-https-pod";
    let via_pod = e2e.curl(
        POD_SNI,
        None,
        &format!("SELECT address FROM system.processes WHERE query LIKE '%{marker}%'"),
    );
    assert_eq!(via_pod.stdout.trim(), e2e.hops.pod, "{via_pod:?}");

    // Unknown SNI: a TLS alert (unrecognized_name), not a hang or a bare EOF.
    let unknown = "nosuch.ch.example.test";
    let refused = e2e.python_run(unknown, &[], &["refused"]);
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("TLSV1_UNRECOGNIZED_NAME"), "{error}");
    let curl_unknown = e2e.curl(unknown, None, "SELECT 1");
    assert!(!curl_unknown.success);
    assert!(
        curl_unknown.stderr.contains("unrecognized name"),
        "{curl_unknown:?}"
    );

    // Allowlist on the client address haproxy forwarded (PROXY v2).
    let allowed = e2e.python_run(
        RESTRICTED_SNI,
        &["--ca", &ca, "--source", ALLOWED_SOURCE],
        &["whoami"],
    );
    assert_eq!(allowed["server_saw"], e2e.hops.chi.as_str(), "{allowed}");
    let denied = e2e.python_run(
        RESTRICTED_SNI,
        &["--ca", &ca, "--source", DENIED_SOURCE],
        &["refused"],
    );
    let error = denied["error"].as_str().unwrap();
    assert!(error.contains("TLSV1_ALERT_ACCESS_DENIED"), "{error}");
    e2e.proxy
        .wait_log(is_access("access_denied", DENIED_SOURCE));
    let curl_allowed = e2e.curl(RESTRICTED_SNI, Some(ALLOWED_SOURCE), "SELECT version()");
    assert_eq!(curl_allowed.stdout, "18.16.1\n", "{curl_allowed:?}");
    let curl_denied = e2e.curl(RESTRICTED_SNI, Some(DENIED_SOURCE), "SELECT version()");
    assert!(!curl_denied.success);
    assert!(
        curl_denied.stderr.contains("access denied"),
        "{curl_denied:?}"
    );

    // PROXY v1 out: the hop in front of ClickHouse learns the original client.
    let before = e2e.pp_log().len();
    let native_client = "127.0.0.7";
    let via_pp = e2e.python_run(
        PP_SNI,
        &["--ca", &ca, "--source", native_client],
        &["whoami"],
    );
    assert_eq!(via_pp["server_saw"], e2e.hops.pp.as_str(), "{via_pp}");
    let https_client = "127.0.0.8";
    let curl_pp = e2e.curl(PP_SNI, Some(https_client), "SELECT version()");
    assert_eq!(curl_pp.stdout, "18.16.1\n", "{curl_pp:?}");
    let logged = e2e.wait_pp_log(before + 2);
    let mut clients: Vec<&str> = logged[before..].iter().map(String::as_str).collect();
    clients.sort();
    assert_eq!(clients, [native_client, https_client]);
}

/// A multi-million-row result streamed through the relay arrives complete,
/// then 200 sessions (16 at a time) all get their own correct answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_result_and_many_sessions_arrive_intact() {
    let Some(e2e) = start() else { return };
    let rows = STREAM_ROWS.to_string();
    let streamed = e2e.python_run(CHI_SNI, &[], &["stream", "--rows", &rows]);
    assert_stream_complete(&streamed, STREAM_ROWS);

    let sessions = e2e.python_run(
        POD_SNI,
        &[],
        &[
            "sessions",
            "--sessions",
            "200",
            "--parallel",
            "16",
            "--expect-hop",
            &e2e.hops.pod,
        ],
    );
    assert_eq!(sessions["ok"], 200, "{sessions}");
    assert_eq!(sessions["failed"], 0, "{sessions}");
}

/// A reload that adds a route while a query streams: the stream completes
/// on the connection it started on and the new name works at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_a_route_while_a_query_streams() {
    let Some(mut e2e) = start() else { return };
    let new_sni = "chi-demo-cluster-0-1.ch.example.test";
    let before = e2e.python_run(new_sni, &[], &["refused"]);
    assert!(
        before["error"]
            .as_str()
            .unwrap()
            .contains("TLSV1_UNRECOGNIZED_NAME"),
        "{before}"
    );

    let rows = STREAM_ROWS.to_string();
    let mut stream = e2e.python(CHI_SNI, &[], &["stream", "--rows", &rows, "--pause"]);
    assert_eq!(stream.next_json()["event"], "streaming");

    e2e.rewrite_routes(&format!(
        "  - name: test/demo/cluster/0-1\n    sni: {new_sni}\n    upstream: \"{}\"\n",
        e2e.hops.pod
    ));
    e2e.proxy.wait_reload("ok");
    let added = e2e.python_run(new_sni, &[], &["whoami"]);
    assert_eq!(added["server_saw"], e2e.hops.pod.as_str(), "{added}");

    stream.resume();
    assert_stream_complete(&stream.finish(), STREAM_ROWS);
}

/// SIGTERM while a query streams: the proxy drains, the query finishes
/// complete, and the process exits 0 once the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_streaming_query_finish_then_exits_zero() {
    let Some(mut e2e) = start() else { return };
    let rows = STREAM_ROWS.to_string();
    let mut stream = e2e.python(CHI_SNI, &[], &["stream", "--rows", &rows, "--pause"]);
    assert_eq!(stream.next_json()["event"], "streaming");

    e2e.proxy.signal("TERM");
    e2e.proxy.wait_log(|l| l["message"] == "draining");
    // Draining: a new connection is not served (haproxy, finding the proxy's
    // listener closed, drops the client: an EOF in the handshake).
    let late = e2e.python_run(CHI_SNI, &[], &["refused"]);
    assert!(
        late["error"].as_str().is_some_and(|e| e.contains("EOF")),
        "{late}"
    );

    stream.resume();
    assert_stream_complete(&stream.finish(), STREAM_ROWS);
    let status = e2e.proxy.wait_exit();
    assert_eq!(status.code(), Some(0), "{status}");
}

/// Two ClickHouse servers behind one route, told apart by a marker table in each: a sticky
/// tag (`<tag>.sticky.<name>`, clickhouse-driver's `server_hostname`) always reaches the same
/// server, verified against a certificate for `*.sticky.<name>`; the plain name is balanced
/// over both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_tag_always_reaches_the_same_of_two_clickhouse_servers() {
    let Some(tools) = Tools::find() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pool = format!("pool.{DOMAIN}");
    let ca = support::clickhouse::TestCa::create(dir.path(), &[&pool, &format!("*.sticky.{pool}")]);
    let ca_pem = ca.ca_pem.to_str().unwrap().to_string();
    let servers: Vec<support::clickhouse::ClickHouse> = ["a", "b"]
        .iter()
        .map(|name| {
            let home = dir.path().join(name);
            std::fs::create_dir(&home).unwrap();
            let server = support::clickhouse::ClickHouse::start(&tools.clickhouse, &home, &ca);
            // One statement (clickhouse-driver sends an INSERT's rows separately).
            let query =
                format!("CREATE TABLE default.marker ENGINE = Memory AS SELECT '{name}' AS name");
            python_client(
                &tools.python,
                server.native_tls.port(),
                &pool,
                &[],
                &["exec", "--query", &query],
            )
            .finish();
            server
        })
        .collect();
    let mut proxy = support::Proxy::start(&format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9\n\
         routes:\n  - sni: {pool}\n    upstream: [\"{}\", \"{}\"]\n",
        servers[0].native_tls, servers[1].native_tls
    ));

    let tags: Vec<String> = (0..16).map(|i| format!("etl-{i}")).collect();
    let seen = python_client(
        &tools.python,
        proxy.addr("native").port(),
        &pool,
        &["--ca", &ca_pem],
        &[
            "markers",
            "--tags",
            &tags.join(","),
            "--repeat",
            "3",
            "--plain",
            "4",
        ],
    )
    .finish();
    let mut servers_used = std::collections::BTreeSet::new();
    for tag in &tags {
        let markers = seen["tags"][tag].as_array().unwrap();
        assert_eq!(markers.len(), 3, "{seen}");
        assert!(
            markers.iter().all(|m| *m == markers[0]),
            "{tag} moved: {seen}"
        );
        servers_used.insert(markers[0].as_str().unwrap().to_string());
    }
    assert_eq!(servers_used.len(), 2, "16 tags all on one server: {seen}");
    // The plain name: consecutive sessions go to both servers.
    let plain: std::collections::BTreeSet<&str> = seen["plain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(plain.len(), 2, "{seen}");
    let line = proxy.wait_log(|l| l["target"] == "access" && l["sticky"] == "etl-0");
    assert_eq!(line["route"], pool.as_str(), "{line}");
    assert_eq!(line["outcome"], "relayed", "{line}");
}
