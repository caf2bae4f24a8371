//! A route's specs (one per TLS mode, each SNI name to the oldest route asking for it) and its
//! per-route settings from the annotations CHIs use.

use std::collections::HashMap;
use std::sync::Arc;

use ch_edge_wire::keyword::UnknownKeyword;
use ch_edge_wire::proxy_out::ProxyVersion;
use ch_edge_wire::sni::normalize_pattern;
use ipnet::IpNet;

use crate::model::annotations::AnnotationError;
use crate::model::chi::{parse_allow, ANNOTATION_ALLOW, ANNOTATION_PROXY_PROTOCOL};
use crate::model::route::{RouteSpec, RouteTls, TlsMode};

use super::backends::Resolved;
use super::objects::TlsRoute;
use super::status::ObjectKey;

/// Pushes the route's specs (one per TLS mode) and returns the hostnames it could not have:
/// claimed by an older route, or not valid SNI patterns.
pub(super) fn emit(
    rkey: &ObjectKey,
    serve: &[(String, TlsMode)],
    resolved: &Resolved,
    (allow, proxy_protocol): PerRoute,
    claimed: &mut HashMap<Arc<str>, ObjectKey>,
    specs: &mut Vec<RouteSpec>,
) -> Vec<String> {
    let mut taken = Vec::new();
    let source: Arc<str> = format!("tlsroute:{rkey}").into();
    let upstreams: Arc<[_]> = resolved.upstreams.clone().into();
    for mode in [TlsMode::Passthrough, TlsMode::Terminate] {
        let mut sni: Vec<Arc<str>> = Vec::new();
        for (h, _) in serve.iter().filter(|(_, m)| *m == mode) {
            let Ok(p) = normalize_pattern(h) else {
                taken.push(format!("{h} (not a valid SNI pattern)"));
                continue;
            };
            let p: Arc<str> = Arc::from(&*p);
            match claimed.get(&p) {
                Some(owner) if owner == rkey => {
                    taken.push(format!("{h} (also asked for in another TLS mode)"))
                }
                Some(owner) => taken.push(format!("{h} (by TLSRoute {owner})")),
                None => {
                    claimed.insert(p.clone(), rkey.clone());
                    sni.push(p);
                }
            }
        }
        if sni.is_empty() {
            continue;
        }
        let name = match mode {
            TlsMode::Passthrough => format!("tlsroute/{rkey}"),
            _ => format!("tlsroute/{rkey}/{mode}"),
        };
        specs.push(RouteSpec {
            name: name.into(),
            sni: sni.into(),
            upstreams: upstreams.clone(),
            allow: allow.clone(),
            proxy_protocol,
            balance: None,
            sticky: None,
            tls: Some(Arc::new(RouteTls {
                mode: Some(mode),
                ..RouteTls::default()
            })),
            postgres: None,
            source: source.clone(),
        });
    }
    taken
}

/// A route's allowlist and PROXY version (`None`: the defaults).
pub(super) type PerRoute = (Option<Arc<[IpNet]>>, Option<ProxyVersion>);

/// A TLSRoute annotation that cannot be used (the route is not accepted, with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteAnnotationError {
    #[error("annotation {key}: {0}", key = ANNOTATION_ALLOW)]
    Allow(AnnotationError),
    #[error("annotation {key}: {0}", key = ANNOTATION_PROXY_PROTOCOL)]
    ProxyProtocol(UnknownKeyword),
}

/// The route's allowlist and PROXY version from the annotations CHIs use.
pub(super) fn annotations(route: &TlsRoute) -> Result<PerRoute, RouteAnnotationError> {
    let a = &route.metadata.annotations;
    let allow = match a.get(ANNOTATION_ALLOW) {
        None => None,
        Some(v) => Some(parse_allow(v).map_err(RouteAnnotationError::Allow)?.into()),
    };
    let proxy_protocol = match a.get(ANNOTATION_PROXY_PROTOCOL) {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<ProxyVersion>()
                .map_err(RouteAnnotationError::ProxyProtocol)?,
        ),
    };
    Ok((allow, proxy_protocol))
}
