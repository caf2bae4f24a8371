//! Route entries: `sni`, `upstream`, `allow`, `proxy_protocol`, `name`, validated into
//! [`RouteSpec`]s, and specs written back as entries (`routes from-chi`).

use std::sync::Arc;

use ch_edge_wire::sni::normalize_pattern;
use serde_saphyr::{Location, Spanned};

use super::error::Problems;
use super::raw::{Keyword, OneOrMany, RawRoute, S};
use super::validate::cidrs;
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
fn route(
    raw: S<RawRoute>,
    index: usize,
    source: &Arc<str>,
    errs: &mut Problems,
) -> Option<RouteSpec> {
    let file: &str = source;
    let at = raw.referenced.line();
    let r = raw.value;
    let sni = r.sni.map(one_or_many).unwrap_or_default();
    let label = r
        .name
        .as_ref()
        .map(|n| n.value.as_str())
        .or(sni.first().map(|s| s.value.as_str()));
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
    if sni.is_empty() {
        add(errs, at, "sni", "missing or empty".into());
    }
    let patterns: Vec<Arc<str>> = sni
        .iter()
        .filter_map(|p| match normalize_pattern(&p.value) {
            Ok(n) => Some(Arc::from(&*n)),
            Err(e) => {
                let msg = format!("invalid pattern {:?}: {e}", p.value);
                add(errs, p.referenced.line(), "sni", msg);
                None
            }
        })
        .collect();
    let upstream = r.upstream.map(one_or_many).unwrap_or_default();
    if upstream.is_empty() {
        add(errs, at, "upstream", "missing or empty".into());
    }
    let upstreams: Vec<UpstreamAddr> = upstream
        .iter()
        .filter_map(|u| match u.value.parse::<UpstreamAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                let msg = format!("invalid upstream {:?}: {e}", u.value);
                add(errs, u.referenced.line(), "upstream", msg);
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
        sni: patterns,
        upstreams,
        allow,
        proxy_protocol: r.proxy_protocol.map(|k| k.0),
        source: source.clone(),
    })
}

/// `string | [string]` as a list, each item located.
fn one_or_many(s: S<OneOrMany>) -> Vec<S<String>> {
    match s.value {
        OneOrMany::One(value) => vec![Spanned::new(value, s.referenced, s.defined)],
        OneOrMany::Many(items) => items,
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
    })
}

fn unlocated<T>(value: T) -> S<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}
