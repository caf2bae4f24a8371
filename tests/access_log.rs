//! `log:` options through the binary: sampling keeps refusals, text format,
//! and a reload that turns the access log off.

mod support;

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::peers::{client_hello, RawBackend};
use support::*;

fn config(backend: SocketAddr, log: &str) -> String {
    format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         admin:\n  address: \"127.0.0.1:0\"\nroutes:\n  - sni: a.test\n    upstream: \"{backend}\"\n{log}"
    )
}

/// One connection with a ClientHello for `sni`, read to the end.
async fn connect(addr: SocketAddr, sni: &str) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&client_hello(sni)).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut sink = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut sink))
        .await
        .expect("closed in time")
        .unwrap();
}

/// Waits until the proxy has counted `n` connections with `outcome`: the
/// counter is bumped just before the access line would be written.
fn wait_counted(proxy: &mut Proxy, outcome: &str, n: f64) {
    let mut seen = 0.0;
    for _ in 0..2000 {
        let (_, m) = proxy.admin_get("/metrics");
        seen = metric(
            &m,
            "ch_edge_proxy_connections_total",
            &[&format!("outcome=\"{outcome}\"")],
        );
        if seen >= n {
            return;
        }
        std::thread::yield_now();
    }
    panic!("{outcome}: counted {seen}, expected {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_zero_logs_refusals_only_and_text_is_one_line() {
    let backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&config(backend.addr, "log:\n  sample: 0.0\n"));
    let addr = proxy.addr("native");
    connect(addr, "a.test").await;
    wait_counted(&mut proxy, "relayed", 1.0);
    connect(addr, "nope.test").await;
    let line = proxy.access();
    // The relayed connection was counted first, yet the first line is the refusal.
    assert_eq!(line["outcome"], "unknown_sni", "{line}");
    assert_eq!(
        proxy.seen_count(|l| l["target"] == "access" && l["outcome"] == "relayed"),
        0
    );

    // Reload to text: one message per connection, refusals included.
    write_atomic(
        &proxy.config.clone(),
        &config(backend.addr, "log:\n  access: text\n"),
    );
    proxy.wait_reload("ok");
    connect(addr, "a.test").await;
    let line = proxy.access();
    let text = line["message"].as_str().unwrap();
    assert!(
        text.contains("native sni=a.test route=a.test")
            && text.contains(&format!("upstream={}", backend.addr))
            && text.contains(" relayed in="),
        "{text}"
    );
    assert!(line.get("outcome").is_none(), "{line}");

    // Reload to off: connections are still counted, nothing is logged.
    write_atomic(
        &proxy.config.clone(),
        &config(backend.addr, "log:\n  access: off\n"),
    );
    proxy.wait_reload("ok");
    connect(addr, "nope.test").await;
    wait_counted(&mut proxy, "unknown_sni", 2.0);
    // A marker after the counted refusal: any access line would come before it.
    proxy.signal("HUP");
    proxy.wait_reload("unchanged");
    assert_eq!(
        proxy.seen_count(|l| l["target"] == "access"),
        0,
        "access: off still logged"
    );
}
