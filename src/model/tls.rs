//! The certificates the proxy serves when it terminates TLS (`tls.certificates`), and the CA
//! files `reencrypt` routes trust: PEM text → checked, parsed pairs, and the choice of a
//! certificate for a name (exact SAN, then wildcard SAN, then the first certificate).
//!
//! Pure over the files' text: configuration reads the files (and hashes them, so a swapped
//! certificate reloads), this module parses and checks them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// `tls.min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    #[default]
    V1_2,
    V1_3,
}

ch_edge_wire::keywords!(TlsVersion {
    V1_2 => "1.2",
    V1_3 => "1.3",
});

/// Handshakes in flight unless `tls.max_handshakes` says otherwise.
pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;

/// The `tls:` section, loaded: what terminating routes serve and reencrypting routes trust.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    pub certificates: CertStore,
    pub min_version: TlsVersion,
    /// Handshakes (from a complete ClientHello to the end of the handshake) at once; more
    /// wait briefly, then are refused.
    pub max_handshakes: usize,
    /// Every CA file a `reencrypt` route (or `defaults.upstream_tls`) names, parsed.
    pub upstream_cas: HashMap<Arc<Path>, Arc<[CertificateDer<'static>]>>,
}

/// One certificate chain with its key, as served.
#[derive(Debug)]
pub struct Certificate {
    pub cert_file: Arc<Path>,
    pub key_file: Arc<Path>,
    /// The leaf's DNS subjectAltNames, lower case (`*.suffix` for wildcards).
    pub names: Vec<Arc<str>>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Chain and signing key, ready for rustls.
    pub key: Arc<CertifiedKey>,
}

impl Certificate {
    /// The label of its metrics: the certificate file.
    pub fn label(&self) -> String {
        self.cert_file.display().to_string()
    }
}

/// The crypto everything TLS in the proxy uses: aws-lc-rs, named by every configuration (kube
/// brings ring into the tree too, so there is no process-wide default to rely on).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Why a PEM file gives no certificates.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("invalid PEM: {0}")]
    Invalid(pem::Error),
    #[error("no CERTIFICATE in the file")]
    NoCertificate,
}

/// Why a certificate and its key cannot be served; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("cert {}: {error}", file.display())]
    Certificates { file: PathBuf, error: PemError },
    #[error("key {}: no private key (PKCS#8, PKCS#1 or SEC1 PEM): {error}", file.display())]
    NoKey { file: PathBuf, error: pem::Error },
    #[error("empty chain")]
    EmptyChain,
    #[error("key {} does not belong to the certificate {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("key {}: {error}", file.display())]
    Key { file: PathBuf, error: rustls::Error },
    #[error("cert {}: not an X.509 certificate: {error}", file.display())]
    NotX509 {
        file: PathBuf,
        error: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    #[error("cert {}: no DNS name in subjectAltName (clients check names there only)", file.display())]
    NoDnsName { file: PathBuf },
}

/// Reads a certificate chain (leaf first) and its private key from PEM text, and checks that
/// they belong together and that the leaf names at least one DNS name.
pub fn load_pair(
    cert_file: &Path,
    cert_pem: &str,
    key_file: &Path,
    key_pem: &str,
) -> Result<Certificate, PairError> {
    let chain = certificates(cert_pem).map_err(|error| PairError::Certificates {
        file: cert_file.into(),
        error,
    })?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|error| PairError::NoKey {
            file: key_file.into(),
            error,
        })?;
    let leaf = chain.first().cloned().ok_or(PairError::EmptyChain)?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => PairError::KeyMismatch {
            key: key_file.into(),
            cert: cert_file.into(),
        },
        error => PairError::Key {
            file: key_file.into(),
            error,
        },
    })?;
    let (_, x509) =
        x509_parser::parse_x509_certificate(&leaf).map_err(|error| PairError::NotX509 {
            file: cert_file.into(),
            error,
        })?;
    let mut names: Vec<Arc<str>> = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                let n = n.trim_end_matches('.').to_ascii_lowercase();
                if !n.is_empty() && !names.iter().any(|m| **m == *n) {
                    names.push(n.into());
                }
            }
        }
    }
    if names.is_empty() {
        return Err(PairError::NoDnsName {
            file: cert_file.into(),
        });
    }
    let validity = x509.validity();
    Ok(Certificate {
        cert_file: cert_file.into(),
        key_file: key_file.into(),
        names,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        key: Arc::new(certified),
    })
}

/// The certificates of a PEM file (a CA bundle, or a chain); at least one.
pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(PemError::Invalid)?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certs)
}

/// The certificates to serve, indexed by name. The first one listed is the default (no SNI,
/// or a name none covers); a name in several is served by the first that has it.
#[derive(Debug, Clone, Default)]
pub struct CertStore {
    certs: Vec<Arc<Certificate>>,
    exact: HashMap<Arc<str>, usize>,
    /// `*.suffix` SANs, keyed by `suffix`.
    wildcard: HashMap<Arc<str>, usize>,
}

impl CertStore {
    pub fn new(certs: Vec<Certificate>) -> CertStore {
        let mut store = CertStore::default();
        for (i, cert) in certs.into_iter().enumerate() {
            for name in &cert.names {
                match name.strip_prefix("*.") {
                    Some(suffix) => store.wildcard.entry(suffix.into()).or_insert(i),
                    None => store.exact.entry(name.clone()).or_insert(i),
                };
            }
            store.certs.push(Arc::new(cert));
        }
        store
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// Every certificate, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Certificate>> {
        self.certs.iter()
    }

    /// The certificate for `name` (lower case, no trailing dot): the one with `name` as a SAN,
    /// else with a wildcard SAN for it (one label, as clients check), else the default.
    pub fn choose(&self, name: Option<&str>) -> Option<&Arc<Certificate>> {
        let i = name.and_then(|n| self.matching(n)).unwrap_or(0);
        self.certs.get(i)
    }

    fn matching(&self, name: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(name) {
            return Some(i);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).copied()
    }

    /// Whether a client connecting to a name of the route pattern `pattern` is served a
    /// certificate it accepts: an exact name by its SAN or a wildcard SAN, `*.suffix` by the
    /// SAN `*.suffix` (which covers one label; deeper names get the default), `*` by any
    /// certificate at all.
    pub fn covers(&self, pattern: &str) -> bool {
        match pattern {
            "*" => !self.certs.is_empty(),
            p => match p.strip_prefix("*.") {
                Some(suffix) => self.wildcard.contains_key(suffix),
                None => self.matching(p).is_some(),
            },
        }
    }
}

/// A certificate is renewed in time only if someone hears of it: one that expires within this
/// (or already has) is warned about at each load.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// A served certificate near (or past) its end.
#[derive(Debug, Clone, Copy)]
pub struct Expiring<'a> {
    pub certificate: &'a Certificate,
    /// Whole days left, rounded down: negative once expired.
    pub days_left: f64,
    pub expired: bool,
}

/// The certificates of `certs` that expire within [`EXPIRY_WARNING`] of `now`, or have, in
/// configuration order.
pub fn expiring(certs: &CertStore, now: SystemTime) -> Vec<Expiring<'_>> {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    certs
        .iter()
        .filter_map(|c| {
            let left = c.not_after as f64 - now;
            (left < EXPIRY_WARNING.as_secs_f64()).then(|| Expiring {
                certificate: c,
                days_left: (left / 86400.0).floor(),
                expired: left < 0.0,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).unwrap();
        (ck.cert.pem(), ck.signing_key.serialize_pem())
    }

    fn load(names: &[&str], file: &str) -> Certificate {
        let (cert, key) = pair(names);
        load_pair(Path::new(file), &cert, Path::new("k.pem"), &key).unwrap()
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let store = CertStore::new(vec![
            load(&["default.test"], "a.pem"),
            load(&["*.ch.test", "ch.test"], "b.pem"),
            load(&["x.ch.test", "*.x.ch.test"], "c.pem"),
        ]);
        let chosen = |n: Option<&str>| store.choose(n).map(|c| c.label());
        assert_eq!(chosen(Some("x.ch.test")).as_deref(), Some("c.pem"));
        assert_eq!(chosen(Some("y.ch.test")).as_deref(), Some("b.pem"));
        assert_eq!(chosen(Some("ch.test")).as_deref(), Some("b.pem"));
        assert_eq!(chosen(Some("a.x.ch.test")).as_deref(), Some("c.pem"));
        // A wildcard covers one label: deeper names get the default.
        assert_eq!(chosen(Some("a.b.y.ch.test")).as_deref(), Some("a.pem"));
        assert_eq!(chosen(None).as_deref(), Some("a.pem"));
        assert!(CertStore::default().choose(Some("x")).is_none());

        assert!(store.covers("y.ch.test"));
        assert!(store.covers("*.ch.test"));
        assert!(store.covers("ch.test"));
        assert!(store.covers("*"));
        assert!(!store.covers("*.test"));
        assert!(!store.covers("a.b.ch.test"));
        assert!(!store.covers("other.test"));
        assert!(!CertStore::default().covers("*"));
    }

    #[test]
    fn pairs_are_checked() {
        let (cert, key) = pair(&["a.test"]);
        let (_, other_key) = pair(&["a.test"]);
        let (c, k) = (Path::new("c.pem"), Path::new("k.pem"));
        let loaded = load_pair(c, &cert, k, &key).unwrap();
        assert_eq!(loaded.names, vec![Arc::<str>::from("a.test")]);
        assert!(loaded.not_after > loaded.not_before);
        let err = load_pair(c, &cert, k, &other_key).unwrap_err().to_string();
        assert!(err.contains("does not belong"), "{err}");
        let err = load_pair(c, "garbage", k, &key).unwrap_err().to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
        let err = load_pair(c, &cert, k, &cert).unwrap_err().to_string();
        assert!(err.contains("no private key"), "{err}");
        // A truncated PEM block.
        let half = &cert[..cert.len() / 2];
        assert!(load_pair(c, half, k, &key).is_err());
        assert!(certificates(&cert).is_ok());
    }

    #[test]
    fn certificates_expiring_within_14_days_are_found() {
        const DAY: i64 = 86400;
        let now = 1_800_000_000;
        let at = |not_after: i64, file: &str| Certificate {
            not_after,
            ..load(&["a.test"], file)
        };
        let store = CertStore::new(vec![
            at(now + 100 * DAY, "far.pem"),
            at(now + 14 * DAY, "at-the-bound.pem"),
            at(now + 14 * DAY - 1, "just-within.pem"),
            at(now + DAY / 2, "today.pem"),
            at(now, "now.pem"),
            at(now - 1, "expired.pem"),
            at(now - 3 * DAY, "long-expired.pem"),
        ]);
        let found: Vec<(String, f64, bool)> = expiring(
            &store,
            SystemTime::UNIX_EPOCH + Duration::from_secs(now as u64),
        )
        .iter()
        .map(|e| (e.certificate.label(), e.days_left, e.expired))
        .collect();
        #[rustfmt::skip]
        let want = [
            ("just-within.pem", 13.0, false),
            ("today.pem", 0.0, false),
            ("now.pem", 0.0, false),
            ("expired.pem", -1.0, true),
            ("long-expired.pem", -3.0, true),
        ];
        let want: Vec<(String, f64, bool)> = want
            .iter()
            .map(|(f, d, e)| (f.to_string(), *d, *e))
            .collect();
        assert_eq!(found, want);
    }
}
