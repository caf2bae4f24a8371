//! Route entries: `sni`, `upstream`, `allow`, `proxy_protocol`, `name`.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::raw::{OneOrMany, RawRoute, S};
use super::validate::{cidrs, Errors};
use super::{ProxyVersion, RouteSpec, UpstreamAddr};
use crate::route::{check_name, normalize_pattern};

/// A string as written, with the line it is on (0: unknown). The fast path
/// borrows it from the file's text; serde-saphyr's values are owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lined<'a> {
    pub value: Cow<'a, str>,
    pub line: u64,
}

/// One route entry as parsed, from either parser (`serde-saphyr`, or the
/// fast path in `fast.rs`); `string | [string]` fields become lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteIn<'a> {
    /// Where the entry's mapping starts.
    pub line: u64,
    pub name: Option<Lined<'a>>,
    pub sni: Option<Vec<Lined<'a>>>,
    pub upstream: Option<Vec<Lined<'a>>>,
    pub allow: Option<Vec<Lined<'a>>>,
    pub proxy_protocol: Option<ProxyVersion>,
}

fn lined(s: S<String>) -> Lined<'static> {
    Lined {
        line: s.referenced.line(),
        value: Cow::Owned(s.value),
    }
}

fn one_or_many(s: S<OneOrMany>) -> Vec<Lined<'static>> {
    match s.value {
        OneOrMany::One(value) => vec![Lined {
            value: Cow::Owned(value),
            line: s.referenced.line(),
        }],
        OneOrMany::Many(v) => v.into_iter().map(lined).collect(),
    }
}

impl From<S<RawRoute>> for RouteIn<'static> {
    fn from(raw: S<RawRoute>) -> RouteIn<'static> {
        let r = raw.value;
        RouteIn {
            line: raw.referenced.line(),
            name: r.name.map(lined),
            sni: r.sni.map(one_or_many),
            upstream: r.upstream.map(one_or_many),
            allow: r.allow.map(|a| a.into_iter().map(lined).collect()),
            proxy_protocol: r.proxy_protocol,
        }
    }
}

/// Validates routes of a file, the first being its route number `first`
/// (1-based; messages name routes by number); `source` is the file named
/// in errors and specs.
pub(crate) fn routes(
    raw: Vec<RouteIn<'_>>,
    first: usize,
    source: &Arc<str>,
    errs: &mut Errors,
) -> Vec<RouteSpec> {
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, r)| route(r, first + i, source, errs))
        .collect()
}

/// Validates route number `index` (1-based) of `source`.
pub(crate) fn route(
    r: RouteIn<'_>,
    index: usize,
    source: &Arc<str>,
    errs: &mut Errors,
) -> Option<RouteSpec> {
    let file: &str = source;
    let at = r.line;
    let first_sni = r.sni.as_ref().and_then(|s| s.first().map(|x| &*x.value));
    let label = r.name.as_ref().map(|n| &*n.value).or(first_sni);
    // Formatted only for an error: this runs for every one of 100k routes.
    let what = || match label {
        Some(l) => format!("route {l:?} (#{index})"),
        None => format!("route #{index}"),
    };
    let before = errs.len();

    if let Some(n) = &r.name {
        if n.value.is_empty() {
            errs.add_line(file, n.line, &format!("{}: name", what()), "empty");
        }
    }
    let sni: Vec<Arc<str>> = list(r.sni.as_deref(), at, file, &what, "sni", errs)
        .iter()
        .filter_map(|Lined { value: p, line }| match normalize_pattern(p) {
            Ok(n) => Some(Arc::from(&*n)),
            Err(e) => {
                errs.add_line(
                    file,
                    *line,
                    &format!("{}: sni", what()),
                    format!("invalid pattern {p:?}: {e}"),
                );
                None
            }
        })
        .collect();
    let upstreams: Vec<UpstreamAddr> =
        list(r.upstream.as_deref(), at, file, &what, "upstream", errs)
            .iter()
            .filter_map(|Lined { value: u, line }| match parse_upstream(u) {
                Ok(a) => Some(a),
                Err(e) => {
                    errs.add_line(
                        file,
                        *line,
                        &format!("{}: upstream", what()),
                        format!("invalid upstream {u:?}: {e}"),
                    );
                    None
                }
            })
            .collect();
    let allow = r.allow.as_ref().map(|a| {
        let items = a.iter().map(|l| (&*l.value, l.line));
        cidrs(items, file, &format!("{}: allow", what()), errs)
    });

    if errs.len() != before {
        return None;
    }
    // A name that is its first pattern shares the pattern's string.
    let name = match (r.name, sni.first()) {
        (Some(n), Some(p)) if *n.value == **p => p.clone(),
        (Some(n), _) => n.value.into(),
        (None, p) => p.cloned().unwrap_or_else(|| Arc::from("")),
    };
    Some(RouteSpec {
        name,
        sni,
        upstreams,
        allow,
        proxy_protocol: r.proxy_protocol,
        source: source.clone(),
    })
}

/// A `string | [string]` field; missing or empty is an error.
fn list<'a, 't>(
    raw: Option<&'a [Lined<'t>]>,
    route_at: u64,
    file: &str,
    what: &dyn Fn() -> String,
    field: &str,
    errs: &mut Errors,
) -> &'a [Lined<'t>] {
    let items = raw.unwrap_or_default();
    if items.is_empty() {
        errs.add_line(
            file,
            route_at,
            &format!("{}: {field}", what()),
            "missing or empty",
        );
    }
    items
}

/// `host`, `host:port`, `1.2.3.4:9440`, `[::1]:9440`, `[::1]` or `::1`.
pub(crate) fn parse_upstream(s: &str) -> Result<UpstreamAddr, String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or("missing ']'")?;
        ip.parse::<Ipv6Addr>()
            .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("expected ':port' after ']'")?),
        };
        (ip, port)
    } else if s.bytes().filter(|&b| b == b':').count() >= 2 && s.parse::<Ipv6Addr>().is_ok() {
        (s, None)
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err("write an IPv6 address with a port as [addr]:port".into())
            }
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if !host.contains(':') {
        check_host(host)?;
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("invalid port {p:?} (1-65535)")),
        },
    };
    Ok(UpstreamAddr {
        host: host.into(),
        port,
    })
}

/// A DNS name (one trailing dot allowed) or an IPv4 literal.
fn check_host(host: &str) -> Result<(), String> {
    let name = host.strip_suffix('.').unwrap_or(host);
    check_name(name).map_err(|e| format!("host {host:?}: {e}"))?;
    // A name whose last label is numeric can only be an IPv4 address.
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.bytes().all(|b| b.is_ascii_digit()) && name.parse::<Ipv4Addr>().is_err() {
        return Err(format!("{host:?} is not a valid IPv4 address"));
    }
    Ok(())
}
