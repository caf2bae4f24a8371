//! Accept-side limits: running out of file descriptors backs off and recovers.

mod support;

use support::peers::{self, RawBackend};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emfile_backs_off_counts_and_recovers() {
    let mut backend = RawBackend::start(false).await;
    let yaml = format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         admin:\n  address: \"127.0.0.1:0\"\nroutes:\n  - sni: demo.ch.test\n    upstream: \"{}\"\n",
        backend.addr
    );
    // Room for the runtime, stdio, listeners and a handful of connections.
    let mut proxy = Proxy::start_with_fd_limit(&yaml, 48);
    let addr = proxy.addr("native");
    // Hold connections in the ClientHello phase until accept hits EMFILE;
    // the kernel still completes the handshakes into the backlog.
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&[0x16]).await.unwrap();
        held.push(tcp);
    }
    let warn = proxy.wait_log(|l| l["message"] == "accept failed; backing off");
    assert_eq!(warn["level"], "WARN");
    // Free the descriptors: every held connection is eventually accepted and
    // closed, and a real one is relayed again.
    drop(held);
    let hello = peers::client_hello("demo.ch.test");
    // The backlog of held connections is accepted and closed first; until it is, a new
    // connection may still find no descriptor for its upstream socket and be closed
    // (`upstream_unavailable`). Service must come back, within WAIT.
    let deadline = std::time::Instant::now() + WAIT;
    while peers::exchange(addr, &hello).await != hello {
        assert!(
            std::time::Instant::now() < deadline,
            "no connection relayed once descriptors returned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(backend.next().await.bytes, hello);
    let relayed = proxy.wait_log(|l| l["target"] == "access" && l["outcome"] == "relayed");
    assert_eq!(relayed["route"], "demo.ch.test");
    // The admin socket needs a descriptor too; by now there are plenty.
    let (_, m) = proxy.admin_get("/metrics");
    assert!(
        metric(
            &m,
            "ch_edge_proxy_accept_errors_total",
            &["listener=\"native\""]
        ) >= 1.0,
        "{m}"
    );
}

/// Both legs of a relayed connection run TCP keepalive (the NLB forgets flows idle for 350 s):
/// the client leg from accept (inherited from the listener), the upstream leg once the
/// connection outlives its first relay timer, `min(timeouts.idle, 60 s)` — short connections
/// skip those four setsockopt calls. Checked from outside with `ss`, which shows the keepalive
/// timer of each socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_legs_have_tcp_keepalive() {
    let Some(ss) = tool("ss") else { return };
    let backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         timeouts:\n  idle: 1s\n\
         routes:\n  - sni: demo.ch.test\n    upstream: \"{}\"\n",
        backend.addr
    ));
    let addr = proxy.addr("native");
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let hello = peers::client_hello("demo.ch.test");
    tcp.write_all(&hello).await.unwrap();
    let mut echoed = vec![0u8; hello.len()];
    tcp.read_exact(&mut echoed).await.unwrap();
    // The proxy's accepted socket (source port = listener) and its upstream socket
    // (destination port = backend).
    let keepalive = |filter: &str| {
        let out = std::process::Command::new(&ss)
            .args(["-tnoH", "state", "established", filter])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let sockets: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!sockets.is_empty(), "no socket for {filter}: {text}");
        (sockets.iter().all(|l| l.contains("keepalive")), text)
    };
    let client_leg = format!("sport = :{}", addr.port());
    let upstream_leg = format!("dport = :{}", backend.addr.port());
    let (on, text) = keepalive(&client_leg);
    assert!(on, "client leg: {text}");
    // Keep the connection busy (one byte echoed every 200 ms, well inside the idle timeout)
    // until the upstream leg shows keepalive, for at most WAIT.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (on, text) = keepalive(&upstream_leg);
        if on {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "upstream leg: {text}");
        // Pacing the traffic, not waiting for an event: the loop waits on ss.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        tcp.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        tcp.read_exact(&mut b).await.unwrap();
    }
    drop(tcp);
    assert_eq!(proxy.access()["outcome"], "relayed");
}
