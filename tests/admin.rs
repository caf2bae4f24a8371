//! Admin endpoint and command line, driven through the binary.

mod support;

use std::process::Command;

use support::peers::RawBackend;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_routes() {
    let backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n  - name: https\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         admin:\n  address: \"127.0.0.1:0\"\nroutes:\n  - sni: demo.ch.test\n    upstream: \"{}\"\n",
        backend.addr
    ));
    assert_eq!(proxy.admin_get("/healthz").0, 200);
    assert_eq!(proxy.admin_get("/readyz").0, 200);
    assert_eq!(proxy.admin_get("/nope").0, 404);
    let (status, routes) = proxy.admin_get("/routes");
    assert_eq!(status, 200);
    let routes: serde_json::Value = serde_json::from_str(&routes).unwrap();
    assert_eq!(routes["route_count"], 1);
    assert_eq!(routes["routes"][0]["name"], "demo.ch.test");

    // One relayed connection on each listener shows up by listener and route.
    for listener in ["native", "https"] {
        let hello = support::peers::client_hello("demo.ch.test");
        let back = support::peers::exchange(proxy.addr(listener), &hello).await;
        assert_eq!(back, hello);
        let line = proxy.access();
        assert_eq!(line["listener"], listener);
        for field in [
            "client",
            "peer",
            "sni",
            "route",
            "upstream",
            "outcome",
            "bytes_from_client",
            "bytes_from_upstream",
            "duration_ms",
            "client_hello_us",
            "connect_us",
        ] {
            assert!(!line[field].is_null(), "access log lacks {field}: {line}");
        }
    }
    let (_, m) = proxy.admin_get("/metrics");
    for listener in ["native", "https"] {
        assert_eq!(
            metric(
                &m,
                "ch_edge_proxy_connections_total",
                &[
                    &format!("listener=\"{listener}\""),
                    "route=\"demo.ch.test\"",
                    "outcome=\"relayed\""
                ]
            ),
            1.0,
            "{m}"
        );
    }
    assert!(
        metric(
            &m,
            "ch_edge_proxy_client_bytes_total",
            &["route=\"demo.ch.test\""]
        ) > 0.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "ch_edge_proxy_upstream_bytes_total",
            &["route=\"demo.ch.test\""]
        ) > 0.0,
        "{m}"
    );
    assert!(
        metric(&m, "ch_edge_proxy_client_hello_seconds_count", &[]) >= 2.0,
        "{m}"
    );
    assert!(
        metric(&m, "ch_edge_proxy_upstream_connect_seconds_count", &[]) >= 2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "ch_edge_proxy_active_connections", &[]),
        0.0,
        "{m}"
    );
    assert_eq!(metric(&m, "ch_edge_proxy_routes", &[]), 1.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_unready_drains_and_exits_zero() {
    let backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\nadmin:\n  address: \"127.0.0.1:0\"\n\
         timeouts:\n  drain: 30s\nroutes:\n  - sni: demo.ch.test\n    upstream: \"{}\"\n",
        backend.addr
    ));
    let hello = support::peers::client_hello("demo.ch.test");
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr("native"))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, &hello)
        .await
        .unwrap();
    let mut echoed = vec![0u8; hello.len()];
    tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut echoed)
        .await
        .unwrap();
    proxy.signal("TERM");
    proxy.wait_log(|l| l["message"] == "draining");
    // Stopped accepting, yet the live connection still relays.
    assert_eq!(proxy.admin_get("/readyz").0, 503);
    assert!(tokio::net::TcpStream::connect(proxy.addr("native"))
        .await
        .is_err());
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"still here")
        .await
        .unwrap();
    let mut more = [0u8; 10];
    tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut more)
        .await
        .unwrap();
    assert_eq!(&more, b"still here");
    drop(tcp);
    assert!(proxy.wait_exit().success());
}

fn check(yaml: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_example_config_and_prints_a_summary() {
    let out = Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"))
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/ch-edge-proxy.yaml"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("native") && stdout.contains("https"),
        "{stdout}"
    );
}

#[test]
fn check_rejects_each_kind_of_bad_config_with_a_precise_message() {
    let base = "listeners:\n  - name: native\n    address: \"127.0.0.1:9440\"\n";
    let cases = [
        (format!("{base}bogus: 1\n"), "bogus"),
        (format!("{base}routes:\n  - sni: a.test\n    upstream: up1\n    allow: [\"10.0.0.0/33\"]\n"), "10.0.0.0/33"),
        (
            format!("{base}routes:\n  - sni: a.test\n    upstream: up1\n  - sni: A.test.\n    upstream: up2\n"),
            "a.test",
        ),
        (
            "listeners:\n  - name: nlb\n    address: \"127.0.0.1:9440\"\n    proxy_protocol:\n      mode: required\n".to_string(),
            "trusted",
        ),
        (format!("{base}include: [\"/nonexistent/routes.d\"]\n"), "/nonexistent/routes.d"),
        (format!("{base}timeouts:\n  idle: 5 parsecs\n"), "idle"),
    ];
    for (yaml, needle) in cases {
        let (ok, _, stderr) = check(&yaml);
        assert!(!ok, "accepted:\n{yaml}");
        assert!(
            stderr.contains(needle),
            "message for\n{yaml}\nlacks {needle:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listeners_serve_only_their_endpoints() {
    let backend = RawBackend::start(false).await;
    let proxy = Proxy::start(&format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         admin:\n  listeners:\n    - {{address: \"127.0.0.1:0\", serve: [probes, metrics]}}\n    - {{address: \"127.0.0.1:0\", serve: [routes]}}\n\
         routes:\n  - sni: demo.ch.test\n    upstream: \"{}\"\n",
        backend.addr
    ));
    let public = proxy.admin_serving("probes");
    let private = proxy.admin_serving("routes");
    assert_ne!(public, private);
    assert_eq!(proxy.admin_serving("metrics"), public);
    assert_eq!(http_get(public, "/healthz").0, 200);
    assert_eq!(http_get(public, "/readyz").0, 200);
    let (status, metrics) = http_get(public, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        metric(&metrics, "ch_edge_proxy_ready", &[]),
        1.0,
        "{metrics}"
    );
    assert_eq!(http_get(public, "/routes").0, 404);
    let (status, routes) = http_get(private, "/routes");
    assert_eq!(status, 200);
    assert!(routes.contains("demo.ch.test"), "{routes}");
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(http_get(private, path).0, 404, "{path}");
    }
}

/// Idle admin connections cannot pile up: past the per-listener cap they are closed at accept
/// and counted, and the ones held are closed by the header deadline, after which probes are
/// answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_admin_connections_are_capped_and_timed_out() {
    let proxy = Proxy::start(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         admin:\n  address: \"127.0.0.1:0\"\n",
    );
    let admin = proxy.admin.unwrap();
    // One address gets a quarter of the cap of 32 and of the 16 places over it (one probe
    // each, 1 s header deadline): 12; the rest are closed at accept.
    const OPENED: usize = 60;
    let idle: Vec<std::net::TcpStream> = (0..OPENED)
        .map(|_| std::net::TcpStream::connect(admin).unwrap())
        .collect();
    // Every one ends (closed at once over the cap, else after the header deadline) without
    // sending a byte; a read that timed out instead would fail here.
    for mut tcp in idle {
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let mut rest = Vec::new();
        match std::io::Read::read_to_end(&mut tcp, &mut rest) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }
    let (status, m) = proxy.admin_get("/metrics");
    assert_eq!(status, 200);
    let refused = metric(&m, "ch_edge_proxy_admin_over_limit_total", &[]);
    assert!(refused >= (OPENED - 8 - 4) as f64, "{m}");
    assert!(refused < OPENED as f64, "{m}");
    assert_eq!(proxy.admin_get("/healthz").0, 200);
}

/// Out of descriptors with a probe waiting, the admin accept loop backs off instead of spinning
/// (it used to take a core), counts its errors, and answers the probe once descriptors return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_backs_off_on_emfile_and_answers_once_descriptors_return() {
    let backend = RawBackend::start(false).await;
    // A long ClientHello deadline: the held connections keep their descriptors until dropped.
    let yaml = format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         admin:\n  address: \"127.0.0.1:0\"\ntimeouts:\n  client_hello: 60s\n\
         routes:\n  - sni: demo.ch.test\n    upstream: \"{}\"\n",
        backend.addr
    );
    let mut proxy = Proxy::start_with_fd_limit(&yaml, 48);
    let addr = proxy.addr("native");
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut tcp, &[0x16])
            .await
            .unwrap();
        held.push(tcp);
    }
    proxy.wait_log(|l| l["listener"] == "native" && l["message"] == "accept failed; backing off");
    // The kernel completes the probe's handshake into the backlog; the proxy cannot accept it.
    let admin = proxy.admin.unwrap();
    let probe = std::thread::spawn(move || http_get(admin, "/healthz"));
    let first = proxy
        .wait_log(|l| l["listener"] == "admin" && l["message"] == "accept failed; backing off");
    let (cpu_before, wall_before) = (proxy.cpu_time(), std::time::Instant::now());
    // Backing off doubles each wait up to 1 s: seeing that wait means ~1.3 s spent retrying.
    proxy.wait_log(|l| l["listener"] == "admin" && l["backoff_ms"] == 1000);
    let (cpu, wall) = (proxy.cpu_time() - cpu_before, wall_before.elapsed());
    assert!(first["backoff_ms"].as_u64().unwrap() < 1000);
    // A spinning loop would use about one core for the whole wait (it used ~1.2); allow a
    // quarter of one (measured: ~10 ms of CPU in ~1.3 s).
    assert!(
        cpu.as_secs_f64() < 0.25 * wall.as_secs_f64(),
        "the proxy used {cpu:?} of CPU in {wall:?} while out of descriptors"
    );
    drop(held);
    let (status, body) = probe.join().unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (_, m) = proxy.admin_get("/metrics");
    assert!(
        metric(&m, "ch_edge_proxy_admin_accept_errors_total", &[]) >= 1.0,
        "{m}"
    );
}

/// A connection to `addr` from the loopback address `127.0.0.<source>`.
fn connect_from(source: u8, addr: std::net::SocketAddr) -> std::net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from = std::net::SocketAddr::from(([127, 0, 0, source], 0));
    socket.bind(&from.into()).unwrap();
    socket.connect_timeout(&addr.into(), WAIT).unwrap();
    let tcp: std::net::TcpStream = socket.into();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp
}

/// One HTTP/1.0 GET on `tcp` with `headers` (each ending in CRLF): (status, body).
fn get_on(mut tcp: std::net::TcpStream, path: &str, headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: x\r\n{headers}\r\n").unwrap();
    let mut resp = String::new();
    // A connection closed at accept reads as a reset or nothing: status 0.
    let _ = tcp.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, body.to_string())
}

/// A keep-alive admin connection from `127.0.0.<source>` the proxy has accepted (a probe
/// answered on it), left idle: it holds one of the listener's places. `partial`: it then
/// starts another request and stalls (slow loris).
fn held_admin_connection(
    source: u8,
    admin: std::net::SocketAddr,
    partial: bool,
) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut tcp = connect_from(source, admin);
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"\r\n\r\nok\n") {
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(
        !head.contains("connection: close"),
        "not kept alive: {head}"
    );
    if partial {
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost:").unwrap();
    }
    tcp
}

/// Eight kept-alive connections from `127.0.0.<source>`, every other one stalled mid-request.
fn hold_share(source: u8, admin: std::net::SocketAddr) -> Vec<std::net::TcpStream> {
    (0..8)
        .map(|i| held_admin_connection(source, admin, i % 2 == 1))
        .collect()
}

/// Whoever holds the admin listener's connection cap (idle connections, slow-loris partial
/// requests) cannot fail the kubelet's probes: over the cap they are still answered, and only
/// them; anything else gets a 503 and is counted. One address holds at most a quarter of the
/// cap. (Before, connections over the cap were closed at accept, probes with them.)
#[test]
fn probes_are_answered_while_the_admin_cap_is_held() {
    let proxy = Proxy::start(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         admin:\n  address: \"127.0.0.1:0\"\n",
    );
    let admin = proxy.admin.unwrap();
    // One address holds its share: more from it get probes only, others are served in full.
    let mut held = hold_share(2, admin);
    assert_eq!(get_on(connect_from(2, admin), "/metrics", "").0, 503);
    assert_eq!(
        get_on(connect_from(2, admin), "/healthz", ""),
        (200, "ok\n".into())
    );
    assert_eq!(http_get(admin, "/metrics").0, 200);
    // Four addresses hold the whole cap.
    for source in 3..=5 {
        held.extend(hold_share(source, admin));
    }
    let (status, body) = http_get(admin, "/metrics");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("/healthz"), "{body}");
    assert_eq!(http_get(admin, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(admin, "/readyz"), (200, "ready\n".to_string()));
    assert_eq!(http_get(admin, "/routes").0, 503);
    assert_eq!(http_get(admin, "/").0, 503);
    drop(held);
    // Each held connection's place comes back when it closes; then everything is served.
    let deadline = std::time::Instant::now() + WAIT;
    let m = loop {
        let (status, m) = http_get(admin, "/metrics");
        if status == 200 {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "the cap stayed held");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        metric(&m, "ch_edge_proxy_admin_over_limit_total", &[]) >= 4.0,
        "{m}"
    );
}

/// HTTP/1.0 GET with an `Accept` header: (status, body).
fn http_get_accept(addr: std::net::SocketAddr, path: &str, accept: &str) -> (u16, String) {
    get_on(
        connect_from(1, addr),
        path,
        &format!("Accept: {accept}\r\n"),
    )
}

/// `2026-12-07T13:00:00.123Z`: RFC 3339, UTC, milliseconds.
fn assert_rfc3339(v: &serde_json::Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    let b = s.as_bytes();
    let shape = s.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && s.chars().filter(char::is_ascii_digit).count() == 17;
    assert!(shape, "not RFC 3339 UTC with milliseconds: {s}");
}

/// At most three decimals.
fn assert_rounded_ms(v: &serde_json::Value) {
    let ms = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    let text = v.to_string();
    let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
    assert!(ms >= 0.0 && decimals <= 3, "not rounded: {text}");
}

/// `/` lists what the listener serves; `/routes` writes times as RFC 3339 and durations
/// rounded, also after a failed reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_lists_the_endpoints_served_and_routes_shows_readable_times() {
    let backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         admin:\n  listeners:\n    - {{address: \"127.0.0.1:0\", serve: [probes, metrics]}}\n    - {{address: \"127.0.0.1:0\", serve: [routes]}}\n\
         routes:\n  - sni: demo.ch.test\n    upstream: \"{}\"\n",
        backend.addr
    ));
    let (public, private) = (proxy.admin_serving("probes"), proxy.admin_serving("routes"));
    let (status, index) = http_get(public, "/");
    assert_eq!(status, 200);
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert!(index.contains(path), "{index}");
    }
    assert!(
        !index.contains("/routes") && !index.contains("/connections"),
        "{index}"
    );
    let (status, index) = http_get_accept(private, "/", "application/json");
    assert_eq!(status, 200);
    let index: serde_json::Value = serde_json::from_str(&index).unwrap();
    let paths: Vec<&str> = index["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(!e["description"].as_str().unwrap().is_empty(), "{e}");
            e["path"].as_str().unwrap()
        })
        .collect();
    assert_eq!(paths, ["/routes", "/connections"]);

    // A failed reload, so that every reload time is there.
    std::fs::write(&proxy.config, "listeners: [\n").unwrap();
    proxy.signal("HUP");
    proxy.wait_reload("error");
    let (_, routes) = http_get(private, "/routes");
    let routes: serde_json::Value = serde_json::from_str(&routes).unwrap();
    assert_rfc3339(&routes["last_reload"]["at"]);
    assert_rounded_ms(&routes["last_reload"]["duration_ms"]);
    assert_rfc3339(&routes["last_success_at"]);
    assert_rfc3339(&routes["last_error"]["at"]);
}

/// Reads until `tcp` has returned `n` bytes.
async fn read_n(tcp: &mut tokio::net::TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read_exact(tcp, &mut buf))
        .await
        .expect("bytes in time")
        .unwrap();
    buf
}

/// `/connections` of the private admin listener, parsed.
fn connections(proxy: &Proxy, query: &str) -> serde_json::Value {
    let (status, body) = http_get(
        proxy.admin_serving("routes"),
        &format!("/connections{query}"),
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// `/connections` lists live relayed connections oldest first, with the real client from the
/// PROXY header, SNI, route, upstream and the bytes moved so far (parked ones too), bounded by
/// `?limit`; an ended connection is gone from it by the time its access-log line is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_lists_live_connections_with_their_bytes() {
    use tokio::io::AsyncWriteExt;
    let backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         \x20 - name: nlb\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         \x20   proxy_protocol: {{mode: required, trusted: [\"127.0.0.1/32\"]}}\n\
         admin:\n  listeners:\n    - {{address: \"127.0.0.1:0\", serve: [probes, metrics]}}\n    - {{address: \"127.0.0.1:0\", serve: [routes]}}\n\
         routes:\n  - sni: demo.ch.test\n    upstream: \"{}\"\n  - sni: \"*.other.test\"\n    upstream: \"{}\"\n",
        backend.addr, backend.addr
    ));
    let empty = connections(&proxy, "");
    assert_eq!(empty["total"], 0);

    // The first: direct, its hello and 4 more bytes each way.
    let hello = support::peers::client_hello("demo.ch.test");
    let mut first = tokio::net::TcpStream::connect(proxy.addr("native"))
        .await
        .unwrap();
    first.write_all(&hello).await.unwrap();
    assert_eq!(read_n(&mut first, hello.len()).await, hello);
    first.write_all(b"ping").await.unwrap();
    assert_eq!(read_n(&mut first, 4).await, b"ping");
    // The second: behind a PROXY header naming the real client.
    let other = support::peers::client_hello("a.other.test");
    let mut second = tokio::net::TcpStream::connect(proxy.addr("nlb"))
        .await
        .unwrap();
    second
        .write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 9440\r\n")
        .await
        .unwrap();
    second.write_all(&other).await.unwrap();
    assert_eq!(read_n(&mut second, other.len()).await, other);

    let listed = connections(&proxy, "");
    assert_eq!(
        (listed["total"].as_u64(), listed["truncated"].as_bool()),
        (Some(2), Some(false))
    );
    let (a, b) = (&listed["connections"][0], &listed["connections"][1]);
    let upstream = backend.addr.to_string();
    assert_eq!(a["listener"], "native");
    assert_eq!(a["sni"], "demo.ch.test");
    assert_eq!(a["route"], "demo.ch.test");
    assert_eq!(a["upstream"], upstream.as_str());
    assert_eq!(
        a["client"],
        first.local_addr().unwrap().to_string().as_str()
    );
    assert!(a["peer"].is_null(), "the client is the peer: {a}");
    let moved = (hello.len() + 4) as u64;
    assert_eq!(a["bytes_from_client"].as_u64(), Some(moved), "{a}");
    assert_eq!(a["bytes_from_upstream"].as_u64(), Some(moved), "{a}");
    assert_rfc3339(&a["opened_at"]);
    assert_rounded_ms(&a["age_ms"]);
    assert_eq!(b["listener"], "nlb");
    assert_eq!(b["sni"], "a.other.test");
    assert_eq!(b["route"], "*.other.test");
    assert_eq!(b["client"], "203.0.113.7:40000");
    assert_eq!(b["peer"], second.local_addr().unwrap().to_string().as_str());
    assert_eq!(
        b["bytes_from_upstream"].as_u64(),
        Some(other.len() as u64),
        "{b}"
    );

    let one = connections(&proxy, "?limit=1");
    assert_eq!(one["connections"].as_array().unwrap().len(), 1);
    assert_eq!(
        (one["total"].as_u64(), one["truncated"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(one["connections"][0]["sni"], "demo.ch.test", "oldest first");
    let private = proxy.admin_serving("routes");
    assert_eq!(http_get(private, "/connections?limit=10001").0, 400);
    assert_eq!(http_get(private, "/connections?limit=x").0, 400);
    assert_eq!(
        http_get(proxy.admin_serving("probes"), "/connections").0,
        404
    );

    // Quiet, they park, and are still listed with their counts.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let listed = connections(&proxy, "");
        let states: Vec<&str> = listed["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["state"].as_str().unwrap())
            .collect();
        if states == ["parked", "parked"] {
            assert_eq!(
                listed["connections"][0]["bytes_from_client"].as_u64(),
                Some(moved)
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never parked: {states:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Woken, it counts on.
    first.write_all(b"pong!").await.unwrap();
    assert_eq!(read_n(&mut first, 5).await, b"pong!");
    let a = &connections(&proxy, "")["connections"][0];
    assert_eq!(a["bytes_from_upstream"].as_u64(), Some(moved + 5), "{a}");

    // Ended, it is gone once its access-log line is out.
    first.shutdown().await.unwrap();
    support::peers::read_until_eof(&mut first).await;
    let line = proxy.access();
    assert_eq!(line["sni"], "demo.ch.test");
    let listed = connections(&proxy, "");
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["connections"][0]["sni"], "a.other.test");
}
