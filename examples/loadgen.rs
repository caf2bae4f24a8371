//! Load generator for the side-by-side proxy benchmark (`benches/load/run.sh`).
//!
//! Subcommands:
//! - `backend`: listens on N loopback ports; per connection reads the PROXY
//!   header (v1, v2 or none) and the ClientHello, then acts on the mode byte
//!   the client put in the hello's `random[0]`: `C` reply 1 byte and close,
//!   `S` sink until EOF then reply the byte count (u64 BE), `H` reply 1 byte
//!   and hold until EOF, `E` echo every byte until EOF. On SIGTERM/SIGINT prints
//!   a `BACKEND` stats line.
//! - `conn`, `stream`, `duplex`, `hold`: the measurements; each prints one
//!   `RESULT key=value ...` line and reads the proxy's CPU (`/proc/PID/stat`),
//!   RSS (`/proc/PID/status`) and context switches (`/proc/PID/task/*/status`)
//!   itself, so process start-up is excluded.
//! - `routes`: prints the route table (YAML / HAProxy map / nginx map), so
//!   the SNI → backend-port mapping lives only here.
//! - `probe`, `free-port`: helpers for the driver script.
//!
//! Loopback only; no real TLS (the proxies only peek at the ClientHello).

#[path = "../benches/load/hello.rs"]
mod hello;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use hello::client_hello;

const MODE_CONN: u8 = b'C';
const MODE_SINK: u8 = b'S';
const MODE_HOLD: u8 = b'H';
const MODE_ECHO: u8 = b'E';
const PP2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Per-step I/O deadline: a healthy loopback proxy answers in microseconds.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(about = "Load generator for benches/load/run.sh")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a currently free loopback TCP port.
    FreePort,
    /// Print the route table: route i (1..=N) -> backend port i % len(ports).
    Routes {
        #[arg(long, value_enum)]
        format: RouteFormat,
        #[arg(long, default_value_t = 1000)]
        routes: usize,
        /// Backend ports, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        ports: Vec<u16>,
    },
    /// Backend: listen on `ports` loopback ports and write them to `port_file`.
    Backend {
        #[arg(long, default_value_t = 4)]
        ports: usize,
        #[arg(long)]
        port_file: PathBuf,
    },
    /// Retry until one connection through `target` gets a backend reply.
    Probe {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 15)]
        timeout_secs: u64,
    },
    /// Connection-rate test: connect, hello, await 1 byte + EOF, close.
    Conn {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 30_000)]
        count: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 1000)]
        routes: usize,
    },
    /// Throughput test: `streams` parallel streams share `total_mib` MiB.
    Stream {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 4096)]
        total_mib: u64,
        #[arg(long, default_value_t = 1)]
        streams: u64,
    },
    /// Full-duplex test: one connection to an echoing backend, `mib` MiB written in 256 KiB
    /// writes while the echo is read back at the same time.
    Duplex {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1024)]
        mib: u64,
    },
    /// Idle-memory test: open `count` connections, measure RSS, close.
    Hold {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 5000)]
        count: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 1000)]
        routes: usize,
        /// Wait this long after the last connection is up before reading RSS (the proxy parks
        /// a connection quiet for 2 s and returns freed memory every 5 s).
        #[arg(long, default_value_t = 8000)]
        settle_ms: u64,
    },
}

#[derive(clap::Args)]
struct Common {
    /// The proxy's listener.
    #[arg(long)]
    target: SocketAddr,
    /// Proxy process ids (comma-separated); CPU and RSS are summed over them.
    #[arg(long, value_delimiter = ',', required = true)]
    pids: Vec<u32>,
    /// Kernel clock ticks per second (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
    /// Hard bound on the whole run.
    #[arg(long, default_value_t = 120)]
    deadline_secs: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum RouteFormat {
    Yaml,
    Haproxy,
    Nginx,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::FreePort => {
                let l = std::net::TcpListener::bind("127.0.0.1:0")?;
                println!("{}", l.local_addr()?.port());
                Ok(())
            }
            Cmd::Routes {
                format,
                routes,
                ports,
            } => {
                print_routes(format, routes, &ports);
                Ok(())
            }
            Cmd::Backend { ports, port_file } => backend(ports, port_file).await,
            Cmd::Probe {
                target,
                timeout_secs,
            } => probe(target, timeout_secs).await,
            Cmd::Conn {
                common,
                count,
                concurrency,
                routes,
            } => bounded(&common, conn_test(&common, count, concurrency, routes)).await,
            Cmd::Stream {
                common,
                total_mib,
                streams,
            } => bounded(&common, stream_test(&common, total_mib, streams)).await,
            Cmd::Duplex { common, mib } => bounded(&common, duplex_test(&common, mib)).await,
            Cmd::Hold {
                common,
                count,
                concurrency,
                routes,
                settle_ms,
            } => {
                let f = hold_test(&common, count, concurrency, routes, settle_ms);
                bounded(&common, f).await
            }
        }
    })
}

async fn bounded(common: &Common, f: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    match tokio::time::timeout(Duration::from_secs(common.deadline_secs), f).await {
        Ok(r) => r,
        Err(_) => bail!("deadline of {}s exceeded", common.deadline_secs),
    }
}

fn sni(i: usize) -> String {
    format!("chi-demo{i}-cluster-0-0.ch.example.com")
}

fn print_routes(format: RouteFormat, routes: usize, ports: &[u16]) {
    if let RouteFormat::Yaml = format {
        println!("routes:");
    }
    for i in 1..=routes {
        let j = i % ports.len();
        let port = ports[j];
        match format {
            RouteFormat::Yaml => {
                println!("  - sni: {}\n    upstream: \"127.0.0.1:{port}\"", sni(i))
            }
            RouteFormat::Haproxy => println!("{} b{j}", sni(i)),
            RouteFormat::Nginx => println!("{} b{j};", sni(i)),
        }
    }
}

// ---------------------------------------------------------------- backend

#[derive(Default)]
struct Stats {
    conns: AtomicU64,
    pp_v2: AtomicU64,
    pp_v1: AtomicU64,
    pp_none: AtomicU64,
    pp_v2_not_proxy_cmd: AtomicU64,
    misrouted: AtomicU64,
    bad_input: AtomicU64,
    io_errors: AtomicU64,
    sunk_bytes: AtomicU64,
}

#[derive(Clone, Copy)]
enum Pp {
    V1,
    V2 { proxy_cmd: bool },
    None,
}

/// Length of the PROXY header at the start of `b`: `Ok(None)` if more bytes
/// are needed, `Err` if the bytes cannot be a PROXY header or a TLS record.
fn pp_len(b: &[u8]) -> Result<Option<(Pp, usize)>> {
    let Some(&first) = b.first() else {
        return Ok(None);
    };
    if first == 0x16 {
        return Ok(Some((Pp::None, 0)));
    }
    if first == b'\r' {
        let n = b.len().min(12);
        if b.get(..n) != PP2_SIG.get(..n) {
            bail!("bad PROXY v2 signature");
        }
        let (Some(&ver_cmd), Some(len)) = (b.get(12), b.get(14..16)) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        return Ok(Some((
            Pp::V2 {
                proxy_cmd: ver_cmd == 0x21,
            },
            16 + len,
        )));
    }
    if first == b'P' {
        let head = b.get(..b.len().min(108)).unwrap_or(b);
        if let Some(pos) = head.windows(2).position(|w| w == b"\r\n") {
            return Ok(Some((Pp::V1, pos + 2)));
        }
        if b.len() >= 108 {
            bail!("PROXY v1 line too long");
        }
        return Ok(None);
    }
    bail!("neither PROXY header nor TLS record (first byte {first:#04x})")
}

/// The route number in a `chi-demo<N>-...` SNI inside the hello, if any.
fn route_of(hello: &[u8]) -> Option<usize> {
    let pat = b"chi-demo";
    let at = hello.windows(pat.len()).position(|w| w == pat)? + pat.len();
    let digits = hello.get(at..)?.iter().take_while(|c| c.is_ascii_digit());
    let mut n = 0usize;
    for d in digits {
        n = n.checked_mul(10)?.checked_add(usize::from(d - b'0'))?;
    }
    Some(n)
}

async fn backend(nports: usize, port_file: PathBuf) -> Result<()> {
    let stats = Arc::new(Stats::default());
    let mut ports = Vec::new();
    for idx in 0..nports.max(1) {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        ports.push(l.local_addr()?.port().to_string());
        let stats = stats.clone();
        tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, _)) => {
                        let stats = stats.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve(s, idx, nports.max(1), &stats).await {
                                let n = stats.io_errors.fetch_add(1, Relaxed);
                                if n < 5 {
                                    eprintln!("backend: {e:#}");
                                }
                            }
                        });
                    }
                    // Out of fds or similar: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
    }
    // Write-then-rename so the driver never reads a half-written file.
    let tmp = port_file.with_extension("tmp");
    std::fs::write(&tmp, ports.join(",") + "\n")?;
    std::fs::rename(&tmp, &port_file)?;

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let g = |a: &AtomicU64| a.load(Relaxed);
    println!(
        "BACKEND conns={} pp_v2={} pp_v1={} pp_none={} pp_v2_not_proxy_cmd={} misrouted={} bad_input={} io_errors={} sunk_bytes={}",
        g(&stats.conns), g(&stats.pp_v2), g(&stats.pp_v1), g(&stats.pp_none),
        g(&stats.pp_v2_not_proxy_cmd), g(&stats.misrouted), g(&stats.bad_input),
        g(&stats.io_errors), g(&stats.sunk_bytes)
    );
    Ok(())
}

async fn serve(mut s: TcpStream, idx: usize, nports: usize, stats: &Stats) -> Result<()> {
    stats.conns.fetch_add(1, Relaxed);
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; 4096];
    let mut filled = 0;
    // Read until the PROXY header and the whole first TLS record are in.
    let (pp, hello_at, hello_end) = loop {
        let parsed = pp_len(buf.get(..filled).unwrap_or_default());
        if let Err(e) = &parsed {
            stats.bad_input.fetch_add(1, Relaxed);
            bail!("{e}");
        }
        if let Ok(Some((pp, n))) = parsed {
            if let Some(h) = buf.get(n..filled).and_then(|r| r.get(3..5)) {
                let end = n + 5 + usize::from(u16::from_be_bytes([h[0], h[1]]));
                if end <= filled {
                    break (pp, n, end);
                }
            }
        }
        if filled == buf.len() {
            stats.bad_input.fetch_add(1, Relaxed);
            bail!("header + hello larger than {} bytes", buf.len());
        }
        let n = tokio::time::timeout(IO_TIMEOUT, s.read(&mut buf[filled..]))
            .await
            .context("timeout reading hello")??;
        if n == 0 {
            bail!("EOF before a complete hello ({filled} bytes)");
        }
        filled += n;
    };
    match pp {
        Pp::V2 { proxy_cmd } => {
            stats.pp_v2.fetch_add(1, Relaxed);
            if !proxy_cmd {
                stats.pp_v2_not_proxy_cmd.fetch_add(1, Relaxed);
            }
        }
        Pp::V1 => _ = stats.pp_v1.fetch_add(1, Relaxed),
        Pp::None => _ = stats.pp_none.fetch_add(1, Relaxed),
    }
    let hello = buf.get(hello_at..hello_end).unwrap_or_default();
    if let Some(r) = route_of(hello) {
        if r % nports != idx {
            stats.misrouted.fetch_add(1, Relaxed);
        }
    }
    // random[0]: record header 5 + handshake header 4 + version 2.
    match hello.get(11).copied() {
        Some(MODE_CONN) => s.write_all(&[1]).await?,
        Some(MODE_HOLD) => {
            s.write_all(&[1]).await?;
            let mut b = [0u8; 64];
            while s.read(&mut b).await? != 0 {}
        }
        Some(MODE_ECHO) => {
            // What came after the hello in the first reads, then everything else, until EOF.
            let early = buf.get(hello_end..filled).unwrap_or_default().to_vec();
            s.write_all(&early).await?;
            let mut total = early.len() as u64;
            let (mut r, mut w) = s.split();
            let mut b = vec![0u8; 256 * 1024];
            loop {
                let n = tokio::time::timeout(IO_TIMEOUT, r.read(&mut b))
                    .await
                    .context("timeout while echoing")??;
                if n == 0 {
                    break;
                }
                w.write_all(&b[..n]).await?;
                total += n as u64;
            }
            w.shutdown().await?;
            stats.sunk_bytes.fetch_add(total, Relaxed);
        }
        Some(MODE_SINK) => {
            let mut total = (filled - hello_end) as u64;
            let mut b = vec![0u8; 256 * 1024];
            loop {
                let n = tokio::time::timeout(IO_TIMEOUT, s.read(&mut b))
                    .await
                    .context("timeout while sinking")??;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            stats.sunk_bytes.fetch_add(total, Relaxed);
            s.write_all(&total.to_be_bytes()).await?;
        }
        other => {
            stats.bad_input.fetch_add(1, Relaxed);
            bail!("unknown mode byte {other:?}");
        }
    }
    Ok(())
}

// ----------------------------------------------------------------- client

/// Summed utime+stime (seconds) and VmRSS (KiB) of `pids`.
fn proc_usage(pids: &[u32], clk_tck: u64) -> Result<(f64, u64)> {
    let (mut ticks, mut rss) = (0u64, 0u64);
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("process {pid} gone"))?;
        // Fields after the parenthesised command: state is field 3, so utime
        // (field 14) and stime (15) are at 11 and 12.
        let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        for i in [11, 12] {
            ticks += f
                .get(i)
                .and_then(|x| x.parse::<u64>().ok())
                .context("bad /proc stat")?;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("no VmRSS")?;
        rss += line
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse::<u64>().ok())
            .context("bad VmRSS")?;
    }
    Ok((ticks as f64 / clk_tck.max(1) as f64, rss))
}

/// Summed utime and stime (seconds, each) of `pids`: user space and kernel apart.
fn proc_split(pids: &[u32], clk_tck: u64) -> Result<(f64, f64)> {
    let (mut user, mut sys) = (0u64, 0u64);
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("process {pid} gone"))?;
        let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| -> Result<u64> {
            f.get(i)
                .and_then(|x| x.parse::<u64>().ok())
                .context("bad /proc stat")
        };
        user += field(11)?;
        sys += field(12)?;
    }
    let tck = clk_tck.max(1) as f64;
    Ok((user as f64 / tck, sys as f64 / tck))
}

/// Voluntary + involuntary context switches of `pids`, summed over all their threads
/// (`/proc/PID/task/*/status`; threads gone since are not counted).
fn ctx_switches(pids: &[u32]) -> Result<u64> {
    let mut total = 0;
    for pid in pids {
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
                continue;
            };
            total += status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Ok(total)
}

async fn connect(target: SocketAddr, hello: &[u8]) -> Result<TcpStream> {
    let mut s = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(target))
        .await
        .context("connect timeout")?
        .context("connect")?;
    s.set_nodelay(true)?;
    s.write_all(hello).await.context("write hello")?;
    Ok(s)
}

/// Reads until EOF; returns the bytes read (at most `max`).
async fn read_to_eof(s: &mut TcpStream, max: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut b = [0u8; 64];
    loop {
        let n = tokio::time::timeout(IO_TIMEOUT, s.read(&mut b))
            .await
            .context("read timeout")?
            .context("read")?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > max {
            bail!("more than {max} reply bytes");
        }
        out.extend_from_slice(&b[..n]);
    }
}

async fn probe(target: SocketAddr, timeout_secs: u64) -> Result<()> {
    let hello = client_hello(&sni(1), MODE_CONN);
    let until = Instant::now() + Duration::from_secs(timeout_secs);
    let mut last = String::new();
    while Instant::now() < until {
        let r = async {
            let mut s = connect(target, &hello).await?;
            let reply = read_to_eof(&mut s, 16).await?;
            anyhow::ensure!(reply.len() == 1, "reply of {} bytes", reply.len());
            Ok(())
        };
        match r.await {
            Ok(()) => return Ok(()),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("no answer through {target} within {timeout_secs}s (last: {last})")
}

/// Lets the proxy finish closing the last connections before CPU is read.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn conn_test(c: &Common, count: u64, concurrency: usize, routes: usize) -> Result<()> {
    let hellos: Arc<Vec<Vec<u8>>> = Arc::new(
        (1..=routes.max(1))
            .map(|i| client_hello(&sni(i), MODE_CONN))
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let (user0, sys0) = proc_split(&c.pids, c.clk_tck)?;
    let (cpu0, _) = proc_usage(&c.pids, c.clk_tck)?;
    let cs0 = ctx_switches(&c.pids)?;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (hellos, next, errors) = (hellos.clone(), next.clone(), errors.clone());
        let target = c.target;
        tasks.push(tokio::spawn(async move {
            // Connection-setup latency per successful connection: connect() until the
            // backend's first byte came back through the proxy.
            let mut setup_us = Vec::new();
            loop {
                let k = next.fetch_add(1, Relaxed);
                if k >= count {
                    break;
                }
                let hello = &hellos[(k % hellos.len() as u64) as usize];
                let r = async {
                    let start = Instant::now();
                    let mut s = connect(target, hello).await?;
                    let mut first = [0u8; 1];
                    tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut first))
                        .await
                        .context("reply timeout")?
                        .context("reply")?;
                    let took = start.elapsed();
                    let rest = read_to_eof(&mut s, 16).await?;
                    anyhow::ensure!(first == [1] && rest.is_empty(), "reply {rest:?}, want [1]");
                    Ok(took)
                };
                match r.await {
                    Ok(took) => setup_us.push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX)),
                    Err(e) => {
                        if errors.fetch_add(1, Relaxed) < 5 {
                            eprintln!("conn {k}: {e:#}");
                        }
                    }
                }
            }
            setup_us
        }));
    }
    let mut setup_us = Vec::new();
    for t in tasks {
        setup_us.extend(t.await?);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    settle().await;
    let (cpu1, _) = proc_usage(&c.pids, c.clk_tck)?;
    let (user1, sys1) = proc_split(&c.pids, c.clk_tck)?;
    let switches = ctx_switches(&c.pids)?.saturating_sub(cs0);
    let errors = errors.load(Relaxed);
    let cpu = cpu1 - cpu0;
    setup_us.sort_unstable();
    let pct = |p: f64| {
        let i = ((setup_us.len() as f64 * p).ceil() as usize).saturating_sub(1);
        setup_us.get(i).copied().unwrap_or(0)
    };
    println!(
        "RESULT test=conn conns={count} errors={errors} elapsed_s={elapsed:.3} conn_per_s={:.0} cpu_s={cpu:.2} cpu_us_per_conn={:.2} user_us_per_conn={:.2} sys_us_per_conn={:.2} setup_p50_us={} setup_p99_us={} ctxsw_per_conn={:.2}",
        count as f64 / elapsed,
        cpu * 1e6 / count.max(1) as f64,
        (user1 - user0) * 1e6 / count.max(1) as f64,
        (sys1 - sys0) * 1e6 / count.max(1) as f64,
        pct(0.50),
        pct(0.99),
        switches as f64 / count.max(1) as f64
    );
    Ok(())
}

async fn stream_test(c: &Common, total_mib: u64, streams: u64) -> Result<()> {
    let streams = streams.max(1);
    let per_stream = total_mib / streams * 1024 * 1024;
    let total = per_stream * streams;
    let (cpu0, _) = proc_usage(&c.pids, c.clk_tck)?;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..streams {
        let hello = client_hello(&sni(i as usize + 1), MODE_SINK);
        let target = c.target;
        tasks.push(tokio::spawn(async move {
            let mut s = connect(target, &hello).await?;
            let chunk = vec![0x5au8; 1024 * 1024];
            let mut sent = 0u64;
            while sent < per_stream {
                let n = chunk.len().min((per_stream - sent) as usize);
                tokio::time::timeout(IO_TIMEOUT, s.write_all(&chunk[..n]))
                    .await
                    .context("write timeout")??;
                sent += n as u64;
            }
            s.shutdown().await?;
            let reply = read_to_eof(&mut s, 8).await?;
            let got: [u8; 8] = reply
                .as_slice()
                .try_into()
                .with_context(|| format!("stream {i}: reply of {} bytes, want 8", reply.len()))?;
            let got = u64::from_be_bytes(got);
            anyhow::ensure!(
                got == per_stream,
                "stream {i}: backend got {got} bytes, sent {per_stream}"
            );
            anyhow::Ok(())
        }));
    }
    let mut errors = 0;
    for t in tasks {
        if let Err(e) = t.await? {
            errors += 1;
            eprintln!("{e:#}");
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    settle().await;
    let (cpu1, _) = proc_usage(&c.pids, c.clk_tck)?;
    let gib = total as f64 / (1u64 << 30) as f64;
    let cpu = cpu1 - cpu0;
    println!(
        "RESULT test=stream streams={streams} gib={gib:.2} errors={errors} elapsed_s={elapsed:.3} gbit_s={:.2} cpu_s={cpu:.2} cpu_s_per_gib={:.3}",
        total as f64 * 8.0 / elapsed / 1e9,
        cpu / gib
    );
    Ok(())
}

async fn duplex_test(c: &Common, mib: u64) -> Result<()> {
    let total = mib << 20;
    let hello = client_hello(&sni(1), MODE_ECHO);
    let (cpu0, _) = proc_usage(&c.pids, c.clk_tck)?;
    let cs0 = ctx_switches(&c.pids)?;
    let t0 = Instant::now();
    let s = connect(c.target, &hello).await?;
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5au8; 256 * 1024];
        let mut sent = 0u64;
        while sent < total {
            let n = chunk.len().min((total - sent) as usize);
            tokio::time::timeout(IO_TIMEOUT, w.write_all(&chunk[..n]))
                .await
                .context("write timeout")??;
            sent += n as u64;
        }
        w.shutdown().await?;
        anyhow::Ok(())
    });
    let mut b = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    loop {
        let n = tokio::time::timeout(IO_TIMEOUT, r.read(&mut b))
            .await
            .context("read timeout")??;
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    writer.await??;
    let elapsed = t0.elapsed().as_secs_f64();
    settle().await;
    let (cpu1, _) = proc_usage(&c.pids, c.clk_tck)?;
    let switches = ctx_switches(&c.pids)?.saturating_sub(cs0);
    let errors = u64::from(received != total);
    if errors > 0 {
        eprintln!("echoed {received} of {total} bytes");
    }
    // Counted both ways: the proxy moved `total` bytes each way.
    let gib = (total + received) as f64 / (1u64 << 30) as f64;
    let cpu = cpu1 - cpu0;
    println!(
        "RESULT test=duplex gib={gib:.2} errors={errors} elapsed_s={elapsed:.3} gbit_s={:.2} cpu_s={cpu:.2} cpu_s_per_gib={:.3} ctxsw={switches}",
        (total + received) as f64 * 8.0 / elapsed / 1e9,
        cpu / gib
    );
    Ok(())
}

async fn hold_test(
    c: &Common,
    count: u64,
    concurrency: usize,
    routes: usize,
    settle_ms: u64,
) -> Result<()> {
    let hellos: Arc<Vec<Vec<u8>>> = Arc::new(
        (1..=routes.max(1))
            .map(|i| client_hello(&sni(i), MODE_HOLD))
            .collect(),
    );
    // One connection per route first: a route registers its metric series (about 1 KiB) on
    // its first connection, a cost per route in use, not per idle connection.
    for hello in hellos.iter() {
        let mut s = connect(c.target, hello).await?;
        let mut b = [0u8; 1];
        tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut b))
            .await
            .context("warm-up ack timeout")?
            .context("warm-up ack")?;
    }
    let (_, rss0) = proc_usage(&c.pids, c.clk_tck)?;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (hellos, next) = (hellos.clone(), next.clone());
        let target = c.target;
        tasks.push(tokio::spawn(async move {
            let (mut held, mut errors) = (Vec::new(), 0u64);
            loop {
                let k = next.fetch_add(1, Relaxed);
                if k >= count {
                    break;
                }
                let hello = &hellos[(k % hellos.len() as u64) as usize];
                let r = async {
                    let mut s = connect(target, hello).await?;
                    let mut b = [0u8; 1];
                    tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut b))
                        .await
                        .context("ack timeout")?
                        .context("ack")?;
                    anyhow::Ok(s)
                };
                match r.await {
                    Ok(s) => held.push(s),
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("hold {k}: {e:#}");
                        }
                        errors += 1;
                    }
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
    let (_, rss1) = proc_usage(&c.pids, c.clk_tck)?;
    // Every held connection must still be open: a closed one reads EOF.
    let mut closed = 0;
    for s in &held {
        let mut b = [0u8; 1];
        match s.try_read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => closed += 1,
        }
    }
    let open = held.len() as u64;
    println!(
        "RESULT test=hold conns={open} errors={errors} closed_early={closed} rss_before_kib={rss0} rss_after_kib={rss1} kib_per_conn={:.2}",
        (rss1 as f64 - rss0 as f64) / open.max(1) as f64
    );
    Ok(())
}
