//! The end-to-end topology, all on loopback with free ports:
//!
//! ```text
//! client (python clickhouse-driver / curl, source 127.0.0.x)
//!   -> haproxy (NLB stand-in, send-proxy-v2)
//!   -> ch-edge-proxy (PROXY v2 required from 127.0.0.1, routes by SNI)
//!   -> nginx stream hop, one per route, each connecting from its own address
//!   -> clickhouse-server 18.16 (tcp_port_secure / https_port, wildcard cert)
//! ```
//!
//! ClickHouse reports the address each connection came from, so a client
//! learns which hop, i.e. which route, carried it. The `pp` hop reads the
//! PROXY v1 header the proxy writes and logs the client address it carries.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::clickhouse::{ClickHouse, TestCa};
use crate::support::peers::{self, free_port, Peer};
use crate::support::{self, in_ci, tool, Proxy};

/// Bound for one client run (a multi-million-row stream, 200 sessions) on a
/// loaded 2-core machine; generous because it only matters when something hangs.
pub const CLIENT_WAIT: Duration = Duration::from_secs(180);

pub const DOMAIN: &str = "ch.example.test";
/// The CHI service name (`<chi>.<domain>`) and one replica's pod-style name.
pub const CHI_SNI: &str = "demo.ch.example.test";
pub const POD_SNI: &str = "chi-demo-cluster-0-0.ch.example.test";
/// Only 127.0.0.2 is on this route's allowlist.
pub const RESTRICTED_SNI: &str = "restricted.ch.example.test";
pub const ALLOWED_SOURCE: &str = "127.0.0.2";
pub const DENIED_SOURCE: &str = "127.0.0.3";
/// This route writes PROXY v1 to a hop that reads it.
pub const PP_SNI: &str = "pp.ch.example.test";

/// Every external program the suite drives.
pub struct Tools {
    pub clickhouse: PathBuf,
    pub haproxy: PathBuf,
    pub nginx: PathBuf,
    pub curl: PathBuf,
    pub python: PathBuf,
}

impl Tools {
    /// All tools, or None (with a message) outside CI; in CI a missing tool panics.
    pub fn find() -> Option<Tools> {
        let clickhouse = tool("clickhouse-server");
        let haproxy = tool("haproxy");
        let nginx = tool("nginx");
        let curl = tool("curl");
        let python = find_python();
        Some(Tools {
            clickhouse: clickhouse?,
            haproxy: haproxy?,
            nginx: nginx?,
            curl: curl?,
            python: python?,
        })
    }
}

/// The venv's Python, if it can import clickhouse_driver.
fn find_python() -> Option<PathBuf> {
    let python = match support::venv_python("clickhouse_driver") {
        Ok(python) => return Some(python),
        Err(python) => python,
    };
    let why = format!(
        "{} cannot import clickhouse_driver (set CH_E2E_PYTHON or run: python3 -m venv .venv && .venv/bin/pip install clickhouse-driver)",
        python.display()
    );
    if in_ci() {
        panic!("{why}");
    }
    eprintln!("skipping: {why}");
    None
}

/// Each environment's hops live in their own 127.N.0.0/24, so parallel tests
/// never compete for a hop's address and port.
static NEXT_SUBNET: AtomicU8 = AtomicU8::new(10);

pub struct Hops {
    /// Upstream (and the address ClickHouse sees) of the CHI route.
    pub chi: String,
    /// Upstream of the pod route.
    pub pod: String,
    /// Upstream of the PROXY v1 route.
    pub pp: String,
    /// nginx's log of the PROXY v1 header's source address, one line per connection.
    pub pp_log: PathBuf,
}

pub struct E2e {
    pub tools: Tools,
    pub ca: TestCa,
    pub hops: Hops,
    /// The NLB stand-in's native and HTTPS listeners: where clients connect.
    pub native: SocketAddr,
    pub https: SocketAddr,
    pub proxy: Proxy,
    upstream_ports: (u16, u16),
    _haproxy: Peer,
    _nginx: Peer,
    _clickhouse: ClickHouse,
    _dir: tempfile::TempDir,
}

impl E2e {
    pub fn start(tools: Tools) -> E2e {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::create(dir.path(), &[&format!("*.{DOMAIN}"), DOMAIN]);
        let clickhouse = ClickHouse::start(&tools.clickhouse, dir.path(), &ca);

        let subnet = NEXT_SUBNET.fetch_add(1, Ordering::Relaxed);
        let ip = |host: u8| format!("127.{subnet}.0.{host}");
        let hops = Hops {
            chi: ip(10),
            pod: ip(20),
            pp: ip(30),
            pp_log: dir.path().join("pp.log"),
        };
        // The proxy sends native connections to `upstream_native` and HTTPS
        // ones to `upstream_https` on the route's hop address.
        let (upstream_native, upstream_https) = (free_port(), free_port());
        let mut servers = String::new();
        for (hop, proxy_protocol) in [
            (&hops.chi, ""),
            (&hops.pod, ""),
            (&hops.pp, " proxy_protocol"),
        ] {
            let log = if proxy_protocol.is_empty() {
                String::new()
            } else {
                format!(" access_log {} pp;", hops.pp_log.display())
            };
            for (port, target) in [
                (upstream_native, clickhouse.native_tls),
                (upstream_https, clickhouse.https),
            ] {
                servers.push_str(&format!(
                    "  server {{ listen {hop}:{port}{proxy_protocol}; proxy_pass {target}; proxy_bind {hop};{log} }}\n"
                ));
            }
        }
        let nginx = peers::nginx(
            &tools.nginx,
            &format!("stream {{\n  log_format pp '$proxy_protocol_addr';\n{servers}}}"),
            format!("{}:{upstream_native}", hops.chi).parse().unwrap(),
        );

        let proxy = Proxy::start(&proxy_config(
            (upstream_native, upstream_https),
            &routes(&hops, ""),
        ));
        let native: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let haproxy = peers::haproxy(
            &tools.haproxy,
            &format!(
                "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 180s\n  timeout server 180s\n\
                 listen native\n  bind {native}\n  server edge {} send-proxy-v2\n\
                 listen https\n  bind {https}\n  server edge {} send-proxy-v2\n",
                proxy.addr("native"),
                proxy.addr("https"),
            ),
            native,
        );
        E2e {
            tools,
            ca,
            hops,
            native,
            https,
            proxy,
            upstream_ports: (upstream_native, upstream_https),
            _haproxy: haproxy,
            _nginx: nginx,
            _clickhouse: clickhouse,
            _dir: dir,
        }
    }

    /// Rewrites the proxy's config with `extra_routes` appended (hot reload).
    pub fn rewrite_routes(&self, extra_routes: &str) {
        crate::support::write_atomic(
            &self.proxy.config,
            &proxy_config(self.upstream_ports, &routes(&self.hops, extra_routes)),
        );
    }

    /// Starts the Python client (tests/e2e/ch_client.py) against the native
    /// listener with `sni`; `global` goes before the subcommand (`--source`, `--ca`).
    pub fn python(&self, sni: &str, global: &[&str], command: &[&str]) -> PyClient {
        python_client(&self.tools.python, self.native.port(), sni, global, command)
    }

    /// Runs the Python client to completion and returns its last JSON line.
    pub fn python_run(&self, sni: &str, global: &[&str], command: &[&str]) -> serde_json::Value {
        self.python(sni, global, command).finish()
    }

    /// `curl` to the HTTPS listener with `sni` resolved to the NLB stand-in,
    /// verifying against the test CA, optionally from `source`; runs `query`.
    pub fn curl(&self, sni: &str, source: Option<&str>, query: &str) -> CurlResult {
        let port = self.https.port();
        let mut command = Command::new(&self.tools.curl);
        command
            .args(["-sS", "--max-time", "60", "--cacert"])
            .arg(&self.ca.ca_pem)
            .args(["--resolve", &format!("{sni}:{port}:127.0.0.1")])
            .args(["--get", "--data-urlencode", &format!("query={query}")]);
        if let Some(source) = source {
            command.args(["--interface", source]);
        }
        let out = command
            .arg(format!("https://{sni}:{port}/"))
            .output()
            .expect("run curl");
        CurlResult {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The client addresses the PROXY v1 hop has logged so far.
    pub fn pp_log(&self) -> Vec<String> {
        std::fs::read_to_string(&self.hops.pp_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits (bounded) until the PROXY v1 hop has logged `count` connections;
    /// nginx writes a line when a session ends, after our client is done.
    pub fn wait_pp_log(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + crate::support::WAIT;
        loop {
            let lines = self.pp_log();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "PROXY v1 hop logged {lines:?}, expected {count} lines"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts `ch_client.py` against `127.0.0.1:port` with `sni`; `global` goes before the
/// subcommand (`--source`, `--ca`).
pub fn python_client(
    python: &Path,
    port: u16,
    sni: &str,
    global: &[&str],
    command: &[&str],
) -> PyClient {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/ch_client.py");
    let mut child = Command::new(python)
        .arg(script)
        .args(["--port", &port.to_string(), "--sni", sni])
        .args(global)
        .args(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python client");
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Drained all along, so a chatty failure cannot fill the pipe and stall the client.
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr_pipe, &mut text);
        text
    });
    let stdin = child.stdin.take();
    PyClient {
        child,
        stdin,
        lines,
        stderr: Some(stderr),
    }
}

#[derive(Debug)]
pub struct CurlResult {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// A running `ch_client.py`: JSON lines on stdout, a line on stdin resumes a
/// paused stream.
pub struct PyClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl PyClient {
    /// The next JSON line, waiting at most CLIENT_WAIT.
    pub fn next_json(&mut self) -> serde_json::Value {
        match self.lines.recv_timeout(CLIENT_WAIT) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("client printed non-JSON {line:?}: {e}")),
            Err(_) => {
                let _ = self.child.kill();
                let out = self.stderr();
                panic!("client produced no line in time (or exited); stderr:\n{out}");
            }
        }
    }

    /// Lets a `stream --pause` client continue.
    pub fn resume(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    /// The last JSON line; asserts that the client exited successfully.
    pub fn finish(mut self) -> serde_json::Value {
        let last = self.next_json();
        self.stdin.take();
        let deadline = Instant::now() + CLIENT_WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("client did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "client failed ({status}); stderr:\n{}",
            self.stderr()
        );
        last
    }

    /// Everything the client wrote on stderr; only once it has exited.
    fn stderr(&mut self) -> String {
        let _ = self.child.wait();
        self.stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for PyClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proxy_config((upstream_native, upstream_https): (u16, u16), routes: &str) -> String {
    format!(
        "listeners:\n\
         \x20 - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: {upstream_native}\n\
         \x20   proxy_protocol:\n      mode: required\n      trusted: [\"127.0.0.1/32\"]\n\
         \x20 - name: https\n    address: \"127.0.0.1:0\"\n    upstream_port: {upstream_https}\n\
         \x20   proxy_protocol:\n      mode: required\n      trusted: [\"127.0.0.1/32\"]\n\
         admin:\n  address: \"127.0.0.1:0\"\n\
         timeouts:\n  drain: 120s\n\
         routes:\n{routes}"
    )
}

/// Routes as `routes from-chi` names them for CHI `demo` (cluster `cluster`)
/// in namespace `test`, plus an allowlisted route and a PROXY v1 route.
/// Upstreams carry no port: the listener's `upstream_port` picks native or HTTPS.
fn routes(hops: &Hops, extra: &str) -> String {
    format!(
        "  - name: test/demo\n    sni: {CHI_SNI}\n    upstream: \"{chi}\"\n\
         \x20 - name: test/demo/cluster/0-0\n    sni: {POD_SNI}\n    upstream: \"{pod}\"\n\
         \x20 - name: restricted\n    sni: {RESTRICTED_SNI}\n    upstream: \"{chi}\"\n    allow: [\"{ALLOWED_SOURCE}/32\"]\n\
         \x20 - name: pp\n    sni: {PP_SNI}\n    upstream: \"{pp}\"\n    proxy_protocol: v1\n{extra}",
        chi = hops.chi,
        pod = hops.pod,
        pp = hops.pp,
    )
}
