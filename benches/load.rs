//! Real connections through a running proxy: the `ch-edge-proxy` binary (its defaults, access
//! log on, its config alone in a directory, its log in a file elsewhere) and, as a comparison
//! group when installed, HAProxy 2.6 (`nbthread 1`, no log). Both route a 1,000-route SNI table
//! with PROXY v2 to an in-process backend.
//!
//! - `connection`: connect, send a ClientHello, read the backend's one byte and its close.
//! - `bulk`: a 64 MiB upload after the hello, half-close, read the backend's byte count.
//!
//! Criterion measures the client's wall time (CPU per connection side by side is
//! `benches/load/run.sh`'s job). `cargo bench --bench load`; under `cargo test` each case runs
//! once as a smoke test. Loopback only, every port picked at run time.

#[path = "load/hello.rs"]
mod hello;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const ROUTES: usize = 1000;
const BULK: usize = 64 << 20;
const WAIT: Duration = Duration::from_secs(30);

/// Backend for route `i`: replies one byte after the PROXY header and hello (`ack`), or
/// counts everything to EOF and replies the count (`sink`).
fn backend(sink: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream, sink));
        }
    });
    addr
}

fn serve(mut s: TcpStream, sink: bool) -> std::io::Result<()> {
    s.set_read_timeout(Some(WAIT))?;
    // PROXY v2: 16 bytes, the last two the length of what follows.
    let mut head = [0u8; 16];
    s.read_exact(&mut head)?;
    let mut rest = vec![0u8; usize::from(u16::from_be_bytes([head[14], head[15]]))];
    s.read_exact(&mut rest)?;
    if sink {
        let n = std::io::copy(&mut s, &mut std::io::sink())?;
        s.write_all(&n.to_be_bytes())?;
    } else {
        // The TLS record header says how long the hello is.
        let mut rec = [0u8; 5];
        s.read_exact(&mut rec)?;
        let mut hello = vec![0u8; usize::from(u16::from_be_bytes([rec[3], rec[4]]))];
        s.read_exact(&mut hello)?;
        s.write_all(b"!")?;
    }
    s.shutdown(Shutdown::Write)
}

fn sni(i: usize) -> String {
    format!("chi-demo{i}-cluster-0-0.ch.example.com")
}

const BULK_SNI: &str = "bulk.ch.example.com";

/// A proxy process, killed when dropped.
struct Running {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_chp(ack: SocketAddr, sink: SocketAddr) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    let mut yaml = String::from(
        "listeners:\n  - name: bench\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         timeouts: {client_hello: 5s, connect: 3s, idle: 1h}\n\
         limits: {max_connections: 100000}\ndefaults:\n  proxy_protocol: v2\nroutes:\n",
    );
    for i in 0..ROUTES {
        yaml.push_str(&format!("  - sni: {}\n    upstream: \"{ack}\"\n", sni(i)));
    }
    yaml.push_str(&format!("  - sni: {BULK_SNI}\n    upstream: \"{sink}\"\n"));
    std::fs::write(conf.join("config.yaml"), yaml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"))
        .args(["run", "--config"])
        .arg(conf.join("config.yaml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // The "listening" line names the bound address; the rest of the log goes to a file.
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + WAIT;
    let addr = loop {
        assert!(Instant::now() < deadline, "ch-edge-proxy did not listen");
        let mut line = String::new();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "ch-edge-proxy exited"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "listening" {
            break v["address"].as_str().unwrap().parse().unwrap();
        }
    };
    let mut log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
    thread::spawn(move || std::io::copy(&mut lines, &mut log));
    Running {
        child,
        addr,
        _dir: dir,
    }
}

fn haproxy() -> Option<&'static str> {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

fn start_haproxy(bin: &str, ack: SocketAddr, sink: SocketAddr) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let map: String = (0..ROUTES).map(|i| format!("{} ack\n", sni(i))).collect();
    std::fs::write(
        dir.path().join("sni.map"),
        format!("{map}{BULK_SNI} sink\n"),
    )
    .unwrap();
    // A free port: HAProxy cannot report one it picked itself.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "global\n  nbthread 1\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 3s\n  \
         timeout client 1h\n  timeout server 1h\nfrontend bench\n  bind 127.0.0.1:{port}\n  \
         tcp-request inspect-delay 5s\n  tcp-request content accept if {{ req_ssl_hello_type 1 }}\n  \
         use_backend %[req.ssl_sni,lower,map({map})]\nbackend ack\n  server s 127.0.0.1:{} send-proxy-v2\n\
         backend sink\n  server s 127.0.0.1:{} send-proxy-v2\n",
        ack.port(),
        sink.port(),
        map = dir.path().join("sni.map").display(),
    );
    std::fs::write(dir.path().join("haproxy.cfg"), cfg).unwrap();
    let child = Command::new(bin)
        .arg("-db")
        .arg("-f")
        .arg(dir.path().join("haproxy.cfg"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("haproxy.err")).unwrap())
        .spawn()
        .unwrap();
    let running = Running {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _dir: dir,
    };
    // Ready once a connection is routed end to end.
    let deadline = Instant::now() + WAIT;
    let hello = hello::client_hello(&sni(0), 0);
    while !probe(running.addr, &hello) {
        let err = running._dir.path().join("haproxy.err");
        assert!(
            Instant::now() < deadline,
            "haproxy did not route a probe: {}",
            std::fs::read_to_string(err).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(50));
    }
    running
}

/// Whether a connection is routed end to end (readiness, errors expected).
fn probe(addr: SocketAddr, hello: &[u8]) -> bool {
    let routed = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(WAIT))?;
        s.write_all(hello)?;
        let mut back = Vec::new();
        s.read_to_end(&mut back)?;
        Ok(back == b"!")
    };
    routed().unwrap_or(false)
}

/// One routed connection: hello out, the backend's byte and close back.
fn connection(addr: SocketAddr, hello: &[u8]) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(hello).unwrap();
    let mut back = Vec::with_capacity(1);
    s.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"!");
}

/// One upload of `data` after the hello; the backend's count must match.
fn bulk(addr: SocketAddr, hello: &[u8], data: &[u8]) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(hello).unwrap();
    for chunk in data.chunks(1 << 20) {
        s.write_all(chunk).unwrap();
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut count = [0u8; 8];
    s.read_exact(&mut count).unwrap();
    assert_eq!(u64::from_be_bytes(count), (hello.len() + data.len()) as u64);
}

fn load(c: &mut Criterion) {
    let (ack, sink) = (backend(false), backend(true));
    let mut proxies = vec![("ch-edge-proxy", start_chp(ack, sink))];
    match haproxy() {
        Some(bin) => proxies.push(("haproxy", start_haproxy(bin, ack, sink))),
        None => eprintln!("haproxy not installed: ch-edge-proxy alone"),
    }
    let hellos: Vec<Vec<u8>> = (0..ROUTES)
        .map(|i| hello::client_hello(&sni(i), 0))
        .collect();
    let mut group = c.benchmark_group("connection");
    group.throughput(Throughput::Elements(1));
    for (name, proxy) in &proxies {
        let mut next = 0;
        group.bench_function(*name, |b| {
            b.iter(|| {
                next = (next + 1) % ROUTES;
                connection(proxy.addr, &hellos[next]);
            })
        });
    }
    group.finish();

    let data: Vec<u8> = (0..BULK).map(|i| (i % 251) as u8).collect();
    let hello = hello::client_hello(BULK_SNI, 0);
    let mut group = c.benchmark_group("bulk_64MiB");
    group.throughput(Throughput::Bytes(BULK as u64));
    group.sample_size(10);
    for (name, proxy) in &proxies {
        group.bench_function(*name, |b| b.iter(|| bulk(proxy.addr, &hello, &data)));
    }
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
