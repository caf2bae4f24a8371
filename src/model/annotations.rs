//! The `ch-edge-proxy/*` annotations every Kubernetes source (CHI, ClickHouseCluster) reads
//! from its object's `metadata.annotations`: one spelling, one parser.

use std::sync::Arc;

use ch_edge_wire::keyword::UnknownKeyword;
use ch_edge_wire::proxy_out::ProxyVersion;
use ipnet::IpNet;
use serde_json::Value;

use crate::model::allow::parse_net;
use crate::model::route::{RoutePostgres, RouteTls, TlsMode};

/// Comma-separated client CIDRs for all the object's routes.
pub const ALLOW: &str = "ch-edge-proxy/allow";
/// `off`, `v1` or `v2`: the PROXY header sent to the object's upstreams.
pub const PROXY_PROTOCOL: &str = "ch-edge-proxy/proxy-protocol";
/// `passthrough`, `terminate` or `reencrypt`: what the object's routes do with TLS.
/// `terminate` reaches the upstreams on the listener's `upstream_port_plain` (9000, 8123).
pub const TLS: &str = "ch-edge-proxy/tls";
/// `"true"` or `"false"` (default): the object's servers accept direct SSL (PostgreSQL 17+), so
/// a direct-SSL client on a `postgres` listener is passed through to them as it came.
pub const POSTGRES_DIRECT_SSL: &str = "ch-edge-proxy/postgres-direct-ssl";

/// What an object's annotations ask of its routes (`None`: not annotated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteAnnotations {
    pub allow: Option<Arc<[IpNet]>>,
    pub proxy_protocol: Option<ProxyVersion>,
    pub tls: Option<TlsMode>,
    pub postgres_direct_ssl: bool,
}

/// An annotation that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error("metadata.annotations.{key}: expected a string, got {got}")]
    NotAString { key: &'static str, got: String },
    #[error("annotation {key}: invalid CIDR {value:?}")]
    InvalidCidr { key: &'static str, value: String },
    #[error("annotation {key}: no CIDRs in {value:?}")]
    NoCidrs { key: &'static str, value: String },
    #[error("annotation {key}: expected \"true\" or \"false\", got {value:?}")]
    NotABool { key: &'static str, value: String },
    #[error("annotation {key}: {error}")]
    Keyword {
        key: &'static str,
        error: UnknownKeyword,
    },
}

impl RouteAnnotations {
    /// The annotations of `obj` (a Kubernetes object as JSON).
    pub fn read(obj: &Value) -> Result<RouteAnnotations, AnnotationError> {
        let allow = annotation(obj, ALLOW)?
            .map(parse_allow)
            .transpose()?
            .map(Arc::from);
        let proxy_protocol = annotation(obj, PROXY_PROTOCOL)?
            .map(|p| keyword(PROXY_PROTOCOL, p))
            .transpose()?;
        let tls = annotation(obj, TLS)?.map(|t| keyword(TLS, t)).transpose()?;
        let postgres_direct_ssl = match annotation(obj, POSTGRES_DIRECT_SSL)?.map(str::trim) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                return Err(AnnotationError::NotABool {
                    key: POSTGRES_DIRECT_SSL,
                    value: v.to_owned(),
                })
            }
        };
        Ok(RouteAnnotations {
            allow,
            proxy_protocol,
            tls,
            postgres_direct_ssl,
        })
    }

    /// The routes' `tls` section: the annotated mode, when annotated.
    pub fn route_tls(&self) -> Option<Arc<RouteTls>> {
        route_tls(self.tls)
    }

    /// The routes' PostgreSQL settings: the annotated direct SSL and the port `port` that the
    /// source found itself (`None`: not set), when either is set.
    pub fn route_postgres(&self, port: Option<u16>) -> Option<RoutePostgres> {
        (self.postgres_direct_ssl || port.is_some()).then_some(RoutePostgres {
            direct_ssl: self.postgres_direct_ssl,
            port,
        })
    }
}

/// A `tls` section with mode `mode` alone, when there is one.
pub fn route_tls(mode: Option<TlsMode>) -> Option<Arc<RouteTls>> {
    mode.map(|mode| {
        Arc::new(RouteTls {
            mode: Some(mode),
            ..RouteTls::default()
        })
    })
}

/// `"10.0.0.0/8, 192.0.2.1"`: CIDRs or single addresses, at least one.
pub fn parse_allow(value: &str) -> Result<Vec<IpNet>, AnnotationError> {
    let nets = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            parse_net(s).ok_or_else(|| AnnotationError::InvalidCidr {
                key: ALLOW,
                value: s.to_owned(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if nets.is_empty() {
        return Err(AnnotationError::NoCidrs {
            key: ALLOW,
            value: value.to_owned(),
        });
    }
    Ok(nets)
}

fn keyword<T: std::str::FromStr<Err = UnknownKeyword>>(
    key: &'static str,
    value: &str,
) -> Result<T, AnnotationError> {
    value
        .trim()
        .parse()
        .map_err(|error| AnnotationError::Keyword { key, error })
}

/// An annotation's value; absent or null is `None`, another type is an error.
fn annotation<'a>(obj: &'a Value, key: &'static str) -> Result<Option<&'a str>, AnnotationError> {
    match obj
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(key))
    {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(AnnotationError::NotAString {
            key,
            got: other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn annotated(annotations: Value) -> Value {
        json!({"metadata": {"name": "x", "annotations": annotations}})
    }

    #[test]
    fn absent_annotations_ask_nothing() {
        let none = RouteAnnotations::default();
        assert_eq!(RouteAnnotations::read(&json!({})).unwrap(), none);
        assert_eq!(
            RouteAnnotations::read(&annotated(json!(null))).unwrap(),
            none
        );
        assert_eq!(none.route_tls(), None);
        assert_eq!(none.route_postgres(None), None);
    }

    #[test]
    fn every_annotation_is_read() {
        let a = RouteAnnotations::read(&annotated(json!({
            ALLOW: "10.0.0.0/8, 192.0.2.7",
            PROXY_PROTOCOL: " V1 ",
            TLS: "Terminate",
            POSTGRES_DIRECT_SSL: "true",
        })))
        .unwrap();
        let want: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "192.0.2.7/32".parse().unwrap(),
        ];
        assert_eq!(a.allow.as_deref(), Some(&*want));
        assert_eq!(a.proxy_protocol, Some(ProxyVersion::V1));
        assert_eq!(a.route_tls().unwrap().mode, Some(TlsMode::Terminate));
        assert!(a.route_postgres(None).unwrap().direct_ssl);
    }

    #[test]
    fn direct_ssl_alone_makes_postgres_settings_without_a_tls_section() {
        for (value, want) in [
            ("true", Some(true)),
            (" TRUE ", Some(true)),
            ("false", None),
        ] {
            let a = RouteAnnotations::read(&annotated(json!({ POSTGRES_DIRECT_SSL: value })));
            let a = a.unwrap();
            let postgres = a.route_postgres(None);
            assert_eq!(postgres.map(|p| p.direct_ssl), want, "{value}");
            assert_eq!(postgres.and_then(|p| p.port), None);
            assert_eq!(a.route_tls(), None);
        }
    }

    #[test]
    fn bad_values_name_the_annotation() {
        for (key, value) in [
            (ALLOW, json!("10.0.0.0/33")),
            (ALLOW, json!(" , ")),
            (PROXY_PROTOCOL, json!("v3")),
            (TLS, json!("offload")),
            (TLS, json!(true)),
            (POSTGRES_DIRECT_SSL, json!("yes")),
            (POSTGRES_DIRECT_SSL, json!(true)),
        ] {
            let e = RouteAnnotations::read(&annotated(json!({ key: value }))).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }
}
