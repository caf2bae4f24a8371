//! The `tls:` section and the files TLS needs: certificate pairs (served by terminating
//! routes) and CA files (trusted by reencrypting routes) are read, hashed into the
//! configuration's fingerprint (so a swapped certificate reloads like an edited route file)
//! and checked: a pair that does not parse or does not match, an unreadable CA file, or a
//! terminating route whose names no certificate covers refuses the configuration.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::Problems;
use super::include::{self, Fingerprint};
use super::raw::RawTls;
use crate::model::route::{Defaults, RouteSpec, Routes, TlsMode};
use crate::model::tls::{self, CertStore, TlsConfig, DEFAULT_MAX_HANDSHAKES};

/// The section as written: certificate files (resolved against the config's directory) and
/// settings; the files are read by [`load`].
#[derive(Debug, Default)]
pub(crate) struct Entries {
    /// (cert, key, line).
    pairs: Vec<(PathBuf, PathBuf, u64)>,
    config: TlsConfig,
}

/// Checks the section's shape.
pub(crate) fn section(raw: RawTls, base: &Path, file: &str, errs: &mut Problems) -> Entries {
    let mut entries = Entries::default();
    for (i, c) in raw.certificates.into_iter().enumerate() {
        let line = c.referenced.line();
        let what = format!("tls.certificates #{}", i + 1);
        let path = |p: &Option<super::raw::S<String>>, key: &str, errs: &mut Problems| match p {
            Some(p) if !p.value.is_empty() => Some(base.join(&p.value)),
            _ => {
                errs.add_line(file, line, &format!("{what}: {key}"), "missing or empty");
                None
            }
        };
        let cert = path(&c.value.cert, "cert", errs);
        let key = path(&c.value.key, "key", errs);
        if let (Some(cert), Some(key)) = (cert, key) {
            entries.pairs.push((cert, key, line));
        }
    }
    if let Some(v) = raw
        .min_version
        .and_then(|v| errs.keyword(file, &v, "tls.min_version"))
    {
        entries.config.min_version = v;
    }
    entries.config.max_handshakes = DEFAULT_MAX_HANDSHAKES;
    if let Some(n) = raw.max_handshakes {
        if n.value == 0 {
            let at = Some(&n.referenced);
            errs.add(file, at, "tls.max_handshakes", "must be at least 1");
        }
        entries.config.max_handshakes = n.value.max(1);
    }
    entries
}

/// Reads every certificate pair and every CA file the routes name (each hashed into `hash`,
/// in a fixed order), checks them and the terminating routes' names. Returns the loaded
/// section and the files read, in the order hashed (what [`super::fingerprint`] re-reads).
pub(crate) fn load(
    entries: Entries,
    routes: &Routes,
    defaults: &Defaults,
    file: &str,
    hash: &mut Fingerprint,
    errs: &mut Problems,
) -> (TlsConfig, Vec<PathBuf>) {
    let mut files = Vec::new();
    let mut read = |path: &Path, files: &mut Vec<PathBuf>| {
        let text = include::read(path);
        hash.text(&text);
        files.push(path.to_path_buf());
        text
    };
    let Entries { pairs, mut config } = entries;
    let mut certs = Vec::with_capacity(pairs.len());
    for (i, (cert, key, line)) in pairs.iter().enumerate() {
        let what = format!("tls.certificates #{}", i + 1);
        let (cert_pem, key_pem) = (read(cert, &mut files), read(key, &mut files));
        let loaded = match (cert_pem, key_pem) {
            (Ok(c), Ok(k)) => tls::load_pair(cert, &c, key, &k).map_err(|e| e.to_string()),
            (Err(e), _) => Err(format!("cert {}: {e}", cert.display())),
            (_, Err(e)) => Err(format!("key {}: {e}", key.display())),
        };
        match loaded {
            Ok(c) => certs.push(c),
            Err(e) => errs.add_line(file, *line, &what, e),
        }
    }
    config.certificates = CertStore::new(certs);

    let cas: BTreeSet<Arc<Path>> = routes
        .iter()
        .filter_map(|r| r.tls.as_ref()?.upstream.as_ref()?.ca.clone())
        .chain(defaults.upstream_ca.clone())
        .collect();
    let mut loaded: HashMap<Arc<Path>, Arc<[_]>> = HashMap::with_capacity(cas.len());
    for ca in cas {
        let certs = match read(&ca, &mut files) {
            Ok(pem) => tls::certificates(&pem).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match certs {
            Ok(certs) => {
                loaded.insert(ca, certs.into());
            }
            Err(e) => errs.add(
                file,
                None,
                "upstream_tls.ca",
                format!("{}: {e}", ca.display()),
            ),
        }
    }
    config.upstream_cas = loaded;

    for spec in routes.iter() {
        check_covered(spec, defaults, &config.certificates, errs);
    }
    (config, files)
}

/// A terminating route must have a certificate for each of its names.
fn check_covered(spec: &RouteSpec, defaults: &Defaults, store: &CertStore, errs: &mut Problems) {
    let mode = spec
        .tls
        .as_ref()
        .and_then(|t| t.mode)
        .unwrap_or(defaults.tls);
    if !mode.terminates() {
        return;
    }
    for p in spec.sni.iter().filter(|p| !store.covers(p)) {
        let message = if store.is_empty() {
            format!("tls: {mode} needs a certificate for {p:?}, and tls.certificates is empty")
        } else {
            format!("tls: {mode}: no certificate in tls.certificates covers {p:?}")
        };
        errs.add_in_route(
            Some(&spec.name),
            &spec.source,
            0,
            &route_what(spec),
            message,
        );
    }
}

fn route_what(spec: &RouteSpec) -> String {
    format!("route {:?}", spec.name)
}

/// Whether `spec`, under `defaults`, terminates TLS without a certificate for one of its
/// names in `store`: the reason, for routes not read from files (discovery).
pub fn uncovered(spec: &RouteSpec, defaults: &Defaults, store: &CertStore) -> Option<String> {
    let mode = spec
        .tls
        .as_ref()
        .and_then(|t| t.mode)
        .unwrap_or(defaults.tls);
    if mode == TlsMode::Passthrough {
        return None;
    }
    let p = spec.sni.iter().find(|p| !store.covers(p))?;
    Some(format!(
        "tls: {mode}: no certificate in tls.certificates covers {p:?}"
    ))
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
