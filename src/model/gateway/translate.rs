//! Objects → routes and statuses (see the module documentation of [`super`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::model::route::TlsMode;

use super::backends;
use super::hostname::intersections;
use super::listeners::{self, From, Judged};
use super::objects::{Gateway, Objects, ParentRef, TlsRoute, GROUP, KIND_GATEWAY};
use super::specs::{annotations, emit};
use super::status::{
    reason, Condition, GatewayClassStatus, GatewayStatus, ObjectKey, RouteParentStatus,
    RouteStatus, Statuses, SUPPORTED_FEATURES,
};
use super::{supported_bundle_version, Settings, Translation, SUPPORTED_BUNDLE_VERSIONS};

/// What attaching a route reads besides the route and its Gateway.
struct Context<'a> {
    objects: &'a Objects,
    settings: &'a Settings<'a>,
}

/// A Gateway of one of our classes, its listeners judged.
struct OurGateway<'o> {
    gateway: &'o Gateway,
    listeners: Vec<Judged>,
}

/// Objects in, routes and statuses out.
pub fn translate(objects: &Objects, settings: &Settings<'_>) -> Translation {
    let mut statuses = Statuses::default();
    let mut classes: BTreeSet<&str> = BTreeSet::new();
    for c in &objects.gateway_classes {
        if c.spec.controller_name != settings.controller_name {
            continue;
        }
        let g = c.metadata.generation;
        let version = supported_version(objects.bundle_version.as_deref(), g);
        let accepted = c.spec.parameters_ref.is_none();
        let cond = if !accepted {
            Condition::new(
                reason::ACCEPTED,
                false,
                reason::INVALID_PARAMETERS,
                "parametersRef is not supported by this controller",
                g,
            )
        } else {
            classes.insert(&c.metadata.name);
            Condition::new(reason::ACCEPTED, true, reason::ACCEPTED, "", g)
        };
        statuses.gateway_classes.push((
            key("", &c.metadata.name),
            GatewayClassStatus {
                conditions: vec![cond, version],
                supported_features: if accepted { SUPPORTED_FEATURES } else { &[] },
            },
        ));
    }

    let mut gateways: BTreeMap<ObjectKey, OurGateway<'_>> = objects
        .gateways
        .iter()
        .filter(|g| classes.contains(g.spec.gateway_class_name.as_str()))
        .map(|g| {
            let k = key(g.metadata.ns(), &g.metadata.name);
            let listeners = listeners::judge(g, settings);
            (
                k,
                OurGateway {
                    gateway: g,
                    listeners,
                },
            )
        })
        .collect();

    // Oldest first: the spec gives conflicting hostnames to the oldest route.
    let mut routes: Vec<&TlsRoute> = objects.tls_routes.iter().collect();
    routes.sort_by(|a, b| {
        let created = |r: &TlsRoute| r.metadata.creation_timestamp.clone().unwrap_or_default();
        (created(a), a.metadata.ns(), &a.metadata.name).cmp(&(
            created(b),
            b.metadata.ns(),
            &b.metadata.name,
        ))
    });
    let mut claimed: HashMap<Arc<str>, ObjectKey> = HashMap::new();
    let mut specs = Vec::new();
    for route in routes {
        let rkey = key(route.metadata.ns(), &route.metadata.name);
        let resolved = backends::resolve(route, objects, settings.cluster_domain);
        let mut serve: Vec<(String, TlsMode)> = Vec::new();
        let mut parents = Vec::new();
        // The listeners this route is counted on (once each, whatever its parentRefs).
        let mut counted: HashSet<(ObjectKey, usize)> = HashSet::new();
        for pref in &route.spec.parent_refs {
            let group = pref.group.as_deref().unwrap_or(GROUP);
            let kind = pref.kind.as_deref().unwrap_or(KIND_GATEWAY);
            if group != GROUP || kind != KIND_GATEWAY {
                continue;
            }
            let gns = pref
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(route.metadata.ns());
            let gkey = key(gns, &pref.name);
            let Some(gw) = gateways.get_mut(&gkey) else {
                continue; // not a Gateway of ours: another controller's to report
            };
            let ctx = Context { objects, settings };
            let accepted = attach(route, pref, &gkey, gw, &mut counted, &ctx, &mut serve);
            parents.push(RouteParentStatus {
                parent_ref: pref.clone(),
                controller_name: settings.controller_name.to_owned(),
                conditions: vec![accepted, resolved.condition.clone()],
            });
        }
        if parents.is_empty() {
            continue;
        }
        let mut notes = Vec::new();
        match annotations(route) {
            Err(e) => {
                let msg = e.to_string();
                serve.clear();
                for p in &mut parents {
                    if let Some(c) = p.conditions.first_mut().filter(|c| c.is_true()) {
                        *c = Condition::new(
                            reason::ACCEPTED,
                            false,
                            reason::UNSUPPORTED_VALUE,
                            msg.clone(),
                            route.metadata.generation,
                        );
                    }
                }
            }
            Ok((allow, proxy_protocol)) if !resolved.upstreams.is_empty() => {
                let taken = emit(
                    &rkey,
                    &serve,
                    &resolved,
                    (allow, proxy_protocol),
                    &mut claimed,
                    &mut specs,
                );
                if !taken.is_empty() {
                    notes.push(format!(
                        "not served (claimed earlier): {}",
                        taken.join(", ")
                    ));
                }
                // The spec: weight 0 forwards nothing, so the route keeps its hostnames (no
                // other route catches them) and every connection is refused.
                if resolved.upstreams.iter().all(|u| u.weight == 0) {
                    notes.push("every backendRef has weight 0: connections are refused".into());
                }
            }
            Ok(_) => {}
        }
        if !notes.is_empty() {
            for p in &mut parents {
                if let Some(c) = p.conditions.first_mut().filter(|c| c.is_true()) {
                    c.message = notes.join("; ");
                }
            }
        }
        statuses.tls_routes.push((rkey, RouteStatus { parents }));
    }

    for (k, gw) in gateways {
        statuses.gateways.push((k, gateway_status(gw, settings)));
    }
    statuses.tls_routes.sort_by(|a, b| a.0.cmp(&b.0));
    Translation {
        routes: specs,
        statuses,
    }
}

/// Attaches `route` to the listeners of `gw` that `pref` selects and allow it; the hostnames it
/// serves go to `serve`. Returns the parent's `Accepted` condition.
fn attach(
    route: &TlsRoute,
    pref: &ParentRef,
    gkey: &ObjectKey,
    gw: &mut OurGateway<'_>,
    counted: &mut HashSet<(ObjectKey, usize)>,
    ctx: &Context<'_>,
    serve: &mut Vec<(String, TlsMode)>,
) -> Condition {
    let Context { objects, settings } = *ctx;
    let generation = route.metadata.generation;
    let no = |why, msg: String| Condition::new(reason::ACCEPTED, false, why, msg, generation);
    let selected: Vec<usize> = (0..gw.listeners.len())
        .filter(|&i| {
            let l = &gw.listeners[i];
            pref.section_name.as_deref().is_none_or(|s| s == l.name)
                && pref.port.is_none_or(|p| p == l.port)
        })
        .collect();
    if selected.is_empty() {
        return no(
            reason::NO_MATCHING_PARENT,
            format!("Gateway {gkey} has no listener{}", selection(pref)),
        );
    }
    let same_ns = gw.gateway.metadata.ns() == route.metadata.ns();
    let mut labels = None;
    let mut bad_selectors = Vec::new();
    let allowed: Vec<usize> = selected
        .into_iter()
        .filter(|&i| {
            let l = &gw.listeners[i];
            l.takes_tls_routes
                && match &l.from {
                    From::Same => same_ns,
                    From::All => true,
                    From::Selector(None) => {
                        bad_selectors.push(format!("{}: from Selector without a selector", l.name));
                        false
                    }
                    From::Selector(Some(selector)) => {
                        let labels = labels
                            .get_or_insert_with(|| objects.namespace_labels(route.metadata.ns()));
                        selector.matches(labels).unwrap_or_else(|e| {
                            bad_selectors.push(format!("{}: {e}", l.name));
                            false
                        })
                    }
                }
        })
        .collect();
    if allowed.is_empty() {
        let bad = if bad_selectors.is_empty() {
            String::new()
        } else {
            format!("; invalid selectors: {}", bad_selectors.join(", "))
        };
        return no(
            reason::NOT_ALLOWED_BY_LISTENERS,
            format!(
                "no listener of Gateway {gkey}{} allows TLSRoutes from namespace {} \
                 (allowedRoutes: protocol TLS, kind TLSRoute, namespaces Same, All or a \
                 Selector matching the namespace's labels){bad}",
                selection(pref),
                route.metadata.ns()
            ),
        );
    }
    let hostnames: Vec<String> = route
        .spec
        .hostnames
        .iter()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    // Attached: allowed and a hostname in common, whatever the listener's state (as the
    // conformance tests count, e.g. TLSRouteMixedTerminationSameNamespace).
    for &i in &allowed {
        let l = &mut gw.listeners[i];
        if !intersections(l.hostname.as_deref(), &hostnames).is_empty()
            && counted.insert((gkey.clone(), i))
        {
            l.status.attached_routes += 1;
        }
    }
    let usable: Vec<&Judged> = allowed
        .iter()
        .map(|&i| &gw.listeners[i])
        .filter(|l| l.unusable.is_none())
        .collect();
    if usable.is_empty() {
        let why: Vec<String> = allowed
            .iter()
            .filter_map(|&i| {
                let l = &gw.listeners[i];
                l.unusable.as_ref().map(|u| format!("{}: {u}", l.name))
            })
            .collect();
        return no(
            reason::NOT_ALLOWED_BY_LISTENERS,
            format!("no listener is programmed ({})", why.join("; ")),
        );
    }
    let mut no_certificate = Vec::new();
    let before = serve.len();
    for l in usable {
        for h in intersections(l.hostname.as_deref(), &hostnames) {
            if l.mode.terminates() && !(settings.has_certificate)(&h) {
                no_certificate.push(h);
            } else if !serve.iter().any(|(s, m)| *s == h && *m == l.mode) {
                serve.push((h, l.mode));
            }
        }
    }
    if serve.len() == before && !no_certificate.is_empty() {
        return no(
            reason::UNSUPPORTED_VALUE,
            format!(
                "Terminate listener: the proxy holds no certificate for {}",
                no_certificate.join(", ")
            ),
        );
    }
    if serve.len() == before && !serve.is_empty() {
        // Every hostname was already served through another parent: still accepted here.
    } else if serve.len() == before {
        return no(
            reason::NO_MATCHING_LISTENER_HOSTNAME,
            format!(
                "no hostname of the route intersects a listener hostname of Gateway {gkey}{}",
                selection(pref)
            ),
        );
    }
    Condition::new(reason::ACCEPTED, true, reason::ACCEPTED, "", generation)
}

/// The class's `SupportedVersion`: best effort (the spec's first option), so an unknown
/// version leaves `Accepted` as it is and says so here.
fn supported_version(bundle: Option<&str>, g: Option<i64>) -> Condition {
    let supported = SUPPORTED_BUNDLE_VERSIONS.join(", ");
    match bundle {
        Some(v) if supported_bundle_version(v) => Condition::new(
            reason::SUPPORTED_VERSION,
            true,
            reason::SUPPORTED_VERSION,
            format!("Gateway API {v}"),
            g,
        ),
        Some(v) => Condition::new(
            reason::SUPPORTED_VERSION,
            false,
            reason::UNSUPPORTED_VERSION,
            format!(
                "Gateway API CRDs {v}: this build knows {supported}; served as far as they agree"
            ),
            g,
        ),
        None => Condition::new(
            reason::SUPPORTED_VERSION,
            false,
            reason::UNSUPPORTED_VERSION,
            format!(
                "the TLSRoute CRD has no gateway.networking.k8s.io/bundle-version annotation \
                 (or cannot be read); this build knows {supported}"
            ),
            g,
        ),
    }
}

fn gateway_status(gw: OurGateway<'_>, settings: &Settings<'_>) -> GatewayStatus {
    let g = gw.gateway.metadata.generation;
    let total = gw.listeners.len();
    let not_accepted: Vec<&str> = gw
        .listeners
        .iter()
        .filter(|l| {
            !l.status
                .condition(reason::ACCEPTED)
                .is_some_and(Condition::is_true)
        })
        .map(|l| l.name.as_str())
        .collect();
    let programmed = gw.listeners.iter().filter(|l| l.unusable.is_none()).count();
    let accepted = if not_accepted.is_empty() {
        Condition::new(reason::ACCEPTED, true, reason::ACCEPTED, "", g)
    } else {
        Condition::new(
            reason::ACCEPTED,
            not_accepted.len() < total,
            reason::LISTENERS_NOT_VALID,
            format!("listeners not accepted: {}", not_accepted.join(", ")),
            g,
        )
    };
    let programmed = if programmed > 0 {
        Condition::new(reason::PROGRAMMED, true, reason::PROGRAMMED, "", g)
    } else {
        Condition::new(
            reason::PROGRAMMED,
            false,
            reason::INVALID,
            "no listener is programmed",
            g,
        )
    };
    GatewayStatus {
        addresses: (!settings.addresses.is_empty()).then(|| settings.addresses.to_vec()),
        conditions: vec![accepted, programmed],
        listeners: gw.listeners.into_iter().map(|l| l.status).collect(),
    }
}

/// ` named "x"` / ` on port 443` / both, for messages.
fn selection(pref: &ParentRef) -> String {
    let mut s = String::new();
    if let Some(n) = &pref.section_name {
        s.push_str(&format!(" named {n:?}"));
    }
    if let Some(p) = pref.port {
        s.push_str(&format!(" on port {p}"));
    }
    s
}

fn key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}
