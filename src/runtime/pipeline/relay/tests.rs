use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Two ends of a loopback TCP connection.
pub(crate) async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (b, _) = l.accept().await.unwrap();
    (a, b)
}

/// Byte meters that count into statics nobody reads.
pub(crate) fn meters() -> Meters<'static> {
    static NOOP: std::sync::OnceLock<Counter> = std::sync::OnceLock::new();
    static BYTES: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
    let noop = NOOP.get_or_init(Counter::noop);
    Meters {
        from_client: Meter {
            route: noop,
            connection: &BYTES[0],
        },
        from_upstream: Meter {
            route: noop,
            connection: &BYTES[1],
        },
    }
}

#[tokio::test]
async fn half_close_keeps_other_direction_flowing() {
    // client_app <-> (client_side | proxy | upstream_side) <-> server_app
    let (mut client_app, client_side) = pair().await;
    let (upstream_side, mut server_app) = pair().await;
    let relay = tokio::spawn(async move {
        relay(
            &client_side,
            &upstream_side,
            Duration::from_secs(30),
            Duration::from_secs(30),
            &meters(),
            Progress::start(),
        )
        .await
    });
    client_app.write_all(b"request").await.unwrap();
    client_app.shutdown().await.unwrap();
    let mut got = Vec::new();
    server_app.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"request", "server sees the half-close as EOF");
    // After the client's half-close the server still answers in full.
    let answer = vec![7u8; 1 << 20];
    server_app.write_all(&answer).await.unwrap();
    server_app.shutdown().await.unwrap();
    let mut back = Vec::new();
    client_app.read_to_end(&mut back).await.unwrap();
    assert_eq!(back.len(), answer.len());
    let t = tokio::time::timeout(Duration::from_secs(10), relay)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.end, End::Done);
    assert_eq!(t.progress.from_client, 7);
    assert_eq!(t.progress.from_upstream, 1 << 20);
}

#[tokio::test(start_paused = true)]
async fn idle_connection_is_closed_after_idle_timeout() {
    let (_client_app, client_side) = pair().await;
    let (upstream_side, _server_app) = pair().await;
    let t = relay(
        &client_side,
        &upstream_side,
        Duration::from_secs(3600),
        Duration::from_secs(7200),
        &meters(),
        Progress::start(),
    )
    .await;
    assert_eq!(t.end, End::Idle);
    assert_eq!((t.progress.from_client, t.progress.from_upstream), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_quiet_relay_stops_for_parking_and_resumes_where_it_stood() {
    let (mut client_app, client_side) = pair().await;
    let (upstream_side, mut server_app) = pair().await;
    let idle = Duration::from_secs(3600);
    let park_after = Duration::from_secs(2);
    client_app.write_all(b"query").await.unwrap();
    client_app.shutdown().await.unwrap();
    let t = relay(
        &client_side,
        &upstream_side,
        idle,
        park_after,
        &meters(),
        Progress::start(),
    )
    .await;
    assert_eq!(t.end, End::Quiet);
    let p = t.progress;
    assert_eq!((p.from_client, p.client_done), (5, true));
    assert_eq!((p.from_upstream, p.upstream_done), (0, false));
    assert!(
        p.keepalive,
        "a connection quiet for long gets keepalive upstream"
    );
    let mut got = Vec::new();
    server_app.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"query", "the half-close was passed on before parking");
    // The answer comes later: a relay from the progress carries it and ends.
    server_app.write_all(b"answer").await.unwrap();
    server_app.shutdown().await.unwrap();
    let t = relay(&client_side, &upstream_side, idle, park_after, &meters(), p).await;
    assert_eq!(t.end, End::Done);
    assert_eq!((t.progress.from_client, t.progress.from_upstream), (5, 6));
    // Both done: the close sends the client its FIN.
    drop((client_side, upstream_side));
    let mut back = Vec::new();
    client_app.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"answer");
}

/// NODELAY goes on the upstream leg only before the relay's first write to it: a connection
/// whose upstream only answers skips the call.
#[tokio::test]
async fn nodelay_is_set_on_the_upstream_only_when_the_relay_writes_to_it() {
    for client_sends in [false, true] {
        let (mut client_app, client_side) = pair().await;
        // The proxy's upstream socket is the connecting side, as in `pair`'s first.
        let (upstream_side, mut server_app) = pair().await;
        assert!(!upstream_side.nodelay().unwrap());
        if client_sends {
            client_app.write_all(b"more").await.unwrap();
        }
        client_app.shutdown().await.unwrap();
        server_app.write_all(b"answer").await.unwrap();
        server_app.shutdown().await.unwrap();
        let t = tokio::time::timeout(
            Duration::from_secs(10),
            relay(
                &client_side,
                &upstream_side,
                Duration::from_secs(30),
                Duration::from_secs(30),
                &meters(),
                Progress::start(),
            ),
        )
        .await
        .unwrap();
        assert_eq!(t.end, End::Done);
        assert_eq!(t.progress.nodelay, client_sends);
        assert_eq!(upstream_side.nodelay().unwrap(), client_sends);
        let mut got = Vec::new();
        server_app.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, if client_sends { &b"more"[..] } else { b"" });
    }
}
