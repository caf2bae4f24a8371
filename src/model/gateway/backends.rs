//! A TLSRoute's `backendRefs` resolved to upstreams: Services only, in another namespace only
//! with a ReferenceGrant, existing (when Services are known), each with its `weight` (0: kept,
//! never chosen, so a route whose refs all weigh 0 still claims its hostnames and refuses).
//!
//! An invalid ref is kept as a refusal placeholder with its weight: the spec wants the
//! connections that would have gone to it refused, while the valid refs keep their share.

use std::sync::Arc;

use ch_edge_wire::sni::check_name;

use crate::model::route::{UpstreamAddr, DEFAULT_WEIGHT, MAX_WEIGHT};

use super::objects::{BackendRef, Objects, TlsRoute, GROUP, KIND_SERVICE, KIND_TLS_ROUTE};
use super::status::{reason, Condition};

/// The upstreams of a route and its `ResolvedRefs` condition.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// With their weights; two refs to one Service and port are one upstream weighing both.
    /// Invalid refs are refusal placeholders ([`UpstreamAddr::refused`]).
    pub upstreams: Vec<UpstreamAddr>,
    pub condition: Condition,
}

/// Resolves every backendRef of every rule; the first refused ref gives the condition's
/// reason (the others still count: a route keeps its valid backends).
pub fn resolve(route: &TlsRoute, objects: &Objects, cluster_domain: &str) -> Resolved {
    let ns = route.metadata.ns();
    let generation = route.metadata.generation;
    let mut upstreams: Vec<UpstreamAddr> = Vec::new();
    let mut refusal: Option<(&'static str, String)> = None;
    for r in route.spec.rules.iter().flat_map(|r| &r.backend_refs) {
        let up = match resolve_one(r, ns, objects, cluster_domain) {
            Ok(up) => up,
            Err(why) => {
                let up = placeholder(r, ns, why.0);
                refusal.get_or_insert(why);
                up
            }
        };
        match upstreams
            .iter_mut()
            .find(|u| u.host == up.host && u.port == up.port && u.refused == up.refused)
        {
            Some(same) => same.weight = same.weight.saturating_add(up.weight),
            None => upstreams.push(up),
        }
    }
    let condition = match refusal {
        None => Condition::new(
            reason::RESOLVED_REFS,
            true,
            reason::RESOLVED_REFS,
            "",
            generation,
        ),
        Some((why, msg)) => Condition::new(reason::RESOLVED_REFS, false, why, msg, generation),
    };
    Resolved {
        upstreams,
        condition,
    }
}

/// The access log's detail for a connection refused for an invalid ref, per reason.
pub fn refusal_detail(reason: &str) -> &'static str {
    match reason {
        reason::INVALID_KIND => "invalid backendRef: not a Service",
        reason::REF_NOT_PERMITTED => "invalid backendRef: no ReferenceGrant",
        _ => "invalid backendRef: Service not found",
    }
}

/// Invalid ref `r` as an upstream that refuses its share: named `<kind>/<ns>/<name>` (its
/// identity for sticky hashing and in `/routes`), weighing what it asks.
fn placeholder(r: &BackendRef, route_ns: &str, reason: &'static str) -> UpstreamAddr {
    let kind = r.kind.as_deref().unwrap_or(KIND_SERVICE);
    UpstreamAddr {
        host: Arc::from(format!("{kind}/{}/{}", ref_ns(r, route_ns), r.name)),
        port: r.port.filter(|&p| p > 0),
        weight: weight(r),
        refused: Some(refusal_detail(reason)),
    }
}

/// The namespace `r` points into (the route's unless written).
fn ref_ns<'a>(r: &'a BackendRef, route_ns: &'a str) -> &'a str {
    r.namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(route_ns)
}

/// The CRD bounds it (0-1000000); a larger one from a lenient API server is clamped.
fn weight(r: &BackendRef) -> u32 {
    r.weight.unwrap_or(DEFAULT_WEIGHT).min(MAX_WEIGHT)
}

fn resolve_one(
    r: &BackendRef,
    route_ns: &str,
    objects: &Objects,
    cluster_domain: &str,
) -> Result<UpstreamAddr, (&'static str, String)> {
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or(KIND_SERVICE);
    if !group.is_empty() || kind != KIND_SERVICE {
        return Err((
            reason::INVALID_KIND,
            format!(
                "backendRef {:?}: kind {kind:?} of group {group:?} is not a Service",
                r.name
            ),
        ));
    }
    let ns = ref_ns(r, route_ns);
    if ns != route_ns && !granted(objects, route_ns, ns, &r.name) {
        return Err((
            reason::REF_NOT_PERMITTED,
            format!(
                "backendRef to Service {ns}/{}: no ReferenceGrant in {ns} allows TLSRoutes of {route_ns}",
                r.name
            ),
        ));
    }
    if let Some(services) = &objects.services {
        let found = services
            .iter()
            .any(|s| s.metadata.ns() == ns && s.metadata.name == r.name);
        if !found {
            return Err((
                reason::BACKEND_NOT_FOUND,
                format!("Service {ns}/{} not found", r.name),
            ));
        }
    }
    let Some(port) = r.port.filter(|&p| p > 0) else {
        return Err((
            reason::BACKEND_NOT_FOUND,
            format!("backendRef to Service {ns}/{} has no port", r.name),
        ));
    };
    let host = format!("{}.{ns}.svc.{cluster_domain}", r.name);
    if let Err(e) = check_name(&host) {
        return Err((
            reason::BACKEND_NOT_FOUND,
            format!("Service {ns}/{}: {host:?} is not a DNS name: {e}", r.name),
        ));
    }
    Ok(UpstreamAddr {
        host: Arc::from(host),
        port: Some(port),
        weight: weight(r),
        refused: None,
    })
}

/// Whether a ReferenceGrant in `to_ns` lets TLSRoutes of `from_ns` refer to Service `name`.
fn granted(objects: &Objects, from_ns: &str, to_ns: &str, name: &str) -> bool {
    objects
        .reference_grants
        .iter()
        .filter(|g| g.metadata.ns() == to_ns)
        .any(|g| {
            g.spec
                .from
                .iter()
                .any(|f| f.group == GROUP && f.kind == KIND_TLS_ROUTE && f.namespace == from_ns)
                && g.spec.to.iter().any(|t| {
                    t.group.is_empty()
                        && t.kind == KIND_SERVICE
                        && t.name.as_deref().is_none_or(|n| n.is_empty() || n == name)
                })
        })
}
