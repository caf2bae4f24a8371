//! The unbuffered client leg against real rustls clients: records larger than one read,
//! application data in the flight of the client's Finished, key updates, close_notify each way,
//! a bad record, and a ClientHello read before the handshake.

use std::io::{Read, Write};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ClientTls;
use crate::runtime::pipeline::relay::{End, Progress, Side};
use crate::runtime::pipeline::terminated::handshake::{Streams, Upstream};
use crate::runtime::pipeline::terminated::relay::tests::{
    bulk, configs, connected, echo_through, meters, pair, raw_configs, raw_configs_for, terminate,
};
use crate::runtime::pipeline::terminated::relay::Legs;

const WAIT: Duration = Duration::from_secs(30);

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + seed) % 251) as u8).collect()
}

/// A rustls client driven by hand over `sock` until its handshake is done (all it wrote is
/// written).
async fn client_handshake(conn: &mut rustls::ClientConnection, sock: &mut TcpStream) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        flush(conn, sock).await;
        if !conn.is_handshaking() {
            return;
        }
        let n = sock.read(&mut buf).await.unwrap();
        assert!(n > 0, "the proxy closed during the handshake");
        conn.read_tls(&mut &buf[..n]).unwrap();
        conn.process_new_packets().unwrap();
    }
}

/// Everything rustls queued, in one write.
async fn flush(conn: &mut rustls::ClientConnection, sock: &mut TcpStream) {
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    sock.write_all(&out).await.unwrap();
}

/// Plaintext from a hand-driven client until `len` bytes or the end; `true` if the end was a
/// close_notify.
async fn read_plain(
    conn: &mut rustls::ClientConnection,
    sock: &mut TcpStream,
    len: usize,
) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut chunk = [0u8; 4096];
        loop {
            match conn.reader().read(&mut chunk) {
                Ok(0) => return (got, true),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        if got.len() >= len {
            return (got, false);
        }
        let n = sock.read(&mut buf).await.unwrap();
        if n == 0 {
            return (got, false);
        }
        conn.read_tls(&mut &buf[..n]).unwrap();
        conn.process_new_packets().unwrap();
    }
}

/// Writes larger than a record and than the pooled buffer's share, each way, arrive whole.
#[tokio::test]
async fn large_writes_span_several_records_each_way() {
    const UP: usize = 100_000;
    const DOWN: usize = 150_000;
    let (config, connector) = configs();
    let (client_app, client_side) = pair().await;
    let (upstream_side, mut server_app) = pair().await;
    let client = async {
        let name = ServerName::try_from("relay.test").unwrap();
        let mut tls = connector.connect(name, client_app).await.unwrap();
        tls.write_all(&pattern(UP, 1)).await.unwrap();
        let mut back = vec![0u8; DOWN];
        tls.read_exact(&mut back).await.unwrap();
        tls.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        back
    };
    let upstream = async {
        let mut got = vec![0u8; UP];
        server_app.read_exact(&mut got).await.unwrap();
        server_app.write_all(&pattern(DOWN, 2)).await.unwrap();
        let mut rest = Vec::new();
        server_app.read_to_end(&mut rest).await.unwrap();
        server_app.shutdown().await.unwrap();
        got
    };
    let proxy = terminate(config, client_side, upstream_side, WAIT);
    let (back, transfer, got) = tokio::join!(client, proxy, upstream);
    assert!(got == pattern(UP, 1), "upstream got {} bytes", got.len());
    assert!(back == pattern(DOWN, 2));
    assert_eq!(transfer.end, End::Done);
    assert_eq!(transfer.progress.from_client, UP as u64);
    assert_eq!(transfer.progress.from_upstream, DOWN as u64);
}

/// A client that sends its first request in the same write as its Finished: the handshake keeps
/// it for the relay.
#[tokio::test]
async fn application_data_with_the_clients_finished_is_relayed() {
    let (config, client_config) = raw_configs();
    let (mut client_app, client_side) = pair().await;
    let (upstream_side, mut server_app) = pair().await;
    let client = async {
        let name = ServerName::try_from("relay.test").unwrap();
        let mut conn = rustls::ClientConnection::new(client_config, name).unwrap();
        // Queued before the handshake: rustls sends it right after its Finished.
        conn.writer().write_all(b"SELECT 1").unwrap();
        client_handshake(&mut conn, &mut client_app).await;
        let (back, _) = read_plain(&mut conn, &mut client_app, 3).await;
        assert_eq!(back, b"one");
        conn.send_close_notify();
        flush(&mut conn, &mut client_app).await;
        let (rest, clean) = read_plain(&mut conn, &mut client_app, usize::MAX).await;
        assert!(rest.is_empty() && clean, "a close_notify back");
    };
    let upstream = async {
        let mut got = [0u8; 8];
        server_app.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"SELECT 1");
        server_app.write_all(b"one").await.unwrap();
        let mut rest = Vec::new();
        server_app.read_to_end(&mut rest).await.unwrap();
        server_app.shutdown().await.unwrap();
    };
    let proxy = terminate(config, client_side, upstream_side, WAIT);
    let ((), transfer, ()) = tokio::join!(client, proxy, upstream);
    assert_eq!(transfer.end, End::Done);
    assert_eq!(transfer.progress.from_client, 8);
}

/// TLS 1.3 key updates from the client (each asking for ours): the relay reads with the new
/// keys and answers with its own before its next record, which the client then reads.
#[tokio::test]
async fn key_updates_from_the_client_are_followed_both_ways() {
    let (config, connector) = configs();
    let (client_app, client_side) = pair().await;
    let (upstream_side, mut server_app) = pair().await;
    let client = async {
        let name = ServerName::try_from("relay.test").unwrap();
        let mut tls = connector.connect(name, client_app).await.unwrap();
        assert_eq!(
            tls.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        for round in 0..3u8 {
            tls.get_mut().1.refresh_traffic_keys().unwrap();
            tls.write_all(&[round; 5]).await.unwrap();
            let mut b = [0u8; 5];
            tls.read_exact(&mut b).await.unwrap();
            assert_eq!(b, [round + 100; 5]);
        }
        tls.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).await.unwrap();
    };
    let upstream = async {
        for round in 0..3u8 {
            let mut b = [0u8; 5];
            server_app.read_exact(&mut b).await.unwrap();
            assert_eq!(b, [round; 5]);
            server_app.write_all(&[round + 100; 5]).await.unwrap();
        }
        let mut rest = Vec::new();
        server_app.read_to_end(&mut rest).await.unwrap();
        server_app.shutdown().await.unwrap();
    };
    let proxy = terminate(config, client_side, upstream_side, WAIT);
    let ((), transfer, ()) = tokio::join!(client, proxy, upstream);
    assert_eq!(transfer.end, End::Done);
    assert_eq!(transfer.progress.from_client, 15);
}

/// The upstream ends first: the client gets the rest and close_notify, and may still send
/// (half-closed) until its own close_notify, which ends the relay.
#[tokio::test]
async fn the_upstream_ending_first_sends_close_notify_and_the_client_may_still_send() {
    let (config, connector) = configs();
    let (client_app, client_side) = pair().await;
    let (upstream_side, mut server_app) = pair().await;
    let client = async {
        let name = ServerName::try_from("relay.test").unwrap();
        let mut tls = connector.connect(name, client_app).await.unwrap();
        let mut back = Vec::new();
        // A clean end: close_notify, not a bare EOF (which tokio-rustls reports as an error).
        tls.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"bye");
        tls.write_all(b"late").await.unwrap();
        tls.shutdown().await.unwrap();
    };
    let upstream = async {
        server_app.write_all(b"bye").await.unwrap();
        server_app.shutdown().await.unwrap();
        let mut got = Vec::new();
        server_app.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"late");
    };
    let proxy = terminate(config, client_side, upstream_side, WAIT);
    let ((), transfer, ()) = tokio::join!(client, proxy, upstream);
    assert_eq!(transfer.end, End::Done);
    assert_eq!(
        (
            transfer.progress.from_client,
            transfer.progress.from_upstream
        ),
        (4, 3)
    );
}

/// A record that does not decrypt ends the relay with `InvalidData` on the client's side, and
/// the client is sent rustls's alert first.
#[tokio::test]
async fn a_bad_record_fails_the_client_leg_with_an_alert() {
    let (config, client_config) = raw_configs();
    let (mut client_app, client_side) = pair().await;
    let (upstream_side, _server_app) = pair().await;
    let client = async {
        let name = ServerName::try_from("relay.test").unwrap();
        let mut conn = rustls::ClientConnection::new(client_config, name).unwrap();
        client_handshake(&mut conn, &mut client_app).await;
        let mut junk = vec![23, 3, 3, 0, 32];
        junk.extend_from_slice(&[0x5a; 32]);
        client_app.write_all(&junk).await.unwrap();
        // The alert (encrypted, after any session tickets), then the close.
        let mut got = Vec::new();
        let _ = client_app.read_to_end(&mut got).await;
        conn.read_tls(&mut &got[..]).unwrap();
        let error = conn.process_new_packets().unwrap_err();
        assert!(
            matches!(
                error,
                rustls::Error::AlertReceived(rustls::AlertDescription::BadRecordMac)
            ),
            "{error:?}"
        );
    };
    let proxy = terminate(config, client_side, upstream_side, WAIT);
    let ((), transfer) = tokio::join!(client, proxy);
    assert_eq!(
        transfer.end,
        End::Error {
            kind: std::io::ErrorKind::InvalidData,
            side: Side::Client,
            after_close: false
        }
    );
}

/// The ClientHello (and anything after it) read before the handshake, as the preamble does, is
/// handed in first; a quiet relay then holds no buffer on the client's side.
#[tokio::test]
async fn a_hello_read_beforehand_is_replayed_and_a_quiet_leg_holds_no_buffer() {
    let (config, connector) = configs();
    let (client_app, client_side) = pair().await;
    let (upstream_side, mut server_app) = pair().await;
    let name = ServerName::try_from("relay.test").unwrap();
    let proxy = async {
        client_side.readable().await.unwrap();
        let mut hello = vec![0u8; 16 * 1024];
        let n = client_side.try_read(&mut hello).unwrap();
        let conn = rustls::server::UnbufferedServerConnection::new(config).unwrap();
        let mut tls = ClientTls::new(conn, &hello[..n]).unwrap();
        tls.handshake(&client_side).await.unwrap();
        let streams = Streams {
            client: tls,
            upstream: Upstream::Plain(upstream_side),
        };
        Legs::new(client_side, streams)
    };
    let (tls, mut legs) = tokio::join!(connector.connect(name, client_app), proxy);
    let mut tls = tls.unwrap();
    let exchange = async {
        tls.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        server_app.read_exact(&mut b).await.unwrap();
        server_app.write_all(b"pong").await.unwrap();
        tls.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"pong");
    };
    let m = meters();
    let turn = legs.relay(WAIT, Duration::from_millis(50), &m, Progress::start());
    let (turn, ()) = tokio::join!(turn, exchange);
    assert_eq!(turn.end, End::Quiet);
    let Legs::Plain(client, _) = &legs else {
        panic!("a plain upstream")
    };
    assert!(client.tls.input.buf.is_none() && client.tls.output.buf.is_none());
}

/// TLS 1.2 (explicit nonces, no key updates): a handshake and bulk both ways.
#[tokio::test]
async fn tls12_bulk_both_ways() {
    const LEN: usize = 300_000;
    let (config, tls12) = raw_configs_for(&[&rustls::version::TLS12]);
    let connector = tokio_rustls::TlsConnector::from(tls12);
    let (back, transfer, version) = echo_through(config, connector, LEN).await;
    assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert!(back == bulk(LEN), "{} bytes back", back.len());
    assert_eq!(transfer.end, End::Done);
}

#[tokio::test]
async fn a_half_closed_client_parks_and_gets_its_answer() {
    let (config, connector) = configs();
    let (mut tls, mut legs, mut server_app) = connected(config, &connector).await;
    let m = meters();
    let ask = async {
        tls.write_all(b"question").await.unwrap();
        tls.shutdown().await.unwrap();
        let mut got = Vec::new();
        server_app.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"question");
    };
    let turn = legs.relay(WAIT, Duration::from_millis(50), &m, Progress::start());
    let (turn, ()) = tokio::join!(turn, ask);
    assert_eq!(turn.end, End::Quiet);
    assert!(turn.progress.client_done && !turn.progress.upstream_done);
    let (client, upstream, conns) = legs.into_parts();
    let mut legs = Legs::from_parts(client, upstream, conns);
    let answer = async {
        server_app.write_all(b"answer").await.unwrap();
        server_app.shutdown().await.unwrap();
        let mut back = Vec::new();
        tls.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"answer");
    };
    let (turn, ()) = tokio::join!(legs.relay(WAIT, WAIT, &m, turn.progress), answer);
    assert_eq!(turn.end, End::Done);
    assert_eq!(turn.progress.from_upstream, 6);
}
