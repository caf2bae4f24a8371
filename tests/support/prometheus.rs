//! A real Prometheus (Debian's `prometheus`) on a free loopback port, with its own config and
//! storage in a temp dir, and its HTTP API.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::peers::{free_port, start_peer, Peer};
use super::{http_get, WAIT};

pub struct Prometheus {
    pub addr: SocketAddr,
    _peer: Peer,
}

impl Prometheus {
    /// Starts `bin` on `config` (prometheus.yml text) and returns once it is ready.
    pub fn start(bin: &Path, config: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prometheus.yml");
        std::fs::write(&path, config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = Command::new(bin);
        command
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn");
        let peer = start_peer(command, dir, addr);
        let prometheus = Prometheus { addr, _peer: peer };
        prometheus.wait_for("ready", || http_get(addr, "/-/ready").0 == 200);
        prometheus
    }

    /// GET `path` of the HTTP API, parsed; panics unless the status is `success`.
    pub fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(self.addr, path);
        let value: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {status} {e}: {body}"));
        assert_eq!(value["status"], "success", "{path}: {body}");
        value
    }

    /// The result of an instant query (`/api/v1/query`).
    pub fn query(&self, promql: &str) -> serde_json::Value {
        self.api(&format!("/api/v1/query?query={}", encode(promql)))["data"].clone()
    }

    /// Polls `done` until it holds, for at most WAIT (Prometheus scrapes and evaluates on its
    /// own clock: there is no event to wait on but the answer itself).
    pub fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "Prometheus: {what}: not within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Percent-encodes a query parameter (everything but RFC 3986's unreserved characters).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
