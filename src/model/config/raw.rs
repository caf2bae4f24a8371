//! The configuration's grammar, once: serde types for the main file and for route files. Every
//! section refuses unknown keys, and values that need checking keep their source location
//! ([`S`]) so validation errors can point at a line. Route files are read from YAML and
//! JSON through these same types, and written back (`routes from-chi`) through them too.

use std::fmt;

use ch_edge_wire::postgres::ListenerProtocol;
use ch_edge_wire::proxy_in::ProxyInMode;
use ch_edge_wire::proxy_out::ProxyVersion;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::error::Problem;
pub(crate) use super::keyword::{Keyword, S};
pub(super) use super::parse_error::{describe_json, describe_yaml};
use super::{AccessLogFormat, AdminEndpoint, LogFormat};
use crate::model::route::{Balance, TlsMode};
use crate::model::tls::TlsVersion;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default, deserialize_with = "nullable")]
    pub listeners: Vec<S<RawListener>>,
    #[serde(default, deserialize_with = "nullable")]
    pub admin: Option<RawAdmin>,
    #[serde(default, deserialize_with = "nullable")]
    pub timeouts: RawTimeouts,
    #[serde(default, deserialize_with = "nullable")]
    pub limits: RawLimits,
    #[serde(default, deserialize_with = "nullable")]
    pub defaults: RawDefaults,
    #[serde(default, deserialize_with = "nullable")]
    pub routes: Vec<S<RawRoute>>,
    #[serde(default, deserialize_with = "nullable")]
    pub include: Vec<S<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub discovery: RawDiscovery,
    #[serde(default, deserialize_with = "nullable")]
    pub log: RawLog,
    #[serde(default, deserialize_with = "nullable")]
    pub health: RawHealth,
    #[serde(default, deserialize_with = "nullable")]
    pub tls: RawTls,
}

/// `tls:` certificates served by terminating routes, and handshake settings.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    #[serde(default, deserialize_with = "nullable")]
    pub certificates: Vec<S<RawCertificate>>,
    pub min_version: Option<S<Keyword<TlsVersion>>>,
    pub max_handshakes: Option<S<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub cert: Option<S<String>>,
    pub key: Option<S<String>>,
}

/// `upstream_tls:` of a route (and `ca` alone in `defaults`).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<S<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<S<String>>,
}

/// `health:` passive health of upstream addresses.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub eject_after: Option<S<u32>>,
    pub eject_for: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub format: Option<S<Keyword<LogFormat>>>,
    pub access: Option<S<Keyword<AccessLogFormat>>>,
    pub sample: Option<S<f64>>,
    pub level: Option<S<String>>,
}

/// A route file (`include`, `routes from-chi`): exactly `routes: [...]`, each entry a
/// [`RawRoute`]. Written as this type; read entry by entry (`route_file::parse_routes`).
#[derive(Debug, Serialize)]
pub(crate) struct RawRoutesFile {
    pub routes: Vec<S<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub name: Option<S<String>>,
    pub address: Option<S<String>>,
    pub upstream_port: Option<S<u16>>,
    pub upstream_port_plain: Option<S<u16>>,
    #[serde(default, deserialize_with = "nullable")]
    pub proxy_protocol: Option<RawProxyIn>,
    pub protocol: Option<S<Keyword<ListenerProtocol>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxyIn {
    #[serde(default, deserialize_with = "nullable")]
    pub mode: Option<S<Keyword<ProxyInMode>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub trusted: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub address: Option<S<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub listeners: Vec<S<RawAdminListener>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdminListener {
    pub address: Option<S<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub serve: Vec<S<Keyword<AdminEndpoint>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub client_hello: Option<S<String>>,
    pub connect: Option<S<String>>,
    pub idle: Option<S<String>>,
    pub drain: Option<S<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub max_connections: Option<S<usize>>,
    #[serde(default, deserialize_with = "nullable")]
    pub per_client: Option<RawPerClient>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPerClient {
    pub max_connections: Option<S<u32>>,
    pub rate: Option<S<f64>>,
    pub burst: Option<S<f64>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaults {
    pub allow: Option<Vec<S<String>>>,
    pub proxy_protocol: Option<S<Keyword<ProxyVersion>>>,
    pub balance: Option<S<Keyword<Balance>>>,
    pub sticky: Option<bool>,
    pub tls: Option<S<Keyword<TlsMode>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub upstream_tls: Option<S<RawUpstreamTls>>,
}

/// One route entry. Written back with absent fields left out; read by hand
/// ([`super::raw_route`]) so that an unknown or repeated key is a problem of this entry, not
/// the end of the file.
#[derive(Debug, Default, Serialize)]
pub(crate) struct RawRoute {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<S<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<S<OneOrMany>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<S<OneOrMany>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<S<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<S<Keyword<ProxyVersion>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<S<Keyword<Balance>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sticky: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<S<Keyword<TlsMode>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_tls: Option<S<RawUpstreamTls>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpn: Option<Vec<S<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_direct_ssl: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_port: Option<u16>,
    /// Keys refused while reading the entry (unknown, repeated), for validation to report.
    #[serde(skip)]
    pub key_problems: Vec<KeyProblem>,
}

/// A key of a route entry that is refused: `line`, the key, and what is wrong with it.
#[derive(Debug)]
pub(crate) struct KeyProblem {
    pub line: u64,
    pub key: String,
    pub message: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDiscovery {
    #[serde(default, deserialize_with = "nullable")]
    pub kubernetes: RawKubernetes,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKubernetes {
    #[serde(default, deserialize_with = "nullable")]
    pub enabled: bool,
    pub domain: Option<S<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub namespaces: Vec<S<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub label_selector: String,
    /// `None`: the default sources.
    pub sources: Option<Vec<S<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub gateway_api: RawGatewayApi,
}

/// `discovery.kubernetes.gateway_api`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGatewayApi {
    #[serde(default, deserialize_with = "nullable")]
    pub enabled: bool,
    pub controller_name: Option<S<String>>,
    pub cluster_domain: Option<S<String>>,
}

/// An empty value (`routes:` with every entry commented out) means the default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// `key: value` or `key: [value, ...]`.
#[derive(Debug)]
pub(crate) enum OneOrMany {
    /// Located by the enclosing `Spanned`.
    One(String),
    Many(Vec<S<String>>),
}

/// One item as a string, several as a list: the shape people write.
impl Serialize for OneOrMany {
    fn serialize<Z: Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        match self {
            OneOrMany::One(one) => z.serialize_str(one),
            OneOrMany::Many(many) => many.serialize(z),
        }
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// How a file is written. The main configuration is YAML; a route file is JSON when its name
/// ends in `.json` (big generated tables: an order of magnitude faster to read), else YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Yaml,
    Json,
}

ch_edge_wire::keywords!(Format {
    Yaml => "yaml",
    Json => "json",
});

impl Format {
    /// The format of a route file at `path`.
    pub fn of(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Parses `text`, written in `format`, as `T`; a problem names `file` and the line.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    format: Format,
    text: &str,
    file: &str,
) -> Result<T, Problem> {
    match format {
        Format::Yaml => parse_yaml(text, file),
        Format::Json => serde_json::from_str(text).map_err(|e| describe_json(&e, file)),
    }
}

fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, Problem> {
    serde_saphyr::from_str_with_options(text, yaml_options())
        .map_err(|e| describe_yaml(&e, text, file))
}

pub(super) fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // The default budget (250k nodes, 1M events) stops near 50k routes in
    // one file; allow about a million. Alias-bomb limits stay at their defaults.
    options.budget = serde_saphyr::budget! {
        max_nodes: 10_000_000,
        max_events: 20_000_000,
    };
    // A repeated key reaches the reader, which refuses it in our words: a route entry records
    // it and goes on (raw_route.rs), a section's derived reader stops with `duplicate field`
    // (worded by `describe_yaml`).
    options.duplicate_keys = serde_saphyr::options::DuplicateKeyPolicy::PassThrough;
    options
}
