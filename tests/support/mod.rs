//! Shared test harness: runs the real binary on loopback with port 0,
//! TLS backends and clients with certificates made at test time, and the
//! access log / metrics as observable output. Every wait is bounded.
#![allow(dead_code)]

pub mod certs;
pub mod clickhouse;
pub mod fake_api;
pub mod peers;
pub mod postgres;
pub mod prometheus;
pub mod tls;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use tls::*;

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `ch-edge-proxy run` with its parsed JSON log lines.
pub struct Proxy {
    child: Child,
    pub listeners: HashMap<String, SocketAddr>,
    /// The first admin listener.
    pub admin: Option<SocketAddr>,
    /// Every admin listener with what it serves (`probes,metrics,routes`).
    pub admin_listeners: Vec<(SocketAddr, String)>,
    lines: mpsc::Receiver<serde_json::Value>,
    /// Lines already read while waiting for another one.
    seen: Vec<serde_json::Value>,
    /// The config file the proxy runs on (tests rewrite it to reload).
    pub config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Writes `yaml` to a temp dir and starts the proxy on it; returns once
    /// every listener (and the admin endpoint, if configured) is bound.
    pub fn start(yaml: &str) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        Self::start_file(&path, dir)
    }

    pub fn start_file(path: &std::path::Path, dir: tempfile::TempDir) -> Proxy {
        Self::spawn(path, dir, None, true, &[])
    }

    /// Like [`Proxy::start`] with extra environment variables (e.g. `KUBECONFIG`).
    pub fn start_with_env(yaml: &str, env: &[(&str, &std::ffi::OsStr)]) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        Self::spawn(&path, dir, None, true, env)
    }

    /// Like [`Proxy::start`] without `RUST_LOG`, so the config's `log.level` rules.
    pub fn start_config_level(yaml: &str) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        Self::spawn(&path, dir, None, false, &[])
    }

    /// Starts the proxy with RLIMIT_NOFILE set to `max_fds`, to provoke EMFILE.
    pub fn start_with_fd_limit(yaml: &str, max_fds: u64) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        Self::spawn(&path, dir, Some(max_fds), true, &[])
    }

    /// Starts the proxy in `dir` (its current directory) with `--config` given as `relative`
    /// (as the README's Quick start does); `config` is then `dir` joined to it.
    pub fn start_relative(dir: tempfile::TempDir, relative: &std::path::Path) -> Proxy {
        let cwd = dir.path().to_path_buf();
        Self::spawn_in(relative, dir, None, true, &[], Some(&cwd))
    }

    fn spawn(
        path: &std::path::Path,
        dir: tempfile::TempDir,
        max_fds: Option<u64>,
        rust_log: bool,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Proxy {
        Self::spawn_in(path, dir, max_fds, rust_log, env, None)
    }

    /// [`Proxy::spawn`] in `cwd` (a relative `path` is relative to it).
    fn spawn_in(
        path: &std::path::Path,
        dir: tempfile::TempDir,
        max_fds: Option<u64>,
        rust_log: bool,
        env: &[(&str, &std::ffi::OsStr)],
        cwd: Option<&std::path::Path>,
    ) -> Proxy {
        let config = cwd.map_or_else(|| path.to_path_buf(), |d| d.join(path));
        let (expected_listeners, expected_admin) =
            yaml_listener_counts(&std::fs::read_to_string(&config).unwrap());
        let mut command = Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"));
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        command
            .args(["run", "--config"])
            .arg(path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !rust_log {
            command.env_remove("RUST_LOG");
        }
        command.envs(env.iter().copied());
        if let Some(max) = max_fds {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child here.
            unsafe {
                command.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: max,
                        rlim_max: max,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("spawn ch-edge-proxy");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("proxy (non-JSON): {line}"),
                }
            }
        });
        let mut proxy = Proxy {
            child,
            listeners: HashMap::new(),
            admin: None,
            admin_listeners: Vec::new(),
            lines: rx,
            seen: Vec::new(),
            config,
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT;
        while proxy.listeners.len() < expected_listeners
            || proxy.admin_listeners.len() < expected_admin
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = proxy
                .lines
                .recv_timeout(left)
                .expect("proxy did not report its listeners in time");
            match line["message"].as_str() {
                Some("listening") => {
                    let name = line["listener"].as_str().unwrap().to_string();
                    let addr = line["address"].as_str().unwrap().parse().unwrap();
                    proxy.listeners.insert(name, addr);
                }
                Some("admin listening") => {
                    let addr: SocketAddr = line["address"].as_str().unwrap().parse().unwrap();
                    let serve = line["serve"].as_str().unwrap_or_default().to_owned();
                    proxy.admin.get_or_insert(addr);
                    proxy.admin_listeners.push((addr, serve));
                }
                _ => proxy.seen.push(line),
            }
        }
        proxy
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the proxy process has used so far (user + system).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which may hold spaces), from field 3 on.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.listeners[listener]
    }

    /// The next log line (in order) that matches `pred`, waiting up to WAIT.
    pub fn wait_log(&mut self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        self.wait_log_within(WAIT, pred)
    }

    /// [`Proxy::wait_log`] with a bound of its own (for an event that must come before
    /// something else would cause it).
    pub fn wait_log_within(
        &mut self,
        bound: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + bound;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no matching log line; seen: {:#?}", self.seen));
            if pred(&line) {
                return line;
            }
            self.seen.push(line);
        }
    }

    /// How many lines already read (while waiting for others) match `pred`.
    pub fn seen_count(&self, pred: impl Fn(&serde_json::Value) -> bool) -> usize {
        self.seen.iter().filter(|l| pred(l)).count()
    }

    /// The next `reload` log line with `result` (ok, error, unchanged).
    pub fn wait_reload(&mut self, result: &str) -> serde_json::Value {
        self.wait_log(|l| l["message"] == "reload" && l["result"] == result)
    }

    /// The next access-log line (one per connection).
    pub fn access(&mut self) -> serde_json::Value {
        self.wait_log(|l| l["target"] == "access")
    }

    /// GET on the admin endpoint: (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin.expect("admin configured"), path)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        self.wait_exit()
    }

    /// Every line not read yet, up to the end of the log (the process must have exited).
    pub fn rest_of_log(&mut self) -> Vec<serde_json::Value> {
        let mut rest: Vec<_> = self.seen.drain(..).collect();
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) => rest.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return rest,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("log did not end in time"),
            }
        }
    }

    pub fn signal(&self, name: &str) {
        signal(&self.child, name);
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let rest: Vec<_> = self.lines.try_iter().collect();
                panic!(
                    "proxy did not exit in time; log: {:#?} {rest:#?}",
                    self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// How many data and admin listeners `yaml` configures (admin: `address`, or each of
/// `listeners`).
fn yaml_listener_counts(yaml: &str) -> (usize, usize) {
    let config: serde_json::Value = serde_saphyr::from_str(yaml).expect("config is YAML");
    let count = |v: &serde_json::Value| v.as_array().map_or(0, Vec::len);
    let admin = &config["admin"];
    let admin = if admin["address"].is_string() {
        1
    } else {
        count(&admin["listeners"])
    };
    (count(&config["listeners"]), admin)
}

impl Proxy {
    /// The admin listener that serves `endpoint` (`probes`, `metrics`, `routes`).
    pub fn admin_serving(&self, endpoint: &str) -> SocketAddr {
        self.admin_listeners
            .iter()
            .find(|(_, serve)| serve.split(',').any(|e| e == endpoint))
            .unwrap_or_else(|| panic!("no admin listener serves {endpoint}"))
            .0
    }
}

/// Replaces `path` atomically (write a sibling, rename over), as editors
/// and config management do, so a watcher never sees a half-written file.
pub fn write_atomic(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Minimal HTTP/1.0 GET (the admin endpoint is ours; no client crate needed).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of one Prometheus sample whose line contains every `parts`.
pub fn metric(text: &str, name: &str, parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// True when running in CI, where a missing peer binary is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// `CH_E2E_PYTHON`, else the repository's `.venv/bin/python`: `Ok` if it can `import` every
/// module of `imports` (comma-separated), else `Err` with the path tried.
pub fn venv_python(imports: &str) -> Result<std::path::PathBuf, std::path::PathBuf> {
    let python = std::env::var_os("CH_E2E_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
        });
    let works = Command::new(&python)
        .args(["-c", &format!("import {imports}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        Ok(python)
    } else {
        Err(python)
    }
}

/// The path of an external tool, or None (skip) outside CI; panics in CI.
pub fn tool(name: &str) -> Option<std::path::PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = std::path::Path::new(dir).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    if in_ci() {
        panic!("{name} is required in CI (installed by .ci/run)");
    }
    eprintln!("skipping: {name} not installed");
    None
}
