//! The README's Quick start and container setup, run as a new user would: the demo backend
//! script, the shipped example config (only its fixed ports swapped for free ones), and the
//! README's curl and openssl lines. Each command checked here is also asserted to be in the
//! README, so the two cannot drift apart.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::peers::{free_port, start_peer};
use support::{tool, Proxy};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

/// The example config as shipped, with its fixed ports replaced: listeners and admin on
/// `127.0.0.1:0`, the demo backend's 19440 on `backend_port`.
fn example_config_on(backend_port: u16) -> String {
    let text = std::fs::read_to_string(repo().join("config/ch-edge-proxy.yaml")).unwrap();
    for fixed in [
        "127.0.0.1:19440",
        "127.0.0.1:9440",
        "127.0.0.1:8443",
        "127.0.0.1:9090",
    ] {
        assert!(
            text.contains(fixed),
            "the example config no longer uses {fixed}"
        );
    }
    let text = text
        .replace("127.0.0.1:19440", &format!("127.0.0.1:{backend_port}"))
        .replace("127.0.0.1:9090", "127.0.0.1:0");
    // A listener on port 0 must name the port its upstreams default to.
    text.lines()
        .map(|line| {
            match ["9440", "8443"]
                .iter()
                .find(|p| line.contains(&format!("address: \"127.0.0.1:{p}\"")))
            {
                Some(port) => {
                    let indent = &line[..line.len() - line.trim_start().len()];
                    format!("{indent}address: \"127.0.0.1:0\"\n{indent}upstream_port: {port}\n")
                }
                None => format!("{line}\n"),
            }
        })
        .collect()
}

#[test]
fn quick_start_works_as_written() {
    let (Some(_), Some(curl)) = (tool("openssl"), tool("curl")) else {
        return;
    };
    let readme = readme();
    for line in [
        "examples/demo-backend.sh\n",
        "cargo run --release -- run --config config/ch-edge-proxy.yaml",
        "curl --cacert target/demo-backend/demo.crt --resolve demo.ch.example.com:8443:127.0.0.1 \\\n  https://demo.ch.example.com:8443/",
        "curl --cacert target/demo-backend/demo.crt --resolve nope.example.org:8443:127.0.0.1 https://nope.example.org:8443/",
        "openssl s_client -connect 127.0.0.1:9440 -servername demo.ch.example.com -CAfile target/demo-backend/demo.crt",
        "<HTML><BODY BGCOLOR=\"#ffffff\">",
        "Verify return code: 0 (ok)",
    ] {
        assert!(readme.contains(line), "the README's Quick start lost: {line}");
    }

    // 1. The backend, by the script the README runs (its certificate in a temp dir).
    let backend_dir = tempfile::tempdir().unwrap();
    let cert = backend_dir.path().join("demo.crt");
    let backend_port = free_port();
    let mut script = Command::new(repo().join("examples/demo-backend.sh"));
    script
        .arg(backend_port.to_string())
        .arg(backend_dir.path())
        .current_dir(repo());
    let backend_addr = format!("127.0.0.1:{backend_port}").parse().unwrap();
    let _backend = start_peer(script, tempfile::tempdir().unwrap(), backend_addr);

    // 2. The proxy on the example config.
    let mut proxy = Proxy::start(&example_config_on(backend_port));
    let https = proxy.addr("https").port();
    let native = proxy.addr("native").port();

    // 3. The README's curl: the backend's page, its certificate verified through the proxy.
    let out = Command::new(&curl)
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&cert)
        .arg("--resolve")
        .arg(format!("demo.ch.example.com:{https}:127.0.0.1"))
        .arg(format!("https://demo.ch.example.com:{https}/"))
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && page.starts_with("<HTML><BODY BGCOLOR=\"#ffffff\">"),
        "curl through the proxy: {:?} {page} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = proxy.access();
    assert_eq!(line["sni"], "demo.ch.example.com");
    assert_eq!(line["route"], "demo");
    assert_eq!(line["upstream"], format!("127.0.0.1:{backend_port}"));
    assert_eq!(line["outcome"], "relayed");

    // An unknown name: the alert unrecognized_name, which curl reports as exit 35.
    let out = Command::new(&curl)
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&cert)
        .arg("--resolve")
        .arg(format!("nope.example.org:{https}:127.0.0.1"))
        .arg(format!("https://nope.example.org:{https}/"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(35));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized name"));
    assert_eq!(proxy.access()["outcome"], "unknown_sni");

    // The native listener with openssl s_client, verified against the backend's certificate.
    let out = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{native}"))
        .args(["-servername", "demo.ch.example.com", "-CAfile"])
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("subject=CN = demo.ch.example.com"), "{said}");
    assert!(said.contains("Verify return code: 0 (ok)"), "{said}");
}

#[test]
fn container_config_listens_on_all_addresses() {
    let path = repo().join("config/container.yaml");
    let c = ch_edge_proxy::model::config::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!c.listeners.is_empty());
    for listener in &c.listeners {
        assert!(
            listener.address.ip().is_unspecified(),
            "{} binds {}: unreachable through docker run -p",
            listener.name,
            listener.address
        );
    }
    let admin = c.admin.as_ref().expect("the image's config serves probes");
    assert!(admin
        .listeners
        .iter()
        .all(|l| l.address.ip().is_unspecified()));

    // The image runs this file, and the README shows how.
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(dockerfile
        .contains("COPY config/container.yaml /etc/ch-edge-proxy/config/ch-edge-proxy.yaml"));
    assert!(readme().contains("-p 9440:9440 -p 8443:8443 -p 9090:9090 ch-edge-proxy"));
}
