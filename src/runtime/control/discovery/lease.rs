//! Who writes Gateway API statuses: the one replica holding a `coordination.k8s.io/v1` Lease.
//! The decision is pure (the Lease as read, the time, who we are); the caller reads and
//! writes the Lease, with its `resourceVersion` so that two replicas taking it at once cannot
//! both win (the second write gets 409 Conflict).

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

/// What to do with the Lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew it and write statuses.
    Renew,
    /// Nobody holds it (none, released, or expired): take it, then write statuses.
    Take,
    /// Another replica holds it until about then: do not write statuses.
    Wait { holder: String, until: SystemTime },
}

/// The decision for `me` at `now` on `lease` (the Lease object; `None`: it does not exist).
/// A Lease that says nothing of its duration lasts `default_duration`.
pub fn decide(
    lease: Option<&Value>,
    me: &str,
    now: SystemTime,
    default_duration: Duration,
) -> Decision {
    let spec = lease.and_then(|l| l.get("spec"));
    let holder = spec
        .and_then(|s| s.get("holderIdentity"))
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty());
    let Some(holder) = holder else {
        return Decision::Take;
    };
    if holder == me {
        return Decision::Renew;
    }
    let duration = spec
        .and_then(|s| s.get("leaseDurationSeconds"))
        .and_then(Value::as_u64)
        .map_or(default_duration, Duration::from_secs);
    let renewed = spec
        .and_then(|s| s.get("renewTime").or_else(|| s.get("acquireTime")))
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
    match renewed {
        Some(t) if t + duration > now => Decision::Wait {
            holder: holder.to_owned(),
            until: t + duration,
        },
        // Expired, or a time we cannot read (never renewed as far as we can tell).
        _ => Decision::Take,
    }
}

/// The `spec` a holder writes: on taking, a new `acquireTime` and one more transition.
pub fn spec(
    lease: Option<&Value>,
    me: &str,
    now: SystemTime,
    duration: Duration,
    decision: &Decision,
) -> Value {
    let old = lease.and_then(|l| l.get("spec"));
    let time = Value::from(micro_time(now));
    let transitions = old
        .and_then(|s| s.get("leaseTransitions"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let (acquire, transitions) = match decision {
        Decision::Renew => (
            old.and_then(|s| s.get("acquireTime"))
                .cloned()
                .unwrap_or_else(|| time.clone()),
            transitions,
        ),
        _ => (time.clone(), transitions + u64::from(old.is_some())),
    };
    json!({
        "holderIdentity": me,
        "leaseDurationSeconds": duration.as_secs(),
        "acquireTime": acquire,
        "renewTime": time,
        "leaseTransitions": transitions,
    })
}

/// A `metav1.MicroTime`: RFC 3339 in UTC with microseconds.
pub fn micro_time(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn lease(holder: &str, renewed: u64) -> Value {
        json!({"metadata": {"name": "l", "resourceVersion": "7"}, "spec": {
            "holderIdentity": holder, "leaseDurationSeconds": 15,
            "acquireTime": micro_time(at(0)), "renewTime": micro_time(at(renewed)), "leaseTransitions": 3}})
    }

    #[test]
    fn one_holder_at_a_time() {
        assert_eq!(decide(None, "a", at(0), D), Decision::Take);
        assert_eq!(
            decide(Some(&lease("a", 10)), "a", at(100), D),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&lease("b", 10)), "a", at(20), D),
            Decision::Wait {
                holder: "b".into(),
                until: at(25)
            }
        );
        // Expired: b stopped renewing 15 s ago.
        assert_eq!(
            decide(Some(&lease("b", 10)), "a", at(25), D),
            Decision::Take
        );
        // Released (no holder).
        assert_eq!(decide(Some(&lease("", 10)), "a", at(11), D), Decision::Take);
    }

    #[test]
    fn taking_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let l = lease("b", 10);
        let taken = spec(Some(&l), "a", at(30), D, &Decision::Take);
        assert_eq!(taken["leaseTransitions"], 4);
        assert_eq!(taken["acquireTime"], micro_time(at(30)));
        assert_eq!(taken["holderIdentity"], "a");
        let mine = json!({"spec": taken});
        let renewed = spec(Some(&mine), "a", at(40), D, &Decision::Renew);
        assert_eq!(renewed["acquireTime"], micro_time(at(30)));
        assert_eq!(renewed["renewTime"], micro_time(at(40)));
        assert_eq!(renewed["leaseTransitions"], 4);
        assert_eq!(
            spec(None, "a", at(0), D, &Decision::Take)["leaseTransitions"],
            0
        );
        assert!(
            micro_time(at(0)).ends_with(".000000Z"),
            "{}",
            micro_time(at(0))
        );
    }
}
