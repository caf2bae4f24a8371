//! `log.format` through the real binary, read as raw stdout lines: with `text` every line
//! (startup, listeners, access lines, refusals, reload, drain) is one human line and none is
//! JSON; with `json` every line is a JSON object; a reload switches the format; hostile SNIs can
//! neither forge a field nor break a text line.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::peers::{raw_client_hello, RawBackend};
use support::{write_atomic, WAIT};

fn config(backend: SocketAddr, log: &str) -> String {
    format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         admin:\n  address: \"127.0.0.1:0\"\nroutes:\n  - sni: a.test\n    upstream: \"{backend}\"\n{log}"
    )
}

/// `ch-edge-proxy run --config config.yaml` in a temp dir, its stdout kept line by line.
struct RawProxy {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, in order.
    all: Vec<String>,
    dir: tempfile::TempDir,
}

impl RawProxy {
    fn start(yaml: &str) -> RawProxy {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"))
            .args(["run", "--config", "config.yaml"])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                // Lossy on purpose: a line that is not UTF-8 fails the checks below visibly.
                if tx
                    .send(String::from_utf8_lossy(&line).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
        RawProxy {
            child,
            lines,
            all: Vec::new(),
            dir,
        }
    }

    /// The first line (from the start) that matches `pred`, waiting up to WAIT for it.
    fn wait(&mut self, pred: impl Fn(&str) -> bool) -> String {
        self.wait_from(0, pred)
    }

    /// The first line from the `from`-th on that matches `pred`, waiting up to WAIT for it.
    fn wait_from(&mut self, from: usize, pred: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.all.iter().skip(from).find(|l| pred(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no matching line; read: {:#?}", self.all));
            self.all.push(line.clone());
            if pred(&line) {
                return line;
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then every remaining line up to the end of the log, and the exit status.
    fn finish(mut self) -> (ExitStatus, Vec<String>) {
        self.signal("TERM");
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.all.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("log did not end in time"),
            }
        }
        let status = self.child.wait().unwrap();
        (status, std::mem::take(&mut self.all))
    }
}

impl Drop for RawProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection with a ClientHello carrying `sni` as it is, read to the end.
async fn connect(addr: SocketAddr, sni: &[u8]) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&raw_client_hello(sni)).await.unwrap();
    let _ = tcp.shutdown().await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut sink)).await;
}

/// The value of `key` in a text line (bare, or quoted and unescaped), reading the line's
/// `key=value` pairs in order as a log parser would: a quoted value is one value, whatever it
/// holds.
fn text_field(line: &str, key: &str) -> Option<String> {
    let mut rest = line;
    while !rest.is_empty() {
        let word_end = rest.find([' ', '=']).unwrap_or(rest.len());
        let is_key = rest[word_end..].starts_with('=')
            && rest[..word_end]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b"_.".contains(&b));
        if !is_key {
            // A word of the message: skip it.
            rest = rest[word_end..].trim_start_matches('=');
            rest = rest.find(' ').map_or("", |i| &rest[i + 1..]);
            continue;
        }
        let name = &rest[..word_end];
        let (value, after) = value(&rest[word_end + 1..])?;
        if name == key {
            return Some(value);
        }
        rest = after.trim_start_matches(' ');
    }
    None
}

/// One value at the start of `s` and what follows it.
fn value(s: &str) -> Option<(String, &str)> {
    let Some(quoted) = s.strip_prefix('"') else {
        let end = s.find(' ').unwrap_or(s.len());
        return Some((s[..end].to_owned(), &s[end..]));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &quoted[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                'r' => value.push('\r'),
                't' => value.push('\t'),
                'u' => {
                    let hex: String = chars
                        .by_ref()
                        .skip(1)
                        .map(|(_, c)| c)
                        .take_while(|&c| c != '}')
                        .collect();
                    value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                e => value.push(e),
            },
            c => value.push(c),
        }
    }
    None
}

#[test]
fn text_fields_are_read_as_written() {
    let line = "T INFO access sni=\"x route=a\\\"b\\u{1b}\" route=- n=1";
    assert_eq!(
        text_field(line, "sni").as_deref(),
        Some("x route=a\"b\u{1b}")
    );
    assert_eq!(text_field(line, "route").as_deref(), Some("-"));
    assert_eq!(text_field(line, "n").as_deref(), Some("1"));
    assert_eq!(text_field(line, "access"), None);
}

/// A text line: `<RFC 3339 time> <LEVEL> <message...>`, no control character, not JSON.
fn assert_text(line: &str) {
    assert!(
        serde_json::from_str::<serde_json::Value>(line).is_err(),
        "JSON in text mode: {line}"
    );
    let mut parts = line.splitn(3, ' ');
    let time = parts.next().unwrap_or_default();
    assert!(humantime::parse_rfc3339(time).is_ok(), "time: {line}");
    let level = parts.next().unwrap_or_default();
    assert!(
        ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
        "level: {line}"
    );
    assert!(
        !line.chars().any(char::is_control),
        "control character: {line:?}"
    );
}

fn listening(line: &str) -> bool {
    line.contains(" INFO listening ") || line.contains("\"message\":\"listening\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_format_writes_every_line_as_text() {
    let mut backend = RawBackend::start(false).await;
    let mut proxy = RawProxy::start(&config(backend.addr, "log:\n  format: text\n"));
    let addr: SocketAddr = text_field(&proxy.wait(listening), "address")
        .unwrap()
        .parse()
        .unwrap();
    let startup = proxy.wait(|l| l.contains(" INFO ch-edge-proxy starting "));
    assert_eq!(
        text_field(&startup, "routes").as_deref(),
        Some("1"),
        "{startup}"
    );
    assert_eq!(
        text_field(&startup, "config").as_deref(),
        Some("config.yaml")
    );
    let absolute = proxy.dir.path().join("config.yaml").display().to_string();
    assert_eq!(text_field(&startup, "config_path"), Some(absolute));

    connect(addr, b"a.test").await;
    backend.next().await;
    let relayed = proxy.wait(|l| l.contains(" INFO access outcome=relayed "));
    assert_eq!(text_field(&relayed, "sni").as_deref(), Some("a.test"));
    assert_eq!(
        text_field(&relayed, "upstream"),
        Some(backend.addr.to_string())
    );

    // Refusals, including names built to forge fields, lines and terminal escapes.
    let hostile = [
        "x route=a.test upstream=1.2.3.4:1 relayed",
        "evil\n2026-12-07T13:00:00.000000Z INFO access outcome=relayed",
        "quote\"back\\slash",
        "tab\there=x\r\u{1b}[2J\u{7f}",
    ];
    for sni in hostile {
        connect(addr, sni.as_bytes()).await;
        let line = proxy.wait(|l| {
            l.contains(" INFO access outcome=unknown_sni ")
                && text_field(l, "sni").as_deref() == Some(sni)
        });
        assert_eq!(text_field(&line, "route").as_deref(), Some("-"), "{line}");
        assert_eq!(
            text_field(&line, "upstream").as_deref(),
            Some("-"),
            "{line}"
        );
    }

    proxy.signal("HUP");
    proxy.wait(|l| l.contains(" INFO reload ") && l.contains("result=unchanged"));
    let (status, lines) = proxy.finish();
    assert!(status.success(), "{status:?}");
    assert!(lines.iter().any(|l| l.contains(" INFO drained; exiting")));
    for line in &lines {
        assert_text(line);
    }
    // Only the access lines that were made: no forged one.
    let relayed = lines
        .iter()
        .filter(|l| text_field(l, "outcome").as_deref() == Some("relayed"))
        .count();
    assert_eq!(relayed, 1, "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_format_writes_every_line_as_json_and_a_reload_switches_to_text() {
    let mut backend = RawBackend::start(false).await;
    let yaml = config(backend.addr, "");
    let mut proxy = RawProxy::start(&yaml);
    let listening = proxy.wait(listening);
    let listening: serde_json::Value = serde_json::from_str(&listening).unwrap();
    let addr: SocketAddr = listening["address"].as_str().unwrap().parse().unwrap();
    connect(addr, b"a.test").await;
    backend.next().await;
    connect(addr, b"nope.test").await;
    proxy.wait(|l| l.contains("\"outcome\":\"unknown_sni\""));
    let json_lines = proxy.all.len();

    // `format: text` by reload: from the reload's own line on, every line is text.
    write_atomic(
        &proxy.dir.path().join("config.yaml"),
        &config(backend.addr, "log:\n  format: text\n"),
    );
    proxy.signal("HUP");
    proxy.wait(|l| l.contains(" INFO reload ") && l.contains("result=ok"));
    connect(addr, b"a.test").await;
    backend.next().await;
    proxy.wait_from(json_lines, |l| l.contains(" INFO access outcome=relayed "));
    let (status, lines) = proxy.finish();
    assert!(status.success(), "{status:?}");

    let switch = lines
        .iter()
        .position(|l| l.contains(" INFO reload ") && l.contains("result=ok"))
        .unwrap();
    for line in &lines[..switch] {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value["timestamp"].is_string() && value["level"].is_string(),
            "{line}"
        );
    }
    // Startup, the relayed connection and the refusal were all JSON lines.
    let before = &lines[..switch];
    assert!(before
        .iter()
        .any(|l| l.contains("\"ch-edge-proxy starting\"")));
    assert!(before.iter().any(|l| l.contains("\"outcome\":\"relayed\"")));
    assert!(before
        .iter()
        .any(|l| l.contains("\"outcome\":\"unknown_sni\"")));
    for line in &lines[switch..] {
        assert_text(line);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_can_differ_from_the_format_of_other_lines() {
    let mut backend = RawBackend::start(false).await;
    let proxy_yaml = config(backend.addr, "log:\n  format: json\n  access: text\n");
    let mut proxy = RawProxy::start(&proxy_yaml);
    let listening: serde_json::Value = serde_json::from_str(&proxy.wait(listening)).unwrap();
    let addr: SocketAddr = listening["address"].as_str().unwrap().parse().unwrap();
    connect(addr, b"a.test").await;
    backend.next().await;
    let access = proxy.wait(|l| l.contains(" INFO access "));
    assert_text(&access);
    assert_eq!(text_field(&access, "outcome").as_deref(), Some("relayed"));
    let (status, lines) = proxy.finish();
    assert!(status.success());
    for line in lines.iter().filter(|l| !l.contains(" INFO access ")) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "{line}"
        );
    }
}

#[test]
fn a_config_that_fails_to_load_is_reported_in_its_own_format() {
    let dir = tempfile::tempdir().unwrap();
    // Valid YAML, invalid configuration (port 0 without upstream_port), text asked for.
    let yaml = "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\nlog:\n  format: text\n";
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"))
        .args(["run", "--config", "config.yaml"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_text(lines[0]);
    assert!(
        lines[0].contains(" ERROR invalid configuration "),
        "{stdout}"
    );
    assert!(
        text_field(lines[0], "error").is_some_and(|e| e.contains("upstream_port")),
        "{stdout}"
    );
}
