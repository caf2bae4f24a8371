//! PROXY protocol in (trust policy, v1/v2, LOCAL) and out (v1/v2), checked
//! with our own clients and with Debian's haproxy and nginx as real peers.

mod support;

use std::net::SocketAddr;

use ch_edge_wire::proxy_out;
use ch_edge_wire::proxy_out::ProxyVersion;
use rustls::AlertDescription;
use support::peers::{self, RawBackend};
use support::*;

/// A PROXY header as an NLB (v2) or a classic ELB (v1) would send it.
fn header(version: ProxyVersion, src: &str, dst: &str) -> Vec<u8> {
    let mut out = Vec::new();
    proxy_out::encode(
        version,
        src.parse().unwrap(),
        dst.parse().unwrap(),
        &[],
        &mut out,
    );
    out
}

fn v2(src: &str, dst: &str) -> Vec<u8> {
    header(ProxyVersion::V2, src, dst)
}

fn v1(src: &str, dst: &str) -> Vec<u8> {
    header(ProxyVersion::V1, src, dst)
}

fn config(mode: &str, trusted: &str, routes: &str) -> String {
    format!(
        "listeners:\n  - name: nlb\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n    proxy_protocol:\n      mode: {mode}\n      trusted: [{trusted}]\n\
         admin:\n  address: \"127.0.0.1:0\"\nroutes:\n{routes}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_v2_header_sets_the_client_for_allowlist_and_proxy_out() {
    let mut backend = TlsBackend::start(true).await;
    let mut proxy = Proxy::start(&config(
        "required",
        "\"127.0.0.1/32\"",
        &format!(
            "  - sni: demo.ch.test\n    upstream: \"{}\"\n    allow: [\"198.51.100.0/24\"]\n    proxy_protocol: v1\n",
            backend.addr
        ),
    ));
    let addr = proxy.addr("nlb");
    // Allowed by the address in the header, not by the socket peer (127.0.0.1).
    let mut tls = tls_connect(
        addr,
        &v2("198.51.100.7:50000", "10.0.0.5:9440"),
        Some("demo.ch.test"),
    )
    .await
    .unwrap();
    echo(&mut tls, b"select 1").await;
    let seen = backend.next().await;
    drop(tls);
    let header = seen.proxy.expect("v1 header upstream");
    assert_eq!(header.version, 1);
    assert_eq!(header.source, Some("198.51.100.7:50000".parse().unwrap()));
    assert_eq!(header.destination, Some("10.0.0.5:9440".parse().unwrap()));
    let line = proxy.access();
    assert_eq!(line["client"], "198.51.100.7:50000");
    assert_eq!(line["proxy_version"], 2);

    // Same route, a client outside the allowlist per its header.
    let denied = tls_connect(
        addr,
        &v2("203.0.113.9:1234", "10.0.0.5:9440"),
        Some("demo.ch.test"),
    )
    .await;
    assert_eq!(alert_of(denied), AlertDescription::AccessDenied);
    assert_eq!(proxy.access()["outcome"], "access_denied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_from_untrusted_peer_is_refused() {
    let backend = TlsBackend::start(false).await;
    let routes = format!(
        "  - sni: demo.ch.test\n    upstream: \"{}\"\n",
        backend.addr
    );
    // We connect from 127.0.0.1; only 127.0.0.2 is trusted.
    let mut proxy = Proxy::start(&config("optional", "\"127.0.0.2/32\"", &routes));
    let addr = proxy.addr("nlb");
    let forged = tls_connect(
        addr,
        &v1("198.51.100.7:1", "10.0.0.5:9440"),
        Some("demo.ch.test"),
    )
    .await;
    assert!(forged.is_err());
    assert_eq!(proxy.access()["outcome"], "proxy_untrusted");
    // Optional: no header from an untrusted peer is fine (the socket peer is the client).
    let mut plain = tls_connect(addr, b"", Some("demo.ch.test")).await.unwrap();
    echo(&mut plain, b"ok").await;
    drop(plain);
    let line = proxy.access();
    assert_eq!(line["outcome"], "relayed");
    assert!(line["client"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_mode_refuses_missing_header_and_v2_local_is_a_quiet_health_check() {
    let backend = TlsBackend::start(false).await;
    let routes = format!(
        "  - sni: demo.ch.test\n    upstream: \"{}\"\n",
        backend.addr
    );
    let mut proxy = Proxy::start(&config("required", "\"127.0.0.0/8\"", &routes));
    let addr = proxy.addr("nlb");
    assert!(tls_connect(addr, b"", Some("demo.ch.test")).await.is_err());
    assert_eq!(proxy.access()["outcome"], "proxy_missing");

    // v2 LOCAL, as an NLB health check sends it: closed without error noise.
    let local: [u8; 16] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00,
        0x00,
    ];
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, &local)
        .await
        .unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut rest),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(n, 0, "health check gets no bytes back");
    assert_eq!(proxy.access()["outcome"], "health_check");
    let (_, metrics) = proxy.admin_get("/metrics");
    assert_eq!(
        metric(
            &metrics,
            "ch_edge_proxy_connections_total",
            &["outcome=\"health_check\""]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_out_carries_client_authority_and_aws_vpce_tlv() {
    let mut backend = RawBackend::start(true).await;
    let mut proxy = Proxy::start(&config(
        "optional",
        "\"127.0.0.1/32\"",
        &format!(
            "  - sni: demo.ch.test\n    upstream: \"{}\"\n    proxy_protocol: v2\n",
            backend.addr
        ),
    ));
    // Inbound v2 with the AWS VPC-endpoint TLV, as an NLB sends for PrivateLink.
    let mut vpce_tlv = vec![0x01];
    vpce_tlv.extend_from_slice(b"vpce-08d2bf15fac5001c9");
    let mut header = Vec::new();
    proxy_out::encode(
        ProxyVersion::V2,
        "[2001:db8::7]:4000".parse().unwrap(),
        "[2001:db8::1]:9440".parse().unwrap(),
        &[(0xEA, &vpce_tlv)],
        &mut header,
    );
    let hello = peers::client_hello("demo.ch.test");
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr("nlb"))
        .await
        .unwrap();
    let mut first = header.clone();
    first.extend_from_slice(&hello);
    tokio::io::AsyncWriteExt::write_all(&mut tcp, &first)
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::shutdown(&mut tcp).await.unwrap();
    let seen = backend.next().await;
    let out = seen.proxy.expect("v2 header upstream");
    assert_eq!(out.version, 2);
    assert_eq!(out.source, Some("[2001:db8::7]:4000".parse().unwrap()));
    assert_eq!(out.aws_vpce_id(), Some("vpce-08d2bf15fac5001c9"));
    assert!(
        out.tlvs
            .iter()
            .any(|(t, v)| *t == 0x02 && v == b"demo.ch.test"),
        "{:?}",
        out.tlvs
    );
    assert_eq!(seen.bytes, hello, "ClientHello replayed byte for byte");
    let line = proxy.access();
    assert_eq!(line["vpce"], "vpce-08d2bf15fac5001c9");
    assert_eq!(line["client"], "[2001:db8::7]:4000");
}

/// haproxy `send-proxy-v2` as the NLB stand-in → proxy → nginx stream
/// reading our PROXY header and answering with the address it learnt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_in_front_and_nginx_behind_see_the_real_client() {
    let (Some(haproxy), Some(nginx)) = (tool("haproxy"), tool("nginx")) else {
        return;
    };
    for (version, tag) in [("v1", "v1"), ("v2", "v2")] {
        let nginx_addr: SocketAddr = format!("127.0.0.1:{}", peers::free_port()).parse().unwrap();
        let _nginx = peers::nginx(
            &nginx,
            &format!(
                "stream {{ server {{ listen {nginx_addr} proxy_protocol; return \"client=$proxy_protocol_addr:$proxy_protocol_port {tag}\\n\"; }} }}"
            ),
            nginx_addr,
        );
        let mut proxy = Proxy::start(&config(
            "required",
            "\"127.0.0.1/32\"",
            &format!("  - sni: demo.ch.test\n    upstream: \"{nginx_addr}\"\n    proxy_protocol: {version}\n"),
        ));
        let front: SocketAddr = format!("127.0.0.1:{}", peers::free_port()).parse().unwrap();
        let _haproxy = peers::haproxy(
            &haproxy,
            &format!(
                "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 listen nlb\n  bind {front}\n  server edge {} send-proxy-v2\n",
                proxy.addr("nlb")
            ),
            front,
        );
        // The client connects from 127.0.0.3 so its address differs from every hop's.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        let mut tcp = socket.connect(front).await.unwrap();
        let me = tcp.local_addr().unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut tcp, &peers::client_hello("demo.ch.test"))
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(
            WAIT,
            tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut answer),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&answer),
            format!("client={}:{} {tag}\n", me.ip(), me.port())
        );
        // Skip the readiness probe that went through haproxy; ours is from 127.0.0.3.
        let line = proxy.wait_log(|l| {
            l["target"] == "access"
                && l["client"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("127.0.0.3:"))
        });
        assert_eq!(line["client"], me.to_string(), "{line}");
        assert_eq!(line["proxy_version"], 2);
    }
}

/// A TLS server answering every request with `200 ok` (for curl), on 127.0.0.1.
async fn https_ok() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                // The answer and close_notify in one write: curl closes once it has the body,
                // and a close_notify still on its way then would meet a closed socket, whose
                // reset the proxy would log as a relay error (a race between two writes of
                // this backend, not a property of the proxy).
                let _ = std::io::Write::write_all(&mut tls.get_mut().1.writer(), answer);
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// `curl --haproxy-protocol` (a PROXY v1 header with curl's own address) from `source`, to
/// https://demo.ch.test on `proxy`: (exit status success, stdout, stderr).
fn curl_from(
    curl: &std::path::Path,
    source: &str,
    proxy: SocketAddr,
    haproxy: bool,
) -> (bool, String, String) {
    let mut command = std::process::Command::new(curl);
    command
        .args(["-sS", "-k", "--max-time", "20", "--interface", source])
        .args([
            "--resolve",
            &format!("demo.ch.test:{}:{}", proxy.port(), proxy.ip()),
        ]);
    if haproxy {
        command.arg("--haproxy-protocol");
    }
    let out = command
        .arg(format!("https://demo.ch.test:{}/", proxy.port()))
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// README "Behind an AWS NLB", checked locally: a PROXY header from a trusted peer (the load
/// balancer) is used; one from any other address (what an NLB that preserves client IPs
/// delivers) is refused, counted apart from a direct connection without a header, and logged
/// with the hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_haproxy_protocol_from_a_trusted_and_an_untrusted_source() {
    let Some(curl) = tool("curl") else { return };
    let backend = https_ok().await;
    let mut proxy = Proxy::start(&config(
        "required",
        "\"127.0.0.2/32\"",
        &format!("  - sni: demo.ch.test\n    upstream: \"{backend}\"\n"),
    ));
    let addr = proxy.addr("nlb");
    let (_, metrics) = proxy.admin_get("/metrics");
    let untrusted = |m: &str| {
        metric(
            m,
            "ch_edge_proxy_connections_total",
            &["outcome=\"proxy_untrusted\""],
        )
    };
    assert_eq!(untrusted(&metrics), 0.0);

    // The load balancer's address: the header is read and its client used.
    let (ok, stdout, stderr) = curl_from(&curl, "127.0.0.2", addr, true);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "ok");
    let line = proxy.access();
    assert_eq!(line["outcome"], "relayed", "{line}");
    assert_eq!(line["proxy_version"], 1, "{line}");
    assert!(
        line["client"].as_str().unwrap().starts_with("127.0.0.2:"),
        "{line}"
    );

    // Any other address: refused, counted, and the misconfiguration named once.
    let (ok, _, _) = curl_from(&curl, "127.0.0.3", addr, true);
    assert!(!ok, "a header from an untrusted peer went through");
    let line = proxy.access();
    assert_eq!(line["outcome"], "proxy_untrusted", "{line}");
    let warning = proxy.wait_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("PROXY header from a peer outside"))
    });
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["listener"], "nlb", "{warning}");
    assert!(
        warning["peer"].as_str().unwrap().starts_with("127.0.0.3:"),
        "{warning}"
    );
    let message = warning["message"].as_str().unwrap();
    assert!(message.contains("preserve client IP"), "{message}");
    assert!(message.contains("Behind an AWS NLB"), "{message}");
    let (_, metrics) = proxy.admin_get("/metrics");
    assert_eq!(untrusted(&metrics), 1.0, "{metrics}");

    // The same address without a header is a direct connection, not the load balancer's sign.
    let (ok, _, _) = curl_from(&curl, "127.0.0.3", addr, false);
    assert!(!ok);
    assert_eq!(proxy.access()["outcome"], "untrusted_direct");
    let (_, metrics) = proxy.admin_get("/metrics");
    assert_eq!(untrusted(&metrics), 1.0, "{metrics}");
    let direct = metric(
        &metrics,
        "ch_edge_proxy_connections_total",
        &["outcome=\"untrusted_direct\""],
    );
    assert_eq!(direct, 1.0, "{metrics}");
}
