//! `/connections`: the live relayed connections, oldest first, as JSON. Bounded: at most
//! `?limit=N` entries (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]), with the count of all
//! and whether the list was cut.

use std::time::SystemTime;

use crate::runtime::control::server::Handle;
use crate::runtime::pipeline::registry::Entry;

use super::routes::{millis, rfc3339};

/// Entries listed when the request names no limit.
pub(super) const DEFAULT_LIMIT: usize = 100;
/// The most entries one request may ask for (a few MiB of JSON).
pub(super) const MAX_LIMIT: usize = 10_000;

/// The limit the query asks for: `limit=N` (0 ..= [`MAX_LIMIT`]), else the default; `Err`
/// with the reason for anything else.
pub(super) fn limit(query: Option<&str>) -> Result<usize, String> {
    let mut limit = DEFAULT_LIMIT;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("limit", n)) => {
                limit = n
                    .parse()
                    .ok()
                    .filter(|n| *n <= MAX_LIMIT)
                    .ok_or_else(|| format!("limit: expected 0 to {MAX_LIMIT}\n"))?;
            }
            _ => return Err("the only parameter is limit=N\n".to_owned()),
        }
    }
    Ok(limit)
}

/// The listing as JSON.
pub(super) fn connections_json(proxy: &Handle, limit: usize) -> String {
    let listing = proxy.connections(limit);
    let now = SystemTime::now();
    let connections: Vec<serde_json::Value> =
        listing.entries.iter().map(|e| entry(e, now)).collect();
    serde_json::json!({
        "total": listing.total,
        "limit": limit,
        "truncated": listing.entries.len() < listing.total,
        "connections": connections,
    })
    .to_string()
}

fn entry(e: &Entry, now: SystemTime) -> serde_json::Value {
    let age = e.age();
    serde_json::json!({
        "listener": &*e.listener,
        "client": e.client.to_string(),
        // The TCP peer, when it is not the client (a PROXY header named the client).
        "peer": (e.peer != e.client).then(|| e.peer.to_string()),
        "sni": e.sni.as_deref(),
        "route": &*e.route,
        "upstream": e.upstream.map(|u| u.to_string()),
        "state": e.state.keyword(),
        "opened_at": rfc3339(now.checked_sub(age).unwrap_or(now)),
        "age_ms": millis(age),
        "bytes_from_client": e.from_client,
        "bytes_from_upstream": e.from_upstream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_bounded_and_anything_else_is_refused() {
        assert_eq!(limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(limit(Some("")), Ok(DEFAULT_LIMIT));
        assert_eq!(limit(Some("limit=2")), Ok(2));
        assert_eq!(limit(Some("limit=0")), Ok(0));
        assert_eq!(limit(Some("limit=10000")), Ok(MAX_LIMIT));
        for bad in [
            "limit=10001",
            "limit=-1",
            "limit=",
            "limit=x",
            "all=1",
            "limit",
        ] {
            assert!(limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
