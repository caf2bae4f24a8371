//! Routes derived from ClickHouseInstallations (CHIs) of the Altinity operator:
//! the `routes from-chi` command and Kubernetes discovery share this.
//!
//! Per CHI `<chi>` in namespace `<ns>`, domain `D` (DESIGN.md, "Derived from CHI"):
//! `<chi>.D` → the CHI service, `<chi>-<cluster>.D` → every host service of the
//! cluster, `<chi>-<cluster>-shard-<shard>.D` → every host service of the shard (clusters of
//! two or more shards), `chi-<chi>-<cluster>-<host>.D` → that host's service. The host names
//! are the operator's Services; the CHI, cluster and shard names are this proxy's convention.

mod error;
pub mod layout;
pub mod naming;

use std::sync::Arc;

use ch_edge_wire::sni::{check_name, normalize_pattern};
use serde_json::Value;

use crate::model::annotations::{self, RouteAnnotations};
use crate::model::manifests;
use crate::model::route::{RouteSpec, UpstreamAddr};

pub use crate::model::annotations::parse_allow;
pub use error::{ChiError, ChiProblem};
pub use layout::LayoutError;

pub const API_VERSION: &str = "clickhouse.altinity.com/v1";
pub const KIND: &str = "ClickHouseInstallation";
/// CHI annotation: comma-separated client CIDRs for all the CHI's routes.
pub const ANNOTATION_ALLOW: &str = annotations::ALLOW;
/// CHI annotation: `off`, `v1` or `v2`, the PROXY header sent to its upstreams.
pub const ANNOTATION_PROXY_PROTOCOL: &str = annotations::PROXY_PROTOCOL;
/// CHI annotation: `passthrough`, `terminate` or `reencrypt`, what its routes do with TLS.
/// `terminate` reaches the upstreams on the listener's `upstream_port_plain` (9000, 8123).
pub const ANNOTATION_TLS: &str = annotations::TLS;

/// Routes for every CHI in `text` (YAML, `---`-separated documents, `kind: List`
/// accepted); other kinds are ignored. `default_namespace` applies to CHIs
/// without `metadata.namespace`.
pub fn routes_from_manifests(
    text: &str,
    default_namespace: &str,
    domain: &str,
) -> Result<Vec<RouteSpec>, ChiError> {
    let mut routes = Vec::new();
    for item in manifests::objects(text)?.iter().filter(|v| is_chi(v)) {
        routes.extend(routes_for_chi(item, default_namespace, domain)?);
    }
    Ok(routes)
}

/// Whether `v` is a ClickHouseInstallation (`clickhouse.altinity.com/v1`).
pub fn is_chi(v: &Value) -> bool {
    manifests::is_kind(v, API_VERSION, KIND)
}

/// The routes of one CHI object: the CHI route; per cluster, its route, one per shard (if it
/// has two or more) and one per host.
/// Errors name the CHI.
pub fn routes_for_chi(
    chi: &Value,
    default_namespace: &str,
    domain: &str,
) -> Result<Vec<RouteSpec>, ChiError> {
    let name = str_at(chi, &["metadata", "name"])
        .ok()
        .flatten()
        .filter(|n| !n.is_empty())
        .ok_or(ChiError::NoName)?;
    let ns = match str_at(chi, &["metadata", "namespace"]) {
        Ok(Some(ns)) if !ns.is_empty() => ns,
        _ => default_namespace,
    };
    derive(chi, name, ns, domain).map_err(|problem| ChiError::Invalid {
        chi: format!("{ns}/{name}"),
        problem,
    })
}

fn derive(chi: &Value, name: &str, ns: &str, domain: &str) -> Result<Vec<RouteSpec>, ChiProblem> {
    let annotations = RouteAnnotations::read(chi)?;
    let tls = annotations.route_tls();
    let postgres = annotations.route_postgres(postgres_port(chi)?);
    let RouteAnnotations {
        allow,
        proxy_protocol,
        ..
    } = annotations;
    let domain_pattern = str_at(chi, &["spec", "namespaceDomainPattern"])?;
    let fqdn = |svc: &str| naming::fqdn(svc, ns, domain_pattern);
    let source: Arc<str> = format!("chi:{ns}/{name}").into();
    let chi_part = naming::chi_part(name);
    let route = |route_name: String, sni: String, upstreams: Vec<String>| {
        let sni = match normalize_pattern(&sni) {
            Ok(sni) => sni,
            Err(error) => return Err(ChiProblem::DerivedSni { sni, error }),
        };
        let upstreams = upstreams
            .into_iter()
            .map(|host| match check_name(&host) {
                Ok(()) => Ok(UpstreamAddr::new(host, None)),
                Err(error) => Err(ChiProblem::DerivedServiceName { host, error }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, ChiProblem>(RouteSpec {
            name: route_name.into(),
            sni: Arc::from([Arc::from(sni)]),
            upstreams: upstreams.into(),
            allow: allow.clone(),
            proxy_protocol,
            balance: None,
            sticky: None,
            tls: tls.clone(),
            postgres,
            source: source.clone(),
        })
    };

    let chi_service = match service_template_generate_name(chi)? {
        Some(pattern) => naming::expand_chi_macros(pattern, name, ns),
        None => naming::chi_service(name),
    };
    let mut routes = vec![route(
        format!("{ns}/{name}"),
        format!("{chi_part}.{domain}"),
        vec![fqdn(&chi_service)],
    )?];

    let defaults_template = str_at(
        chi,
        &["spec", "defaults", "templates", "replicaServiceTemplate"],
    )?;
    for (cluster_index, (cluster, cluster_obj)) in clusters(chi)?.into_iter().enumerate() {
        let hosts = layout::hosts(cluster_obj.and_then(|c| c.get("layout"))).map_err(|error| {
            ChiProblem::Cluster {
                cluster: cluster.to_owned(),
                error,
            }
        })?;
        let cluster_template = layout::replica_service_template(cluster_obj)?;
        let mut cluster_upstreams = Vec::with_capacity(hosts.len());
        let mut host_routes = Vec::with_capacity(hosts.len());
        // Per shard in order: its index, name and hosts' upstreams.
        let mut shards: Vec<(usize, &str, Vec<String>)> = Vec::new();
        for host in &hosts {
            let template = host
                .service_template
                .as_deref()
                .or(cluster_template)
                .or(defaults_template);
            let generate_name = match template {
                Some(t) => generate_name(chi, t)?,
                None => None,
            };
            let svc = match generate_name {
                Some(pattern) => naming::expand_host_macros(
                    pattern,
                    &naming::HostMacros {
                        chi: name,
                        namespace: ns,
                        cluster,
                        cluster_index,
                        shard: &host.shard,
                        shard_index: host.shard_index,
                        replica: &host.replica,
                        replica_index: host.replica_index,
                        host: &host.name,
                    },
                ),
                None => naming::host_service(name, cluster, &host.name),
            };
            cluster_upstreams.push(fqdn(&svc));
            match shards.last_mut() {
                Some((i, _, upstreams)) if *i == host.shard_index => upstreams.push(fqdn(&svc)),
                _ => shards.push((host.shard_index, &host.shard, vec![fqdn(&svc)])),
            }
            host_routes.push(route(
                format!("{ns}/{name}/{cluster}/{}", host.name),
                format!("{svc}.{domain}"),
                vec![fqdn(&svc)],
            )?);
        }
        routes.push(route(
            format!("{ns}/{name}/{cluster}"),
            format!("{chi_part}-{}.{domain}", naming::short_part(cluster)),
            cluster_upstreams,
        )?);
        // A shard's route balances over its host services, like the cluster route, not over
        // the shard Service (which the operator creates only with a shardServiceTemplate, from
        // a template this cannot check): the proxy's balancing and passive health then see
        // each host. One shard: the cluster route already is that route.
        if shards.len() > 1 {
            for (_, shard, upstreams) in shards {
                let label = naming::shard_label(name, cluster, shard);
                // Longer than a DNS label: left out (its hosts keep their routes), rather
                // than refusing a CHI the operator runs.
                if label.len() <= naming::MAX_LABEL {
                    routes.push(route(
                        format!("{ns}/{name}/{cluster}/shards/{shard}"),
                        format!("{label}.{domain}"),
                        upstreams,
                    )?);
                }
            }
        }
        routes.extend(host_routes);
    }
    Ok(routes)
}

/// `(name, cluster object)` of each cluster; no clusters → the operator's default
/// cluster `cluster` (1 shard × 1 replica).
fn clusters(chi: &Value) -> Result<Vec<(&str, Option<&Value>)>, ChiProblem> {
    let list = match at(chi, &["spec", "configuration", "clusters"]) {
        None | Some(Value::Null) => return Ok(vec![("cluster", None)]),
        Some(Value::Array(a)) if a.is_empty() => return Ok(vec![("cluster", None)]),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ChiProblem::ClustersNotAList),
    };
    list.iter()
        .enumerate()
        .map(|(i, c)| match str_at(c, &["name"]) {
            Ok(Some(n)) if !n.is_empty() => Ok((n, Some(c))),
            _ => Err(ChiProblem::UnnamedCluster { number: i + 1 }),
        })
        .collect()
}

/// `generateName` of the CHI-level service template (`spec.defaults.templates.
/// serviceTemplate`, else the first of `serviceTemplates`), if it has one.
fn service_template_generate_name(chi: &Value) -> Result<Option<&str>, ChiProblem> {
    let refs = ["spec", "defaults", "templates"];
    let wanted = match str_at(chi, &[refs[0], refs[1], refs[2], "serviceTemplate"])? {
        Some(t) => Some(t),
        None => match at(chi, &[refs[0], refs[1], refs[2], "serviceTemplates"]) {
            Some(Value::Array(a)) => a.first().and_then(Value::as_str),
            _ => None,
        },
    };
    match wanted {
        Some(t) => generate_name(chi, t),
        None => Ok(None),
    }
}

/// `generateName` of `spec.templates.serviceTemplates[name == wanted]`, if
/// that template exists and has one (a missing template: the default name).
fn generate_name<'a>(chi: &'a Value, wanted: &str) -> Result<Option<&'a str>, ChiProblem> {
    let templates = match at(chi, &["spec", "templates", "serviceTemplates"]) {
        Some(Value::Array(a)) => a.as_slice(),
        _ => &[],
    };
    let found = templates
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(wanted));
    match found {
        Some(t) => Ok(str_at(t, &["generateName"])?.filter(|g| !g.is_empty())),
        None => Ok(None),
    }
}

/// ClickHouse's PostgreSQL port as the CHI sets it (`spec.configuration.settings.postgresql_port`,
/// a number or a string of one); `None` when not set (ClickHouse's default, 9005, is then what
/// a `postgres` listener's `upstream_port` gives).
fn postgres_port(chi: &Value) -> Result<Option<u16>, ChiProblem> {
    let settings = ["spec", "configuration", "settings", "postgresql_port"];
    let port = match at(chi, &settings) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
        Some(_) => None,
    };
    match port {
        Some(p) if p != 0 => Ok(Some(p)),
        _ => Err(ChiProblem::PostgresPort {
            got: at(chi, &settings).map(Value::to_string).unwrap_or_default(),
        }),
    }
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// A string at `path`; absent or null is `None`, another type is an error.
fn str_at<'a>(v: &'a Value, path: &[&str]) -> Result<Option<&'a str>, ChiProblem> {
    match at(v, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ChiProblem::NotAString {
            path: path.join("."),
            got: other.to_string(),
        }),
    }
}

#[cfg(test)]
mod shard_tests;
#[cfg(test)]
mod tests;
