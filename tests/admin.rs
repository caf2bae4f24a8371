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
    const OPENED: usize = 40;
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
    assert!(refused >= (OPENED - 32) as f64, "{m}");
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
