//! Route entries: `sni`, `upstream`, `allow`, `proxy_protocol`, `balance`, `sticky`, `tls`,
//! `upstream_tls`, `alpn`, `name`, validated into
//! [`RouteSpec`]s (and compared with specs, `written_as`; the writing is `route_entry`).

use std::sync::Arc;

use ch_edge_wire::sni::{check_name, normalize_pattern};

use super::error::Problems;
use super::raw::{Keyword, OneOrMany, RawRoute, RawUpstreamTls, S};
use super::values::{cidrs, relative_to};
use crate::model::allow::parse_net;
use crate::model::route::tls::check_alpn;
use crate::model::route::{RoutePostgres, RouteSpec, RouteTls, TlsMode, UpstreamAddr, UpstreamTls};

/// Validates the routes of one file, numbered from 1 in messages; `source` is the file named
/// in problems and in each spec.
pub(crate) fn routes(
    raw: Vec<S<RawRoute>>,
    source: &Arc<str>,
    errs: &mut Problems,
) -> Vec<RouteSpec> {
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, r)| route(r, i + 1, source, errs))
        .collect()
}

/// Validates route number `index` (1-based) of `source`.
pub(crate) fn route(
    raw: S<RawRoute>,
    index: usize,
    source: &Arc<str>,
    errs: &mut Problems,
) -> Option<RouteSpec> {
    let file: &str = source;
    let at = raw.referenced.line();
    // Every field named: a new one does not compile until it is validated here.
    let RawRoute {
        name,
        sni,
        upstream,
        allow,
        proxy_protocol,
        balance,
        sticky,
        tls,
        upstream_tls,
        alpn,
        postgres_direct_ssl,
        postgres_port,
        key_problems,
    } = raw.value;
    let sni = items(sni.as_ref());
    let label = name
        .as_ref()
        .map(|n| n.value.as_str())
        .or(sni.clone().next().map(|s| s.0));
    // Formatted only for a problem: this runs for every one of 100k routes.
    let what = |field: &str| match label {
        Some(l) => format!("route {l:?} (#{index}): {field}"),
        None => format!("route #{index}: {field}"),
    };
    let add = |errs: &mut Problems, line: u64, field: &str, msg: String| {
        errs.add_in_route(label, file, line, &what(field), msg)
    };
    let before = errs.len();

    for p in &key_problems {
        add(errs, p.line, &p.key, p.message.clone());
    }
    if let Some(n) = &name {
        if n.value.is_empty() {
            add(errs, n.referenced.line(), "name", "empty".into());
        }
    }
    if sni.clone().next().is_none() {
        add(errs, at, "sni", "missing or empty".into());
    }
    let patterns: Vec<Arc<str>> = sni
        .filter_map(|(p, line)| match normalize_pattern(p) {
            Ok(n) => Some(Arc::from(&*n)),
            Err(e) => {
                add(errs, line, "sni", format!("invalid pattern {p:?}: {e}"));
                None
            }
        })
        .collect();
    let upstream = items(upstream.as_ref());
    if upstream.clone().next().is_none() {
        add(errs, at, "upstream", "missing or empty".into());
    }
    let upstreams: Vec<UpstreamAddr> = upstream
        .filter_map(|(u, line)| match u.parse::<UpstreamAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                add(
                    errs,
                    line,
                    "upstream",
                    format!("invalid upstream {u:?}: {e}"),
                );
                None
            }
        })
        .collect();
    let allow = allow.as_ref().map(|a| {
        let items = a.iter().map(|s| (s.value.as_str(), s.referenced.line()));
        let before = errs.len();
        let nets = cidrs(items, file, &what("allow"), errs);
        for p in errs.since(before) {
            p.route = label.map(str::to_owned);
        }
        nets
    });
    let add = &mut |errs: &mut Problems, line, field: &str, msg| add(errs, line, field, msg);
    let proxy_protocol = keyword(proxy_protocol.as_ref(), "proxy_protocol", add, errs);
    let balance = keyword(balance.as_ref(), "balance", add, errs);
    let tls = route_tls(
        (tls.as_ref(), upstream_tls.as_ref(), alpn.as_ref()),
        file,
        add,
        errs,
    );
    let postgres = route_postgres(postgres_direct_ssl, postgres_port, at, add, errs);

    if errs.len() != before {
        // In line order, whichever check found them.
        errs.since(before).sort_by_key(|p| p.line);
        return None;
    }
    // A name that is its first pattern shares the pattern's string.
    let name = match (name, patterns.first()) {
        (Some(n), Some(p)) if *n.value == **p => p.clone(),
        (Some(n), _) => n.value.into(),
        (None, p) => p.cloned().unwrap_or_else(|| Arc::from("")),
    };
    Some(RouteSpec {
        name,
        sni: patterns.into(),
        upstreams: upstreams.into(),
        allow: allow.map(Arc::from),
        proxy_protocol,
        balance,
        sticky,
        tls,
        postgres,
        source: source.clone(),
    })
}

/// Reports a problem of one route: (problems, line, field, message).
type AddProblem<'a> = dyn FnMut(&mut Problems, u64, &str, String) + 'a;

/// The value of keyword field `field`, if written and one of its words.
fn keyword<T: Copy>(
    raw: Option<&S<Keyword<T>>>,
    field: &str,
    add: &mut AddProblem<'_>,
    errs: &mut Problems,
) -> Option<T> {
    let raw = raw?;
    match &raw.value.0 {
        Ok(value) => Some(*value),
        Err(e) => {
            add(errs, raw.referenced.line(), field, e.clone());
            None
        }
    }
}

/// Whether keyword field `raw` is written as `spec`'s value (absent for none).
fn keyword_written_as<T: Copy + PartialEq>(raw: Option<&S<Keyword<T>>>, spec: Option<T>) -> bool {
    match raw {
        None => spec.is_none(),
        Some(k) => k.value.known().is_some_and(|k| Some(k) == spec),
    }
}

/// The route's `postgres_direct_ssl` and `postgres_port`, if either is written.
fn route_postgres(
    direct_ssl: Option<bool>,
    port: Option<u16>,
    at: u64,
    add: &mut AddProblem<'_>,
    errs: &mut Problems,
) -> Option<RoutePostgres> {
    if direct_ssl.is_none() && port.is_none() {
        return None;
    }
    Some(RoutePostgres {
        direct_ssl: direct_ssl.unwrap_or(false),
        port: match port {
            Some(0) => {
                add(errs, at, "postgres_port", "must be 1-65535".into());
                None
            }
            port => port,
        },
    })
}

/// Whether the written `postgres_direct_ssl` and `postgres_port` give `spec`'s.
fn postgres_written_as(
    direct_ssl: Option<bool>,
    port: Option<u16>,
    spec: Option<RoutePostgres>,
) -> bool {
    match spec {
        None => direct_ssl.is_none() && port.is_none(),
        Some(p) => {
            (direct_ssl.is_some() || port.is_some())
                && direct_ssl.unwrap_or(false) == p.direct_ssl
                && port == p.port
        }
    }
}

/// The route's `tls`, `upstream_tls` and `alpn`, if any is written.
fn route_tls(
    (mode, upstream_tls, alpn): WrittenTls<'_>,
    file: &str,
    add: &mut AddProblem<'_>,
    errs: &mut Problems,
) -> Option<Arc<RouteTls>> {
    if mode.is_none() && upstream_tls.is_none() && alpn.is_none() {
        return None;
    }
    let upstream = upstream_tls.map(|u| {
        let line = u.referenced.line();
        let RawUpstreamTls { ca, server_name } = &u.value;
        let server_name = server_name.as_ref().and_then(|n| {
            let name = n.value.trim_end_matches('.').to_ascii_lowercase();
            let ok = check_name(&name).is_ok() || name.parse::<std::net::IpAddr>().is_ok();
            if !ok {
                let msg = format!("invalid server_name {:?}", n.value);
                add(errs, n.referenced.line(), "upstream_tls", msg);
            }
            ok.then(|| Arc::from(name))
        });
        let ca = ca.as_ref().and_then(|ca| {
            if ca.value.is_empty() {
                add(errs, line, "upstream_tls.ca", "empty path".into());
            }
            (!ca.value.is_empty()).then(|| relative_to(file, &ca.value))
        });
        UpstreamTls { ca, server_name }
    });
    let alpn = alpn.map(|list| {
        let mut out: Vec<Arc<str>> = Vec::with_capacity(list.len());
        for p in list {
            match check_alpn(&p.value) {
                Ok(()) => out.push(p.value.as_str().into()),
                Err(e) => add(errs, p.referenced.line(), "alpn", e.to_string()),
            }
        }
        Arc::from(out)
    });
    let mode = keyword(mode, "tls", add, errs);
    Some(Arc::new(RouteTls {
        mode,
        upstream,
        alpn,
    }))
}

/// A route entry's TLS fields as written: `tls`, `upstream_tls`, `alpn`.
type WrittenTls<'a> = (
    Option<&'a S<Keyword<TlsMode>>>,
    Option<&'a S<RawUpstreamTls>>,
    Option<&'a Vec<S<String>>>,
);

/// Whether the written TLS fields give `spec`'s.
fn tls_written_as(
    (mode, upstream_tls, alpn): WrittenTls<'_>,
    file: &str,
    spec: Option<&RouteTls>,
) -> bool {
    let Some(RouteTls {
        mode: spec_mode,
        upstream: spec_upstream,
        alpn: spec_alpn,
    }) = spec
    else {
        return mode.is_none() && upstream_tls.is_none() && alpn.is_none();
    };
    let upstream = match (upstream_tls, spec_upstream) {
        (None, None) => true,
        (Some(w), Some(UpstreamTls { ca, server_name })) => {
            let RawUpstreamTls {
                ca: written_ca,
                server_name: written_name,
            } = &w.value;
            written_ca.as_ref().map(|c| relative_to(file, &c.value)) == *ca
                && written_name.as_ref().map(|n| n.value.as_str()) == server_name.as_deref()
        }
        _ => false,
    };
    let alpn = match (alpn, spec_alpn) {
        (None, None) => true,
        (Some(w), Some(a)) => w
            .iter()
            .map(|p| p.value.as_str())
            .eq(a.iter().map(|p| &**p)),
        _ => false,
    };
    keyword_written_as(mode, *spec_mode) && upstream && alpn
}

/// Whether reading `raw` gives `spec` again (same file): every field written as `spec` has
/// it, checked without allocating. What a reload of an edited file uses to keep the specs of
/// the entries it did not change.
pub(crate) fn written_as(raw: &RawRoute, spec: &RouteSpec) -> bool {
    // Every field of both named: a new one does not compile until it is compared here (else a
    // reload would keep a stale spec for an entry whose new field changed).
    let RawRoute {
        name,
        sni,
        upstream,
        allow,
        proxy_protocol,
        balance,
        sticky,
        tls,
        upstream_tls,
        alpn,
        postgres_direct_ssl,
        postgres_port,
        // Only an entry that validated has a spec to compare with.
        key_problems: _,
    } = raw;
    let RouteSpec {
        name: spec_name,
        sni: spec_sni,
        upstreams: spec_upstreams,
        allow: spec_allow,
        proxy_protocol: spec_proxy_protocol,
        balance: spec_balance,
        sticky: spec_sticky,
        tls: spec_tls,
        postgres: spec_postgres,
        source,
    } = spec;
    let name = match name {
        Some(n) => n.value == **spec_name,
        None => spec_sni.first().is_some_and(|p| p == spec_name),
    };
    let sni = items(sni.as_ref())
        .map(|s| s.0)
        .eq(spec_sni.iter().map(|p| &**p));
    let upstream = {
        let mut written = items(upstream.as_ref());
        spec_upstreams
            .iter()
            .all(|u| written.next().is_some_and(|(w, _)| u.is_written_as(w)))
            && written.next().is_none()
    };
    let allow = match (allow, spec_allow) {
        (None, None) => true,
        (Some(written), Some(nets)) => written
            .iter()
            .map(|w| parse_net(&w.value))
            .eq(nets.iter().map(|n| Some(*n))),
        _ => false,
    };
    name && sni
        && upstream
        && allow
        && keyword_written_as(proxy_protocol.as_ref(), *spec_proxy_protocol)
        && keyword_written_as(balance.as_ref(), *spec_balance)
        && sticky == spec_sticky
        && tls_written_as(
            (tls.as_ref(), upstream_tls.as_ref(), alpn.as_ref()),
            source,
            spec_tls.as_deref(),
        )
        && postgres_written_as(*postgres_direct_ssl, *postgres_port, *spec_postgres)
}

/// The line of the entry's SNI item that is `pattern` (normalised), else the entry's own.
pub(crate) fn sni_line(raw: &S<RawRoute>, pattern: &str) -> u64 {
    items(raw.value.sni.as_ref())
        .find(|(p, _)| normalize_pattern(p).is_ok_and(|n| *n == *pattern))
        .map_or(raw.referenced.line(), |(_, line)| line)
}

/// The first SNI pattern of an entry, as written.
pub(crate) fn first_sni(raw: &RawRoute) -> &str {
    items(raw.sni.as_ref()).next().map_or("", |s| s.0)
}

/// The items of a `string | [string]` field, each with its line (no list is built: this
/// runs for every route of a big file).
fn items(field: Option<&S<OneOrMany>>) -> Items<'_> {
    match field.map(|f| (&f.value, f.referenced.line())) {
        None => Items::One(None),
        Some((OneOrMany::One(one), line)) => Items::One(Some((one, line))),
        Some((OneOrMany::Many(many), _)) => Items::Many(many.iter()),
    }
}

#[derive(Clone)]
enum Items<'a> {
    One(Option<(&'a str, u64)>),
    Many(std::slice::Iter<'a, S<String>>),
}

impl<'a> Iterator for Items<'a> {
    type Item = (&'a str, u64);

    fn next(&mut self) -> Option<(&'a str, u64)> {
        match self {
            Items::One(one) => one.take(),
            Items::Many(many) => many.next().map(|s| (s.value.as_str(), s.referenced.line())),
        }
    }
}
