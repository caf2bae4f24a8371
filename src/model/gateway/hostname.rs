//! The Gateway API's hostname intersection of a listener and a route (TLSRoute `hostnames`,
//! `apis/v1/tlsroute_types.go`): a wildcard `*.x` matches any name under `x`, at any depth,
//! but not `x` itself; of a wildcard and a name it matches, the name is the intersection; of
//! two wildcards, the more specific one.

/// `*.suffix` → `suffix`; a name → `None`.
fn wildcard_suffix(h: &str) -> Option<&str> {
    h.strip_prefix("*.")
}

/// Whether name `n` (no wildcard) is under `suffix` by at least one label.
fn under(n: &str, suffix: &str) -> bool {
    n.len() > suffix.len() + 1
        && n.ends_with(suffix)
        && n.as_bytes().get(n.len() - suffix.len() - 1) == Some(&b'.')
}

/// The hostnames a route serves on a listener: `None` when they do not intersect. Inputs are
/// normalised (lower case, no trailing dot); `listener` `None` means any name.
pub fn intersect<'a>(listener: Option<&'a str>, route: &'a str) -> Option<&'a str> {
    let Some(l) = listener else {
        return Some(route);
    };
    match (wildcard_suffix(l), wildcard_suffix(route)) {
        (None, None) => (l == route).then_some(l),
        (Some(ls), None) => under(route, ls).then_some(route),
        (None, Some(rs)) => under(l, rs).then_some(l),
        (Some(ls), Some(rs)) => {
            if ls == rs || under(rs, ls) {
                Some(route)
            } else if under(ls, rs) {
                Some(l)
            } else {
                None
            }
        }
    }
}

/// The intersections of a route's hostnames with a listener's hostname, in the route's order,
/// without repeats. A route with no hostnames takes the listener's (none: every name, `*`).
pub fn intersections(listener: Option<&str>, route: &[String]) -> Vec<String> {
    if route.is_empty() {
        return vec![listener.unwrap_or("*").to_owned()];
    }
    let mut out: Vec<String> = Vec::new();
    for r in route {
        if let Some(h) = intersect(listener, r) {
            if !out.iter().any(|o| o == h) {
                out.push(h.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specs_intersection_rules() {
        for (listener, route, expected) in [
            // Conformance TLSRouteHostnameIntersection, gateways x-1..x-4.
            (
                Some("abc.example.com"),
                "*.example.com",
                Some("abc.example.com"),
            ),
            (
                Some("*.example.com"),
                "abc.example.com",
                Some("abc.example.com"),
            ),
            (Some("*.example.com"), "*.com", Some("*.example.com")),
            (Some("*.com"), "abc.example.com", Some("abc.example.com")),
            (Some("*.com"), "*.example.com", Some("*.example.com")),
            (None, "abc.example.com", Some("abc.example.com")),
            (None, "*.com", Some("*.com")),
            // TLSRouteInvalidNoMatchingListenerHostname.
            (Some("www.example.com"), "www.nomatch.com", None),
            (Some("www.example.com"), "*.nomatch.com", None),
            (Some("*.example.com"), "*.different.com", None),
            // A wildcard is not its own suffix; labels are whole.
            (Some("*.example.com"), "example.com", None),
            (Some("*.example.com"), "badexample.com", None),
            (
                Some("*.example.com"),
                "a.b.example.com",
                Some("a.b.example.com"),
            ),
            (
                Some("*.example.com"),
                "*.example.com",
                Some("*.example.com"),
            ),
            (
                Some("*.example.com"),
                "*.a.example.com",
                Some("*.a.example.com"),
            ),
            (
                Some("a.example.com"),
                "a.example.com",
                Some("a.example.com"),
            ),
            (Some("a.example.com"), "b.example.com", None),
        ] {
            assert_eq!(
                intersect(listener, route),
                expected,
                "{listener:?} ∩ {route}"
            );
        }
    }

    #[test]
    fn route_without_hostnames_takes_the_listeners() {
        assert_eq!(intersections(Some("*.a.com"), &[]), ["*.a.com"]);
        assert_eq!(intersections(None, &[]), ["*"]);
        let both = [
            "x.a.com".to_owned(),
            "*.com".to_owned(),
            "x.a.com".to_owned(),
        ];
        assert_eq!(
            intersections(Some("*.a.com"), &both),
            ["x.a.com", "*.a.com"]
        );
    }
}
