//! The data path byte by byte: ClientHello shapes, replay, half-close,
//! large transfers, and every deadline.

mod support;

use support::peers::{self, RawBackend};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(extra: &str, upstream: std::net::SocketAddr) -> String {
    format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\nadmin:\n  address: \"127.0.0.1:0\"\n{extra}\
         routes:\n  - sni: demo.ch.test\n    upstream: \"{upstream}\"\n"
    )
}

/// Pseudo-random bytes (xorshift): a fixed pattern a relay bug would break.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfer_with_half_close_loses_no_byte() {
    let mut backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&config("", backend.addr));
    let hello = peers::client_hello("demo.ch.test");
    let data = payload(32 << 20);
    let tcp = TcpStream::connect(proxy.addr("native")).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let sent = {
        let mut all = hello.clone();
        all.extend_from_slice(&data);
        all
    };
    let writer = tokio::spawn(async move {
        wr.write_all(&sent).await.unwrap();
        // Half-close: the echo must still come back in full afterwards.
        wr.shutdown().await.unwrap();
        sent
    });
    let mut back = Vec::new();
    tokio::time::timeout(WAIT * 3, rd.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    let sent = writer.await.unwrap();
    assert_eq!(back.len(), sent.len());
    assert!(back == sent, "echoed bytes differ");
    let seen = backend.next().await;
    assert!(seen.bytes == sent, "backend received different bytes");
    let line = proxy.access();
    assert_eq!(line["outcome"], "relayed");
    assert_eq!(line["bytes_from_client"], sent.len() as u64);
    assert_eq!(line["bytes_from_upstream"], sent.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hello_in_one_byte_segments_and_many_records_is_routed() {
    let mut backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&config("", backend.addr));
    let hello = peers::client_hello("demo.ch.test");
    for shape in [
        hello.clone(),
        peers::reframe(&hello, 1),
        peers::reframe(&hello, 7),
        peers::reframe(&hello, 100),
    ] {
        let mut tcp = TcpStream::connect(proxy.addr("native")).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        // One byte per write, flushed each time (NODELAY): many TCP segments.
        for b in &shape {
            tcp.write_all(std::slice::from_ref(b)).await.unwrap();
        }
        tcp.shutdown().await.unwrap();
        let back = peers::read_until_eof(&mut tcp).await;
        assert_eq!(back, shape);
        assert_eq!(backend.next().await.bytes, shape);
        let line = proxy.access();
        assert_eq!(line["route"], "demo.ch.test", "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_post_quantum_sized_hello_is_routed() {
    // A real rustls hello grown to ~16 KiB total by re-framing into tiny
    // records (5-byte header per 3 bytes): size and record count both large.
    let mut backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&config("", backend.addr));
    let hello = peers::reframe(&peers::client_hello("demo.ch.test"), 16);
    let back = peers::exchange(proxy.addr("native"), &hello).await;
    assert_eq!(back, hello);
    assert_eq!(proxy.access()["outcome"], "relayed");
    assert_eq!(backend.next().await.bytes, hello);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_closed_at_the_client_hello_deadline() {
    let backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&config("timeouts:\n  client_hello: 300ms\n", backend.addr));
    let mut tcp = TcpStream::connect(proxy.addr("native")).await.unwrap();
    // Half a ClientHello, then silence (slowloris).
    let hello = peers::client_hello("demo.ch.test");
    tcp.write_all(&hello[..hello.len() / 2]).await.unwrap();
    let rest = peers::read_until_eof(&mut tcp).await;
    assert!(
        rest.is_empty(),
        "proxy must close a silent client without a word"
    );
    assert_eq!(proxy.access()["outcome"], "client_hello_timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_tls_bytes_are_closed() {
    let backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&config("", backend.addr));
    let mut tcp = TcpStream::connect(proxy.addr("native")).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: demo.ch.test\r\n\r\n")
        .await
        .unwrap();
    let rest = peers::read_until_eof(&mut tcp).await;
    assert!(rest.is_empty());
    assert_eq!(proxy.access()["outcome"], "not_tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_hello_gets_decode_error_alert() {
    let backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&config("", backend.addr));
    let mut tcp = TcpStream::connect(proxy.addr("native")).await.unwrap();
    // A handshake record whose message claims to be a ServerHello (type 2).
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00])
        .await
        .unwrap();
    let rest = peers::read_until_eof(&mut tcp).await;
    assert_eq!(rest, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50]);
    assert_eq!(proxy.access()["outcome"], "bad_client_hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let mut backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&config("timeouts:\n  idle: 400ms\n", backend.addr));
    let hello = peers::client_hello("demo.ch.test");
    let mut tcp = TcpStream::connect(proxy.addr("native")).await.unwrap();
    tcp.write_all(&hello).await.unwrap();
    let mut echoed = vec![0u8; hello.len()];
    tcp.read_exact(&mut echoed).await.unwrap();
    // Now silence both ways: the proxy closes both legs.
    let rest = peers::read_until_eof(&mut tcp).await;
    assert!(rest.is_empty(), "nothing after the echo, just the close");
    let line = proxy.access();
    assert_eq!(line["outcome"], "idle_timeout");
    assert!(line["duration_ms"].as_u64().unwrap() >= 400, "{line}");
    assert_eq!(backend.next().await.bytes, hello);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_and_counted() {
    let backend = RawBackend::start(false).await;
    // One worker: with several, each accepts on its own socket (SO_REUSEPORT) and the order
    // of accepts across them is not the order of connects.
    let mut proxy = Proxy::start_with_env(
        &config("limits:\n  max_connections: 2\n", backend.addr),
        &[("CH_EDGE_PROXY_WORKER_THREADS", "1".as_ref())],
    );
    let addr = proxy.addr("native");
    // Two connections held open in the ClientHello phase.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&[0x16]).await.unwrap();
        held.push(tcp);
    }
    // The accept queue is FIFO, so the third is accepted last and refused at once.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let rest = peers::read_until_eof(&mut third).await;
    assert!(rest.is_empty());
    let line = proxy.access();
    assert_eq!(line["outcome"], "over_limit");
    drop(held);
    // Capacity comes back once they close.
    let both = [proxy.access(), proxy.access()];
    assert!(
        both.iter().all(|l| l["outcome"] == "client_closed_early"),
        "{both:?}"
    );
    let mut again = TcpStream::connect(addr).await.unwrap();
    again
        .write_all(&peers::client_hello("demo.ch.test"))
        .await
        .unwrap();
    again.shutdown().await.unwrap();
    let back = peers::read_until_eof(&mut again).await;
    assert!(!back.is_empty());
}

/// How a backend connection ended, after reading `hello_len` bytes.
#[derive(Debug, PartialEq)]
enum Ending {
    Eof,
    Reset,
}

/// Reads until the end, as a backend would; says whether it was a clean EOF or a reset.
async fn ending(tcp: &mut TcpStream) -> Ending {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .expect("an end in time")
        {
            Ok(0) => return Ending::Eof,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ending::Reset,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

/// Closes `tcp` with a reset (SO_LINGER 0), as a crashed peer's kernel would.
fn reset(tcp: TcpStream) {
    socket2::SockRef::from(&tcp)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(tcp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_on_either_side_reaches_the_other_as_a_reset() {
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut proxy = Proxy::start(&config("", backend.local_addr().unwrap()));
    let hello = peers::client_hello("demo.ch.test");

    // The client resets: the backend sees a reset, not an end of stream.
    let mut client = TcpStream::connect(proxy.addr("native")).await.unwrap();
    client.write_all(&hello).await.unwrap();
    let (mut upstream, _) = backend.accept().await.unwrap();
    let mut got = vec![0u8; hello.len()];
    upstream.read_exact(&mut got).await.unwrap();
    reset(client);
    assert_eq!(
        ending(&mut upstream).await,
        Ending::Reset,
        "client reset, as the upstream saw it"
    );
    let line = proxy.access();
    assert_eq!(line["outcome"], "relay_error");
    // Which side failed, and how.
    assert_eq!(line["detail"], "client: connection reset", "{line}");

    // The upstream resets (a crashed server): the client sees a reset too.
    let mut client = TcpStream::connect(proxy.addr("native")).await.unwrap();
    client.write_all(&hello).await.unwrap();
    let (mut upstream, _) = backend.accept().await.unwrap();
    upstream.read_exact(&mut got).await.unwrap();
    upstream.write_all(b"partial answer").await.unwrap();
    reset(upstream);
    assert_eq!(
        ending(&mut client).await,
        Ending::Reset,
        "upstream reset, as the client saw it"
    );
    let line = proxy.access();
    assert_eq!(line["outcome"], "relay_error");
    assert_eq!(line["detail"], "upstream: connection reset", "{line}");

    // A clean close still ends cleanly.
    let mut client = TcpStream::connect(proxy.addr("native")).await.unwrap();
    client.write_all(&hello).await.unwrap();
    let (mut upstream, _) = backend.accept().await.unwrap();
    upstream.read_exact(&mut got).await.unwrap();
    upstream.shutdown().await.unwrap();
    drop(upstream);
    client.shutdown().await.unwrap();
    assert_eq!(ending(&mut client).await, Ending::Eof);
}
