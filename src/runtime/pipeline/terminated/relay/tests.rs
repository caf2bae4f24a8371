use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
pub(crate) use crate::runtime::pipeline::relay::tests::{meters, pair};
use crate::runtime::pipeline::terminated::handshake::Streams;

/// A server configuration with a certificate made now, and a client that trusts it.
pub(crate) fn configs() -> (Arc<rustls::ServerConfig>, tokio_rustls::TlsConnector) {
    let (server, client) = raw_configs();
    (server, tokio_rustls::TlsConnector::from(client))
}

/// [`configs`], the client's as rustls's own.
pub(crate) fn raw_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    raw_configs_for(rustls::DEFAULT_VERSIONS)
}

/// [`raw_configs`], the client offering only `versions`.
pub(crate) fn raw_configs_for(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
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
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// Long enough that the tests that do not park never do.
pub(crate) const NEVER: Duration = Duration::from_secs(3600);

/// The client's handshake on `client`, then the legs to relay to `upstream`.
pub(crate) async fn handshake(
    config: Arc<rustls::ServerConfig>,
    client: TcpStream,
    upstream: TcpStream,
) -> Legs {
    let conn = rustls::server::UnbufferedServerConnection::new(config).unwrap();
    let mut tls = ClientTls::new(conn, &[]).unwrap();
    tls.handshake(&client).await.unwrap();
    let streams = Streams {
        client: tls,
        upstream: Upstream::Plain(upstream),
    };
    Legs::new(client, streams)
}

/// A TLS client (`connector`) through the proxy's handshake: the client's stream, the proxy's
/// legs, and the upstream application's end of its socket.
pub(crate) async fn connected(
    config: Arc<rustls::ServerConfig>,
    connector: &tokio_rustls::TlsConnector,
) -> (tokio_rustls::client::TlsStream<TcpStream>, Legs, TcpStream) {
    let (client_app, client_side) = pair().await;
    let (upstream_side, server_app) = pair().await;
    let name = ServerName::try_from("relay.test").unwrap();
    let (tls, legs) = tokio::join!(
        connector.connect(name, client_app),
        handshake(config, client_side, upstream_side)
    );
    (tls.unwrap(), legs, server_app)
}

/// The proxy's side: the client's handshake on `client`, then the relay to `upstream`; both
/// sockets are closed when it returns.
pub(crate) async fn terminate(
    config: Arc<rustls::ServerConfig>,
    client: TcpStream,
    upstream: TcpStream,
    idle: Duration,
) -> Transfer {
    let mut legs = handshake(config, client, upstream).await;
    legs.relay(idle, NEVER, &meters(), Progress::start()).await
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

/// `len` bytes from a TLS client (`connector`) through a terminating relay to an echoing upstream,
/// both directions at once: what came back, how the relay ended, and the version negotiated.
pub(crate) async fn echo_through(
    config: Arc<rustls::ServerConfig>,
    connector: tokio_rustls::TlsConnector,
    len: usize,
) -> (Vec<u8>, Transfer, Option<rustls::ProtocolVersion>) {
    let (client_app, client_side) = pair().await;
    let (upstream_side, server_app) = pair().await;
    let client = async {
        let name = ServerName::try_from("relay.test").unwrap();
        let tls = connector.connect(name, client_app).await.unwrap();
        let version = tls.get_ref().1.protocol_version();
        let (mut r, mut w) = tokio::io::split(tls);
        let write = async {
            w.write_all(&bulk(len)).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let read = async {
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.unwrap();
            back
        };
        (tokio::join!(write, read).1, version)
    };
    // An echoing upstream: both directions stream at once.
    let upstream = async {
        let (mut r, mut w) = tokio::io::split(server_app);
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let proxy = terminate(config, client_side, upstream_side, Duration::from_secs(30));
    let ((back, version), transfer, ()) = tokio::join!(client, proxy, upstream);
    (back, transfer, version)
}

/// `len` bytes of a pattern that a shifted or dropped chunk would not repeat.
pub(crate) fn bulk(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn bulk_both_ways_at_once_arrives_whole() {
    const LEN: usize = 3 << 20;
    let (config, connector) = configs();
    let (back, transfer, _) = echo_through(config, connector, LEN).await;
    assert_eq!(back.len(), LEN);
    assert!(back == bulk(LEN));
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

/// A quiet relay ends its turn with nothing in flight; taken apart (as parking does) and put
/// together again, it relays both ways from where it stood, and its idle timeout still counts
/// from the last byte.
#[tokio::test]
async fn a_quiet_relay_parks_and_resumes_both_ways() {
    let (config, connector) = configs();
    let (mut tls, mut legs, mut server_app) = connected(config.clone(), &connector).await;
    let park_after = Duration::from_millis(50);
    let (idle, m) = (Duration::from_secs(30), meters());
    // One exchange, then quiet.
    let exchange = async {
        tls.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        server_app.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        server_app.write_all(b"pong").await.unwrap();
        tls.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"pong");
    };
    let (turn, ()) = tokio::join!(
        legs.relay(idle, park_after, &m, Progress::start()),
        exchange
    );
    assert_eq!(turn.end, End::Quiet);
    assert_eq!(
        (turn.progress.from_client, turn.progress.from_upstream),
        (4, 4)
    );
    assert!(!turn.progress.client_done && !turn.progress.upstream_done);

    let (client, upstream, conns) = legs.into_parts();
    let mut legs = Legs::from_parts(client, upstream, conns);
    let exchange = async {
        tls.write_all(b"again").await.unwrap();
        let mut b = [0u8; 5];
        server_app.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"again");
        server_app.write_all(b"back!").await.unwrap();
        tls.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"back!");
        // The client closes (close_notify), the upstream sees EOF and ends too.
        tls.shutdown().await.unwrap();
        let mut rest = Vec::new();
        server_app.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        drop(server_app);
        tls.read_to_end(&mut rest).await.unwrap();
    };
    let (turn2, ()) = tokio::join!(legs.relay(idle, NEVER, &m, turn.progress), exchange);
    assert_eq!(turn2.end, End::Done);
    assert_eq!(
        (turn2.progress.from_client, turn2.progress.from_upstream),
        (9, 9)
    );

    // Resumed and quiet again: the idle deadline counts from the last byte of the first turn.
    let (_tls, mut legs, _server_app) = connected(config, &connector).await;
    let mut progress = Progress::start();
    progress.last_activity -= Duration::from_secs(29);
    let turn = legs.relay(idle, NEVER, &m, progress).await;
    assert_eq!(turn.end, End::Idle);
}
