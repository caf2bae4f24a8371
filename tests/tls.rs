//! TLS termination and re-encryption through the real binary: certificates made at test time
//! (a CA, a wildcard leaf, expired and expiring ones), clients that verify them, plaintext and
//! TLS backends, certificate swaps in a Kubernetes Secret volume, and a slow-handshake flood.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::AlertDescription;
use support::certs::{client_trusting, connect_verified, der, served, Ca, Leaf};
use support::peers::{self, client_hello, RawBackend};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A config whose listener sends plaintext (terminate) to `plain_port` and TLS (reencrypt,
/// passthrough) to port 9 unless a route names its port; `tls` and `routes` as given.
fn config(plain_port: u16, tls: &str, routes: &str) -> String {
    format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9\n    upstream_port_plain: {plain_port}\n\
         admin:\n  address: \"127.0.0.1:0\"\n\
         timeouts:\n  client_hello: 2s\n\
         tls:\n{tls}\
         routes:\n{routes}"
    )
}

/// Starts the proxy on `yaml` written into `dir` (where the certificates are).
fn start_in(dir: tempfile::TempDir, yaml: &str) -> Proxy {
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    Proxy::start_file(&path, dir)
}

fn certificates(pairs: &[(&Path, &Path)]) -> String {
    let mut out = "  certificates:\n".to_string();
    for (cert, key) in pairs {
        out.push_str(&format!(
            "    - cert: {}\n      key: {}\n",
            cert.display(),
            key.display()
        ));
    }
    out
}

async fn echo_all(tls: &mut ClientTls, msg: &[u8]) {
    echo(tls, msg).await;
}

fn is_access(route: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |l| l["target"] == "access" && l["route"] == route
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_serves_the_certificate_for_the_name_and_sends_plaintext_with_proxy_v1() {
    let mut backend = RawBackend::start(true).await;
    let passthrough = TlsBackend::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let wildcard = ca.leaf(&["*.ch.test", "ch.test"], 90);
    let (cert, key) = wildcard.write(dir.path(), "wildcard");
    let routes = format!(
        "  - sni: plain.ch.test\n    upstream: 127.0.0.1\n    tls: terminate\n    proxy_protocol: v1\n\
         \x20 - sni: alpn.ch.test\n    upstream: \"127.0.0.1:{port}\"\n    tls: terminate\n    proxy_protocol: v1\n    alpn: [http/1.1]\n\
         \x20 - sni: denied.ch.test\n    upstream: 127.0.0.1\n    tls: terminate\n    allow: [192.0.2.0/24]\n\
         \x20 - sni: pass.ch.test\n    upstream: \"{passthrough}\"\n",
        port = backend.addr.port(),
        passthrough = passthrough.addr,
    );
    let tls = format!("{}  min_version: \"1.3\"\n", certificates(&[(&cert, &key)]));
    let mut proxy = start_in(dir, &config(backend.addr.port(), &tls, &routes));
    let addr = proxy.addr("native");

    // Verified against the CA for the name the client asked for, plaintext and PROXY v1 behind.
    let client = ca.client(&["h2", "http/1.1"]);
    let mut tls = connect_verified(&client, addr, "plain.ch.test")
        .await
        .unwrap();
    assert_eq!(served(&tls), der(&wildcard.cert));
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        None,
        "no ALPN unless the route lists it"
    );
    echo_all(&mut tls, b"SELECT 1").await;
    tls.shutdown().await.unwrap();
    let seen = backend.next().await;
    assert_eq!(seen.bytes, b"SELECT 1");
    let header = seen.proxy.expect("PROXY v1 upstream");
    assert_eq!(header.version, 1);
    assert_eq!(
        header.source.unwrap().ip(),
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    let line = proxy.wait_log(is_access("plain.ch.test"));
    assert_eq!(line["outcome"], "relayed", "{line}");
    assert_eq!(line["tls"], "terminate", "{line}");
    assert_eq!(line["tls_version"], "1.3", "{line}");
    assert_eq!(line["bytes_from_client"], 8, "{line}");

    // ALPN: what the route allows, from what the client offers.
    let mut tls = connect_verified(&client, addr, "alpn.ch.test")
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    echo_all(&mut tls, b"GET / HTTP/1.1\r\n\r\n").await;
    drop(tls);

    // Routing and allowlists answer before any handshake work, with the same alerts.
    let unknown = connect_verified(&client, addr, "nosuch.other.test").await;
    assert_eq!(alert_of(unknown), AlertDescription::UnrecognisedName);
    let denied = connect_verified(&client, addr, "denied.ch.test").await;
    assert_eq!(alert_of(denied), AlertDescription::AccessDenied);
    // `min_version: "1.3"`: a TLS 1.2-only client is refused by the handshake.
    let old = client_trusting(&ca.pem, &[], Some(&[&rustls::version::TLS12]));
    let refused = connect_verified(&old, addr, "plain.ch.test").await;
    assert_eq!(alert_of(refused), AlertDescription::ProtocolVersion);
    let line =
        proxy.wait_log(|l| l["target"] == "access" && l["outcome"] == "tls_handshake_failed");
    assert_eq!(line["route"], "plain.ch.test", "{line}");
    assert_eq!(
        line["detail"], "tls handshake: nothing in common with the client",
        "{line}"
    );

    // Passthrough routes are untouched: the backend's own certificate reaches the client.
    let mut raw = tls_connect(addr, b"", Some("pass.ch.test")).await.unwrap();
    assert_ne!(served(&raw), der(&wildcard.cert));
    echo(&mut raw, b"passthrough").await;

    let (_, metrics) = proxy.admin_get("/metrics");
    let ok = metric(
        &metrics,
        "ch_edge_proxy_tls_handshakes_total",
        &["side=\"client\"", "result=\"ok\""],
    );
    assert!(ok >= 2.0, "{metrics}");
    let incompatible = metric(
        &metrics,
        "ch_edge_proxy_tls_handshakes_total",
        &["result=\"incompatible\""],
    );
    assert_eq!(incompatible, 1.0, "{metrics}");
    // Terminated connections count through their route's handles as passthrough ones do:
    // plaintext bytes both ways, one sample per connection and outcome.
    let plain = "route=\"plain.ch.test\"";
    for family in [
        "ch_edge_proxy_client_bytes_total",
        "ch_edge_proxy_upstream_bytes_total",
    ] {
        assert_eq!(metric(&metrics, family, &[plain]), 8.0, "{metrics}");
    }
    for outcome in ["relayed", "tls_handshake_failed"] {
        let outcome = format!("outcome=\"{outcome}\"");
        let n = metric(
            &metrics,
            "ch_edge_proxy_connections_total",
            &[plain, &outcome],
        );
        assert_eq!(n, 1.0, "{outcome}: {metrics}");
    }
    let (_, routes) = proxy.admin_get("/routes");
    let routes: serde_json::Value = serde_json::from_str(&routes).unwrap();
    assert_eq!(routes["routes"][1]["tls"], "terminate");
    assert_eq!(routes["routes"][1]["alpn"][0], "http/1.1");
    assert_eq!(routes["routes"][3]["tls"], "passthrough");
    let certs = &routes["tls"]["certificates"];
    assert_eq!(
        certs[0]["names"],
        serde_json::json!(["*.ch.test", "ch.test"])
    );
    assert_eq!(
        certs[0]["expires_in_days"].as_f64().map(|d| d >= 88.0),
        Some(true),
        "{certs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencrypt_verifies_the_upstream_against_its_ca_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("client-facing CA");
    let (cert, key) = ca.leaf(&["*.ch.test"], 90).write(dir.path(), "front");
    let inner = Ca::new("cluster CA");
    let inner_ca = dir.path().join("inner-ca.pem");
    std::fs::write(&inner_ca, &inner.pem).unwrap();
    let outer_ca = ca.write(dir.path());
    let mut backend =
        TlsBackend::start_with(false, inner.leaf(&["chi-demo.ns.svc"], 90).server_config()).await;
    let route = |sni: &str, ca: &Path, name: &str| {
        format!(
            "  - sni: {sni}\n    upstream: \"{}\"\n    tls: reencrypt\n    upstream_tls:\n      ca: {}\n      server_name: {name}\n",
            backend.addr,
            ca.display()
        )
    };
    let routes = [
        route("re.ch.test", &inner_ca, "chi-demo.ns.svc"),
        route("wrong-ca.ch.test", &outer_ca, "chi-demo.ns.svc"),
        route("wrong-name.ch.test", &inner_ca, "other.ns.svc"),
    ]
    .concat();
    let mut proxy = start_in(dir, &config(9, &certificates(&[(&cert, &key)]), &routes));
    let addr = proxy.addr("native");
    let client = ca.client(&[]);

    let mut tls = connect_verified(&client, addr, "re.ch.test").await.unwrap();
    echo_all(&mut tls, b"over TLS twice").await;
    let seen = backend.next().await;
    assert_eq!(
        seen.sni.as_deref(),
        Some("chi-demo.ns.svc"),
        "server_name is the SNI upstream"
    );
    drop(tls);
    let line = proxy.wait_log(is_access("re.ch.test"));
    assert_eq!(line["tls"], "reencrypt", "{line}");

    // The client's handshake succeeds (it is ours), then the upstream's fails: closed.
    for (sni, detail) in [
        (
            "wrong-ca.ch.test",
            "upstream tls: certificate from an unknown CA",
        ),
        (
            "wrong-name.ch.test",
            "upstream tls: certificate not valid for the server name",
        ),
    ] {
        let mut tls = connect_verified(&client, addr, sni).await.unwrap();
        let _ = tls.write_all(b"x").await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(WAIT, tls.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{sni}: {read:?}");
        let line = proxy.wait_log(|l| l["target"] == "access" && l["sni"] == sni);
        assert_eq!(line["outcome"], "upstream_tls_failed", "{line}");
        assert_eq!(line["detail"], detail, "{line}");
    }
    let (_, metrics) = proxy.admin_get("/metrics");
    let failed = metric(
        &metrics,
        "ch_edge_proxy_tls_handshakes_total",
        &["side=\"upstream\"", "result=\"bad_certificate\""],
    );
    assert_eq!(failed, 2.0, "{metrics}");
}

/// kubelet's Secret volume: `tls.crt` → `..data/tls.crt`, `..data` → `..<timestamp>/`; an
/// update writes a new timestamped directory and renames a new `..data` link over the old.
struct SecretVolume {
    dir: PathBuf,
    version: u32,
}

impl SecretVolume {
    fn new(dir: PathBuf, leaf: &Leaf) -> SecretVolume {
        std::fs::create_dir(&dir).unwrap();
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
        let mut volume = SecretVolume { dir, version: 0 };
        volume.update(&leaf.cert, &leaf.key);
        volume
    }

    fn update(&mut self, cert: &str, key: &str) {
        self.version += 1;
        let stamp = format!("..2026_11_{:02}", self.version);
        std::fs::create_dir(self.dir.join(&stamp)).unwrap();
        std::fs::write(self.dir.join(&stamp).join("tls.crt"), cert).unwrap();
        std::fs::write(self.dir.join(&stamp).join("tls.key"), key).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_certificate_is_served_to_the_next_handshake_and_a_bad_one_is_refused() {
    let backend = RawBackend::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let first = ca.leaf(&["*.ch.test"], 30);
    let certs = dir.path().join("certs");
    let mut volume = SecretVolume::new(certs.clone(), &first);
    let tls = certificates(&[(&certs.join("tls.crt"), &certs.join("tls.key"))]);
    let routes = "  - sni: \"*.ch.test\"\n    upstream: 127.0.0.1\n    tls: terminate\n";
    let mut proxy = start_in(dir, &config(backend.addr.port(), &tls, routes));
    let addr = proxy.addr("native");
    let client = ca.client(&[]);

    let mut before = connect_verified(&client, addr, "a.ch.test").await.unwrap();
    assert_eq!(served(&before), der(&first.cert));
    echo_all(&mut before, b"one").await;

    let second = ca.leaf(&["*.ch.test"], 60);
    volume.update(&second.cert, &second.key);
    proxy.wait_reload("ok");
    let mut after = connect_verified(&client, addr, "b.ch.test").await.unwrap();
    assert_eq!(served(&after), der(&second.cert));
    echo_all(&mut after, b"two").await;
    // The connection made before the swap carries on.
    echo_all(&mut before, b"still here").await;

    // A certificate with someone else's key: refused, the last good pair keeps serving.
    let third = ca.leaf(&["*.ch.test"], 90);
    volume.update(&third.cert, &first.key);
    let error = proxy.wait_reload("error");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("does not belong to the certificate"),
        "{error}"
    );
    let still = connect_verified(&client, addr, "c.ch.test").await.unwrap();
    assert_eq!(served(&still), der(&second.cert));
    echo_all(&mut before, b"and still").await;
    echo_all(&mut after, b"both").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_expiring_certificates_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let fresh = ca.leaf(&["*.ch.test"], 90).write(dir.path(), "fresh");
    let soon = ca.leaf(&["soon.ch.test"], 3).write(dir.path(), "soon");
    let expired = ca.leaf(&["old.ch.test"], -1).write(dir.path(), "expired");
    let tls = certificates(&[
        (&fresh.0, &fresh.1),
        (&soon.0, &soon.1),
        (&expired.0, &expired.1),
    ]);
    let routes = "  - sni: \"*.ch.test\"\n    upstream: 127.0.0.1\n    tls: terminate\n";
    let mut proxy = start_in(dir, &config(9, &tls, routes));
    let warned = proxy.wait_log(|l| l["message"] == "tls certificate has expired");
    assert_eq!(
        warned["certificate"],
        expired.0.display().to_string(),
        "{warned}"
    );
    let warned = proxy.wait_log(|l| l["message"] == "tls certificate expires within 14 days");
    assert_eq!(
        warned["certificate"],
        soon.0.display().to_string(),
        "{warned}"
    );
    assert_eq!(warned["days_left"], 2.0, "{warned}");

    let (_, routes) = proxy.admin_get("/routes");
    let routes: serde_json::Value = serde_json::from_str(&routes).unwrap();
    let days: Vec<f64> = routes["tls"]["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["expires_in_days"].as_f64().unwrap())
        .collect();
    assert_eq!(days, [89.0, 2.0, -2.0], "{routes}");
    // Validity as RFC 3339 in UTC, e.g. `2026-12-07T13:00:00.000Z`.
    for cert in routes["tls"]["certificates"].as_array().unwrap() {
        for field in ["not_before", "not_after"] {
            let t = cert[field].as_str().unwrap_or_default();
            assert!(t.len() == 24 && t.ends_with(".000Z"), "{field}: {cert}");
        }
    }
    let (_, metrics) = proxy.admin_get("/metrics");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (file, days) in [(&fresh.0, 90.0), (&soon.0, 3.0), (&expired.0, -1.0)] {
        let label = format!("certificate=\"{}\"", file.display());
        let at = metric(
            &metrics,
            "ch_edge_proxy_tls_certificate_expiry_timestamp_seconds",
            &[&label],
        );
        assert!(
            (at - now - days * 86400.0).abs() < 3600.0,
            "{file:?}: {at}\n{metrics}"
        );
    }

    // A client that checks dates refuses the expired one; the proxy logs why.
    let addr = proxy.addr("native");
    let refused = connect_verified(&ca.client(&[]), addr, "old.ch.test").await;
    assert!(refused.is_err());
    let line = proxy.wait_log(|l| l["target"] == "access" && l["sni"] == "old.ch.test");
    assert_eq!(line["outcome"], "tls_handshake_failed", "{line}");
    assert_eq!(
        line["detail"], "tls handshake: peer alert certificate_expired",
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_do_not_starve_handshakes_and_stalled_ones_are_bounded() {
    let backend = RawBackend::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.leaf(&["*.ch.test"], 90).write(dir.path(), "leaf");
    let tls = format!("{}  max_handshakes: 4\n", certificates(&[(&cert, &key)]));
    let routes = "  - sni: \"*.ch.test\"\n    upstream: 127.0.0.1\n    tls: terminate\n";
    let mut proxy = start_in(dir, &config(backend.addr.port(), &tls, routes));
    let addr = proxy.addr("native");
    let client = ca.client(&[]);
    let legit = |n: u32| {
        let client = client.clone();
        async move {
            let mut tls = connect_verified(&client, addr, &format!("legit-{n}.ch.test")).await?;
            echo_all(&mut tls, b"ok").await;
            Ok::<_, std::io::Error>(())
        }
    };

    // 40 clients that send nothing and 40 that send a ClientHello's first bytes: far more
    // than 4, yet none holds a handshake slot.
    let hello = client_hello("slow.ch.test");
    let mut flood = Vec::new();
    for i in 0..80 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            tcp.write_all(&hello[..10]).await.unwrap();
        }
        flood.push(tcp);
    }
    for n in 0..8 {
        legit(n)
            .await
            .unwrap_or_else(|e| panic!("legit handshake {n} under the flood: {e}"));
    }

    // 4 clients whose ClientHello is complete and who then stall hold the 4 slots: the next
    // handshake waits briefly, then is refused (internal_error) and counted.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&hello).await.unwrap();
        stalled.push(tcp);
    }
    // Each has its slot once the proxy has answered its ClientHello.
    for tcp in &mut stalled {
        let mut first = [0u8; 1];
        tokio::time::timeout(WAIT, tcp.read_exact(&mut first))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first[0], 0x16, "a ServerHello");
    }
    let busy = connect_verified(&client, addr, "busy.ch.test").await;
    assert_eq!(alert_of(busy), AlertDescription::InternalError);
    let line = proxy.wait_log(|l| l["target"] == "access" && l["outcome"] == "tls_busy");
    assert_eq!(
        line["detail"], "tls handshake: too many in flight",
        "{line}"
    );
    // The stalled handshakes end at the deadline (timeouts.client_hello), freeing the slots.
    for _ in 0..4 {
        let line =
            proxy.wait_log(|l| l["target"] == "access" && l["detail"] == "tls handshake: timeout");
        assert_eq!(line["outcome"], "tls_handshake_failed", "{line}");
    }
    legit(100).await.unwrap();
    let (_, metrics) = proxy.admin_get("/metrics");
    // Handshakes by result, and the connections they ended by outcome (route meters).
    let count = |family: &str, label: &str| metric(&metrics, family, &[label]);
    let handshakes = |result: &str| {
        count(
            "ch_edge_proxy_tls_handshakes_total",
            &format!("result=\"{result}\""),
        )
    };
    let ended = |outcome: &str| {
        count(
            "ch_edge_proxy_connections_total",
            &format!("outcome=\"{outcome}\""),
        )
    };
    assert_eq!(handshakes("busy"), 1.0, "{metrics}");
    assert_eq!(handshakes("timeout"), 4.0, "{metrics}");
    assert!(handshakes("ok") >= 9.0, "{metrics}");
    assert_eq!(ended("tls_busy"), 1.0, "{metrics}");
    assert_eq!(ended("tls_handshake_failed"), 4.0, "{metrics}");
    assert_eq!(
        ended("client_hello_timeout"),
        80.0,
        "the flood timed out before the ClientHello: {metrics}"
    );
    drop(flood);
    let _ = Duration::ZERO;
}

#[test]
fn check_refuses_a_terminating_route_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.leaf(&["*.ch.test"], 90).write(dir.path(), "leaf");
    let routes = "  - sni: \"*.ch.test\"\n    upstream: x\n    tls: terminate\n  - sni: other.test\n    upstream: x\n    tls: reencrypt\n";
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config(9, &certificates(&[(&cert, &key)]), routes)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("route \"other.test\": tls: reencrypt: no certificate in tls.certificates covers \"other.test\""),
        "{stderr}"
    );
}

/// Polls `/metrics` until `family` (summed over its series) is `n`, bounded by WAIT.
fn wait_metric(proxy: &Proxy, family: &str, n: f64) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, text) = proxy.admin_get("/metrics");
        let now = metric(&text, family, &[]);
        if now == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{family} stayed at {now}, expected {n}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_connection_holds_its_place_in_the_limits_until_it_ends() {
    let mut backend = RawBackend::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.leaf(&["*.ch.test"], 90).write(dir.path(), "leaf");
    let routes = "  - sni: \"*.ch.test\"\n    upstream: 127.0.0.1\n    tls: terminate\n";
    let yaml = format!(
        "{}limits:\n  per_client:\n    max_connections: 1\n",
        config(backend.addr.port(), &certificates(&[(&cert, &key)]), routes)
    );
    let mut proxy = start_in(dir, &yaml);
    let addr = proxy.addr("native");
    let client = ca.client(&[]);

    // While one terminated connection is open it counts as active, against its upstream
    // address and against its client's limit: a second one from the same address is refused.
    let mut first = connect_verified(&client, addr, "a.ch.test").await.unwrap();
    echo_all(&mut first, b"SELECT 1").await;
    let (_, metrics) = proxy.admin_get("/metrics");
    for family in [
        "ch_edge_proxy_active_connections",
        "ch_edge_proxy_upstream_open_connections",
    ] {
        assert_eq!(metric(&metrics, family, &[]), 1.0, "{family}: {metrics}");
    }
    let second = connect_verified(&client, addr, "b.ch.test").await;
    assert_eq!(alert_of(second), AlertDescription::AccessDenied);
    let line = proxy.wait_log(|l| l["target"] == "access" && l["outcome"] == "client_over_limit");
    // The limit is reported after the route decision, so the line names the route asked for.
    assert_eq!(line["route"], "*.ch.test", "{line}");

    // Its end is reported once, then its places are released: the next one is served.
    first.shutdown().await.unwrap();
    drop(first);
    backend.next().await;
    let line = proxy.wait_log(is_access("*.ch.test"));
    assert_eq!(line["outcome"], "relayed", "{line}");
    assert_eq!(line["bytes_from_client"], 8, "{line}");
    wait_metric(&proxy, "ch_edge_proxy_upstream_open_connections", 0.0);
    let mut third = connect_verified(&client, addr, "c.ch.test").await.unwrap();
    echo_all(&mut third, b"SELECT 2").await;
    let (_, metrics) = proxy.admin_get("/metrics");
    let relayed = metric(
        &metrics,
        "ch_edge_proxy_connections_total",
        &["route=\"*.ch.test\"", "outcome=\"relayed\""],
    );
    assert_eq!(
        relayed, 1.0,
        "one sample for the first connection: {metrics}"
    );
}

/// A terminated client whose upstream is down is told by the TLS session's own end
/// (`close_notify`: its handshake is done, so a plaintext alert is no longer valid), not a bare
/// TCP close, which its TLS library reports as an unexpected end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_client_whose_upstream_is_down_gets_close_notify() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.leaf(&["*.ch.test"], 90).write(dir.path(), "leaf");
    let closed = peers::closed_port();
    let dead = closed.port;
    let routes =
        format!("  - sni: dead.ch.test\n    upstream: \"127.0.0.1:{dead}\"\n    tls: terminate\n");
    let mut proxy = start_in(dir, &config(dead, &certificates(&[(&cert, &key)]), &routes));
    let client = ca.client(&[]);
    let mut tls = connect_verified(&client, proxy.addr("native"), "dead.ch.test")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, tls.read(&mut buf))
        .await
        .expect("an end in time");
    assert_eq!(read.map_err(|e| e.kind()), Ok(0), "a clean TLS end");
    let line = proxy.wait_log(is_access("dead.ch.test"));
    assert_eq!(line["outcome"], "upstream_unavailable", "{line}");
}

/// A terminated connection is listed in `/connections` from its handshake to its end, with the
/// plaintext bytes relayed each way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_connection_is_listed_with_its_plaintext_bytes() {
    let backend = RawBackend::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.leaf(&["*.ch.test"], 90).write(dir.path(), "leaf");
    let routes = "  - sni: \"*.ch.test\"\n    upstream: 127.0.0.1\n    tls: terminate\n";
    let yaml = config(backend.addr.port(), &certificates(&[(&cert, &key)]), routes);
    let mut proxy = start_in(dir, &yaml);
    let client = ca.client(&[]);
    let mut tls = connect_verified(&client, proxy.addr("native"), "a.ch.test")
        .await
        .unwrap();
    echo_all(&mut tls, b"SELECT 1").await;
    // The echo can reach us before the proxy's thread has counted the bytes it wrote: the
    // listing is read again (bounded) until it shows them.
    let deadline = std::time::Instant::now() + WAIT;
    let listed = loop {
        let (status, listed) = proxy.admin_get("/connections");
        assert_eq!(status, 200, "{listed}");
        let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
        let counted = listed["connections"][0]["bytes_from_upstream"] == 8;
        if counted || std::time::Instant::now() > deadline {
            break listed;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(listed["total"], 1, "{listed}");
    let c = &listed["connections"][0];
    assert_eq!(c["sni"], "a.ch.test", "{c}");
    assert_eq!(c["route"], "*.ch.test", "{c}");
    assert_eq!(c["upstream"], backend.addr.to_string().as_str(), "{c}");
    assert_eq!(c["bytes_from_client"], 8, "{c}");
    assert_eq!(c["bytes_from_upstream"], 8, "{c}");
    assert_eq!(c["state"], "relaying", "{c}");
    tls.shutdown().await.unwrap();
    drop(tls);
    proxy.wait_log(is_access("*.ch.test"));
    let (_, listed) = proxy.admin_get("/connections");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["total"], 0, "{listed}");
}
