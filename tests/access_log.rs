//! `log:` options through the binary: sampling keeps refusals, and a reload that turns the
//! access log off (the text format: `tests/log_format.rs`).

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
async fn sample_zero_logs_refusals_only_and_off_logs_nothing() {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_access_line_is_lost_on_sigterm() {
    let backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&config(backend.addr, ""));
    let addr = proxy.addr("native");
    let n = 200;
    let clients: Vec<_> = (0..n)
        .map(|_| tokio::spawn(connect(addr, "a.test")))
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    // Every connection has ended (each client read to EOF after the backend's): stop at once,
    // before the writer's next periodic flush.
    assert!(proxy.terminate().success());
    let lines = proxy.rest_of_log();
    let relayed = lines
        .iter()
        .filter(|l| l["target"] == "access" && l["outcome"] == "relayed")
        .count();
    assert_eq!(relayed, n, "access lines written before exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_flood_logs_a_bounded_number_of_lines() {
    let backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&config(backend.addr, ""));
    let addr = proxy.addr("native");
    let n = 600;
    for chunk in 0..n / 100 {
        let batch: Vec<_> = (0..100)
            .map(|i| {
                let sni = format!("flood{}.test", chunk * 100 + i);
                tokio::spawn(async move { connect(addr, &sni).await })
            })
            .collect();
        for c in batch {
            c.await.unwrap();
        }
    }
    wait_counted(&mut proxy, "unknown_sni", n as f64);
    let (_, m) = proxy.admin_get("/metrics");
    let suppressed = metric(
        &m,
        "ch_edge_proxy_log_lines_suppressed_total",
        &["outcome=\"unknown_sni\""],
    );
    assert!(proxy.terminate().success());
    let lines = proxy.rest_of_log();
    let logged = lines
        .iter()
        .filter(|l| {
            l["target"] == "access" && l["outcome"] == "unknown_sni" && l["sni"].is_string()
        })
        .count();
    let summed: u64 = lines
        .iter()
        .filter(|l| l["target"] == "access" && l["suppressed"].is_u64())
        .map(|l| l["suppressed"].as_u64().unwrap())
        .sum();
    // Every refusal is either a line or counted in a summary line (and in the metric).
    assert_eq!(
        logged as u64 + summed,
        n as u64,
        "{logged} lines + {summed} summed up"
    );
    assert!(summed > 0 && suppressed > 0.0, "the flood was not limited");
    // 600 refusals in far under 6 s: at most 100 lines per second it took, plus one second.
    assert!(logged < n, "{logged}");
}
