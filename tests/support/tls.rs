//! TLS on both ends of the proxy: a rustls backend that reports the PROXY
//! header and SNI it saw, and a rustls client with a chosen SNI (or none).

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use ch_edge_wire::proxy_in::{self, Parsed, ProxyHeader};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for the test names, made now.
pub fn server_config() -> Arc<rustls::ServerConfig> {
    let names = vec![
        "*.ch.test".to_string(),
        "ch.test".to_string(),
        "*.other.test".to_string(),
    ];
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    Arc::new(cfg)
}

/// What one backend connection saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub proxy: Option<ProxyHeader>,
    pub sni: Option<String>,
    pub peer: SocketAddr,
}

/// A TLS-terminating echo server standing in for ClickHouse.
pub struct TlsBackend {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl TlsBackend {
    /// `expect_proxy`: read a PROXY header (v1 or v2) before TLS.
    pub async fn start(expect_proxy: bool) -> TlsBackend {
        Self::start_with(expect_proxy, server_config()).await
    }

    /// Like [`TlsBackend::start`], serving `config`'s certificate.
    pub async fn start_with(expect_proxy: bool, config: Arc<rustls::ServerConfig>) -> TlsBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, peer)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let proxy = if expect_proxy {
                        match read_proxy_header(&mut tcp).await {
                            Some(h) => Some(h),
                            None => return,
                        }
                    } else {
                        None
                    };
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_string);
                    let _ = tx.send(Seen { proxy, sni, peer });
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tls.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsBackend { addr, seen: rx }
    }

    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(super::WAIT, self.seen.recv())
            .await
            .expect("backend saw no connection in time")
            .expect("backend stopped")
    }
}

/// Reads exactly one PROXY header, byte by byte so nothing of TLS is consumed.
pub async fn read_proxy_header(tcp: &mut TcpStream) -> Option<ProxyHeader> {
    let mut buf = Vec::new();
    loop {
        match proxy_in::parse(&buf) {
            Parsed::Header(h) => return Some(h),
            Parsed::Incomplete => {}
            other => panic!("backend expected a PROXY header, got {other:?} after {buf:?}"),
        }
        let b = tcp.read_u8().await.ok()?;
        buf.push(b);
    }
}

#[derive(Debug)]
struct AcceptAnyCert;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// TLS client: routing is what these tests check, not PKI, so any
/// certificate is accepted. `sni: None` sends a ClientHello without SNI.
pub fn connector(sni_enabled: bool) -> TlsConnector {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert))
        .with_no_client_auth();
    cfg.enable_sni = sni_enabled;
    TlsConnector::from(Arc::new(cfg))
}

pub type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// Connects to `addr`, sends `preface` (e.g. a PROXY header), then does a
/// TLS handshake with `sni` (None: no SNI extension).
pub async fn tls_connect(
    addr: SocketAddr,
    preface: &[u8],
    sni: Option<&str>,
) -> std::io::Result<ClientTls> {
    let tcp = TcpStream::connect(addr).await?;
    tls_over(tcp, preface, sni).await
}

pub async fn tls_over(
    mut tcp: TcpStream,
    preface: &[u8],
    sni: Option<&str>,
) -> std::io::Result<ClientTls> {
    tcp.set_nodelay(true)?;
    if !preface.is_empty() {
        tcp.write_all(preface).await?;
    }
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).unwrap(),
        None => ServerName::try_from("unused.invalid").unwrap(),
    };
    tokio::time::timeout(super::WAIT, connector(sni.is_some()).connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

/// Round-trips `msg` through the echo backend.
pub async fn echo(tls: &mut ClientTls, msg: &[u8]) {
    tls.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(super::WAIT, tls.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(back, msg);
}

/// The TLS alert a failed handshake reported, if that is why it failed.
pub fn alert_of(result: std::io::Result<ClientTls>) -> rustls::AlertDescription {
    let err = match result {
        Ok(_) => panic!("handshake succeeded; expected an alert"),
        Err(e) => e,
    };
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("expected a TLS alert, got {err:?}"));
    match inner {
        rustls::Error::AlertReceived(a) => *a,
        other => panic!("expected a TLS alert, got {other:?}"),
    }
}
