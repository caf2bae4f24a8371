//! Configuration: YAML on disk → validated, typed [`Config`].
//!
//! Parsing (`serde-saphyr`, unknown keys refused) and validation live in the
//! submodules; this file holds the typed result every other module reads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

mod cache;
mod fast;
mod include;
mod raw;
mod route_file;
mod routes;
mod specs;
mod summary;
mod validate;

pub use cache::RouteFiles;
pub use specs::Routes;
pub use summary::summary;

use validate::Errors;

#[cfg(test)]
use route_file::PARALLEL_FROM;

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
    /// Hash over the text of every file read (main file, then each included
    /// file with its path): equal hashes mean an identical configuration.
    pub content_hash: u64,
    /// The validated routes of each included file, reused by the next
    /// [`load_reusing`] for files whose text is unchanged.
    pub route_files: RouteFiles,
}

/// `log:` section: access-log format and sampling, log level.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
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
            access: AccessLogFormat::Json,
            sample: 1.0,
            level: "info".to_owned(),
        }
    }
}

/// How access-log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// One structured event per connection (a JSON line, like every log line).
    #[default]
    Json,
    /// One event whose message is a single human-readable line.
    Text,
    Off,
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Metric/log label.
    pub name: String,
    pub address: SocketAddr,
    /// Port used for upstreams written without one; defaults to `address`'s port.
    pub upstream_port: u16,
    pub proxy_protocol: ProxyProtocolIn,
}

/// What we accept from the peer in front of us (the NLB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocolIn {
    pub mode: ProxyInMode,
    /// Peers allowed to send a header. Empty only when `mode` is `Off`.
    pub trusted: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyInMode {
    #[default]
    Off,
    Optional,
    Required,
}

/// The PROXY header we send to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyVersion {
    #[default]
    Off,
    V1,
    V2,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub address: SocketAddr,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub allow: Vec<IpNet>,
    pub proxy_protocol: ProxyVersion,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            allow: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            proxy_protocol: ProxyVersion::Off,
        }
    }
}

/// One route as configured (before compilation into the route table).
///
/// Strings are `Arc<str>`: the table's routes share them (a name with its
/// first pattern, a file's routes one source), so 100k routes are not 100k
/// copies of each, and building a route allocates no strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// `name`, else the first SNI pattern.
    pub name: Arc<str>,
    /// Normalised patterns: lower-case, no trailing dot; `name`, `*.suffix` or `*`.
    pub sni: Vec<Arc<str>>,
    pub upstreams: Vec<UpstreamAddr>,
    /// `None`: use `defaults.allow`.
    pub allow: Option<Vec<IpNet>>,
    /// `None`: use `defaults.proxy_protocol`.
    pub proxy_protocol: Option<ProxyVersion>,
    /// Where the route came from: `"<config path>"` or the included file's path.
    pub source: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamAddr {
    /// DNS name or IP literal (IPv6 without brackets).
    pub host: Arc<str>,
    /// `None`: the listener's `upstream_port`.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    pub kubernetes: KubernetesDiscovery,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubernetesDiscovery {
    pub enabled: bool,
    pub domain: String,
    pub namespaces: Vec<String>,
    pub label_selector: String,
}

/// Loads and validates `path` and everything it includes.
///
/// Errors carry the file, the line where known, and what is wrong, e.g.
/// `routes.d/a.yaml:7: route "demo" (#2): allow: invalid CIDR "10.0.0.0/33"`;
/// several problems are listed together, one per line.
pub fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    load_reusing(path, &RouteFiles::default())
}

/// Like [`load`], taking the routes of included files whose text is the same
/// as when `previous` was made from there instead of parsing them again
/// (usually `previous` is the live config's [`Config::route_files`]). The
/// result is the same as [`load`]'s; checks across files still run in full.
pub fn load_reusing(path: &std::path::Path, previous: &RouteFiles) -> anyhow::Result<Config> {
    let text = include::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    from_str_reusing(&text, path, previous)
}

/// Like [`load`], with the main file's text given; `path` names it in errors
/// and relative `include` entries are resolved against its directory.
pub fn from_str(text: &str, path: &std::path::Path) -> anyhow::Result<Config> {
    from_str_reusing(text, path, &RouteFiles::default())
}

fn from_str_reusing(
    text: &str,
    path: &std::path::Path,
    previous: &RouteFiles,
) -> anyhow::Result<Config> {
    let file = path.display().to_string();
    let raw: raw::RawConfig = raw::parse(text, &file).map_err(anyhow::Error::msg)?;
    let mut errs = Errors::default();
    let (mut config, entries) = validate::config(raw, path, &mut errs);
    let mut hash = include::Fingerprint::new(text);
    let mut parsed = cache::Builder::default();
    for entry in &entries {
        let files = include::files(&entry.path);
        hash.files(&files);
        match files {
            Err(e) => errs.add(&file, Some(&entry.at), "include", e),
            Ok(files) => {
                for f in files {
                    let source = f.display().to_string();
                    let text = include::read(&f);
                    hash.text(&text);
                    match text {
                        Ok(text) => {
                            let text_hash = cache::text_hash(&text);
                            let chunks = match previous.get(&f, text_hash) {
                                Some(chunks) => chunks.to_vec(),
                                None => {
                                    let before = errs.len();
                                    let earlier = previous.chunks(&f);
                                    let chunks =
                                        route_file::read(&text, &source, &earlier, &mut errs);
                                    if errs.len() != before {
                                        continue;
                                    }
                                    chunks
                                }
                            };
                            for c in &chunks {
                                config.routes.push_group(c.routes.clone());
                            }
                            parsed.add(&f, text_hash, chunks);
                        }
                        Err(e) => errs.add(&source, None, "", e),
                    }
                }
            }
        }
    }
    config.content_hash = hash.finish();
    config.route_files = parsed.finish();
    for e in crate::route::duplicate_claims(&config.routes) {
        errs.push(e.to_string());
    }
    errs.finish(config)
}

/// The [`Config::content_hash`] that loading `path` now would produce, as
/// long as its `include` entries are still `includes` (true whenever the
/// main file is unchanged, the case this is for): lets a reload skip parsing
/// when nothing changed.
pub fn fingerprint(path: &std::path::Path, includes: &[PathBuf]) -> Result<u64, String> {
    let text = include::read(path)?;
    let mut hash = include::Fingerprint::new(&text);
    for entry in includes {
        let files = include::files(entry);
        hash.files(&files);
        for f in files.iter().flatten() {
            hash.text(&include::read(f));
        }
    }
    Ok(hash.finish())
}

/// Parses and validates one route file (`routes: [...]`, nothing else), as
/// an `include` would; `source` names it in errors and in each spec.
pub fn parse_routes_file(text: &str, source: &str) -> anyhow::Result<Vec<RouteSpec>> {
    let mut errs = Errors::default();
    let chunks = route_file::read(text, source, &Default::default(), &mut errs);
    let routes: Vec<RouteSpec> = chunks
        .iter()
        .flat_map(|c| c.routes.iter().cloned())
        .collect();
    for e in crate::route::duplicate_claims(&routes) {
        errs.push(e.to_string());
    }
    errs.finish(routes)
}

#[cfg(test)]
mod tests;
