//! Route entries: `sni`, `upstream`, `allow`, `proxy_protocol`, `balance`, `sticky`, `name`,
//! validated into
//! [`RouteSpec`]s, and specs written back as entries (`routes from-chi`).

use std::sync::Arc;

use ch_edge_wire::sni::normalize_pattern;
use serde_saphyr::{Location, Spanned};

use super::error::Problems;
use super::raw::{Keyword, OneOrMany, RawRoute, S};
use super::validate::cidrs;
use crate::model::allow::parse_net;
use crate::model::route::{RouteSpec, UpstreamAddr};

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
    let r = raw.value;
    let sni = items(r.sni.as_ref());
    let label = r
        .name
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

    if let Some(n) = &r.name {
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
    let upstream = items(r.upstream.as_ref());
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
    let allow = r.allow.as_ref().map(|a| {
        let items = a.iter().map(|s| (s.value.as_str(), s.referenced.line()));
        let before = errs.len();
        let nets = cidrs(items, file, &what("allow"), errs);
        for p in errs.since(before) {
            p.route = label.map(str::to_owned);
        }
        nets
    });

    if errs.len() != before {
        return None;
    }
    // A name that is its first pattern shares the pattern's string.
    let name = match (r.name, patterns.first()) {
        (Some(n), Some(p)) if *n.value == **p => p.clone(),
        (Some(n), _) => n.value.into(),
        (None, p) => p.cloned().unwrap_or_else(|| Arc::from("")),
    };
    Some(RouteSpec {
        name,
        sni: patterns.into(),
        upstreams: upstreams.into(),
        allow: allow.map(Arc::from),
        proxy_protocol: r.proxy_protocol.map(|k| k.0),
        balance: r.balance.map(|k| k.0),
        sticky: r.sticky,
        source: source.clone(),
    })
}

/// Whether reading `raw` gives `spec` again (same file): every field written as `spec` has
/// it, checked without allocating. What a reload of an edited file uses to keep the specs of
/// the entries it did not change.
pub(crate) fn written_as(raw: &RawRoute, spec: &RouteSpec) -> bool {
    let name = match &raw.name {
        Some(n) => n.value == *spec.name,
        None => spec.sni.first().is_some_and(|p| *p == spec.name),
    };
    let sni = items(raw.sni.as_ref())
        .map(|s| s.0)
        .eq(spec.sni.iter().map(|p| &**p));
    let upstream = {
        let mut written = items(raw.upstream.as_ref());
        spec.upstreams
            .iter()
            .all(|u| written.next().is_some_and(|(w, _)| u.is_written_as(w)))
            && written.next().is_none()
    };
    let allow = match (&raw.allow, &spec.allow) {
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
        && raw.proxy_protocol.map(|k| k.0) == spec.proxy_protocol
        && raw.balance.map(|k| k.0) == spec.balance
        && raw.sticky == spec.sticky
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

/// `spec` as a route file entry: what reading it back gives again.
pub(crate) fn entry(spec: &RouteSpec) -> S<RawRoute> {
    let list = |mut items: Vec<String>| {
        let value = match items.len() {
            1 => OneOrMany::One(items.remove(0)),
            _ => OneOrMany::Many(items.into_iter().map(unlocated).collect()),
        };
        unlocated(value)
    };
    unlocated(RawRoute {
        name: Some(unlocated(spec.name.to_string())),
        sni: Some(list(spec.sni.iter().map(|p| p.to_string()).collect())),
        upstream: Some(list(spec.upstreams.iter().map(|u| u.to_string()).collect())),
        allow: spec
            .allow
            .as_ref()
            .map(|nets| nets.iter().map(|n| unlocated(n.to_string())).collect()),
        proxy_protocol: spec.proxy_protocol.map(Keyword),
        balance: spec.balance.map(Keyword),
        sticky: spec.sticky,
    })
}

fn unlocated<T>(value: T) -> S<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}
