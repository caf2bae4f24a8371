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
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let hello = peers::client_hello("demo.ch.test");
    tcp.write_all(&hello).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, hello);
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
