//! `limits:` — the connection limit of the whole proxy and the per-client limits (keyed by the
//! real client address), validated.

use serde_saphyr::Spanned;

use super::error::Problems;
use super::raw::{RawLimits, RawPerClient};

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Open connections over all listeners; over it, a connection is closed at accept.
    pub max_connections: usize,
    pub per_client: PerClient,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 100_000,
            per_client: PerClient::default(),
        }
    }
}

/// Limits per real client IP address; none by default (a proxy whose clients all come through
/// one address, such as an NLB without PROXY protocol, would otherwise limit everyone at once).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerClient {
    /// Open connections of one client address.
    pub max_connections: Option<u32>,
    /// New connections per second of one client address: a token bucket.
    pub rate: Option<Rate>,
}

impl PerClient {
    pub fn is_off(&self) -> bool {
        self.max_connections.is_none() && self.rate.is_none()
    }
}

/// A token bucket: `per_second` tokens added each second, at most `burst` held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// Highest accepted rate and burst: far beyond any client, far from float trouble.
const MAX_RATE: f64 = 1e6;

pub(crate) fn limits(raw: RawLimits, file: &str, errs: &mut Problems) -> Limits {
    let mut limits = Limits::default();
    if let Some(max) = raw.max_connections {
        if max.value == 0 {
            errs.add(
                file,
                Some(&max.referenced),
                "limits.max_connections",
                "must be at least 1",
            );
        }
        limits.max_connections = max.value;
    }
    if let Some(per_client) = raw.per_client {
        limits.per_client = per_client_limits(per_client, file, errs);
    }
    limits
}

fn per_client_limits(raw: RawPerClient, file: &str, errs: &mut Problems) -> PerClient {
    let what = "limits.per_client";
    let mut out = PerClient::default();
    if let Some(max) = raw.max_connections {
        if max.value == 0 {
            let field = format!("{what}.max_connections");
            errs.add(file, Some(&max.referenced), &field, "must be at least 1");
        }
        out.max_connections = Some(max.value);
    }
    let positive = |v: &Spanned<f64>, field: &str, errs: &mut Problems| {
        let ok = v.value.is_finite() && v.value > 0.0 && v.value <= MAX_RATE;
        if !ok {
            let msg = format!("{} is not a number above 0 and at most {MAX_RATE}", v.value);
            errs.add(file, Some(&v.referenced), &format!("{what}.{field}"), msg);
        }
        ok
    };
    match (raw.rate, raw.burst) {
        (Some(rate), burst) => {
            let burst_ok = burst.as_ref().is_none_or(|b| positive(b, "burst", errs));
            if positive(&rate, "rate", errs) && burst_ok {
                out.rate = Some(Rate {
                    per_second: rate.value,
                    // A burst of at least one connection, else the bucket never admits one.
                    burst: burst.map_or(rate.value, |b| b.value).max(1.0),
                });
            }
        }
        (None, Some(burst)) => {
            let field = format!("{what}.burst");
            errs.add(
                file,
                Some(&burst.referenced),
                &field,
                "needs `rate` (connections per second)",
            );
        }
        (None, None) => {}
    }
    out
}
