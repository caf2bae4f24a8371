use std::fs;
use std::path::Path;

use crate::model::config::{fingerprint, load, Config, ConfigError};
use crate::model::route::TlsMode;
use crate::model::tls::TlsVersion;

/// A directory with `config.yaml` (from `yaml`) and a certificate pair `ch.crt`/`ch.key` for
/// `*.ch.test` and `ch.test`, plus `other.key` (another key).
fn setup(yaml: &str) -> (tempfile::TempDir, Result<Config, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ck =
        rcgen::generate_simple_self_signed(vec!["*.ch.test".into(), "ch.test".into()]).unwrap();
    fs::write(d.join("ch.crt"), ck.cert.pem()).unwrap();
    fs::write(d.join("ch.key"), ck.signing_key.serialize_pem()).unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    fs::write(d.join("other.key"), other.serialize_pem()).unwrap();
    fs::write(d.join("ca.pem"), ck.cert.pem()).unwrap();
    fs::write(d.join("config.yaml"), yaml).unwrap();
    let config = load(&d.join("config.yaml"));
    (dir, config)
}

const BASE: &str = "listeners:\n  - name: native\n    address: \"127.0.0.1:9440\"\n  - name: other\n    address: \"127.0.0.1:7000\"\n";
const CERTS: &str = "tls:\n  certificates:\n    - cert: ch.crt\n      key: ch.key\n";

fn err(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn terminating_routes_need_a_certificate_for_every_name() {
    let ok = format!(
        "{BASE}{CERTS}  min_version: 1.3\n  max_handshakes: 8\nroutes:\n  - sni: [a.ch.test, ch.test, \"*.ch.test\"]\n    upstream: x\n    tls: terminate\n    alpn: [http/1.1]\n  - sni: other.test\n    upstream: yy\n"
    );
    let (_dir, config) = setup(&ok);
    let config = config.unwrap();
    assert_eq!(config.tls.min_version, TlsVersion::V1_3);
    assert_eq!(config.tls.max_handshakes, 8);
    assert_eq!(config.tls.certificates.iter().count(), 1);
    let tls = config.routes[0].tls.as_deref().unwrap();
    assert_eq!(tls.mode, Some(TlsMode::Terminate));
    assert_eq!(tls.alpn.as_deref().map(|a| &*a[0]), Some("http/1.1"));
    assert!(config.routes[1].tls.is_none());
    // Both files of the pair are watched and hashed.
    assert_eq!(config.tls_files.len(), 2);
    assert_eq!(
        config
            .listeners
            .iter()
            .map(|l| l.upstream_port_plain)
            .collect::<Vec<_>>(),
        [9000, 7000]
    );

    let uncovered = format!(
        "{BASE}{CERTS}routes:\n  - sni: [a.ch.test, a.b.ch.test]\n    upstream: x\n    tls: reencrypt\n"
    );
    let e = err(setup(&uncovered).1);
    assert!(
        e.contains("no certificate in tls.certificates covers \"a.b.ch.test\""),
        "{e}"
    );
    assert!(e.contains("route \"a.ch.test\""), "{e}");
    // `defaults.tls` counts, and no certificate at all says so.
    let by_default =
        format!("{BASE}defaults:\n  tls: terminate\nroutes:\n  - sni: a.test\n    upstream: x\n");
    let e = err(setup(&by_default).1);
    assert!(e.contains("tls.certificates is empty"), "{e}");
}

#[test]
fn a_pair_that_does_not_match_or_parse_is_refused() {
    let mismatch =
        format!("{BASE}tls:\n  certificates:\n    - cert: ch.crt\n      key: other.key\n");
    let e = err(setup(&mismatch).1);
    assert!(e.contains("does not belong to the certificate"), "{e}");
    assert!(e.contains("tls.certificates #1"), "{e}");
    let missing = format!("{BASE}tls:\n  certificates:\n    - cert: nope.crt\n      key: ch.key\n    - cert: ch.crt\n");
    let e = err(setup(&missing).1);
    assert!(e.contains("nope.crt: cannot read"), "{e}");
    assert!(
        e.contains("tls.certificates #2: key: missing or empty"),
        "{e}"
    );
    let e = err(setup(&format!("{BASE}tls:\n  min_version: \"1.1\"\n")).1);
    assert!(e.contains("\"1.1\": expected one of 1.2, 1.3"), "{e}");
    let e = err(setup(&format!("{BASE}tls:\n  max_handshakes: 0\n")).1);
    assert!(e.contains("tls.max_handshakes: must be at least 1"), "{e}");
}

#[test]
fn reencrypt_cas_load_relative_to_their_file_and_are_hashed() {
    let yaml = format!(
        "{BASE}{CERTS}defaults:\n  upstream_tls:\n    ca: ca.pem\nroutes:\n  - sni: a.ch.test\n    upstream: x\n    tls: reencrypt\n    upstream_tls:\n      server_name: Node-1.CH.test.\n"
    );
    let (dir, config) = setup(&yaml);
    let config = config.unwrap();
    let ca = dir.path().join("ca.pem");
    assert_eq!(config.defaults.upstream_ca.as_deref(), Some(ca.as_path()));
    assert!(config.tls.upstream_cas.contains_key(ca.as_path()));
    let up = config.routes[0]
        .tls
        .as_ref()
        .unwrap()
        .upstream
        .clone()
        .unwrap();
    assert_eq!(up.server_name.as_deref(), Some("node-1.ch.test"));
    assert_eq!(config.tls_files.len(), 3);
    let main = dir.path().join("config.yaml");
    let hash = |c: &Config| fingerprint(&main, &c.includes, &c.tls_files);
    assert_eq!(hash(&config), Ok(config.content_hash));
    // A swapped certificate (or CA) is a new configuration.
    let ck = rcgen::generate_simple_self_signed(vec!["*.ch.test".into()]).unwrap();
    fs::write(dir.path().join("ca.pem"), ck.cert.pem()).unwrap();
    assert_ne!(hash(&config), Ok(config.content_hash));
    assert_ne!(load(&main).unwrap().content_hash, config.content_hash);

    fs::write(dir.path().join("ca.pem"), "not a certificate\n").unwrap();
    let e = err(load(&main));
    assert!(e.contains("ca.pem: no CERTIFICATE"), "{e}");
    let bad = format!("{BASE}defaults:\n  upstream_tls:\n    server_name: x\nroutes:\n  - sni: a\n    upstream: x\n    alpn: [\"\"]\n    upstream_tls:\n      server_name: \"bad name\"\n");
    let e = err(setup(&bad).1);
    assert!(
        e.contains("defaults.upstream_tls.server_name: set per route"),
        "{e}"
    );
    assert!(e.contains("ALPN protocol \"\" must be 1-255 bytes"), "{e}");
    assert!(e.contains("invalid server_name \"bad name\""), "{e}");
    let _ = Path::new("");
}
