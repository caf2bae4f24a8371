//! Configuration: files on disk → validated, typed [`Config`].
//!
//! The grammar is serde's, in one place ([`raw`]): the main file is YAML, route files YAML or
//! JSON. Validation turns it into this module's typed sections and the route layer's specs
//! ([`crate::model::route`]); every problem is reported as a [`ConfigError`] with its file,
//! line and route.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ch_edge_wire::postgres::ListenerProtocol;
use ch_edge_wire::proxy_in::Policy;

use std::sync::Arc;

use crate::model::route::{duplicate_claims, Defaults, Routes};
pub use crate::model::sources::SourceKind;
use crate::model::tls::TlsConfig;

mod admin;
mod cache;
mod claims;
mod error;
mod include;
mod keyword;
mod limits;
mod parse_error;
mod raw;
mod raw_route;
mod route_entry;
mod route_file;
mod routes;
mod summary;
mod tls;
mod validate;
mod values;

pub use cache::RouteFiles;
pub use error::{ConfigError, Problem};
pub use include::{is_route_file, IncludeError};
pub use limits::{Limits, PerClient, Rate};
pub use raw::Format;
pub use route_file::{parse_routes_file, render_routes_file, RenderError};
pub use summary::summary;
pub use tls::uncovered;

use error::Problems;

/// A fully validated configuration: inline routes and every `include` merged.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from.
    pub path: PathBuf,
    pub listeners: Vec<ListenerConfig>,
    pub admin: Option<AdminConfig>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub defaults: Defaults,
    /// Inline routes first, then included files in sorted path order
    /// (shared per file with the parse cache and the next reload).
    pub routes: Routes,
    /// The `include` entries as written (files or directories), resolved
    /// relative to the config file's directory.
    pub includes: Vec<PathBuf>,
    pub discovery: Discovery,
    pub log: LogConfig,
    pub health: Health,
    /// Certificates served by terminating routes, CAs trusted by reencrypting ones.
    pub tls: Arc<TlsConfig>,
    /// The certificate, key and CA files read for `tls` (watched; in the fingerprint).
    pub tls_files: Vec<PathBuf>,
    /// Hash over the text of every file read (main file, then each included
    /// file with its path): equal hashes mean an identical configuration.
    pub content_hash: u64,
    /// The validated routes of each included file, reused by the next
    /// [`load_reusing`] for files whose text is unchanged.
    pub route_files: RouteFiles,
}

/// `log:` section: the format of every line, access-log format and sampling, log level.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// How every log line is written (tracing events, access lines, the log's own notices).
    pub format: LogFormat,
    /// How access lines are written: `log.access` if set, else [`LogConfig::format`].
    pub access: AccessLogFormat,
    /// Fraction of relayed connections logged (0.0..=1.0); refusals are
    /// always logged, since they are what an operator debugs.
    pub sample: f64,
    /// `tracing` filter directive used unless `RUST_LOG` is set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Json,
            access: AccessLogFormat::Json,
            sample: 1.0,
            level: "info".to_owned(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// One human line per event: `<time> <LEVEL> <message> key=value…`, no control characters.
    Text,
}

ch_edge_wire::keywords!(LogFormat {
    Json => "json",
    Text => "text",
});

/// How access-log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// A JSON object per connection, its fields those of the record.
    #[default]
    Json,
    /// A human line per connection: the same fields as `key=value`.
    Text,
    Off,
}

ch_edge_wire::keywords!(AccessLogFormat {
    Json => "json",
    Text => "text",
    Off => "off",
});

impl From<LogFormat> for AccessLogFormat {
    /// The access log's format when `log.access` is not set: the format of every other line.
    fn from(format: LogFormat) -> AccessLogFormat {
        match format {
            LogFormat::Json => AccessLogFormat::Json,
            LogFormat::Text => AccessLogFormat::Text,
        }
    }
}

/// ClickHouse's PostgreSQL port (`postgresql_port`): a `postgres` listener's default
/// `upstream_port`, whatever port it listens on (clients default to 5432).
pub const POSTGRES_UPSTREAM_PORT: u16 = 9005;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Metric/log label.
    pub name: String,
    pub address: SocketAddr,
    /// Port used for upstreams written without one; defaults to `address`'s port, and on a
    /// `postgres` listener to ClickHouse's PostgreSQL port, [`POSTGRES_UPSTREAM_PORT`].
    pub upstream_port: u16,
    /// Port used instead by `tls: terminate` routes (plaintext after termination); defaults
    /// to 9000 for 9440 and 8123 for 8443 (ClickHouse's plain ports), else `upstream_port`.
    pub upstream_port_plain: u16,
    /// The PROXY header we accept from the peer in front of us (the NLB).
    pub proxy_protocol: Policy,
    /// What a connection starts with after the PROXY header: a TLS ClientHello (`tls`), or the
    /// PostgreSQL wire start before it (`postgres`, README "PostgreSQL clients").
    pub protocol: ListenerProtocol,
}

/// `admin:` section: the admin HTTP listeners, each serving some of the endpoints.
/// `admin: {address}` is one listener serving every endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Never empty; no two bind the same address, no endpoint is served by two.
    pub listeners: Vec<AdminListener>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminListener {
    pub address: SocketAddr,
    /// What this listener serves, each once, in the order written.
    pub serve: Vec<AdminEndpoint>,
}

/// A group of admin endpoints, bound together to one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminEndpoint {
    /// `/healthz` and `/readyz`: what the kubelet probes.
    Probes,
    /// `/metrics`: what Prometheus scrapes.
    Metrics,
    /// `/routes`: the live table with every upstream and allowlist (keep it private).
    Routes,
}

ch_edge_wire::keywords!(AdminEndpoint {
    Probes => "probes",
    Metrics => "metrics",
    Routes => "routes",
});

impl AdminEndpoint {
    pub const ALL: [AdminEndpoint; 3] = [
        AdminEndpoint::Probes,
        AdminEndpoint::Metrics,
        AdminEndpoint::Routes,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub client_hello: Duration,
    pub connect: Duration,
    pub idle: Duration,
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            client_hello: Duration::from_secs(5),
            connect: Duration::from_secs(3),
            idle: Duration::from_secs(3600),
            drain: Duration::from_secs(30),
        }
    }
}

/// `health:` passive health of upstream addresses: `eject_after` consecutive connect
/// failures take an address out for `eject_for`, doubled for each repeat (up to
/// [`MAX_EJECTION`]) until a connect succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub eject_after: u32,
    pub eject_for: Duration,
}

/// The longest ejection, however often an address failed.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

impl Default for Health {
    fn default() -> Self {
        Health {
            eject_after: 1,
            eject_for: Duration::from_secs(5),
        }
    }
}

impl Health {
    /// How long the `nth` ejection in a row (1, 2, …) lasts: `eject_for` doubled per repeat,
    /// at most [`MAX_EJECTION`].
    pub fn ejection(&self, nth: u32) -> Duration {
        let doublings = nth.saturating_sub(1).min(31);
        self.eject_for
            .checked_mul(1 << doublings)
            .unwrap_or(MAX_EJECTION)
            .min(MAX_EJECTION)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    pub kubernetes: KubernetesDiscovery,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesDiscovery {
    pub enabled: bool,
    pub domain: String,
    pub namespaces: Vec<String>,
    pub label_selector: String,
    /// The kinds watched, each once, in the order written (default: CHIs only, so that a
    /// cluster without the official operator's CRD is not waited on).
    pub sources: Vec<SourceKind>,
    /// Gateway API (TLSRoute) discovery; needs `enabled`.
    pub gateway_api: GatewayApi,
}

/// `discovery.kubernetes.gateway_api`: GatewayClasses of `controller_name`, their Gateways and
/// TLSRoutes become routes; statuses are written back (README "Gateway API").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayApi {
    pub enabled: bool,
    pub controller_name: String,
    /// Backends are `<svc>.<ns>.svc.<cluster_domain>`.
    pub cluster_domain: String,
    /// The ports of `listeners` (Gateway listeners are matched to them).
    pub listener_ports: Vec<u16>,
    /// The DNS names of `tls.certificates` (`*.suffix` for wildcards): what a `Terminate`
    /// listener can serve.
    pub certificate_names: Vec<Arc<str>>,
}

impl GatewayApi {
    /// Whether a certificate's name covers `pattern` (a name, or `*.suffix` by the same
    /// wildcard).
    pub fn has_certificate(&self, pattern: &str) -> bool {
        self.certificate_names.iter().any(|n| {
            **n == *pattern
                || n.strip_prefix("*.").is_some_and(|suffix| {
                    pattern.strip_suffix(suffix).is_some_and(|head| {
                        head.len() > 1
                            && head.ends_with('.')
                            && !head[..head.len() - 1].contains('.')
                    })
                })
        })
    }
}

impl Default for GatewayApi {
    fn default() -> Self {
        GatewayApi {
            enabled: false,
            controller_name: crate::model::gateway::DEFAULT_CONTROLLER_NAME.to_owned(),
            cluster_domain: "cluster.local".to_owned(),
            listener_ports: Vec::new(),
            certificate_names: Vec::new(),
        }
    }
}

impl Default for KubernetesDiscovery {
    fn default() -> Self {
        KubernetesDiscovery {
            enabled: false,
            domain: String::new(),
            namespaces: Vec::new(),
            label_selector: String::new(),
            sources: DEFAULT_SOURCES.to_vec(),
            gateway_api: GatewayApi::default(),
        }
    }
}

/// `discovery.kubernetes.sources` when not written.
pub const DEFAULT_SOURCES: &[SourceKind] = &[SourceKind::Chi];

/// Loads and validates `path` and everything it includes.
///
/// Problems carry the file, the line where known, and what is wrong, e.g.
/// `routes.d/a.yaml:7: route "demo" (#2): allow: invalid CIDR "10.0.0.0/33"`;
/// several problems are listed together, one per line.
pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
    load_reusing(path, &RouteFiles::default())
}

/// Like [`load`], taking the routes of included files whose text is the same
/// as when `previous` was made from there instead of parsing them again
/// (usually `previous` is the live config's [`Config::route_files`]). The
/// result is the same as [`load`]'s; checks across files still run in full.
pub fn load_reusing(path: &std::path::Path, previous: &RouteFiles) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = include::read(path).map_err(|e| Problem::in_file(&file, e))?;
    from_str_reusing(&text, path, previous)
}

/// Like [`load`], with the main file's text given; `path` names it in errors
/// and relative `include` entries are resolved against its directory.
pub fn from_str(text: &str, path: &std::path::Path) -> Result<Config, ConfigError> {
    from_str_reusing(text, path, &RouteFiles::default())
}

fn from_str_reusing(
    text: &str,
    path: &std::path::Path,
    previous: &RouteFiles,
) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let raw: raw::RawConfig = raw::parse(Format::Yaml, text, &file)?;
    let mut errs = Problems::default();
    let (mut config, entries, tls_entries) = validate::config(raw, path, &mut errs);
    let mut hash = include::Fingerprint::new(text);
    let mut parsed = cache::Builder::default();
    for entry in &entries {
        let files = include::files(&entry.path);
        hash.files(&files);
        let files = match files {
            Ok(files) => files,
            Err(e) => {
                errs.add(&file, Some(&entry.at), "include", e);
                continue;
            }
        };
        for f in files {
            let source = f.display().to_string();
            let text = include::read(&f);
            hash.text(&text);
            let text = match text {
                Ok(text) => text,
                Err(e) => {
                    errs.add(&source, None, "", e);
                    continue;
                }
            };
            let text_hash = cache::text_hash(&text);
            let routes = match previous.get(&f, text_hash) {
                Some(routes) => routes.clone(),
                None => {
                    let before = errs.len();
                    let earlier = previous.earlier(&f).map_or(&[][..], |r| &r[..]);
                    let routes =
                        route_file::read(&text, &source, Format::of(&f), earlier, &mut errs);
                    if errs.len() != before {
                        continue;
                    }
                    routes.into()
                }
            };
            config.routes.push_group(routes.clone());
            parsed.add(&f, text_hash, routes);
        }
    }
    let (tls, tls_files) = tls::load(
        tls_entries,
        &config.routes,
        &config.defaults,
        &file,
        &mut hash,
        &mut errs,
    );
    config.tls = Arc::new(tls);
    config.tls_files = tls_files;
    // What the Gateway API translation needs of the proxy: its ports and certificate names
    // (only when on: a change of them restarts the watches, as any discovery setting does).
    let gateway = &mut config.discovery.kubernetes.gateway_api;
    if gateway.enabled {
        gateway.listener_ports = config.listeners.iter().map(|l| l.address.port()).collect();
        gateway.certificate_names = config
            .tls
            .certificates
            .iter()
            .flat_map(|c| c.names.iter().cloned())
            .collect();
    }
    config.content_hash = hash.finish();
    config.route_files = parsed.finish();
    for e in duplicate_claims(&config.routes) {
        let known = claims::Known {
            file: &file,
            text,
            main: true,
        };
        errs.push(claims::problem(e, known));
    }
    errs.finish(config)
}

/// The [`Config::content_hash`] that loading `path` now would produce, as
/// long as its `include` entries are still `includes` and the TLS files still `tls_files`
/// (true whenever the main file and the route files are unchanged, the case this is for):
/// lets a reload skip parsing when nothing changed.
pub fn fingerprint(
    path: &std::path::Path,
    includes: &[PathBuf],
    tls_files: &[PathBuf],
) -> Result<u64, IncludeError> {
    let text = include::read(path)?;
    let mut hash = include::Fingerprint::new(&text);
    for entry in includes {
        let files = include::files(entry);
        hash.files(&files);
        for f in files.iter().flatten() {
            hash.text(&include::read(f));
        }
    }
    for f in tls_files {
        hash.text(&include::read(f));
    }
    Ok(hash.finish())
}

#[cfg(test)]
mod message_tests;
#[cfg(test)]
mod route_file_tests;
#[cfg(test)]
mod tests;
