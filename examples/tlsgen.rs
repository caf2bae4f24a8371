//! Load generator for the TLS termination benchmark (`benches/tls/run.sh`): full handshakes
//! (no resumption) and bulk transfers through a proxy that terminates TLS, and the plaintext
//! echo backend behind it. Loopback only; every run is bounded by its counts.
//!
//! ```text
//! tlsgen free-port                                          # prints a free loopback port
//! tlsgen echo --listen 127.0.0.1:0 --port-file F            # backend: echoes every byte
//! tlsgen handshakes --addr A --sni S --count N --concurrency C
//! tlsgen bulk --addr A --sni S --mib M                        # M MiB each way, one connection
//! tlsgen hold --addr A --sni S --count N --pids P             # RSS per idle terminated connection
//! ```
//! Each client subcommand prints one line of `key=value` fields (count, seconds, errors, and
//! what the last handshake negotiated: version, cipher suite, key exchange group).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints a loopback port that was free a moment ago.
    FreePort,
    /// Plaintext echo backend (runs until killed); writes its port to `port_file`.
    Echo {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        port_file: Option<std::path::PathBuf>,
    },
    /// `count` full handshakes, `concurrency` at a time; each sends one byte and reads it back.
    Handshakes {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        sni: String,
        #[arg(long, default_value_t = 2000)]
        count: u64,
        #[arg(long, default_value_t = 16)]
        concurrency: u64,
    },
    /// Idle memory: `count` terminated connections (a full handshake, one byte there and back
    /// each), held open; the proxy's resident memory (`VmRSS` of `pids`, summed) before and after,
    /// per connection. Prints one `RESULT test=tlshold ...` line.
    Hold {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        sni: String,
        #[arg(long, default_value_t = 2000)]
        count: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: u64,
        #[arg(long, value_delimiter = ',', required = true)]
        pids: Vec<u32>,
        /// Wait this long after the last connection is up before reading RSS.
        #[arg(long, default_value_t = 8000)]
        settle_ms: u64,
        /// Hard bound on the whole run.
        #[arg(long, default_value_t = 120)]
        deadline_secs: u64,
    },
    /// One connection: `mib` MiB sent and the same echoed back.
    Bulk {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        sni: String,
        #[arg(long, default_value_t = 1024)]
        mib: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::FreePort => {
                let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
                println!("{}", listener.local_addr()?.port());
                Ok(())
            }
            Command::Echo { listen, port_file } => echo(listen, port_file).await,
            Command::Handshakes {
                addr,
                sni,
                count,
                concurrency,
            } => handshakes(addr, &sni, count, concurrency).await,
            Command::Bulk { addr, sni, mib } => bulk(addr, &sni, mib).await,
            Command::Hold {
                addr,
                sni,
                count,
                concurrency,
                pids,
                settle_ms,
                deadline_secs,
            } => {
                let held = hold(addr, &sni, count, concurrency, &pids, settle_ms);
                match tokio::time::timeout(Duration::from_secs(deadline_secs), held).await {
                    Ok(done) => done,
                    Err(_) => bail!("deadline of {deadline_secs}s exceeded"),
                }
            }
        }
    })
}

async fn echo(listen: SocketAddr, port_file: Option<std::path::PathBuf>) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    if let Some(path) = port_file {
        // Written whole then renamed, so a reader never sees half a number.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, listener.local_addr()?.port().to_string())?;
        std::fs::rename(&tmp, &path)?;
    }
    loop {
        let (mut tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let (mut r, mut w) = tcp.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
    }
}

/// A client that never resumes (every handshake is a full one) and does not check the
/// certificate: the benchmark measures the server's side.
fn connector() -> TlsConnector {
    let provider = ch_edge_proxy::model::tls::provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the provider has the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

/// `version=… suite=… kx=…` of a finished handshake.
fn negotiated(conn: &rustls::ClientConnection) -> String {
    let version = conn
        .protocol_version()
        .map_or("-".into(), |v| format!("{v:?}"));
    let suite = conn
        .negotiated_cipher_suite()
        .map_or("-".into(), |s| format!("{:?}", s.suite()));
    let kx = conn
        .negotiated_key_exchange_group()
        .map_or("-".into(), |g| format!("{:?}", g.name()));
    format!("version={version} suite={suite} kx={kx}")
}

/// One full handshake, one byte there and back; says what was negotiated.
async fn one_handshake(connector: &TlsConnector, addr: SocketAddr, sni: &str) -> Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(sni.to_string())?;
    let mut tls = connector.connect(name, tcp).await?;
    let what = negotiated(tls.get_ref().1);
    tls.write_all(b"x").await?;
    let mut back = [0u8; 1];
    tls.read_exact(&mut back).await?;
    let _ = tls.shutdown().await;
    Ok(what)
}

async fn handshakes(addr: SocketAddr, sni: &str, count: u64, concurrency: u64) -> Result<()> {
    let connector = connector();
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let last = Arc::new(std::sync::Mutex::new(String::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (connector, next, errors, last, sni) = (
            connector.clone(),
            next.clone(),
            errors.clone(),
            last.clone(),
            sni.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let done = tokio::time::timeout(
                    Duration::from_secs(10),
                    one_handshake(&connector, addr, &sni),
                );
                match done.await {
                    Ok(Ok(what)) => *last.lock().unwrap() = what,
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let errors = errors.load(Ordering::Relaxed);
    let what = last.lock().unwrap().clone();
    println!("handshakes count={count} errors={errors} seconds={secs:.3} {what}");
    if errors * 100 > count {
        bail!("{errors} of {count} handshakes failed");
    }
    Ok(())
}

/// `VmRSS` of `pids`, summed, in KiB.
fn rss_kib(pids: &[u32]) -> Result<u64> {
    let mut kib = 0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("process {pid} gone"))?;
        kib += status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .context("no VmRSS")?;
    }
    Ok(kib)
}

/// One terminated connection, proved end to end (one byte there and back), kept open.
async fn one_held(
    connector: &TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector
        .connect(ServerName::try_from(sni.to_string())?, tcp)
        .await?;
    tls.write_all(b"x").await?;
    let mut back = [0u8; 1];
    tls.read_exact(&mut back).await?;
    Ok(tls)
}

async fn hold(
    addr: SocketAddr,
    sni: &str,
    count: u64,
    concurrency: u64,
    pids: &[u32],
    settle_ms: u64,
) -> Result<()> {
    let connector = connector();
    // Warm-up: what a proxy sets up on its first handshakes is not per idle connection.
    for _ in 0..concurrency.max(1) {
        drop(one_held(&connector, addr, sni).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pids)?;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (connector, next, sni) = (connector.clone(), next.clone(), sni.to_string());
        tasks.push(tokio::spawn(async move {
            let (mut held, mut errors) = (Vec::new(), 0u64);
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let one =
                    tokio::time::timeout(Duration::from_secs(10), one_held(&connector, addr, &sni));
                match one.await {
                    Ok(Ok(tls)) => held.push(tls),
                    _ => errors += 1,
                }
            }
            (held, errors)
        }));
    }
    let (mut held, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (h, e) = t.await?;
        held.extend(h);
        errors += e;
    }
    tokio::time::sleep(Duration::from_millis(settle_ms)).await;
    let after = rss_kib(pids)?;
    // Every held connection must still be open: a closed one has its TCP socket readable (EOF).
    let mut closed = 0;
    for tls in &held {
        let mut b = [0u8; 1];
        match tls.get_ref().0.try_read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => closed += 1,
        }
    }
    let open = held.len() as u64;
    println!(
        "RESULT test=tlshold conns={open} errors={errors} closed_early={closed} rss_before_kib={before} rss_after_kib={after} kib_per_conn={:.2}",
        (after as f64 - before as f64) / open.max(1) as f64
    );
    Ok(())
}

async fn bulk(addr: SocketAddr, sni: &str, mib: u64) -> Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string())?;
    let tls = connector().connect(name, tcp).await.context("handshake")?;
    let what = negotiated(tls.get_ref().1);
    let (mut r, mut w) = tokio::io::split(tls);
    let total = mib << 20;
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5au8; 256 << 10];
        let mut sent = 0u64;
        while sent < total {
            let n = chunk.len().min((total - sent) as usize);
            w.write_all(&chunk[..n]).await?;
            sent += n as u64;
        }
        w.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });
    let mut buf = vec![0u8; 256 << 10];
    let mut received = 0u64;
    loop {
        match r.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => received += n as u64,
            // Some proxies close without close_notify once both sides are done.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
    }
    writer.await??;
    let secs = started.elapsed().as_secs_f64();
    println!("bulk bytes={} seconds={secs:.3} {what}", total + received);
    if received != total {
        bail!("echoed {received} of {total} bytes");
    }
    Ok(())
}

#[derive(Debug)]
struct NoVerify;

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ch_edge_proxy::model::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
