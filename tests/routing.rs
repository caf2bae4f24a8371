//! SNI routing end to end: real TLS client → proxy → real TLS backend.

mod support;

use rustls::AlertDescription;
use support::*;

fn config(routes: &str) -> String {
    format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\nadmin:\n  address: \"127.0.0.1:0\"\nroutes:\n{routes}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_exact_wildcard_and_catch_all_to_their_upstreams() {
    let exact = TlsBackend::start(false).await;
    let wildcard = TlsBackend::start(false).await;
    let deeper = TlsBackend::start(false).await;
    let fallback = TlsBackend::start(false).await;
    let mut proxy = Proxy::start(&config(&format!(
        "  - sni: chi-demo-cluster-0-0.ch.test\n    upstream: \"{}\"\n\
         \x20 - sni: \"*.ch.test\"\n    upstream: \"{}\"\n\
         \x20 - sni: \"*.eu.ch.test\"\n    upstream: \"{}\"\n\
         \x20 - name: default\n    sni: \"*\"\n    upstream: \"{}\"\n",
        exact.addr, wildcard.addr, deeper.addr, fallback.addr
    )));
    let addr = proxy.addr("native");

    let mut backends = [exact, wildcard, deeper, fallback];
    let cases = [
        (
            "chi-demo-cluster-0-0.ch.test",
            0,
            "chi-demo-cluster-0-0.ch.test",
        ),
        // Case-insensitive.
        (
            "CHI-Demo-Cluster-0-0.CH.test",
            0,
            "chi-demo-cluster-0-0.ch.test",
        ),
        ("demo.ch.test", 1, "*.ch.test"),
        // Longest suffix wins, at any depth.
        ("a.b.eu.ch.test", 2, "*.eu.ch.test"),
        ("unrelated.other.test", 3, "default"),
    ];
    for (sni, backend, route) in cases {
        let mut tls = tls_connect(addr, b"", Some(sni)).await.unwrap();
        echo(&mut tls, format!("hello {sni}").as_bytes()).await;
        let seen = backends[backend].next().await;
        assert_eq!(
            seen.sni.map(|s| s.to_ascii_lowercase()),
            Some(sni.to_ascii_lowercase())
        );
        drop(tls);
        let line = proxy.access();
        assert_eq!(line["route"], route, "{line}");
        assert_eq!(line["outcome"], "relayed", "{line}");
        assert_eq!(
            line["sni"].as_str().map(str::to_ascii_lowercase),
            Some(sni.to_ascii_lowercase()),
            "{line}"
        );
    }
    // No SNI goes to the catch-all too.
    let mut tls = tls_connect(addr, b"", None).await.unwrap();
    echo(&mut tls, b"no sni").await;
    assert_eq!(backends[3].next().await.sni, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_name_gets_unrecognized_name_alert() {
    let backend = TlsBackend::start(false).await;
    let mut proxy = Proxy::start(&config(&format!(
        "  - sni: demo.ch.test\n    upstream: \"{}\"\n",
        backend.addr
    )));
    let result = tls_connect(proxy.addr("native"), b"", Some("nope.ch.test")).await;
    assert_eq!(alert_of(result), AlertDescription::UnrecognisedName);
    let line = proxy.access();
    assert_eq!(line["outcome"], "unknown_sni");
    assert_eq!(line["sni"], "nope.ch.test");
    let (_, metrics) = proxy.admin_get("/metrics");
    assert_eq!(
        metric(
            &metrics,
            "ch_edge_proxy_connections_total",
            &["outcome=\"unknown_sni\""]
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_sni_without_catch_all_gets_missing_extension_alert() {
    let backend = TlsBackend::start(false).await;
    let mut proxy = Proxy::start(&config(&format!(
        "  - sni: demo.ch.test\n    upstream: \"{}\"\n",
        backend.addr
    )));
    let result = tls_connect(proxy.addr("native"), b"", None).await;
    assert_eq!(alert_of(result), AlertDescription::MissingExtension);
    assert_eq!(proxy.access()["outcome"], "no_sni");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_refuses_outside_clients_with_access_denied() {
    let backend = TlsBackend::start(false).await;
    let mut proxy = Proxy::start(&config(&format!(
        "  - sni: closed.ch.test\n    upstream: \"{b}\"\n    allow: [\"203.0.113.0/24\"]\n\
         \x20 - sni: open.ch.test\n    upstream: \"{b}\"\n    allow: [\"127.0.0.0/8\"]\n",
        b = backend.addr
    )));
    let addr = proxy.addr("native");
    let result = tls_connect(addr, b"", Some("closed.ch.test")).await;
    assert_eq!(alert_of(result), AlertDescription::AccessDenied);
    let line = proxy.access();
    assert_eq!(line["outcome"], "access_denied");
    assert_eq!(line["route"], "closed.ch.test");
    let mut ok = tls_connect(addr, b"", Some("open.ch.test")).await.unwrap();
    echo(&mut ok, b"inside").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_list_fails_over_and_spreads_connections() {
    let mut a = TlsBackend::start(false).await;
    let mut b = TlsBackend::start(false).await;
    // A port nobody listens on: connect is refused, the next address is tried.
    let closed = peers::closed_port();
    let dead = closed.port;
    let mut proxy = Proxy::start(&config(&format!(
        "  - sni: pool.ch.test\n    upstream: [\"127.0.0.1:{dead}\", \"{}\", \"localhost:{}\"]\n",
        a.addr,
        b.addr.port()
    )));
    let addr = proxy.addr("native");
    for i in 0..6 {
        let mut tls = tls_connect(addr, b"", Some("pool.ch.test")).await.unwrap();
        echo(&mut tls, format!("n{i}").as_bytes()).await;
        drop(tls);
        assert_eq!(proxy.access()["outcome"], "relayed");
    }
    // Both live upstreams got connections (rotation), none failed.
    let mut got_a = 0;
    while a.seen.try_recv().is_ok() {
        got_a += 1;
    }
    let mut got_b = 0;
    while b.seen.try_recv().is_ok() {
        got_b += 1;
    }
    assert_eq!(got_a + got_b, 6);
    assert!(got_a > 0 && got_b > 0, "a={got_a} b={got_b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_upstream_is_counted_and_closed() {
    let closed = peers::closed_port();
    let dead = closed.port;
    let mut proxy = Proxy::start(&config(&format!(
        "  - sni: dead.ch.test\n    upstream: \"127.0.0.1:{dead}\"\n"
    )));
    let result = tls_connect(proxy.addr("native"), b"", Some("dead.ch.test")).await;
    // Told by an alert, not a bare close that would look like a network fault.
    assert_eq!(alert_of(result), AlertDescription::InternalError);
    let line = proxy.access();
    assert_eq!(line["outcome"], "upstream_unavailable");
    assert_eq!(
        line["upstream_failed"],
        format!("127.0.0.1:{dead}"),
        "{line}"
    );
    assert_eq!(line["detail"], "upstream connect failed", "{line}");
    let (_, metrics) = proxy.admin_get("/metrics");
    let labels = format!("upstream=\"127.0.0.1:{dead}\",address=\"127.0.0.1:{dead}\"");
    assert_eq!(
        metric(
            &metrics,
            "ch_edge_proxy_upstream_connect_failures_total",
            &[&labels]
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_connect_fails_over_to_the_next_address() {
    // An upstream whose accept queue is full: Linux drops further SYNs, so a
    // connect to it hangs — a black hole that stays on loopback.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let hole = socket.listen(0).unwrap();
    let hole_addr = hole.local_addr().unwrap();
    // Backlog 0 queues exactly one connection; it fills the queue.
    let filler = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(hole_addr))
        .await
        .unwrap()
        .unwrap();
    let mut live = TlsBackend::start(false).await;
    let mut proxy = Proxy::start(&format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         admin:\n  address: \"127.0.0.1:0\"\ntimeouts:\n  connect: 3s\n\
         routes:\n  - sni: pool.ch.test\n    upstream: [\"{hole_addr}\", \"{}\"]\n",
        live.addr
    ));
    // The first connection starts its rotation at the black hole.
    let mut tls = tls_connect(proxy.addr("native"), b"", Some("pool.ch.test"))
        .await
        .unwrap();
    echo(&mut tls, b"after failover").await;
    assert_eq!(live.next().await.sni.as_deref(), Some("pool.ch.test"));
    drop(tls);
    let line = proxy.access();
    assert_eq!(line["outcome"], "relayed");
    assert_eq!(line["upstream"], live.addr.to_string());
    let (_, m) = proxy.admin_get("/metrics");
    assert_eq!(line["upstream_failed"], hole_addr.to_string());
    let labels = format!("upstream=\"{hole_addr}\",address=\"{hole_addr}\"");
    assert_eq!(
        metric(
            &m,
            "ch_edge_proxy_upstream_connect_failures_total",
            &[&labels]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "ch_edge_proxy_upstream_ejected", &[&labels]),
        1.0,
        "{m}"
    );
    drop((filler, hole));
}
