//! `/routes`: the live route table, reload status, certificates and discovery, as JSON. Every
//! time is RFC 3339 (UTC, milliseconds), every duration milliseconds rounded to the microsecond.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::config::ConfigError;
use crate::runtime::control::reload::ReloadResult;
use crate::runtime::control::server::Handle;
use crate::runtime::table::Upstream;

/// The last second RFC 3339 (four-digit years) can write: 9999-12-31T23:59:59Z.
const LAST_WRITABLE: u64 = 253_402_300_799;

/// `t` as RFC 3339 in UTC with milliseconds, e.g. `2026-12-07T13:00:00.123Z` (clamped to what
/// the format can write).
pub(super) fn rfc3339(t: SystemTime) -> String {
    let t = t.clamp(UNIX_EPOCH, UNIX_EPOCH + Duration::from_secs(LAST_WRITABLE));
    humantime::format_rfc3339_millis(t).to_string()
}

/// Seconds since the epoch (a certificate's validity) as RFC 3339.
fn rfc3339_unix(seconds: i64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

/// `d` in milliseconds with at most three decimals.
pub(super) fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The live route table as JSON.
pub(super) fn routes_json(proxy: &Handle) -> String {
    let state = proxy.state();
    let routes: Vec<serde_json::Value> = state
        .routes
        .routes()
        .map(|r| {
            serde_json::json!({
                "name": &*r.name,
                "sni": r.patterns.iter().map(|p| &**p).collect::<Vec<_>>(),
                "upstreams": r.upstreams.iter().map(|u| serde_json::json!({
                    "host": &*u.host,
                    "port": u.port,
                    "weight": u.weight,
                    "refused": u.refused,
                    "addresses": u.addrs.current().iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
                    "endpoints": endpoints(u),
                })).collect::<Vec<_>>(),
                "balance": r.balance.keyword(),
                "sticky": r.sticky,
                "proxy_protocol": r.proxy_protocol.keyword(),
                "tls": r.tls.keyword(),
                "alpn": r.alpn.as_deref().map(|a| a.iter().map(|p| &**p).collect::<Vec<_>>()),
                "upstream_tls": r.upstream_tls.as_deref().map(|u| serde_json::json!({
                    "ca": u.ca.as_ref().map(|p| p.display().to_string()),
                    "server_name": u.server_name.as_deref(),
                })),
                "postgres_direct_ssl": r.postgres.direct_ssl,
                "postgres_port": r.postgres.port,
                "source": &*r.source,
            })
        })
        .collect();
    // Whole days left, counted from now to the second's fraction (as the expiry log line does).
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let certificates: Vec<serde_json::Value> = state
        .tls
        .certificates
        .iter()
        .map(|c| {
            serde_json::json!({
                "cert": c.cert_file.display().to_string(),
                "key": c.key_file.display().to_string(),
                "names": c.names.iter().map(|n| &**n).collect::<Vec<_>>(),
                "not_before": rfc3339_unix(c.not_before),
                "not_after": rfc3339_unix(c.not_after),
                "expires_in_days": ((c.not_after as f64 - now) / 86400.0).floor() as i64,
            })
        })
        .collect();
    let status = proxy.last_reload();
    let error = match &status.result {
        ReloadResult::Error(e) => Some(e),
        _ => None,
    };
    serde_json::json!({
        "generation": state.generation,
        "config_hash": format!("{:016x}", state.config_hash),
        "route_count": state.routes.len(),
        "last_reload": {
            "result": status.result.label(),
            "successful": status.successful,
            "trigger": status.trigger.keyword(),
            "at": rfc3339(status.at),
            "duration_ms": millis(status.took),
            "error": error.map(ToString::to_string),
            "problems": error.map(problems),
        },
        "last_success_at": rfc3339(status.last_success),
        "last_error": status.last_error.as_ref().map(|(e, t)| serde_json::json!({
            "message": e.to_string(),
            "problems": problems(e),
            "at": rfc3339(*t),
        })),
        "discovery": state.discovery.to_json(),
        "tls": {"certificates": certificates},
        "routes": routes,
    })
    .to_string()
}

/// The live state of each address of `upstream`: per port connections have used (only its
/// own port if it has one), else its addresses with nothing recorded yet.
fn endpoints(upstream: &Upstream) -> Vec<serde_json::Value> {
    let used: Vec<serde_json::Value> = upstream
        .addrs
        .endpoints_by_port()
        .iter()
        .filter(|(port, _)| upstream.port.is_none_or(|p| p == *port))
        .flat_map(|(_, list)| list.iter())
        .map(|e| {
            let s = e.stats();
            serde_json::json!({
                "address": e.addr.to_string(),
                "open": s.open,
                "failures": s.failures,
                "ejected": s.ejected_until.is_some(),
                "ejected_until": s.ejected_until.map(rfc3339),
            })
        })
        .collect();
    if !used.is_empty() {
        return used;
    }
    upstream
        .addrs
        .current()
        .iter()
        .map(|ip| {
            let address = match upstream.port {
                Some(port) => SocketAddr::new(*ip, port).to_string(),
                None => ip.to_string(),
            };
            serde_json::json!({
                "address": address,
                "open": 0,
                "failures": 0,
                "ejected": false,
                "ejected_until": null,
            })
        })
        .collect()
}

/// Each problem of `error` with its parts: `file`, `line`, `route`, `message`.
fn problems(error: &ConfigError) -> serde_json::Value {
    error
        .problems()
        .iter()
        .map(|p| {
            serde_json::json!({
                "file": p.file,
                "line": p.line,
                "route": p.route,
                "message": p.message,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc_with_milliseconds_and_never_panic() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_624_166_943);
        assert_eq!(rfc3339(t), "2026-12-07T06:16:06.943Z");
        assert_eq!(rfc3339_unix(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_unix(i64::MAX), "9999-12-31T23:59:59.000Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn durations_are_milliseconds_with_at_most_three_decimals() {
        assert_eq!(millis(Duration::from_nanos(662_638)), 0.663);
        assert_eq!(millis(Duration::from_secs(2)), 2000.0);
        assert_eq!(
            serde_json::json!(millis(Duration::from_nanos(662_638))).to_string(),
            "0.663"
        );
    }
}
