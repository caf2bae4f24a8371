//! Route entries: `sni`, `upstream`, `allow`, `proxy_protocol`, `name`.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_saphyr::Location;

use super::raw::{OneOrMany, RawRoute, S};
use super::validate::{cidrs, Errors};
use super::{RouteSpec, UpstreamAddr};
use crate::route::{check_name, normalize_pattern};

/// Validates a file's routes; `source` is the file named in errors and specs.
pub(crate) fn routes(raw: Vec<S<RawRoute>>, source: &str, errs: &mut Errors) -> Vec<RouteSpec> {
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, r)| route(r, i + 1, source, errs))
        .collect()
}

fn route(raw: S<RawRoute>, index: usize, file: &str, errs: &mut Errors) -> Option<RouteSpec> {
    let at = raw.referenced;
    let r = raw.value;
    let first_sni = r.sni.as_ref().and_then(|s| match &s.value {
        OneOrMany::One(v) => Some(v.as_str()),
        OneOrMany::Many(v) => v.first().map(|x| x.value.as_str()),
    });
    let label = r.name.as_ref().map(|n| n.value.as_str()).or(first_sni);
    let what = match label {
        Some(l) => format!("route {l:?} (#{index})"),
        None => format!("route #{index}"),
    };
    let before = errs.len();

    if let Some(n) = &r.name {
        if n.value.is_empty() {
            errs.add(file, Some(&n.referenced), &format!("{what}: name"), "empty");
        }
    }
    let sni: Vec<String> = list(r.sni, &at, file, &what, "sni", errs)
        .into_iter()
        .filter_map(|(p, loc)| match normalize_pattern(&p) {
            Ok(n) => Some(n),
            Err(e) => {
                errs.add(
                    file,
                    Some(&loc),
                    &format!("{what}: sni"),
                    format!("invalid pattern {p:?}: {e}"),
                );
                None
            }
        })
        .collect();
    let upstreams: Vec<UpstreamAddr> = list(r.upstream, &at, file, &what, "upstream", errs)
        .into_iter()
        .filter_map(|(u, loc)| match parse_upstream(&u) {
            Ok(a) => Some(a),
            Err(e) => {
                errs.add(
                    file,
                    Some(&loc),
                    &format!("{what}: upstream"),
                    format!("invalid upstream {u:?}: {e}"),
                );
                None
            }
        })
        .collect();
    let allow = r
        .allow
        .map(|a| cidrs(&a, file, &format!("{what}: allow"), errs));

    if errs.len() != before {
        return None;
    }
    let name = match r.name {
        Some(n) => n.value,
        None => sni.first().cloned().unwrap_or_default(),
    };
    Some(RouteSpec {
        name,
        sni,
        upstreams,
        allow,
        proxy_protocol: r.proxy_protocol,
        source: file.to_owned(),
    })
}

/// A `string | [string]` field as located items; missing or empty is an error.
fn list(
    raw: Option<S<OneOrMany>>,
    route_at: &Location,
    file: &str,
    what: &str,
    field: &str,
    errs: &mut Errors,
) -> Vec<(String, Location)> {
    let items = match raw {
        None => Vec::new(),
        Some(s) => match s.value {
            OneOrMany::One(v) => vec![(v, s.referenced)],
            OneOrMany::Many(v) => v.into_iter().map(|x| (x.value, x.referenced)).collect(),
        },
    };
    if items.is_empty() {
        errs.add(
            file,
            Some(route_at),
            &format!("{what}: {field}"),
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
    } else if s.parse::<Ipv6Addr>().is_ok() {
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
        host: host.to_owned(),
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
