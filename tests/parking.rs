//! Quiet relayed connections are parked (out of the reactor, no task) after two seconds and
//! resume on the first byte from either side, with byte counts, idle expiry and the drain
//! unchanged.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn config(extra: &str, upstream: std::net::SocketAddr) -> String {
    format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\nadmin:\n  address: \"127.0.0.1:0\"\n{extra}\
         routes:\n  - sni: demo.ch.test\n    upstream: \"{upstream}\"\n"
    )
}

/// Polls `/metrics` until `ch_edge_proxy_parked_connections` is `n` (bounded by WAIT).
fn wait_parked(proxy: &Proxy, n: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, text) = proxy.admin_get("/metrics");
        let parked = metric(&text, "ch_edge_proxy_parked_connections", &[]);
        if parked == n as f64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "parked connections stayed at {parked}, expected {n}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A client connection through the proxy and the backend's side of it, the hello delivered.
async fn connected(proxy: &Proxy, backend: &TcpListener) -> (TcpStream, TcpStream, usize) {
    let hello = support::peers::client_hello("demo.ch.test");
    let mut client = TcpStream::connect(proxy.addr("native")).await.unwrap();
    client.write_all(&hello).await.unwrap();
    let (mut upstream, _) = tokio::time::timeout(WAIT, backend.accept())
        .await
        .unwrap()
        .unwrap();
    let mut got = vec![0u8; hello.len()];
    upstream.read_exact(&mut got).await.unwrap();
    assert_eq!(got, hello);
    (client, upstream, hello.len())
}

async fn read_n(tcp: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut buf))
        .await
        .expect("bytes in time")
        .unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_resumes_from_either_side_and_counts_every_byte() {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut proxy = Proxy::start(&config("", backend.local_addr().unwrap()));
    let (mut client, mut upstream, hello) = connected(&proxy, &backend).await;

    wait_parked(&proxy, 1);
    // Woken by the client.
    client.write_all(b"ping").await.unwrap();
    assert_eq!(read_n(&mut upstream, 4).await, b"ping");
    let answer: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    upstream.write_all(&answer).await.unwrap();
    assert!(read_n(&mut client, answer.len()).await == answer);

    wait_parked(&proxy, 1);
    // Woken by the upstream.
    upstream.write_all(b"later").await.unwrap();
    assert_eq!(read_n(&mut client, 5).await, b"later");

    wait_parked(&proxy, 1);
    // Woken by a half-close: the other direction still relays afterwards.
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, upstream.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    upstream.write_all(b"bye").await.unwrap();
    drop(upstream);
    let mut tail = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut tail))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tail, b"bye");

    let line = proxy.access();
    assert_eq!(line["outcome"], "relayed");
    assert_eq!(line["bytes_from_client"], (hello + 4) as u64);
    assert_eq!(
        line["bytes_from_upstream"],
        (answer.len() + 5 + 3) as u64,
        "{line}"
    );
    wait_parked(&proxy, 0);
    let (_, text) = proxy.admin_get("/metrics");
    assert_eq!(
        metric(
            &text,
            "ch_edge_proxy_connections_total",
            &["outcome=\"relayed\""]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_expires_at_its_idle_deadline() {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut proxy = Proxy::start(&config(
        "timeouts:\n  idle: 3s\n",
        backend.local_addr().unwrap(),
    ));
    let (mut client, mut upstream, _) = connected(&proxy, &backend).await;
    wait_parked(&proxy, 1);
    // Both sides see the close once the idle deadline passes, parked or not.
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(WAIT, upstream.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    let line = proxy.access();
    assert_eq!(line["outcome"], "idle_timeout");
    assert!(line["duration_ms"].as_u64().unwrap() >= 3000, "{line}");
    wait_parked(&proxy, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_parked_connections_like_the_others() {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut proxy = Proxy::start(&config(
        "timeouts:\n  drain: 30s\n",
        backend.local_addr().unwrap(),
    ));
    let (mut client, mut upstream, hello) = connected(&proxy, &backend).await;
    wait_parked(&proxy, 1);
    proxy.signal("TERM");
    proxy.wait_log(|l| l["message"] == "draining");
    // Still relayed while the drain waits for it, and the exit waits for its end.
    client.write_all(b"still here").await.unwrap();
    assert_eq!(read_n(&mut upstream, 10).await, b"still here");
    upstream.write_all(b"ok").await.unwrap();
    assert_eq!(read_n(&mut client, 2).await, b"ok");
    drop(client);
    drop(upstream);
    assert!(proxy.wait_exit().success());
    let rest = proxy.rest_of_log();
    let access: Vec<_> = rest.iter().filter(|l| l["target"] == "access").collect();
    assert_eq!(access.len(), 1, "{rest:#?}");
    assert_eq!(access[0]["bytes_from_client"], (hello + 10) as u64);
    assert_eq!(access[0]["bytes_from_upstream"], 2);
}

/// A terminated TLS connection parks too (its rustls state beside its sockets), wakes on the
/// client's next record and relays both ways, parks again, and still ends at its idle
/// deadline with every plaintext byte counted.
/// A proxy terminating `*.ch.test` in front of an echo backend (idle timeout `idle`), and a
/// client trusting its certificate.
fn terminating(
    backend: &support::peers::RawBackend,
    timeouts: &str,
) -> (Proxy, tokio_rustls::TlsConnector) {
    use support::certs::Ca;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.leaf(&["*.ch.test"], 90).write(dir.path(), "leaf");
    let yaml = format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9\n    upstream_port_plain: {}\n\
         admin:\n  address: \"127.0.0.1:0\"\n\
         timeouts:\n{timeouts}\
         tls:\n  certificates:\n    - cert: {}\n      key: {}\n\
         routes:\n  - sni: \"*.ch.test\"\n    upstream: 127.0.0.1\n    tls: terminate\n",
        backend.addr.port(),
        cert.display(),
        key.display()
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    (Proxy::start_file(&path, dir), ca.client(&[]))
}

/// A terminated TLS connection parks too (its rustls state beside its sockets), wakes on the
/// client's next record and relays both ways, parks again, and still ends at its idle
/// deadline with every plaintext byte counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_terminated_connection_resumes_and_expires_at_its_idle_deadline() {
    let backend = support::peers::RawBackend::start(false).await;
    let (mut proxy, client) = terminating(&backend, "  idle: 5s\n");
    let mut tls = support::certs::connect_verified(&client, proxy.addr("native"), "a.ch.test")
        .await
        .unwrap();
    echo(&mut tls, b"SELECT 1").await;
    wait_parked(&proxy, 1);
    echo(&mut tls, b"SELECT 22").await;
    // Quiet from here: the idle deadline ends it, parked.
    let last_byte = Instant::now();
    wait_parked(&proxy, 1);
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut rest))
        .await
        .expect("closed at the idle deadline");
    assert!(rest.is_empty());
    assert!(
        last_byte.elapsed() >= Duration::from_secs(4),
        "closed too early"
    );
    let line = proxy.wait_log(|l| l["target"] == "access");
    assert_eq!(line["outcome"], "idle_timeout", "{line}");
    assert_eq!(line["bytes_from_client"], 17, "{line}");
    assert_eq!(line["bytes_from_upstream"], 17, "{line}");
    wait_parked(&proxy, 0);
}

/// The drain hands a parked terminated connection back to a relay: it still relays, ends
/// with close_notify both ways, and the exit waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_parked_terminated_connections() {
    let backend = support::peers::RawBackend::start(false).await;
    let (mut proxy, client) = terminating(&backend, "  drain: 30s\n");
    let mut tls = support::certs::connect_verified(&client, proxy.addr("native"), "a.ch.test")
        .await
        .unwrap();
    echo(&mut tls, b"SELECT 1").await;
    wait_parked(&proxy, 1);
    proxy.signal("TERM");
    proxy.wait_log(|l| l["message"] == "draining");
    echo(&mut tls, b"still here").await;
    tls.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut rest))
        .await
        .unwrap()
        .expect("a clean TLS end (close_notify)");
    assert!(rest.is_empty());
    drop(tls);
    assert!(proxy.wait_exit().success());
    let rest = proxy.rest_of_log();
    let access: Vec<_> = rest.iter().filter(|l| l["target"] == "access").collect();
    assert_eq!(access.len(), 1, "{rest:#?}");
    assert_eq!(access[0]["outcome"], "relayed");
    assert_eq!(access[0]["bytes_from_client"], 18);
    assert_eq!(access[0]["bytes_from_upstream"], 18);
}
