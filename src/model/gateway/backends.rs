//! A TLSRoute's `backendRefs` resolved to upstreams: Services only, in another namespace only
//! with a ReferenceGrant, existing (when Services are known), each with its `weight` (0: kept,
//! never chosen, so a route whose refs all weigh 0 still claims its hostnames and refuses).

use std::sync::Arc;

use ch_edge_wire::sni::check_name;

use crate::model::route::{UpstreamAddr, DEFAULT_WEIGHT, MAX_WEIGHT};

use super::objects::{BackendRef, Objects, TlsRoute, GROUP, KIND_SERVICE, KIND_TLS_ROUTE};
use super::status::{reason, Condition};

/// The upstreams of a route and its `ResolvedRefs` condition.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// With their weights; two refs to one Service and port are one upstream weighing both.
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
        match resolve_one(r, ns, objects, cluster_domain) {
            Ok(up) => match upstreams
                .iter_mut()
                .find(|u| u.host == up.host && u.port == up.port)
            {
                Some(same) => same.weight = same.weight.saturating_add(up.weight),
                None => upstreams.push(up),
            },
            Err(why) => {
                refusal.get_or_insert(why);
            }
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
    let ns = r
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(route_ns);
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
    // The CRD bounds it (0-1000000); a larger one from a lenient API server is clamped.
    let weight = r.weight.unwrap_or(DEFAULT_WEIGHT).min(MAX_WEIGHT);
    Ok(UpstreamAddr {
        host: Arc::from(host),
        port: Some(port),
        weight,
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
