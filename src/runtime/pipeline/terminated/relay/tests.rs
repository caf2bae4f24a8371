use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use metrics::Counter;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::runtime::pipeline::terminated::io::ClientIo;

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (b, _) = l.accept().await.unwrap();
    (a, b)
}

fn meters() -> Meters<'static> {
    static NOOP: OnceLock<Counter> = OnceLock::new();
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

/// A server configuration with a certificate made now, and a client that trusts it.
fn configs() -> (Arc<rustls::ServerConfig>, tokio_rustls::TlsConnector) {
    let ck = rcgen::generate_simple_self_signed(vec!["relay.test".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let provider = crate::model::tls::provider();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        Arc::new(server),
        tokio_rustls::TlsConnector::from(Arc::new(client)),
    )
}

/// The proxy's side: the client's handshake on `client`, then the relay to `upstream`; both
/// sockets are closed when it returns.
async fn terminate(
    config: Arc<rustls::ServerConfig>,
    client: TcpStream,
    upstream: TcpStream,
    idle: Duration,
) -> Transfer {
    let io = ClientIo::new(&client, Vec::new(), 0);
    let tls = tokio_rustls::TlsAcceptor::from(config)
        .accept(io)
        .await
        .unwrap();
    let streams = Streams {
        client: tls,
        upstream: Upstream::Plain(upstream),
    };
    Legs::new(streams).relay(idle, &meters()).await
}

#[tokio::test]
async fn close_notify_half_closes_upstream_and_the_answer_ends_with_close_notify() {
    let (config, connector) = configs();
    let (client_app, client_side) = pair().await;
    let (upstream_side, mut server_app) = pair().await;
    let client = async {
        let name = ServerName::try_from("relay.test").unwrap();
        let mut tls = connector.connect(name, client_app).await.unwrap();
        tls.write_all(b"ping").await.unwrap();
        // close_notify and FIN; the answer still comes back.
        tls.shutdown().await.unwrap();
        let mut back = Vec::new();
        // A clean end (close_notify), not an unexpected EOF.
        tls.read_to_end(&mut back).await.unwrap();
        back
    };
    let upstream = async {
        let mut got = Vec::new();
        server_app.read_to_end(&mut got).await.unwrap();
        server_app.write_all(b"pong!").await.unwrap();
        server_app.shutdown().await.unwrap();
        got
    };
    let proxy = terminate(config, client_side, upstream_side, Duration::from_secs(30));
    let (back, transfer, got) = tokio::join!(client, proxy, upstream);
    assert_eq!(got, b"ping");
    assert_eq!(back, b"pong!");
    assert_eq!(transfer.end, End::Done);
    assert_eq!(transfer.progress.from_client, 4);
    assert_eq!(transfer.progress.from_upstream, 5);
}

#[tokio::test]
async fn bulk_both_ways_at_once_arrives_whole() {
    const LEN: usize = 3 << 20;
    let (config, connector) = configs();
    let (client_app, client_side) = pair().await;
    let (upstream_side, server_app) = pair().await;
    let client = async {
        let name = ServerName::try_from("relay.test").unwrap();
        let tls = connector.connect(name, client_app).await.unwrap();
        let (mut r, mut w) = tokio::io::split(tls);
        let write = async {
            let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
            w.write_all(&data).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let read = async {
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.unwrap();
            back
        };
        tokio::join!(write, read).1
    };
    // An echoing upstream: both directions stream at once.
    let upstream = async {
        let (mut r, mut w) = tokio::io::split(server_app);
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let proxy = terminate(config, client_side, upstream_side, Duration::from_secs(30));
    let (back, transfer, ()) = tokio::join!(client, proxy, upstream);
    assert_eq!(back.len(), LEN);
    assert!(back.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    assert_eq!(transfer.end, End::Done);
    assert_eq!(transfer.progress.from_client, LEN as u64);
    assert_eq!(transfer.progress.from_upstream, LEN as u64);
}

#[tokio::test]
async fn a_quiet_connection_ends_idle() {
    let (config, connector) = configs();
    let (client_app, client_side) = pair().await;
    let (upstream_side, _server_app) = pair().await;
    let client = async {
        let name = ServerName::try_from("relay.test").unwrap();
        let mut tls = connector.connect(name, client_app).await.unwrap();
        // Quiet until the proxy gives up and closes.
        let mut b = [0u8; 1];
        let _ = tls.read(&mut b).await;
    };
    let proxy = terminate(
        config,
        client_side,
        upstream_side,
        Duration::from_millis(200),
    );
    let ((), transfer) = tokio::join!(client, proxy);
    assert_eq!(transfer.end, End::Idle);
}
