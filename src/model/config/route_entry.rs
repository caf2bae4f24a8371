//! A route spec written back as a route file entry (`routes from-chi`, `from-manifests`):
//! the direction opposite to [`super::routes`], which reads it (and checks, in `written_as`,
//! that an entry still gives its spec).

use serde_saphyr::{Location, Spanned};

use super::raw::{Keyword, OneOrMany, RawRoute, RawUpstreamTls, S};
use crate::model::route::{RoutePostgres, RouteSpec, RouteTls, UpstreamTls};

/// `spec` as a route file entry: what reading it back gives again.
pub(crate) fn entry(spec: &RouteSpec) -> S<RawRoute> {
    // Every field named: a new one does not compile until it is written out here.
    let RouteSpec {
        name,
        sni,
        upstreams,
        allow,
        proxy_protocol,
        balance,
        sticky,
        tls,
        postgres,
        // Where the spec came from is not part of the entry: the file it is written to is.
        source: _,
    } = spec;
    let list = |mut items: Vec<String>| {
        let value = match items.len() {
            1 => OneOrMany::One(items.remove(0)),
            _ => OneOrMany::Many(items.into_iter().map(unlocated).collect()),
        };
        unlocated(value)
    };
    let (mode, upstream_tls, alpn) = match tls.as_deref() {
        Some(RouteTls {
            mode,
            upstream,
            alpn,
        }) => (*mode, upstream.as_ref(), alpn.as_ref()),
        None => (None, None, None),
    };
    // `postgres_direct_ssl` written when true, or when it is all there is (`false` alone), so
    // the entry reads back as the same `Some`.
    let (direct, postgres_port) = match *postgres {
        Some(RoutePostgres { direct_ssl, port }) => {
            ((direct_ssl || port.is_none()).then_some(direct_ssl), port)
        }
        None => (None, None),
    };
    unlocated(RawRoute {
        name: Some(unlocated(name.to_string())),
        sni: Some(list(sni.iter().map(|p| p.to_string()).collect())),
        upstream: Some(list(upstreams.iter().map(|u| u.to_string()).collect())),
        allow: allow
            .as_ref()
            .map(|nets| nets.iter().map(|n| unlocated(n.to_string())).collect()),
        proxy_protocol: proxy_protocol.map(|k| unlocated(Keyword::of(k))),
        balance: balance.map(|k| unlocated(Keyword::of(k))),
        sticky: *sticky,
        tls: mode.map(|k| unlocated(Keyword::of(k))),
        upstream_tls: upstream_tls.map(|UpstreamTls { ca, server_name }| {
            unlocated(RawUpstreamTls {
                ca: ca.as_ref().map(|p| unlocated(p.display().to_string())),
                server_name: server_name.as_ref().map(|n| unlocated(n.to_string())),
            })
        }),
        alpn: alpn.map(|a| a.iter().map(|p| unlocated(p.to_string())).collect()),
        postgres_direct_ssl: direct,
        postgres_port,
        key_problems: Vec::new(),
    })
}

fn unlocated<T>(value: T) -> S<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}
