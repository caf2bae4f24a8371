//! Real peers from Debian (haproxy, nginx) and raw byte-level helpers.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::WAIT;
use ch_edge_wire::proxy_in::ProxyHeader;

/// A port that was free a moment ago, for peers whose config needs a
/// number (haproxy, nginx). The OS picks it; nothing is hard-coded.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port reserved for the test and closed: a socket bound to it that never listens, so a
/// connect is refused at once, and no listener bound to port 0 meanwhile (the proxy's own, the
/// next test's) can be given it. A port from [`free_port`] that is left unused can be: a
/// "dead" upstream that turns out to be the proxy's own listener loops back into the proxy.
pub struct ClosedPort {
    _socket: socket2::Socket,
    pub port: u16,
}

pub fn closed_port() -> ClosedPort {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let port = socket
        .local_addr()
        .unwrap()
        .as_socket()
        .map(|a| a.port())
        .unwrap();
    ClosedPort {
        _socket: socket,
        port,
    }
}

/// Waits (bounded) until something accepts on `addr`.
pub fn wait_listening(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + WAIT;
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("peer exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "peer never listened on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed on drop.
pub struct Peer {
    pub child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// haproxy in the foreground with `config` (its `listen` ports chosen by the caller).
pub fn haproxy(bin: &Path, config: &str, listens_on: SocketAddr) -> Peer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let check = Command::new(bin)
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy config invalid: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut command = Command::new(bin);
    command.arg("-db").arg("-f").arg(&path);
    start_peer(command, dir, listens_on)
}

/// Runs a peer in the foreground and returns once it accepts on `listens_on`.
pub fn start_peer(mut command: Command, dir: tempfile::TempDir, listens_on: SocketAddr) -> Peer {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_listening(listens_on, &mut child);
    Peer { child, _dir: dir }
}

/// nginx (stream module) in the foreground with a `stream { … }` block.
pub fn nginx(bin: &Path, stream_block: &str, listens_on: SocketAddr) -> Peer {
    let dir = tempfile::tempdir().unwrap();
    let conf = format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
         daemon off; master_process off; pid {pid}; error_log stderr warn;\n\
         events {{}}\n{stream_block}\n",
        pid = dir.path().join("nginx.pid").display()
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let mut command = Command::new(bin);
    command
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg("stderr");
    start_peer(command, dir, listens_on)
}

/// A real ClientHello from rustls for `sni`, as one TLS record.
pub fn client_hello(sni: &str) -> Vec<u8> {
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(
        Arc::new(cfg),
        ServerName::try_from(sni.to_string()).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// Re-frames one handshake record into records of at most `size` bytes.
/// A minimal ClientHello carrying `sni` as it is, whatever its bytes (rustls only builds valid
/// names): TLS 1.2 record, one cipher suite, the server_name extension alone.
pub fn raw_client_hello(sni: &[u8]) -> Vec<u8> {
    let name_len = u16::try_from(sni.len()).unwrap();
    let mut ext = Vec::new();
    ext.extend_from_slice(&(name_len + 3).to_be_bytes()); // server_name_list
    ext.push(0); // host_name
    ext.extend_from_slice(&name_len.to_be_bytes());
    ext.extend_from_slice(sni);
    let mut exts = vec![0, 0]; // type server_name
    exts.extend_from_slice(&u16::try_from(ext.len()).unwrap().to_be_bytes());
    exts.extend_from_slice(&ext);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // cipher suites
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&u16::try_from(exts.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&u16::try_from(hs.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

pub fn reframe(hello: &[u8], size: usize) -> Vec<u8> {
    assert_eq!(hello[0], 0x16);
    let len = u16::from_be_bytes([hello[3], hello[4]]) as usize;
    let body = &hello[5..5 + len];
    let mut out = Vec::new();
    for chunk in body.chunks(size) {
        out.extend_from_slice(&[0x16, hello[1], hello[2]]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// What a raw backend connection received.
#[derive(Debug, Clone)]
pub struct RawSeen {
    pub proxy: Option<ProxyHeader>,
    /// Every byte after the PROXY header.
    pub bytes: Vec<u8>,
}

/// A byte-level echo backend: optional PROXY header, then echoes every byte
/// and passes the client's EOF on (half-close), reporting what it received.
pub struct RawBackend {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<RawSeen>,
}

impl RawBackend {
    pub async fn start(expect_proxy: bool) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let proxy = if expect_proxy {
                        match super::tls::read_proxy_header(&mut tcp).await {
                            Some(h) => Some(h),
                            None => return,
                        }
                    } else {
                        None
                    };
                    let mut bytes = Vec::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                bytes.extend_from_slice(&buf[..n]);
                                if tcp.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = tcp.shutdown().await;
                    let _ = tx.send(RawSeen { proxy, bytes });
                });
            }
        });
        RawBackend { addr, seen: rx }
    }

    pub async fn next(&mut self) -> RawSeen {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("raw backend saw no finished connection in time")
            .expect("raw backend stopped")
    }
}

/// Everything `tcp` receives until EOF (or a reset), waiting at most WAIT.
pub async fn read_until_eof(tcp: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "no EOF within {WAIT:?}");
    got
}

/// Connects to `addr`, sends `bytes`, half-closes, and returns the answer up to EOF.
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    tcp.shutdown().await.unwrap();
    read_until_eof(&mut tcp).await
}
