//! End-to-end TLS termination: Debian's clickhouse-server serves plain `tcp_port` and
//! `http_port` behind `tls: terminate` routes and its TLS ports behind `tls: reencrypt`; the
//! clients (Python clickhouse-driver with `secure=True`, `verify=True`; curl over HTTPS) verify
//! the proxy's certificate against a test CA of their own. Tools missing: skipped locally,
//! failed in CI.

#[allow(dead_code)]
#[path = "e2e/env.rs"]
mod env;
mod support;

use std::process::Command;

use env::{python_client, Tools};
use support::certs::Ca;
use support::clickhouse::{ClickHouse, TestCa};
use support::Proxy;

const TERMINATE: &str = "demo.ch.example.test";
const REENCRYPT: &str = "secure.ch.example.test";
const WRONG_CA: &str = "wrong-ca.ch.example.test";
/// Rows streamed through a terminated connection: many TLS records each way.
const STREAM_ROWS_TLS: u64 = 1_000_000;

/// curl over HTTPS to the proxy's `https` listener for `sni`, verifying against `ca`.
fn curl(
    tools: &Tools,
    port: u16,
    sni: &str,
    ca: &std::path::Path,
    query: &str,
) -> (bool, String, String) {
    let out = Command::new(&tools.curl)
        .args(["-sS", "--max-time", "60", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{sni}:{port}:127.0.0.1")])
        .args(["--get", "--data-urlencode", &format!("query={query}")])
        .arg(format!("https://{sni}:{port}/"))
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_behind_terminate_and_reencrypt_routes_with_verifying_clients() {
    let Some(tools) = Tools::find() else { return };
    let dir = tempfile::tempdir().unwrap();
    // ClickHouse's own certificate, from the cluster's CA (what reencrypt verifies).
    let cluster = TestCa::create(dir.path(), &["*.ch.example.test", "ch.example.test"]);
    let server = ClickHouse::start(&tools.clickhouse, dir.path(), &cluster);
    // The proxy's certificate, from the CA the clients trust.
    let front = Ca::new("front CA");
    let front_ca = dir.path().join("front-ca.pem");
    std::fs::write(&front_ca, &front.pem).unwrap();
    let (cert, key) = front
        .leaf(&["*.ch.example.test"], 90)
        .write(dir.path(), "front");
    let yaml = format!(
        "listeners:\n\
         \x20 - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: {native_tls}\n    upstream_port_plain: {native_plain}\n\
         \x20 - name: https\n    address: \"127.0.0.1:0\"\n    upstream_port: {https}\n    upstream_port_plain: {http}\n\
         admin:\n  address: \"127.0.0.1:0\"\n\
         tls:\n  certificates:\n    - cert: {cert}\n      key: {key}\n\
         routes:\n\
         \x20 - sni: {TERMINATE}\n    upstream: 127.0.0.1\n    tls: terminate\n\
         \x20 - sni: {REENCRYPT}\n    upstream: 127.0.0.1\n    tls: reencrypt\n    upstream_tls:\n      ca: {cluster_ca}\n      server_name: chi-demo-0-0.ch.example.test\n\
         \x20 - sni: {WRONG_CA}\n    upstream: 127.0.0.1\n    tls: reencrypt\n    upstream_tls:\n      ca: {front_ca}\n",
        native_tls = server.native_tls.port(),
        native_plain = server.native_plain.port(),
        https = server.https.port(),
        http = server.http.port(),
        cert = cert.display(),
        key = key.display(),
        cluster_ca = cluster.ca_pem.display(),
        front_ca = front_ca.display(),
    );
    let mut proxy = Proxy::start(&yaml);
    let native = proxy.addr("native").port();
    let https = proxy.addr("https").port();
    let ca = front_ca.to_str().unwrap();

    // Native protocol: clickhouse-driver, secure=True, verify=True against the front CA.
    for sni in [TERMINATE, REENCRYPT] {
        let who = python_client(&tools.python, native, sni, &["--ca", ca], &["whoami"]).finish();
        assert_eq!(who["version"], "18.16.1", "{sni}: {who}");
        let line = proxy.wait_log(|l| l["target"] == "access" && l["sni"] == sni);
        assert_eq!(line["outcome"], "relayed", "{line}");
        let upstream = line["upstream"].as_str().unwrap();
        let want = if sni == TERMINATE {
            server.native_plain
        } else {
            server.native_tls
        };
        assert_eq!(upstream, want.to_string(), "{sni}: {line}");
    }
    // A multi-block result through the terminated stream arrives whole.
    let rows = STREAM_ROWS_TLS.to_string();
    let streamed = python_client(
        &tools.python,
        native,
        TERMINATE,
        &["--ca", ca],
        &["stream", "--rows", &rows],
    )
    .finish();
    assert_eq!(streamed["count"], STREAM_ROWS_TLS, "{streamed}");
    assert_eq!(
        streamed["sum"],
        STREAM_ROWS_TLS * (STREAM_ROWS_TLS - 1) / 2,
        "{streamed}"
    );

    // HTTPS: curl against the front CA; terminate reaches http_port, reencrypt https_port.
    for sni in [TERMINATE, REENCRYPT] {
        let (ok, stdout, stderr) = curl(&tools, https, sni, &front_ca, "SELECT version()");
        assert!(ok, "{sni}: {stderr}");
        assert_eq!(stdout, "18.16.1\n", "{sni}");
    }

    // Reencrypt with the wrong CA: the client's handshake with us succeeds, ClickHouse's
    // certificate is refused, the client's connection closes.
    let refused =
        python_client(&tools.python, native, WRONG_CA, &["--ca", ca], &["refused"]).finish();
    assert!(refused["error"].is_string(), "{refused}");
    let line = proxy.wait_log(|l| l["target"] == "access" && l["sni"] == WRONG_CA);
    assert_eq!(line["outcome"], "upstream_tls_failed", "{line}");
    assert_eq!(
        line["detail"], "upstream tls: certificate from an unknown CA",
        "{line}"
    );
    let (ok, _, _) = curl(&tools, https, WRONG_CA, &front_ca, "SELECT 1");
    assert!(!ok);
}
