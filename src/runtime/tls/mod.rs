//! TLS termination (`tls: terminate`) and re-encryption (`tls: reencrypt`): what a reload
//! builds for them. A connection's TLS legs (handshake, plaintext relay) are the pipeline's
//! ([`crate::runtime::pipeline::terminated`]); they use what is here.
//!
//! [`Tls`] is the part of the live state this needs: one rustls server configuration per ALPN
//! list the routes accept (certificate chosen by SNI from `tls.certificates`), one client
//! configuration per CA the reencrypting routes trust, and the bound on handshakes in flight.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::sync::Semaphore;

use ch_edge_wire::postgres::ListenerProtocol;

use crate::model::config::Config;
use crate::model::route::TlsMode;
use crate::model::tls::{provider, CertStore, TlsVersion};
use crate::runtime::table::RouteTable;

mod failure;
mod handshake_metrics;

pub use failure::{Failure, Side};

/// A route's `alpn` list (`None`: no ALPN).
type Alpn = Option<Arc<[Arc<str>]>>;

/// The ALPN list a terminating route offers on a `postgres` listener, whatever its `alpn`:
/// `postgresql`, which a direct-SSL client (libpq 17+) requires the server to choose; a client
/// that offers no ALPN (libpq 16 and older) is served the same.
pub fn postgres_alpn() -> &'static Arc<[Arc<str>]> {
    static ALPN: OnceLock<Arc<[Arc<str>]>> = OnceLock::new();
    ALPN.get_or_init(|| Arc::from([Arc::from("postgresql")]))
}

/// TLS sessions remembered for resumption, shared by every configuration a reload builds.
const SESSION_CACHE: usize = 4096;

/// The TLS part of the live state.
#[derive(Debug)]
pub struct Tls {
    pub certificates: Arc<CertStore>,
    /// One per distinct `alpn` list of the terminating routes (`None`: no ALPN).
    servers: Vec<(Alpn, Arc<ServerConfig>)>,
    /// Per CA file (`None`: the system's roots) of the reencrypting routes.
    clients: HashMap<Option<Arc<Path>>, Arc<ClientConfig>>,
    /// Handshakes in flight, at most `tls.max_handshakes`.
    pub(crate) handshakes: Arc<Semaphore>,
    max_handshakes: usize,
    sessions: Arc<dyn StoresServerSessions>,
    /// Handshake metrics, registered once TLS is configured (none for passthrough only).
    meters: Option<Arc<handshake_metrics::Meters>>,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            certificates: Arc::default(),
            servers: Vec::new(),
            clients: HashMap::new(),
            handshakes: Arc::new(Semaphore::new(0)),
            max_handshakes: 0,
            sessions: rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE),
            meters: None,
        }
    }
}

impl Tls {
    /// What `routes` (compiled from `config`) need. `previous` (the live state's) lends its
    /// session cache and, when `max_handshakes` is unchanged, its bound, so a reload neither
    /// forgets sessions nor lets a second set of handshakes in.
    pub fn build(config: &Config, routes: &RouteTable, previous: Option<&Tls>) -> Tls {
        let tls = &config.tls;
        let max = tls.max_handshakes;
        let handshakes = match previous {
            Some(p) if p.max_handshakes == max => p.handshakes.clone(),
            _ => Arc::new(Semaphore::new(max)),
        };
        let sessions = match previous {
            Some(p) => p.sessions.clone(),
            None => rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE),
        };
        let certificates = Arc::new(tls.certificates.clone());
        let mut built = Tls {
            certificates,
            servers: Vec::new(),
            clients: HashMap::new(),
            handshakes,
            max_handshakes: max,
            sessions,
            meters: previous.and_then(|p| p.meters.clone()),
        };
        // Without a certificate no route terminates (configuration and discovery refuse
        // them), so a passthrough-only table is not even scanned.
        if built.certificates.is_empty() {
            return built;
        }
        if built.meters.is_none() {
            built.meters = Some(Arc::new(handshake_metrics::Meters::new()));
        }
        let mut alpns: Vec<Alpn> = vec![None];
        if config
            .listeners
            .iter()
            .any(|l| l.protocol == ListenerProtocol::Postgres)
        {
            alpns.push(Some(postgres_alpn().clone()));
        }
        let mut cas: Vec<Option<Arc<Path>>> = Vec::new();
        for route in routes.routes().filter(|r| r.tls.terminates()) {
            if !alpns.contains(&route.alpn) {
                alpns.push(route.alpn.clone());
            }
            if route.tls == TlsMode::Reencrypt {
                let ca = route.upstream_tls.as_ref().and_then(|u| u.ca.clone());
                if !cas.contains(&ca) {
                    cas.push(ca);
                }
            }
        }
        for alpn in alpns {
            match built.server_config(tls.min_version, alpn.as_deref()) {
                Ok(server) => built.servers.push((alpn, server)),
                Err(error) => tracing::error!(%error, "tls: cannot build a server configuration"),
            }
        }
        for ca in cas {
            let roots = match &ca {
                Some(path) => tls.upstream_cas.get(path).cloned().unwrap_or_default(),
                None => system_roots(),
            };
            match client_config(&roots) {
                Ok(client) => _ = built.clients.insert(ca, client),
                Err(error) => tracing::error!(%error, "tls: cannot build a client configuration"),
            }
        }
        built
    }

    fn server_config(
        &self,
        min: TlsVersion,
        alpn: Option<&[Arc<str>]>,
    ) -> Result<Arc<ServerConfig>, rustls::Error> {
        let versions: &[&rustls::SupportedProtocolVersion] = match min {
            TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::V1_3 => &[&rustls::version::TLS13],
        };
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(ByName(self.certificates.clone())));
        server.alpn_protocols = alpn
            .unwrap_or_default()
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        server.session_storage = self.sessions.clone();
        Ok(Arc::new(server))
    }

    /// The server configuration for a route accepting `alpn`.
    pub fn server(&self, alpn: Option<&Arc<[Arc<str>]>>) -> Option<&Arc<ServerConfig>> {
        self.servers
            .iter()
            .find(|(a, _)| a.as_ref() == alpn)
            .map(|(_, c)| c)
    }

    /// Counts one handshake's result (and its time, if it succeeded).
    pub(crate) fn counted(&self, side: Side, result: Result<(), Failure>, took: Duration) {
        if let Some(m) = &self.meters {
            m.counted(side, result, took);
        }
    }

    /// The gauge of handshakes holding a slot.
    pub(crate) fn in_flight(&self) -> metrics::Gauge {
        match &self.meters {
            Some(m) => m.in_flight.clone(),
            None => metrics::Gauge::noop(),
        }
    }

    /// The client configuration trusting `ca` (`None`: the system's roots).
    pub fn client(&self, ca: Option<&Arc<Path>>) -> Option<&Arc<ClientConfig>> {
        self.clients.get(&ca.cloned())
    }
}

/// A client configuration that trusts `roots` (both TLS versions; no client certificate).
fn client_config(roots: &[CertificateDer<'static>]) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut store = RootCertStore::empty();
    let (_, ignored) = store.add_parsable_certificates(roots.iter().cloned());
    if ignored > 0 {
        tracing::warn!(ignored, "tls: some CA certificates could not be used");
    }
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    Ok(Arc::new(
        builder.with_root_certificates(store).with_no_client_auth(),
    ))
}

/// The system's trust roots (the OS store: `/etc/ssl/certs` and `SSL_CERT_FILE`), read once.
fn system_roots() -> Arc<[CertificateDer<'static>]> {
    static ROOTS: OnceLock<Arc<[CertificateDer<'static>]>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            if let Some(error) = found.errors.first() {
                tracing::warn!(%error, "tls: reading the system's CA certificates");
            }
            found.certs.into()
        })
        .clone()
}

/// Chooses the served certificate by the ClientHello's SNI.
#[derive(Debug)]
struct ByName(Arc<CertStore>);

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(|n| n.trim_end_matches('.'));
        let chosen = match name {
            Some(n) if n.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.0.choose(Some(&n.to_ascii_lowercase()))
            }
            n => self.0.choose(n),
        };
        chosen.map(|c| c.key.clone())
    }
}
