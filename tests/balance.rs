//! Balancing, sticky routing and passive health through the real binary: raw ClientHellos
//! (the proxy only peeks at them) to backends that say who they are.

mod support;

use std::net::SocketAddr;

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Backends that report each accepted connection (by number), hold it until the client's
/// EOF, then answer with their number and close.
struct Backends {
    addrs: Vec<SocketAddr>,
    tx: mpsc::UnboundedSender<u8>,
    accepted: mpsc::UnboundedReceiver<u8>,
}

impl Backends {
    async fn start(n: u8) -> Backends {
        let (tx, accepted) = mpsc::unbounded_channel();
        let mut b = Backends {
            addrs: Vec::new(),
            tx,
            accepted,
        };
        for _ in 0..n {
            b.add(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        b
    }

    /// Serves `listener` as the next number.
    fn add(&mut self, listener: TcpListener) -> u8 {
        let id = self.addrs.len() as u8;
        self.addrs.push(listener.local_addr().unwrap());
        let tx = self.tx.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let _ = tx.send(id);
                tokio::spawn(async move {
                    let mut sink = [0u8; 4096];
                    while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
                    let _ = tcp.write_all(&[id]).await;
                });
            }
        });
        id
    }

    /// The number of the backend that accepts the next connection (bounded wait).
    async fn next(&mut self) -> u8 {
        tokio::time::timeout(WAIT, self.accepted.recv())
            .await
            .expect("no backend accepted a connection in time")
            .expect("backends stopped")
    }

    /// The upstream list of backends `ids`.
    fn upstreams(&self, ids: &[usize]) -> String {
        let list: Vec<String> = ids
            .iter()
            .map(|&i| format!("\"{}\"", self.addrs[i]))
            .collect();
        format!("[{}]", list.join(", "))
    }
}

fn config(routes: &str, extra: &str) -> String {
    format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9\n\
         admin:\n  address: \"127.0.0.1:0\"\n{extra}routes:\n{routes}"
    )
}

/// Sends a ClientHello for `sni`, half-closes, and returns the backend's number.
async fn who(proxy: SocketAddr, sni: &str) -> u8 {
    let answer = peers::exchange(proxy, &peers::client_hello(sni)).await;
    assert_eq!(answer.len(), 1, "{sni}: answer {answer:?}");
    answer[0]
}

/// Where each of `tags` lands through `proxy` (many at a time: each is its own connection).
async fn map_tags(proxy: SocketAddr, tags: &[String], name: &str) -> Vec<u8> {
    let mut out = vec![0u8; tags.len()];
    for (chunk, slots) in tags.chunks(50).zip(out.chunks_mut(50)) {
        let mut running = tokio::task::JoinSet::new();
        for (i, tag) in chunk.iter().enumerate() {
            let sni = format!("{tag}.sticky.{name}");
            running.spawn(async move { (i, who(proxy, &sni).await) });
        }
        while let Some(done) = running.join_next().await {
            let (i, id) = done.unwrap();
            slots[i] = id;
        }
    }
    out
}

fn tags(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("session-{i}")).collect()
}

/// Opens a connection that stays open: a ClientHello and no EOF.
async fn hold(proxy: SocketAddr, sni: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(proxy).await.unwrap();
    tcp.write_all(&peers::client_hello(sni)).await.unwrap();
    tcp
}

fn routes_json(proxy: &Proxy) -> Value {
    let (status, body) = proxy.admin_get("/routes");
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

/// The `/routes` state of `addr` in the first route.
fn endpoint_state(proxy: &Proxy, addr: SocketAddr) -> Value {
    let routes = routes_json(proxy);
    let found = routes["routes"][0]["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|u| u["endpoints"].as_array().unwrap().iter())
        .find(|e| e["address"] == addr.to_string())
        .cloned();
    found.unwrap_or_else(|| panic!("{addr} not in /routes: {routes}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_evens_out_long_lived_connections_around_a_busy_backend() {
    let mut backends = Backends::start(3).await;
    let mut proxy = Proxy::start(&config(
        &format!(
            "  - sni: pool.ch.test\n    upstream: {}\n",
            backends.upstreams(&[0, 1, 2])
        ),
        "",
    ));
    let addr = proxy.addr("native");
    // One backend gets six long connections first: a sticky tag pins them all to it.
    let busy = usize::from(who(addr, "heavy.sticky.pool.ch.test").await);
    assert_eq!(usize::from(backends.next().await), busy);
    assert_eq!(proxy.access()["sticky"], "heavy");
    let mut open = Vec::new();
    for _ in 0..6 {
        open.push(hold(addr, "heavy.sticky.pool.ch.test").await);
        assert_eq!(usize::from(backends.next().await), busy);
    }
    // Fifteen more without a tag, each established before the next is opened: least_conn
    // fills the other two up to six each, then one more goes to each of the three. Round
    // robin would have sent five of the fifteen to the busy one.
    let mut per = [0usize; 3];
    per[busy] = 6;
    for _ in 0..15 {
        open.push(hold(addr, "pool.ch.test").await);
        per[usize::from(backends.next().await)] += 1;
    }
    assert_eq!(per, [7, 7, 7], "busy backend #{busy}");
    // The proxy's own count, per address, in /routes and /metrics.
    for &b in &backends.addrs {
        assert_eq!(endpoint_state(&proxy, b)["open"], 7);
    }
    let (_, metrics) = proxy.admin_get("/metrics");
    let labels = format!("address=\"{}\"", backends.addrs[busy]);
    assert_eq!(
        metric(
            &metrics,
            "ch_edge_proxy_upstream_open_connections",
            &[&labels]
        ),
        7.0,
        "{metrics}"
    );
    // Closed connections leave the count.
    drop(open);
    for _ in 0..21 {
        assert_eq!(proxy.access()["outcome"], "relayed");
    }
    for &b in &backends.addrs {
        assert_eq!(endpoint_state(&proxy, b)["open"], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tags_land_on_the_same_backend_through_two_proxies() {
    let backends = Backends::start(4).await;
    let yaml = config(
        &format!(
            "  - sni: demo-cluster.ch.test\n    upstream: {}\n",
            backends.upstreams(&[0, 1, 2, 3])
        ),
        "",
    );
    let one = Proxy::start(&yaml);
    let two = Proxy::start(&yaml);
    let tags = tags(1000);
    let first = map_tags(one.addr("native"), &tags, "demo-cluster.ch.test").await;
    let second = map_tags(two.addr("native"), &tags, "demo-cluster.ch.test").await;
    assert_eq!(first, second, "the two proxies disagree");
    // Tags spread over all four (250 each on average).
    let mut per = [0usize; 4];
    for &b in &first {
        per[usize::from(b)] += 1;
    }
    assert!(per.iter().all(|&n| n > 150), "{per:?}");
    // Again through the first proxy: every tag where it was.
    let again = map_tags(one.addr("native"), &tags[..200], "demo-cluster.ch.test").await;
    assert_eq!(again[..], first[..200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_one_of_four_backends_moves_only_its_tags() {
    let backends = Backends::start(4).await;
    let route = |ids: &[usize]| {
        config(
            &format!(
                "  - sni: demo-cluster.ch.test\n    upstream: {}\n",
                backends.upstreams(ids)
            ),
            "",
        )
    };
    let mut proxy = Proxy::start(&route(&[0, 1, 2, 3]));
    let addr = proxy.addr("native");
    let tags = tags(1000);
    let before = map_tags(addr, &tags, "demo-cluster.ch.test").await;

    write_atomic(&proxy.config, &route(&[0, 2, 3]));
    proxy.wait_reload("ok");
    let after = map_tags(addr, &tags, "demo-cluster.ch.test").await;
    let mut moved = 0;
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        if *b == 1 {
            assert_ne!(*a, 1);
            moved += 1;
        } else {
            assert_eq!(a, b, "{} moved from backend {b} to {a}", tags[i]);
        }
    }
    assert!(moved > 150, "{moved} tags were on the removed backend");
}

/// A port nobody listens on (yet), reserved while the guard lives: connects are refused.
fn unused_addr() -> (peers::ClosedPort, SocketAddr) {
    let closed = peers::closed_port();
    let addr = format!("127.0.0.1:{}", closed.port).parse().unwrap();
    (closed, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_address_costs_one_failed_connect_not_one_per_connection() {
    let backends = Backends::start(1).await;
    let (_closed, dead) = unused_addr();
    // Round robin would send every other connection to the dead address; the ejection
    // outlasts the test.
    let mut proxy = Proxy::start(&config(
        &format!(
            "  - sni: pool.ch.test\n    upstream: [\"{dead}\", \"{}\"]\n    balance: round_robin\n",
            backends.addrs[0]
        ),
        "health:\n  eject_for: 5m\n",
    ));
    let addr = proxy.addr("native");
    for _ in 0..20 {
        assert_eq!(who(addr, "pool.ch.test").await, 0);
    }
    let mut failed_over = 0;
    for _ in 0..20 {
        let line = proxy.access();
        assert_eq!(line["outcome"], "relayed", "{line}");
        if line["upstream_failed"] == dead.to_string() {
            failed_over += 1;
        }
    }
    assert_eq!(
        failed_over, 1,
        "only the first connection tried the dead address"
    );
    let (_, metrics) = proxy.admin_get("/metrics");
    let labels = format!("upstream=\"{dead}\",address=\"{dead}\"");
    for (name, value) in [
        ("ch_edge_proxy_upstream_connect_failures_total", 1.0),
        ("ch_edge_proxy_upstream_ejections_total", 1.0),
        ("ch_edge_proxy_upstream_ejected", 1.0),
    ] {
        assert_eq!(
            metric(&metrics, name, &[&labels]),
            value,
            "{name}: {metrics}"
        );
    }
    let state = endpoint_state(&proxy, dead);
    assert_eq!(state["ejected"], true, "{state}");
    assert_eq!(state["failures"], 1, "{state}");
    // RFC 3339, UTC: `2026-12-07T13:00:00.123Z`.
    let until = state["ejected_until"].as_str().unwrap_or_default();
    assert!(until.len() == 24 && until.ends_with('Z'), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_address_gets_its_tags_back_when_it_returns() {
    let mut backends = Backends::start(1).await;
    let (closed, dead) = unused_addr();
    let proxy = Proxy::start(&config(
        &format!(
            "  - sni: pool.ch.test\n    upstream: [\"{}\", \"{dead}\"]\n",
            backends.addrs[0]
        ),
        "health:\n  eject_for: 200ms\n",
    ));
    let addr = proxy.addr("native");
    // While it is down, every tag is served by its next choice.
    let tags = tags(40);
    let down = map_tags(addr, &tags, "pool.ch.test").await;
    assert!(down.iter().all(|&b| b == 0), "{down:?}");
    // It comes back (same address): once its ejection is over, the first connection that
    // chooses it tries it again, and its tags return.
    drop(closed);
    let back = backends.add(TcpListener::bind(dead).await.unwrap());
    let deadline = std::time::Instant::now() + WAIT;
    while endpoint_state(&proxy, dead)["ejected"] == true {
        assert!(std::time::Instant::now() < deadline, "still ejected");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut returned = Vec::new();
    for (tag, &before) in tags.iter().zip(&down) {
        let now = who(addr, &format!("{tag}.sticky.pool.ch.test")).await;
        if now == back {
            returned.push(tag);
        } else {
            assert_eq!(now, before, "{tag}");
        }
    }
    assert!(
        (5..=35).contains(&returned.len()),
        "about half the tags belong to the returned address: {returned:?}"
    );
    // And they stay there.
    let again = map_tags(addr, &tags, "pool.ch.test").await;
    for (tag, id) in tags.iter().zip(again) {
        assert_eq!(id == back, returned.contains(&tag), "{tag}");
    }
    let state = endpoint_state(&proxy, dead);
    assert_eq!(
        (state["ejected"].clone(), state["failures"].clone()),
        (false.into(), 0.into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_never_resolved_fails_at_once() {
    let backends = Backends::start(1).await;
    // A connect timeout far beyond the test's own bound: waiting it out would fail the test.
    let mut proxy = Proxy::start(&config(
        &format!(
            "  - sni: mixed.ch.test\n    upstream: [\"no-such-host.invalid:9440\", \"{}\"]\n\
             \x20 - sni: nowhere.ch.test\n    upstream: \"no-such-host.invalid:9440\"\n",
            backends.addrs[0]
        ),
        "timeouts:\n  connect: 1h\n",
    ));
    let addr = proxy.addr("native");
    for _ in 0..3 {
        assert_eq!(who(addr, "mixed.ch.test").await, 0);
        assert_eq!(proxy.access()["outcome"], "relayed");
        let answer = peers::exchange(addr, &peers::client_hello("nowhere.ch.test")).await;
        assert_eq!(answer, [0x15, 3, 3, 0, 2, 2, 80], "alert internal_error");
        let line = proxy.access();
        assert_eq!(line["outcome"], "upstream_unavailable", "{line}");
        assert_eq!(line["detail"], "no upstream address resolved", "{line}");
    }
}

/// A name that never resolved: one line saying so plainly when its first lookup fails (nothing
/// "kept"), not one per 10 s refresh; the metric counts every failed lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_never_resolved_is_logged_once_not_per_refresh() {
    let host = "no-such-host.invalid";
    let mut proxy = Proxy::start(&config(
        &format!("  - sni: nowhere.ch.test\n    upstream: \"{host}:9440\"\n"),
        "",
    ));
    let line = proxy.wait_log(|l| l["host"] == host);
    assert_eq!(line["level"], "WARN", "{line}");
    assert!(
        line["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("cannot resolve upstream; no address known yet")),
        "{line}"
    );
    assert!(line["kept"].is_null(), "{line}");
    // The next refresh, 10 s on, fails again: counted, not logged.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, m) = proxy.admin_get("/metrics");
        if metric(&m, "ch_edge_proxy_dns_lookups_total", &["result=\"error\""]) >= 2.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no second lookup\n{m}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Lines are written in order: every line about that lookup comes before this answer.
    proxy.signal("HUP");
    proxy.wait_reload("unchanged");
    assert_eq!(proxy.seen_count(|l| l["host"] == host), 0);
}

/// Weights through the binary: round robin follows nginx's smooth sequence (3:1 is a a b a),
/// least_conn fills held connections 3:1, a weight-0 address is never reached, and a route whose
/// upstreams all weigh 0 keeps its name and refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_shape_round_robin_least_conn_and_zero() {
    let mut backends = Backends::start(3).await;
    let [a, b, c] = [backends.addrs[0], backends.addrs[1], backends.addrs[2]];
    let mut proxy = Proxy::start(&config(
        &format!(
            "  - sni: rr.ch.test\n    upstream: [\"{a} weight=3\", \"{b}\", \"{c} weight=0\"]\n    balance: round_robin\n\
             \x20 - sni: lc.ch.test\n    upstream: [\"{a} weight=3\", \"{b}\", \"{c} weight=0\"]\n    balance: least_conn\n\
             \x20 - sni: none.ch.test\n    upstream: [\"{a} weight=0\"]\n\
             \x20 - sni: \"*.ch.test\"\n    upstream: \"{c}\"\n"
        ),
        "",
    ));
    let addr = proxy.addr("native");
    let rr: Vec<u8> = {
        let mut v = Vec::new();
        for _ in 0..8 {
            v.push(who(addr, "rr.ch.test").await);
            backends.next().await;
        }
        v
    };
    assert_eq!(rr, [0, 0, 1, 0, 0, 0, 1, 0]);
    // least_conn, every connection held open: (open + 1) / weight gives 6 and 2 of 8.
    let mut held = Vec::new();
    let mut per = [0usize; 3];
    for _ in 0..8 {
        held.push(hold(addr, "lc.ch.test").await);
        per[usize::from(backends.next().await)] += 1;
    }
    assert_eq!(per, [6, 2, 0]);
    drop(held);
    // All at 0: refused, not caught by the wildcard.
    let answer = peers::exchange(addr, &peers::client_hello("none.ch.test")).await;
    assert_eq!(answer, [0x15, 3, 3, 0, 2, 2, 80], "alert internal_error");
    let line = loop {
        let line = proxy.access();
        if line["sni"] == "none.ch.test" {
            break line;
        }
    };
    assert_eq!(line["outcome"], "upstream_unavailable", "{line}");
    assert_eq!(line["detail"], "every upstream weighs 0", "{line}");
    let routes = routes_json(&proxy);
    assert_eq!(routes["routes"][0]["upstreams"][0]["weight"], 3, "{routes}");
}
