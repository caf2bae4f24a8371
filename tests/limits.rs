//! Per-client limits with real sockets: one client address over its limit cannot take another
//! one's place; clients are told apart by the real address a trusted PROXY header carries.

mod support;

use std::net::SocketAddr;
use std::time::Instant;

use support::peers::{client_hello, RawBackend};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn config(backend: SocketAddr, per_client: &str) -> String {
    format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         \x20   proxy_protocol: {{mode: optional, trusted: [\"127.0.0.1/32\"]}}\n\
         admin:\n  address: \"127.0.0.1:0\"\nlimits:\n  per_client: {per_client}\n\
         routes:\n  - sni: a.test\n    upstream: \"{backend}\"\n"
    )
}

/// A connection from `source` (a loopback address) that sent a ClientHello for a.test.
async fn hello_from(source: &str, proxy: SocketAddr, prefix: &[u8]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut tcp = socket.connect(proxy).await.unwrap();
    let mut first = prefix.to_vec();
    first.extend_from_slice(&client_hello("a.test"));
    tcp.write_all(&first).await.unwrap();
    tcp
}

/// Relayed (the echo backend answers with the hello) or refused (an alert record, then EOF).
async fn relayed(tcp: &mut TcpStream) -> bool {
    let mut first = [0u8; 7];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut first))
        .await
        .expect("an answer in time")
        .expect("seven bytes");
    match first {
        [0x16, ..] => true,                 // the echoed hello
        [0x15, 3, 3, 0, 2, 2, 49] => false, // fatal alert access_denied
        other => panic!("unexpected answer {other:?}"),
    }
}

fn counted(proxy: &Proxy, outcome: &str) -> f64 {
    let (_, m) = proxy.admin_get("/metrics");
    metric(
        &m,
        "ch_edge_proxy_connections_total",
        &[&format!("outcome=\"{outcome}\"")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_at_its_limit_cannot_stop_another_from_being_served() {
    let backend = RawBackend::start(false).await;
    let proxy = Proxy::start(&config(backend.addr, "{max_connections: 3}"));
    let addr = proxy.addr("native");
    // 127.0.0.2 opens three times its limit and keeps them open.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..9 {
        let mut tcp = hello_from("127.0.0.2", addr, b"").await;
        if relayed(&mut tcp).await {
            held.push(tcp);
        } else {
            refused += 1;
        }
    }
    assert_eq!((held.len(), refused), (3, 6));
    // Another client is served all the same.
    let mut other = hello_from("127.0.0.3", addr, b"").await;
    assert!(relayed(&mut other).await, "127.0.0.3 was refused");
    // A place freed by a closed connection is taken again.
    drop(held.pop());
    let mut again = None;
    for _ in 0..200 {
        let mut tcp = hello_from("127.0.0.2", addr, b"").await;
        if relayed(&mut tcp).await {
            again = Some(tcp);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(again.is_some(), "the freed place was never given back");
    assert!(counted(&proxy, "client_over_limit") >= 6.0);

    // Behind a trusted PROXY peer, each real client counts on its own.
    let header = |ip: &str| format!("PROXY TCP4 {ip} 127.0.0.1 40000 9440\r\n").into_bytes();
    let mut behind = Vec::new();
    for _ in 0..3 {
        let mut tcp = hello_from("127.0.0.1", addr, &header("203.0.113.7")).await;
        assert!(relayed(&mut tcp).await);
        behind.push(tcp);
    }
    let mut fourth = hello_from("127.0.0.1", addr, &header("203.0.113.7")).await;
    assert!(
        !relayed(&mut fourth).await,
        "the fourth of 203.0.113.7 went through"
    );
    let mut other = hello_from("127.0.0.1", addr, &header("203.0.113.8")).await;
    assert!(
        relayed(&mut other).await,
        "203.0.113.8 shares the NLB's address, not the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_rate_is_limited_per_client() {
    let backend = RawBackend::start(false).await;
    let proxy = Proxy::start(&config(backend.addr, "{rate: 5, burst: 5}"));
    let addr = proxy.addr("native");
    let started = Instant::now();
    let mut admitted = 0;
    for _ in 0..30 {
        let mut tcp = hello_from("127.0.0.4", addr, b"").await;
        if relayed(&mut tcp).await {
            admitted += 1;
        }
    }
    // The burst, plus what refilled meanwhile (5 per second), and no more.
    let refilled = (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        admitted >= 5 && admitted <= 5 + refilled,
        "{admitted} admitted, {refilled} refilled"
    );
    assert!(admitted < 30, "nothing was limited");
    let mut other = hello_from("127.0.0.5", addr, b"").await;
    assert!(relayed(&mut other).await, "127.0.0.5 was refused");
    assert_eq!(counted(&proxy, "client_over_limit") as usize, 30 - admitted);
}

/// The first seven bytes of the proxy's answer, as a fatal alert's description (or panics).
async fn alert(tcp: &mut TcpStream) -> u8 {
    let mut first = [0u8; 7];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut first))
        .await
        .expect("an answer in time")
        .expect("seven bytes");
    match first {
        [0x15, 3, 3, 0, 2, 2, description] => description,
        other => panic!("expected an alert, got {other:?}"),
    }
}

/// A client over its limit that asks for a name with no route is told the name is unknown
/// (112), not that it is over its limit: the route decision is reported first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_clients_unknown_name_is_refused_as_unknown_not_over_limit() {
    let backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&config(
        backend.addr,
        "{max_connections: 1, rate: 1, burst: 2}",
    ));
    let addr = proxy.addr("native");
    let mut held = hello_from("127.0.0.6", addr, b"").await;
    assert!(relayed(&mut held).await);
    // At its connection limit: a known name is refused as over the limit…
    let mut over = hello_from("127.0.0.6", addr, b"").await;
    assert_eq!(alert(&mut over).await, 49);
    let line = proxy.access();
    assert_eq!(line["outcome"], "client_over_limit", "{line}");
    // …an unknown one as unknown, however busy the client (its rate is spent too by now).
    for _ in 0..3 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.6:0".parse().unwrap()).unwrap();
        let mut tcp = socket.connect(addr).await.unwrap();
        tcp.write_all(&client_hello("nope.test")).await.unwrap();
        assert_eq!(alert(&mut tcp).await, 112, "unrecognized_name");
        let line = proxy.access();
        assert_eq!(line["outcome"], "unknown_sni", "{line}");
        assert_eq!(line["detail"], serde_json::Value::Null, "{line}");
    }
    assert_eq!(counted(&proxy, "client_over_limit"), 1.0);
    drop(held);
}
