//! `protocol: postgres` listeners through the real binary, on real sockets: clients speaking the
//! PostgreSQL wire start as raw bytes (`SSLRequest`, `GSSENCRequest`, a plaintext startup) then
//! TLS (rustls, verified against a CA made now), or starting TLS at once with ALPN `postgresql`
//! (PostgreSQL 17+ direct SSL); upstreams are fake PostgreSQL servers that answer the proxy's
//! `SSLRequest` with `S` or `N` (the real servers and clients are tests/e2e's).

mod support;

use std::sync::Arc;

use ch_edge_wire::postgres::{GSSENC_REQUEST, SSL_REQUEST};
use rustls::pki_types::ServerName;
use rustls::AlertDescription;
use support::certs::{connect_verified, der, served, Ca};
use support::peers::{read_until_eof, RawBackend};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What one fake PostgreSQL server connection saw.
#[derive(Debug)]
struct PgSeen {
    proxy: Option<ch_edge_wire::proxy_in::ProxyHeader>,
    /// The connection began with `SSLRequest` (else TLS at once).
    ssl_request: bool,
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
}

/// A fake PostgreSQL server: `SSLRequest` answered `answer` (TLS follows on `S`); a direct TLS
/// start is taken only if `direct` (PostgreSQL 17+), with ALPN `postgresql`; then an echo.
struct PgBackend {
    addr: std::net::SocketAddr,
    seen: mpsc::UnboundedReceiver<PgSeen>,
}

impl PgBackend {
    async fn start(
        answer: u8,
        direct: bool,
        expect_proxy: bool,
        leaf: &support::certs::Leaf,
    ) -> Self {
        let mut config = (*leaf.server_config()).clone();
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let proxy = match expect_proxy {
                        true => Some(read_proxy_header(&mut tcp).await.expect("a PROXY header")),
                        false => None,
                    };
                    let mut first = [0u8; 1];
                    if tcp.peek(&mut first).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let ssl_request = first[0] != 0x16;
                    if ssl_request {
                        let mut start = [0u8; 8];
                        tcp.read_exact(&mut start).await.unwrap();
                        assert_eq!(start, SSL_REQUEST, "the proxy's SSLRequest");
                        tcp.write_all(&[answer]).await.unwrap();
                        if answer != b'S' {
                            let _ = tx.send(PgSeen {
                                proxy,
                                ssl_request,
                                sni: None,
                                alpn: None,
                            });
                            let _ = read_until_eof(&mut tcp).await;
                            return;
                        }
                    } else if !direct {
                        return; // PostgreSQL 16 and older, ClickHouse: no direct SSL.
                    }
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let (_, conn) = tls.get_ref();
                    let sni = conn.server_name().map(str::to_string);
                    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
                    let _ = tx.send(PgSeen {
                        proxy,
                        ssl_request,
                        sni,
                        alpn,
                    });
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = tls.read(&mut buf).await {
                        if tls.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = tls.shutdown().await;
                });
            }
        });
        PgBackend { addr, seen }
    }

    async fn next(&mut self) -> PgSeen {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("the PostgreSQL backend saw no connection in time")
            .expect("backend stopped")
    }
}

/// A libpq ≤ 16 client: `prefix` (e.g. a `GSSENCRequest`, whose `N` is read), `SSLRequest`,
/// `S`, then TLS for `sni`.
async fn ssl_request_client(
    addr: std::net::SocketAddr,
    gssenc_first: bool,
    connector: &TlsConnector,
    sni: &str,
) -> std::io::Result<ClientTls> {
    let mut tcp = TcpStream::connect(addr).await?;
    if gssenc_first {
        tcp.write_all(&GSSENC_REQUEST).await?;
        assert_eq!(read_byte(&mut tcp).await, b'N', "GSSENCRequest refused");
    }
    tcp.write_all(&SSL_REQUEST).await?;
    assert_eq!(read_byte(&mut tcp).await, b'S', "SSLRequest accepted");
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
}

async fn read_byte(tcp: &mut TcpStream) -> u8 {
    let mut b = [0u8; 1];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut b))
        .await
        .expect("an answer in time")
        .unwrap();
    b[0]
}

/// A plaintext `StartupMessage` (protocol 3.0, user=u, database=d).
fn startup_message() -> Vec<u8> {
    let body = b"user\0u\0database\0d\0\0";
    let mut out = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&0x0003_0000u32.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn is_access(route: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |l| l["target"] == "access" && l["route"] == route
}

fn is_outcome(outcome: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |l| l["target"] == "access" && l["outcome"] == outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listener_negotiates_routes_and_refuses_in_the_clients_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("pg test CA");
    let backend_leaf = ca.leaf(&["*.pg.test", "pg-backend.svc"], 90);
    let front = ca.leaf(&["term.pg.test", "reenc.pg.test"], 90);
    let (cert, key) = front.write(dir.path(), "front");
    let ca_path = ca.write(dir.path());

    let mut clickhouse = PgBackend::start(b'S', false, false, &backend_leaf).await;
    let mut pg17 = PgBackend::start(b'S', true, false, &backend_leaf).await;
    let mut tls_off = PgBackend::start(b'N', false, false, &backend_leaf).await;
    let mut proxied = PgBackend::start(b'S', false, true, &backend_leaf).await;
    let mut reencrypted = PgBackend::start(b'S', false, false, &backend_leaf).await;
    let mut plain = RawBackend::start(false).await;

    let yaml = format!(
        "listeners:\n\
         \x20 - name: pg\n    address: \"127.0.0.1:0\"\n    protocol: postgres\n    upstream_port: 9\n    upstream_port_plain: {plain}\n\
         \x20 - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9\n\
         admin:\n  address: \"127.0.0.1:0\"\n\
         timeouts:\n  client_hello: 5s\n  connect: 5s\n\
         tls:\n  certificates:\n    - cert: {cert}\n      key: {key}\n\
         routes:\n\
         \x20 - sni: ch.pg.test\n    upstream: \"{ch}\"\n\
         \x20 - sni: pg17.pg.test\n    upstream: \"{pg17}\"\n    postgres_direct_ssl: true\n\
         \x20 - sni: port.pg.test\n    upstream: 127.0.0.1\n    postgres_port: {ch_port}\n\
         \x20 - sni: off.pg.test\n    upstream: \"{off}\"\n\
         \x20 - sni: proxied.pg.test\n    upstream: \"{proxied}\"\n    proxy_protocol: v2\n\
         \x20 - sni: denied.pg.test\n    upstream: \"{ch}\"\n    allow: [192.0.2.0/24]\n\
         \x20 - sni: term.pg.test\n    upstream: 127.0.0.1\n    tls: terminate\n\
         \x20 - sni: reenc.pg.test\n    upstream: \"{reenc}\"\n    tls: reencrypt\n    upstream_tls:\n      ca: {ca}\n      server_name: pg-backend.svc\n",
        plain = plain.addr.port(),
        cert = cert.display(),
        key = key.display(),
        ch = clickhouse.addr,
        ch_port = clickhouse.addr.port(),
        pg17 = pg17.addr,
        off = tls_off.addr,
        proxied = proxied.addr,
        reenc = reencrypted.addr,
        ca = ca_path.display(),
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut proxy = Proxy::start_file(&path, dir);
    let addr = proxy.addr("pg");
    let no_alpn = ca.client(&[]);
    let libpq17 = ca.client(&["postgresql"]);

    // SSLRequest → S, then the ClientHello routed by SNI and passed through after the proxy's
    // own SSLRequest upstream: the backend's certificate reaches the client.
    let mut tls = ssl_request_client(addr, false, &no_alpn, "ch.pg.test")
        .await
        .unwrap();
    assert_eq!(served(&tls), der(&backend_leaf.cert));
    echo(&mut tls, b"SELECT 1").await;
    let seen = clickhouse.next().await;
    assert!(seen.ssl_request, "SSLRequest upstream");
    assert_eq!(seen.sni.as_deref(), Some("ch.pg.test"));
    drop(tls);
    let line = proxy.wait_log(is_access("ch.pg.test"));
    assert_eq!(line["outcome"], "relayed", "{line}");
    assert_eq!(line["protocol"], "postgres", "{line}");
    assert_eq!(line["negotiation"], "sslrequest", "{line}");

    // An upstream without a port: the route's postgres_port (a cluster's own) before the
    // listener's upstream_port (9 here, nothing listening).
    let mut tls = ssl_request_client(addr, false, &no_alpn, "port.pg.test")
        .await
        .unwrap();
    echo(&mut tls, b"on the route's port").await;
    assert_eq!(clickhouse.next().await.sni.as_deref(), Some("port.pg.test"));
    drop(tls);

    // GSSENCRequest → N, then SSLRequest as above.
    let mut tls = ssl_request_client(addr, true, &no_alpn, "ch.pg.test")
        .await
        .unwrap();
    echo(&mut tls, b"after gssenc").await;
    assert!(clickhouse.next().await.ssl_request);
    drop(tls);
    let line = proxy.wait_log(|l| l["target"] == "access" && l["negotiation"] == "gssenc_then_ssl");
    assert_eq!(line["outcome"], "relayed", "{line}");

    // Direct SSL to a direct-SSL upstream (PostgreSQL 17+): the ClientHello goes as it came, and
    // the server's ALPN `postgresql` reaches the client.
    let mut tls = connect_verified(&libpq17, addr, "pg17.pg.test")
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"postgresql"[..]));
    echo(&mut tls, b"direct").await;
    let seen = pg17.next().await;
    assert!(
        !seen.ssl_request,
        "no SSLRequest before a direct ClientHello"
    );
    assert_eq!(seen.alpn.as_deref(), Some(&b"postgresql"[..]));
    drop(tls);
    let line = proxy.wait_log(is_access("pg17.pg.test"));
    assert_eq!(line["negotiation"], "direct", "{line}");
    assert_eq!(line["outcome"], "relayed", "{line}");

    // An SSLRequest client to the same direct-SSL upstream still gets SSLRequest upstream.
    let mut tls = ssl_request_client(addr, false, &no_alpn, "pg17.pg.test")
        .await
        .unwrap();
    echo(&mut tls, b"sslrequest to 17").await;
    assert!(pg17.next().await.ssl_request);
    drop(tls);

    // Direct SSL to an SSLRequest-only upstream (ClickHouse): refused before connecting.
    let refused = connect_verified(&libpq17, addr, "ch.pg.test").await;
    assert_eq!(alert_of(refused), AlertDescription::InternalError);
    let line = proxy.wait_log(is_outcome("postgres_direct_unsupported"));
    assert_eq!(line["route"], "ch.pg.test", "{line}");

    // The upstream answers N (TLS off): the client, told S already, gets a TLS alert.
    let refused = ssl_request_client(addr, false, &no_alpn, "off.pg.test").await;
    assert_eq!(alert_of(refused), AlertDescription::InternalError);
    assert!(tls_off.next().await.ssl_request);
    let line = proxy.wait_log(is_outcome("upstream_ssl_refused"));
    assert_eq!(line["route"], "off.pg.test", "{line}");
    assert!(
        line["detail"].as_str().unwrap().contains("with N"),
        "{line}"
    );

    // PROXY v2 first, then SSLRequest, upstream.
    let mut tls = ssl_request_client(addr, false, &no_alpn, "proxied.pg.test")
        .await
        .unwrap();
    echo(&mut tls, b"behind a header").await;
    let seen = proxied.next().await;
    assert_eq!(seen.proxy.expect("PROXY v2").version, 2);
    assert!(seen.ssl_request);
    drop(tls);

    // Unknown name and allowlist: TLS alerts after S, as on a tls listener.
    let unknown = ssl_request_client(addr, false, &no_alpn, "nosuch.other.test").await;
    assert_eq!(alert_of(unknown), AlertDescription::UnrecognisedName);
    let denied = ssl_request_client(addr, false, &no_alpn, "denied.pg.test").await;
    assert_eq!(alert_of(denied), AlertDescription::AccessDenied);

    // terminate: the proxy's certificate; ALPN `postgresql` chosen for a direct client, none for
    // a client that offers none; plaintext upstream.
    let mut tls = connect_verified(&libpq17, addr, "term.pg.test")
        .await
        .unwrap();
    assert_eq!(served(&tls), der(&front.cert));
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"postgresql"[..]));
    echo(&mut tls, b"terminated direct").await;
    tls.shutdown().await.unwrap();
    assert_eq!(plain.next().await.bytes, b"terminated direct");
    let mut tls = ssl_request_client(addr, false, &no_alpn, "term.pg.test")
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    echo(&mut tls, b"terminated sslrequest").await;
    tls.shutdown().await.unwrap();
    assert_eq!(plain.next().await.bytes, b"terminated sslrequest");

    // reencrypt: SSLRequest upstream, then the proxy's own verified handshake.
    let mut tls = connect_verified(&libpq17, addr, "reenc.pg.test")
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"postgresql"[..]));
    echo(&mut tls, b"reencrypted").await;
    let seen = reencrypted.next().await;
    assert!(seen.ssl_request, "SSLRequest before the proxy's handshake");
    assert_eq!(seen.sni.as_deref(), Some("pg-backend.svc"));
    drop(tls);

    // A plaintext startup or cancel request: an ErrorResponse the client shows, then close.
    let cancel = [
        &16u32.to_be_bytes()[..],
        &80_877_102u32.to_be_bytes(),
        &[0; 8],
    ]
    .concat();
    for (start, detail) in [
        (startup_message(), "plaintext startup"),
        (cancel, "plaintext cancel request"),
    ] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&start).await.unwrap();
        let answer = read_until_eof(&mut tcp).await;
        assert_eq!(answer.first(), Some(&b'E'), "{answer:?}");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.contains("28000") && text.contains("SSL required"),
            "{text}"
        );
        let line = proxy.wait_log(|l| l["target"] == "access" && l["detail"] == detail);
        assert_eq!(line["outcome"], "postgres_plaintext", "{line}");
    }

    // Not PostgreSQL at all, or a second GSSENCRequest: closed without an answer.
    for (bytes, detail) in [
        (
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            "length fits no PostgreSQL start",
        ),
        (
            [GSSENC_REQUEST, GSSENC_REQUEST].concat(),
            "data before the answer",
        ),
    ] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&bytes).await.unwrap();
        assert!(read_until_eof(&mut tcp).await.is_empty());
        let line = proxy.wait_log(|l| l["target"] == "access" && l["detail"] == detail);
        assert_eq!(line["outcome"], "not_postgres", "{line}");
    }
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&GSSENC_REQUEST).await.unwrap();
    assert_eq!(read_byte(&mut tcp).await, b'N');
    tcp.write_all(&GSSENC_REQUEST).await.unwrap();
    assert!(read_until_eof(&mut tcp).await.is_empty());
    let line = proxy.wait_log(|l| l["target"] == "access" && l["detail"] == "second GSSENCRequest");
    assert_eq!(line["outcome"], "not_postgres", "{line}");

    // A tls listener is unchanged: an SSLRequest there is not TLS, and its lines say nothing
    // of PostgreSQL.
    let mut tcp = TcpStream::connect(proxy.addr("native")).await.unwrap();
    tcp.write_all(&SSL_REQUEST).await.unwrap();
    let _ = read_until_eof(&mut tcp).await;
    let line = proxy.wait_log(|l| l["target"] == "access" && l["listener"] == "native");
    assert_eq!(line["outcome"], "not_tls", "{line}");
    assert!(
        line.get("protocol").is_none() && line.get("negotiation").is_none(),
        "{line}"
    );

    // /routes shows the PostgreSQL keys of each route.
    let (_, routes) = proxy.admin_get("/routes");
    let routes: serde_json::Value = serde_json::from_str(&routes).unwrap();
    let route = |name: &str| {
        routes["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(route("pg17.pg.test")["postgres_direct_ssl"], true);
    assert_eq!(route("ch.pg.test")["postgres_direct_ssl"], false);
    assert_eq!(
        route("port.pg.test")["postgres_port"],
        clickhouse.addr.port()
    );
    assert!(route("ch.pg.test")["postgres_port"].is_null());

    let (_, metrics) = proxy.admin_get("/metrics");
    let negotiations = |n: &str| {
        let label = format!("negotiation=\"{n}\"");
        metric(
            &metrics,
            "ch_edge_proxy_postgres_negotiations_total",
            &["listener=\"pg\"", &label],
        )
    };
    assert_eq!(negotiations("sslrequest"), 8.0, "{metrics}");
    assert_eq!(negotiations("direct"), 4.0, "{metrics}");
    assert_eq!(negotiations("gssenc_then_ssl"), 1.0, "{metrics}");
    for (outcome, n) in [("postgres_plaintext", 2.0), ("not_postgres", 3.0)] {
        let label = format!("outcome=\"{outcome}\"");
        let got = metric(
            &metrics,
            "ch_edge_proxy_connections_total",
            &["listener=\"pg\"", &label],
        );
        assert_eq!(got, n, "{outcome}: {metrics}");
    }
    for (route, outcome) in [
        ("ch.pg.test", "postgres_direct_unsupported"),
        ("off.pg.test", "upstream_ssl_refused"),
    ] {
        let (route, outcome) = (
            format!("route=\"{route}\""),
            format!("outcome=\"{outcome}\""),
        );
        let got = metric(
            &metrics,
            "ch_edge_proxy_connections_total",
            &[&route, &outcome],
        );
        assert_eq!(got, 1.0, "{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_sslrequest_is_refused_within_the_connect_timeout() {
    // A listener that accepts and never answers (a server that is not PostgreSQL, or hung).
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let (held_tx, mut held) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = silent.accept().await {
            let _ = held_tx.send(tcp);
        }
    });
    let ca = Ca::new("pg test CA");
    let yaml = format!(
        "listeners:\n  - name: pg\n    address: \"127.0.0.1:0\"\n    protocol: postgres\n\
         admin:\n  address: \"127.0.0.1:0\"\n\
         timeouts:\n  client_hello: 5s\n  connect: 300ms\n\
         routes:\n  - sni: hung.pg.test\n    upstream: \"{silent_addr}\"\n"
    );
    let mut proxy = Proxy::start(&yaml);
    let refused =
        ssl_request_client(proxy.addr("pg"), false, &ca.client(&[]), "hung.pg.test").await;
    assert_eq!(alert_of(refused), AlertDescription::InternalError);
    let _held = tokio::time::timeout(WAIT, held.recv()).await.unwrap();
    let line = proxy.wait_log(is_outcome("upstream_ssl_refused"));
    assert_eq!(
        line["detail"], "upstream did not answer SSLRequest in time",
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_follows_a_proxy_header_and_gssenc_may_precede_direct_ssl() {
    let ca = Ca::new("pg test CA");
    let leaf = ca.leaf(&["*.pg.test"], 90);
    let mut pg17 = PgBackend::start(b'S', true, false, &leaf).await;
    let yaml = format!(
        "listeners:\n  - name: pg\n    address: \"127.0.0.1:0\"\n    protocol: postgres\n\
         \x20   proxy_protocol: {{mode: required, trusted: [\"127.0.0.1/32\"]}}\n\
         admin:\n  address: \"127.0.0.1:0\"\n\
         routes:\n  - sni: pg17.pg.test\n    upstream: \"{}\"\n    postgres_direct_ssl: true\n",
        pg17.addr
    );
    let mut proxy = Proxy::start(&yaml);
    let addr = proxy.addr("pg");
    let header = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 5432\r\n";

    // PROXY header, SSLRequest, S, TLS: the header's client is the client.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    tcp.write_all(&SSL_REQUEST).await.unwrap();
    assert_eq!(read_byte(&mut tcp).await, b'S');
    let name = ServerName::try_from("pg17.pg.test").unwrap();
    let mut tls = ca.client(&[]).connect(name, tcp).await.unwrap();
    echo(&mut tls, b"behind an NLB").await;
    assert!(pg17.next().await.ssl_request);
    drop(tls);
    let line = proxy.wait_log(|l| l["target"] == "access" && l["negotiation"] == "sslrequest");
    assert_eq!(line["client"], "203.0.113.7:40000", "{line}");
    assert_eq!(line["outcome"], "relayed", "{line}");

    // PROXY header, GSSENCRequest, N, then a direct ClientHello: still direct, so it is passed
    // through to the direct-SSL upstream as it came.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    tcp.write_all(&GSSENC_REQUEST).await.unwrap();
    assert_eq!(read_byte(&mut tcp).await, b'N');
    let name = ServerName::try_from("pg17.pg.test").unwrap();
    let mut tls = ca.client(&["postgresql"]).connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"postgresql"[..]));
    echo(&mut tls, b"gssenc then direct").await;
    assert!(
        !pg17.next().await.ssl_request,
        "a direct ClientHello upstream"
    );
    drop(tls);
    let line = proxy.wait_log(|l| l["target"] == "access" && l["negotiation"] == "gssenc_then_ssl");
    assert_eq!(line["outcome"], "relayed", "{line}");

    // Without the header the connection is refused before any PostgreSQL byte is answered.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&SSL_REQUEST).await.unwrap();
    assert!(read_until_eof(&mut tcp).await.is_empty());
    let line = proxy.wait_log(|l| l["target"] == "access" && l["outcome"] != "relayed");
    assert_eq!(line["outcome"], "proxy_missing", "{line}");
}

/// Regression: the proxy once cleared the client socket's read readiness after writing `S`;
/// a client that sent its ClientHello at once could have it arrive in between, its event lost,
/// and the connection then waited out `timeouts.client_hello` (about one in a hundred on
/// loopback). Many quick clients in a row must each be relayed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clienthello_sent_right_after_s_is_never_missed() {
    // An upstream that answers SSLRequest with S, then echoes.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let mut start = [0u8; 8];
                if tcp.read_exact(&mut start).await.is_err() || tcp.write_all(b"S").await.is_err() {
                    return;
                }
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let yaml = format!(
        "listeners:\n  - name: pg\n    address: \"127.0.0.1:0\"\n    protocol: postgres\n\
         admin:\n  address: \"127.0.0.1:0\"\n\
         timeouts:\n  client_hello: 10s\n\
         log:\n  access: off\n\
         routes:\n  - sni: quick.pg.test\n    upstream: \"{upstream_addr}\"\n"
    );
    let proxy = Proxy::start(&yaml);
    let addr = proxy.addr("pg");
    let hello = support::peers::client_hello("quick.pg.test");
    for i in 0..300 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.write_all(&SSL_REQUEST).await.unwrap();
        assert_eq!(read_byte(&mut tcp).await, b'S');
        tcp.write_all(&hello).await.unwrap();
        let mut back = vec![0u8; hello.len()];
        // Well under client_hello: a missed event waits all of it.
        tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_exact(&mut back))
            .await
            .unwrap_or_else(|_| panic!("connection {i}: the ClientHello was not relayed"))
            .unwrap();
        assert_eq!(back, hello);
    }
}

/// A reload that turns a running listener into a postgres one (kept, not rebound) applies to
/// the next connection, ALPN `postgresql` for its terminating routes included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_a_listener_to_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("pg test CA");
    let (cert, key) = ca.leaf(&["term.pg.test"], 90).write(dir.path(), "front");
    let mut plain = RawBackend::start(false).await;
    let plain_port = plain.addr.port();
    let config = |protocol: &str| {
        format!(
            "listeners:\n  - name: pg\n    address: \"127.0.0.1:0\"\n    protocol: {protocol}\n\
             \x20   upstream_port: 9\n    upstream_port_plain: {}\n\
             admin:\n  address: \"127.0.0.1:0\"\n\
             tls:\n  certificates:\n    - cert: {}\n      key: {}\n\
             routes:\n  - sni: term.pg.test\n    upstream: 127.0.0.1\n    tls: terminate\n",
            plain_port,
            cert.display(),
            key.display()
        )
    };
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config("tls")).unwrap();
    let mut proxy = Proxy::start_file(&path, dir);
    let addr = proxy.addr("pg");
    let libpq17 = ca.client(&["postgresql"]);

    // tls: an SSLRequest is not TLS; a TLS client is served without ALPN (the route lists none).
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&SSL_REQUEST).await.unwrap();
    assert!(read_until_eof(&mut tcp).await.is_empty());
    proxy.wait_log(is_outcome("not_tls"));
    let mut tls = connect_verified(&libpq17, addr, "term.pg.test")
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    echo(&mut tls, b"tls listener").await;
    tls.shutdown().await.unwrap();
    plain.next().await;

    write_atomic(&proxy.config, &config("postgres"));
    proxy.wait_reload("ok");
    assert_eq!(proxy.addr("pg"), addr);
    let mut tls = ssl_request_client(addr, false, &ca.client(&[]), "term.pg.test")
        .await
        .unwrap();
    echo(&mut tls, b"postgres listener").await;
    tls.shutdown().await.unwrap();
    assert_eq!(plain.next().await.bytes, b"postgres listener");
    let tls = connect_verified(&libpq17, addr, "term.pg.test")
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"postgresql"[..]));
}
