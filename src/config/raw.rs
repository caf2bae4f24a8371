//! The YAML schema as written: every section refuses unknown keys, and values
//! that need checking keep their source location ([`Spanned`]) so validation
//! errors can point at a line.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{AccessLogFormat, ProxyInMode, ProxyVersion};

pub(crate) type S<T> = Spanned<T>;

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
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub access: Option<AccessLogFormat>,
    pub sample: Option<S<f64>>,
    pub level: Option<S<String>>,
}

/// An included route file: exactly `routes: [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoutesFile {
    #[serde(deserialize_with = "nullable")]
    pub routes: Vec<S<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub name: Option<S<String>>,
    pub address: Option<S<String>>,
    pub upstream_port: Option<S<u16>>,
    #[serde(default, deserialize_with = "nullable")]
    pub proxy_protocol: Option<RawProxyIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxyIn {
    #[serde(default, deserialize_with = "nullable")]
    pub mode: Option<S<ProxyInMode>>,
    #[serde(default, deserialize_with = "nullable")]
    pub trusted: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub address: Option<S<String>>,
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
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaults {
    pub allow: Option<Vec<S<String>>>,
    pub proxy_protocol: Option<ProxyVersion>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: Option<S<String>>,
    pub sni: Option<S<OneOrMany>>,
    pub upstream: Option<S<OneOrMany>>,
    pub allow: Option<Vec<S<String>>>,
    pub proxy_protocol: Option<ProxyVersion>,
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

/// Case-insensitive keyword enums. YAML 1.1 reads a plain `off` as the
/// boolean `false`; serde-saphyr hands a typed field the text `off`, but a
/// deserializer that has already made it a boolean `false` gets `Off` too.
macro_rules! keyword_enum {
    ($ty:ty, $expect:literal, { $($word:literal => $val:expr),+ $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expect)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        $(if v.eq_ignore_ascii_case($word) { return Ok($val); })+
                        Err(E::invalid_value(de::Unexpected::Str(v), &self))
                    }
                    fn visit_bool<E: de::Error>(self, v: bool) -> Result<$ty, E> {
                        if v {
                            Err(E::invalid_value(de::Unexpected::Bool(v), &self))
                        } else {
                            self.visit_str("off")
                        }
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

keyword_enum!(ProxyInMode, "one of off, optional, required", {
    "off" => ProxyInMode::Off,
    "optional" => ProxyInMode::Optional,
    "required" => ProxyInMode::Required,
});

keyword_enum!(ProxyVersion, "one of off, v1, v2", {
    "off" => ProxyVersion::Off,
    "v1" => ProxyVersion::V1,
    "v2" => ProxyVersion::V2,
});

keyword_enum!(AccessLogFormat, "one of json, text, off", {
    "json" => AccessLogFormat::Json,
    "text" => AccessLogFormat::Text,
    "off" => AccessLogFormat::Off,
});

/// Parses `text` as `T`; errors read `file:line: message`.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, String> {
    let mut options = serde_saphyr::Options::default();
    // The default budget (250k nodes, 1M events) stops near 50k routes in
    // one file; allow about a million. Alias-bomb limits stay at their defaults.
    options.budget = serde_saphyr::budget! {
        max_nodes: 10_000_000,
        max_events: 20_000_000,
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| describe(&e, file))
}

fn describe(e: &serde_saphyr::Error, file: &str) -> String {
    let msg = e.render_with_options(serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    });
    // The renderer appends " at line L, column C"; move the line next to the file.
    let located = e.location().filter(|l| l.line() > 0).and_then(|l| {
        let suffix = format!(" at line {}, column {}", l.line(), l.column());
        msg.strip_suffix(suffix.as_str())
            .map(|m| format!("{file}:{}: {m}", l.line()))
    });
    let mut out = located.unwrap_or_else(|| format!("{file}: {msg}"));
    // A plain `*` starts a YAML alias: the parser's complaint names aliases or anchors.
    if msg.contains("alias") || msg.contains("anchor") {
        out.push_str(" (hint: quote values that start with '*', e.g. sni: \"*.ch.example.com\")");
    }
    out
}
