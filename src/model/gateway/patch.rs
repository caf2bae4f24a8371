//! What to write: the JSON merge patch (for the `status` subresource) that makes an object's
//! current status say what the translation decided, or nothing when it already does, so an
//! unchanged world writes nothing (no write storms, whatever the number of replicas or
//! resyncs).
//!
//! Every condition gets its `lastTransitionTime`: the one already written while its status is
//! unchanged, else `now`. A route's `status.parents` entries of other controllers are kept as
//! they are (a merge patch replaces a list whole).

use serde::Serialize;
use serde_json::{json, Value};

use super::status::{GatewayClassStatus, GatewayStatus, RouteParentStatus, RouteStatus};

/// The patch for a GatewayClass whose status is `current`.
pub fn gateway_class(
    current: Option<&Value>,
    desired: &GatewayClassStatus,
    now: &str,
) -> Option<Value> {
    let conditions = stamped(
        &desired.conditions,
        current.and_then(|c| c.get("conditions")),
        now,
    );
    let features: Vec<Value> = desired
        .supported_features
        .iter()
        .map(|name| json!({ "name": name }))
        .collect();
    changed(
        current,
        json!({ "conditions": conditions, "supportedFeatures": features }),
    )
}

/// The patch for a Gateway whose status is `current` (its `addresses` are left alone unless
/// some are configured).
pub fn gateway(current: Option<&Value>, desired: &GatewayStatus, now: &str) -> Option<Value> {
    let conditions = stamped(
        &desired.conditions,
        current.and_then(|c| c.get("conditions")),
        now,
    );
    let old_listeners = current
        .and_then(|c| c.get("listeners"))
        .and_then(Value::as_array);
    let listeners: Vec<Value> = desired
        .listeners
        .iter()
        .map(|l| {
            let old = old_listeners
                .and_then(|ls| {
                    ls.iter()
                        .find(|o| o.get("name").and_then(Value::as_str) == Some(&l.name))
                })
                .and_then(|o| o.get("conditions"));
            let mut v = to_value(l);
            v["conditions"] = stamped(&l.conditions, old, now);
            v
        })
        .collect();
    let mut status = json!({ "conditions": conditions, "listeners": listeners });
    if let Some(addresses) = &desired.addresses {
        status["addresses"] = to_value(addresses);
    }
    changed(current, status)
}

/// The patch for a TLSRoute whose status is `current`: other controllers' parents, then ours.
pub fn tls_route(
    current: Option<&Value>,
    desired: &RouteStatus,
    controller_name: &str,
    now: &str,
) -> Option<Value> {
    let old: &[Value] = current
        .and_then(|c| c.get("parents"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let ours = |p: &Value| p.get("controllerName").and_then(Value::as_str) == Some(controller_name);
    let mut parents: Vec<Value> = old.iter().filter(|p| !ours(p)).cloned().collect();
    for p in &desired.parents {
        let before = old
            .iter()
            .filter(|o| ours(o))
            .find(|o| same_parent(o, p))
            .and_then(|o| o.get("conditions"));
        let mut v = to_value(p);
        v["conditions"] = stamped(&p.conditions, before, now);
        parents.push(v);
    }
    changed(current, json!({ "parents": parents }))
}

/// Whether the written entry `old` is about the same parentRef as `p`.
fn same_parent(old: &Value, p: &RouteParentStatus) -> bool {
    old.get("parentRef") == Some(&to_value(&p.parent_ref))
}

/// `conditions` as JSON, each with its `lastTransitionTime`.
fn stamped<C: Serialize>(conditions: &[C], old: Option<&Value>, now: &str) -> Value {
    let old = old.and_then(Value::as_array);
    Value::Array(
        conditions
            .iter()
            .map(|c| {
                let mut v = to_value(c);
                let previous = old.and_then(|o| o.iter().find(|p| p.get("type") == v.get("type")));
                let time = match previous {
                    Some(p) if p.get("status") == v.get("status") => p
                        .get("lastTransitionTime")
                        .cloned()
                        .unwrap_or_else(|| Value::from(now)),
                    _ => Value::from(now),
                };
                v["lastTransitionTime"] = time;
                v
            })
            .collect(),
    )
}

/// `{"status": desired}` unless each of its fields is already so in `current`.
fn changed(current: Option<&Value>, desired: Value) -> Option<Value> {
    let same = desired.as_object().is_some_and(|d| {
        d.iter()
            .all(|(k, v)| current.and_then(|c| c.get(k)) == Some(v))
    });
    (!same).then(|| json!({ "status": desired }))
}

/// `patch` without its conditions' `lastTransitionTime`s: two patches computed before and after
/// the watch shows our last write differ only in them (`now` moved on), and are the same write.
pub fn timeless(patch: &Value) -> Value {
    match patch {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "lastTransitionTime")
                .map(|(k, v)| (k.clone(), timeless(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(timeless).collect()),
        other => other.clone(),
    }
}

/// Our status types always serialise (plain strings, numbers and lists).
fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timeless_drops_only_transition_times() {
        let at = |t: &str| {
            json!({"status": {"conditions": [
                {"type": "Accepted", "status": "True", "lastTransitionTime": t}
            ]}})
        };
        let a = at("2026-12-07T16:00:00Z");
        let b = at("2026-12-07T16:00:01Z");
        assert_ne!(a, b);
        assert_eq!(super::timeless(&a), super::timeless(&b));
        assert_eq!(
            super::timeless(&a),
            json!({"status": {"conditions": [{"type": "Accepted", "status": "True"}]}})
        );
    }

    use super::super::objects::ParentRef;
    use super::super::status::{reason, Condition, ListenerStatus, TLS_ROUTE_KIND};
    use super::*;

    fn accepted(ok: bool) -> Condition {
        let why = if ok {
            reason::ACCEPTED
        } else {
            reason::NOT_ALLOWED_BY_LISTENERS
        };
        Condition::new(reason::ACCEPTED, ok, why, "", Some(2))
    }

    fn route(ok: bool) -> RouteStatus {
        RouteStatus {
            parents: vec![RouteParentStatus {
                parent_ref: ParentRef {
                    name: "gw".into(),
                    ..ParentRef::default()
                },
                controller_name: "me.io/c".into(),
                conditions: vec![accepted(ok)],
            }],
        }
    }

    /// What the API server returns after the patch: the status as written.
    fn apply(patch: &Value) -> Value {
        patch["status"].clone()
    }

    #[test]
    fn written_once_then_nothing_while_unchanged() {
        let first = tls_route(None, &route(true), "me.io/c", "T1").expect("a first write");
        let status = apply(&first);
        assert_eq!(
            status["parents"][0]["conditions"][0]["lastTransitionTime"],
            "T1"
        );
        assert_eq!(
            tls_route(Some(&status), &route(true), "me.io/c", "T2"),
            None
        );
        // A change writes, with the new time on the condition that changed only.
        let second = tls_route(Some(&status), &route(false), "me.io/c", "T3").unwrap();
        let c = &second["status"]["parents"][0]["conditions"][0];
        assert_eq!(
            (c["status"].as_str(), c["lastTransitionTime"].as_str()),
            (Some("False"), Some("T3"))
        );
    }

    #[test]
    fn a_message_change_keeps_the_transition_time() {
        let status = apply(&tls_route(None, &route(true), "me.io/c", "T1").unwrap());
        let mut r = route(true);
        r.parents[0].conditions[0].message = "not served (claimed earlier): a.example.com".into();
        let p = tls_route(Some(&status), &r, "me.io/c", "T2").unwrap();
        assert_eq!(
            p["status"]["parents"][0]["conditions"][0]["lastTransitionTime"],
            "T1"
        );
    }

    #[test]
    fn other_controllers_parents_are_kept() {
        let theirs =
            json!({"parentRef": {"name": "gw"}, "controllerName": "other.io/x", "conditions": []});
        let current = json!({ "parents": [theirs.clone()] });
        let p = tls_route(Some(&current), &route(true), "me.io/c", "T1").unwrap();
        let parents = p["status"]["parents"].as_array().unwrap();
        assert_eq!(parents.len(), 2);
        assert_eq!(parents[0], theirs);
        assert_eq!(parents[1]["controllerName"], "me.io/c");
        // Ours gone (e.g. the Gateway deleted): only theirs left.
        let status = apply(&p);
        let empty = RouteStatus { parents: vec![] };
        let p = tls_route(Some(&status), &empty, "me.io/c", "T2").unwrap();
        assert_eq!(p["status"]["parents"], json!([theirs]));
    }

    #[test]
    fn gateway_and_class_statuses() {
        let gw = GatewayStatus {
            addresses: None,
            conditions: vec![accepted(true)],
            listeners: vec![ListenerStatus {
                name: "tls".into(),
                supported_kinds: vec![TLS_ROUTE_KIND],
                attached_routes: 1,
                conditions: vec![accepted(true)],
            }],
        };
        let mut current = apply(&gateway(None, &gw, "T1").unwrap());
        current["addresses"] = json!([{"type": "Hostname", "value": "nlb.example.com"}]);
        assert_eq!(gateway(Some(&current), &gw, "T2"), None);
        let mut more = gw.clone();
        more.listeners[0].attached_routes = 2;
        let p = gateway(Some(&current), &more, "T2").unwrap();
        assert_eq!(p["status"]["listeners"][0]["attachedRoutes"], 2);
        assert_eq!(
            p["status"]["listeners"][0]["conditions"][0]["lastTransitionTime"],
            "T1"
        );
        assert!(p["status"].get("addresses").is_none(), "left alone");

        let class = GatewayClassStatus {
            conditions: vec![accepted(true)],
            supported_features: &["TLSRoute", "TLSRouteModeTerminate"],
        };
        // The API server's default status for a new class (Accepted Unknown/Pending) is replaced.
        let pending = json!({"conditions": [{"type": "Accepted", "status": "Unknown", "reason": "Pending",
            "message": "Waiting for controller", "lastTransitionTime": "T0"}]});
        let p = gateway_class(Some(&pending), &class, "T1").unwrap();
        assert_eq!(p["status"]["conditions"][0]["lastTransitionTime"], "T1");
        assert_eq!(
            p["status"]["supportedFeatures"],
            json!([{"name": "TLSRoute"}, {"name": "TLSRouteModeTerminate"}])
        );
        assert_eq!(gateway_class(Some(&apply(&p)), &class, "T2"), None);
        // A class written before the features were: they are added.
        let mut older = apply(&p);
        older.as_object_mut().unwrap().remove("supportedFeatures");
        let p = gateway_class(Some(&older), &class, "T3").unwrap();
        assert_eq!(p["status"]["conditions"][0]["lastTransitionTime"], "T1");
        assert!(p["status"]["supportedFeatures"].is_array());
    }
}
