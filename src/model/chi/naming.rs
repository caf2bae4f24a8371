//! The Altinity operator's object naming (pkg/model/chi/namer, pkg/model/common/namer/short):
//! macro values are cut to a fixed length, then `-_.` trimmed from both ends; no hashing.

/// `{chi}` and `{namespace}` are cut to this many characters.
pub const CHI_PART_MAX: usize = 60;
/// `{cluster}`, `{shard}`, `{replica}`, `{host}` are cut to this many characters.
pub const PART_MAX: usize = 15;

/// The first `max` characters of `s`, trimmed of leading/trailing `-`, `_`, `.`.
pub fn part(s: &str, max: usize) -> &str {
    let end = s.char_indices().nth(max).map_or(s.len(), |(i, _)| i);
    s.get(..end)
        .unwrap_or(s)
        .trim_matches(|c| matches!(c, '-' | '_' | '.'))
}

/// `{chi}` (or `{namespace}`) as used in a name.
pub fn chi_part(s: &str) -> &str {
    part(s, CHI_PART_MAX)
}

/// `{cluster}`, `{shard}`, `{replica}` or `{host}` as used in a name.
pub fn short_part(s: &str) -> &str {
    part(s, PART_MAX)
}

/// The CHI-level service without a template: `clickhouse-{chi}`.
pub fn chi_service(chi: &str) -> String {
    format!("clickhouse-{}", chi_part(chi))
}

/// Longest DNS label.
pub const MAX_LABEL: usize = 63;

/// The first label of a shard's SNI name, this proxy's convention (the operator has no
/// shard name without a shardServiceTemplate): `{chi}-{cluster}-shard-{shard}`, each part
/// cut and trimmed like the operator's. It reads as the cluster route's `{chi}-{cluster}` plus
/// the shard, and cannot be a host name (those start `chi-`, these end in `-shard-<shard>`); a
/// clash with another derived name (a cluster named `<cluster>-shard-0`) is refused as a
/// duplicate claim like any other.
pub fn shard_label(chi: &str, cluster: &str, shard: &str) -> String {
    format!(
        "{}-{}-shard-{}",
        chi_part(chi),
        short_part(cluster),
        short_part(shard)
    )
}

/// A host's service (and StatefulSet): `chi-{chi}-{cluster}-{host}`.
pub fn host_service(chi: &str, cluster: &str, host: &str) -> String {
    format!(
        "chi-{}-{}-{}",
        chi_part(chi),
        short_part(cluster),
        short_part(host)
    )
}

/// The default `{host}`: `<shardName>-<replicaName>` (names default to 0-based indexes).
pub fn default_host_name(shard: &str, replica: &str) -> String {
    format!("{shard}-{replica}")
}

/// Expands the CHI-scope macros `{chi}` and `{namespace}` in a template's `generateName`.
pub fn expand_chi_macros(pattern: &str, chi: &str, namespace: &str) -> String {
    pattern
        .replace("{chi}", chi_part(chi))
        .replace("{namespace}", chi_part(namespace))
}

/// The values of a host's name macros.
#[derive(Debug, Clone, Copy)]
pub struct HostMacros<'a> {
    pub chi: &'a str,
    pub namespace: &'a str,
    pub cluster: &'a str,
    pub cluster_index: usize,
    pub shard: &'a str,
    pub shard_index: usize,
    pub replica: &'a str,
    pub replica_index: usize,
    pub host: &'a str,
}

/// Expands a host-scope `generateName` (`replicaServiceTemplate`) in one pass:
/// `{chi} {namespace} {cluster} {shard} {replica} {host}` (cut and trimmed) and
/// `{clusterIndex} {shardIndex} {replicaIndex}`. Other `{...}` stay as written
/// (and then fail validation as a name).
pub fn expand_host_macros(pattern: &str, m: &HostMacros<'_>) -> String {
    let mut out = String::with_capacity(pattern.len() + 32);
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let Some(close) = after.find('}') else {
            rest = after;
            break;
        };
        let key = &after[1..close];
        let value = match key {
            "chi" => Some(chi_part(m.chi).to_owned()),
            "namespace" => Some(chi_part(m.namespace).to_owned()),
            "cluster" => Some(short_part(m.cluster).to_owned()),
            "shard" => Some(short_part(m.shard).to_owned()),
            "replica" => Some(short_part(m.replica).to_owned()),
            "host" => Some(short_part(m.host).to_owned()),
            "clusterIndex" => Some(m.cluster_index.to_string()),
            "shardIndex" => Some(m.shard_index.to_string()),
            "replicaIndex" => Some(m.replica_index.to_string()),
            _ => None,
        };
        match value {
            Some(v) => out.push_str(&v),
            None => out.push_str(&after[..=close]),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The service's FQDN: `<svc>.<ns>.svc.cluster.local`, or `spec.namespaceDomainPattern`
/// (`%s` = namespace) after `<svc>.`.
pub fn fqdn(service: &str, namespace: &str, domain_pattern: Option<&str>) -> String {
    match domain_pattern {
        Some(p) if !p.is_empty() => format!("{service}.{}", p.replacen("%s", namespace, 1)),
        _ => format!("{service}.{namespace}.svc.cluster.local"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_cut_then_trimmed() {
        assert_eq!(part("abc", 15), "abc");
        assert_eq!(short_part("a234567890123456789"), "a23456789012345");
        // The cut lands right after a dash: the dash goes too.
        assert_eq!(short_part("abcdefghijklmn-xyz"), "abcdefghijklmn");
        assert_eq!(short_part("-._x_.-"), "x");
        let long = format!("{}-tail", "c".repeat(59));
        assert_eq!(chi_part(&long), "c".repeat(59));
        assert_eq!(chi_part(&"d".repeat(70)).len(), 60);
        // Non-ASCII input is cut on characters, not bytes (no panic on a char boundary).
        assert_eq!(part("ééé", 2), "éé");
    }

    #[test]
    fn default_names() {
        assert_eq!(chi_service("demo"), "clickhouse-demo");
        assert_eq!(
            host_service("demo", "cluster", &default_host_name("0", "1")),
            "chi-demo-cluster-0-1"
        );
        assert_eq!(
            host_service("demo", "a-very-long-cluster-name", "0-0"),
            "chi-demo-a-very-long-clu-0-0"
        );
        assert_eq!(
            fqdn("chi-demo-cluster-0-0", "ns", None),
            "chi-demo-cluster-0-0.ns.svc.cluster.local"
        );
        assert_eq!(
            fqdn("svc", "ns", Some("%s.svc.my.test")),
            "svc.ns.svc.my.test"
        );
    }

    #[test]
    fn host_macros_expand_in_one_pass() {
        let m = HostMacros {
            chi: "demo",
            namespace: "ns",
            cluster: "a-very-long-cluster-name",
            cluster_index: 1,
            shard: "{replica}",
            shard_index: 2,
            replica: "r",
            replica_index: 3,
            host: "h",
        };
        assert_eq!(
            expand_host_macros("svc-{chi}-{cluster}-{shardIndex}-{replica}-{host}", &m),
            "svc-demo-a-very-long-clu-2-r-h"
        );
        // A value is not expanded again; unknown macros and a lone '{' stay.
        assert_eq!(expand_host_macros("{shard}", &m), "{replica}");
        assert_eq!(
            expand_host_macros("x-{chiID}-{clusterIndex}{replicaIndex}-{", &m),
            "x-{chiID}-13-{"
        );
    }

    #[test]
    fn generate_name_macros() {
        assert_eq!(
            expand_chi_macros("service-{chi}-{namespace}", "demo", "ns"),
            "service-demo-ns"
        );
        let long = "x".repeat(61);
        assert_eq!(
            expand_chi_macros("svc-{chi}", &long, "ns"),
            format!("svc-{}", "x".repeat(60))
        );
    }
}
