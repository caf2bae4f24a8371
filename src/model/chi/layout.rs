//! A cluster's hosts from its `layout`, as the operator's normalizer lays them out.

use serde_json::Value;

/// Most hosts one cluster may declare: a bigger layout is a typo, not a cluster.
pub const MAX_HOSTS: u64 = 10_000;

/// What is wrong with a cluster's `layout` (or a template reference in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("layout of {shards} shards x {replicas} replicas exceeds {MAX_HOSTS} hosts")]
    TooManyHosts { shards: u64, replicas: u64 },
    #[error("{key}: expected a list")]
    NotAList { key: String },
    /// `got` is the value as JSON.
    #[error("{key}: expected a non-negative integer, got {got}")]
    NotACount { key: String, got: String },
    #[error("templates.replicaServiceTemplate: expected a string, got {got}")]
    TemplateNotAString { got: String },
    #[error("name: expected a string, got {got}")]
    NameNotAString { got: String },
}

/// One host (replica pod) of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `{host}`: explicit, else `<shard>-<replica>`.
    pub name: String,
    /// `{shard}`: explicit, else the shard's index.
    pub shard: String,
    /// `{replica}`: explicit, else the replica's index.
    pub replica: String,
    pub shard_index: usize,
    pub replica_index: usize,
    /// `templates.replicaServiceTemplate` of the host entry, else of its shard,
    /// else of its replica (cluster and CHI defaults are the caller's).
    pub service_template: Option<String>,
}

/// The hosts of a cluster, shard by shard.
///
/// Counts follow the operator: the layout has as many shards as the largest of
/// `shardsCount`, `shards[]` and each `replicas[]` entry's `shardsCount`/`shards[]`
/// (at least 1), and likewise for replicas; a shard's own `replicasCount` or
/// `replicas[]` overrides the layout's. An explicitly named host
/// (`shards[i].replicas[j].name` or `replicas[j].shards[i].name`) keeps its
/// name; otherwise it is `<shard>-<replica>`, each defaulting to its index.
pub fn hosts(layout: Option<&Value>) -> Result<Vec<Host>, LayoutError> {
    let empty = Vec::new();
    let shards = array(layout, "shards")?.unwrap_or(&empty);
    let replicas = array(layout, "replicas")?.unwrap_or(&empty);

    let mut shards_count = count(layout, "shardsCount")?.max(len(shards));
    for r in replicas {
        let own = array(Some(r), "shards")?.map_or(0, |s| len(s));
        shards_count = shards_count.max(count(Some(r), "shardsCount")?).max(own);
    }
    let shards_count = shards_count.max(1);
    let mut replicas_count = count(layout, "replicasCount")?.max(len(replicas));
    let mut shard_counts = Vec::with_capacity(shards.len());
    for s in shards {
        let own = array(Some(s), "replicas")?.map_or(0, |r| len(r));
        let c = count(Some(s), "replicasCount")?.max(own);
        replicas_count = replicas_count.max(c);
        shard_counts.push(c);
    }
    let replicas_count = replicas_count.max(1);
    if shards_count.saturating_mul(replicas_count) > MAX_HOSTS {
        return Err(LayoutError::TooManyHosts {
            shards: shards_count,
            replicas: replicas_count,
        });
    }

    let mut out = Vec::new();
    for i in 0..shards_count as usize {
        let shard = shards.get(i);
        let shard_name = name(shard)?.map_or_else(|| i.to_string(), str::to_owned);
        let in_shard = match shard_counts.get(i) {
            Some(&c) if c > 0 => c,
            _ => replicas_count,
        };
        for j in 0..in_shard as usize {
            let replica = replicas.get(j);
            let replica_name = name(replica)?.map_or_else(|| j.to_string(), str::to_owned);
            let entries = [
                host_of(shard, "replicas", j)?,
                host_of(replica, "shards", i)?,
            ];
            let mut explicit = None;
            for e in entries {
                explicit = explicit.or(name(e)?);
            }
            let mut service_template = None;
            for e in [entries[0], entries[1], shard, replica] {
                service_template = service_template.or(replica_service_template(e)?);
            }
            out.push(Host {
                name: match explicit {
                    Some(n) => n.to_owned(),
                    None => super::naming::default_host_name(&shard_name, &replica_name),
                },
                shard: shard_name.clone(),
                replica: replica_name,
                shard_index: i,
                replica_index: j,
                service_template: service_template.map(str::to_owned),
            });
        }
    }
    Ok(out)
}

fn len(a: &[Value]) -> u64 {
    a.len() as u64
}

fn array<'a>(obj: Option<&'a Value>, key: &str) -> Result<Option<&'a Vec<Value>>, LayoutError> {
    match obj.and_then(|o| o.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(LayoutError::NotAList { key: key.into() }),
    }
}

fn count(obj: Option<&Value>, key: &str) -> Result<u64, LayoutError> {
    match obj.and_then(|o| o.get(key)) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v.as_u64().ok_or_else(|| LayoutError::NotACount {
            key: key.into(),
            got: v.to_string(),
        }),
    }
}

fn host_of<'a>(
    parent: Option<&'a Value>,
    key: &str,
    i: usize,
) -> Result<Option<&'a Value>, LayoutError> {
    Ok(array(parent, key)?.and_then(|a| a.get(i)))
}

/// `templates.replicaServiceTemplate` of a layout entry or cluster, if set.
pub fn replica_service_template(obj: Option<&Value>) -> Result<Option<&str>, LayoutError> {
    let t = obj
        .and_then(|o| o.get("templates"))
        .and_then(|t| t.get("replicaServiceTemplate"));
    match t {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(LayoutError::TemplateNotAString { got: v.to_string() }),
    }
}

/// An entry's `name`, if set and non-empty.
fn name(obj: Option<&Value>) -> Result<Option<&str>, LayoutError> {
    match obj.and_then(|o| o.get("name")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(LayoutError::NameNotAString { got: v.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(layout: Value) -> Vec<String> {
        host_names(Some(&layout)).unwrap()
    }

    fn host_names(layout: Option<&Value>) -> Result<Vec<String>, LayoutError> {
        Ok(hosts(layout)?.into_iter().map(|h| h.name).collect())
    }

    #[test]
    fn hosts_carry_shard_replica_and_template() {
        let layout = json!({"shards": [
            {"name": "s0", "templates": {"replicaServiceTemplate": "shard-t"}},
            {"replicas": [{"templates": {"replicaServiceTemplate": "host-t"}}]},
        ], "replicas": [{"name": "r0"}]});
        let host = |name: &str, shard: &str, shard_index, template: &str| Host {
            name: name.to_owned(),
            shard: shard.to_owned(),
            replica: "r0".to_owned(),
            shard_index,
            replica_index: 0,
            service_template: Some(template.to_owned()),
        };
        assert_eq!(
            hosts(Some(&layout)).unwrap(),
            [
                host("s0-r0", "s0", 0, "shard-t"),
                host("1-r0", "1", 1, "host-t")
            ]
        );
    }

    #[test]
    fn counts_default_to_one_by_one() {
        assert_eq!(host_names(None).unwrap(), ["0-0"]);
        assert_eq!(names(json!({})), ["0-0"]);
    }

    #[test]
    fn counts_make_a_grid_shard_by_shard() {
        assert_eq!(
            names(json!({"shardsCount": 2, "replicasCount": 2})),
            ["0-0", "0-1", "1-0", "1-1"]
        );
    }

    #[test]
    fn explicit_shards_and_host_names() {
        let layout = json!({"shards": [
            {"name": "s0", "replicasCount": 2},
            {"replicas": [{"name": "special"}, {}]},
        ]});
        assert_eq!(names(layout), ["s0-0", "s0-1", "special", "1-1"]);
    }

    #[test]
    fn a_shard_may_have_fewer_replicas() {
        let layout = json!({"replicasCount": 3, "shards": [{"replicasCount": 1}, {}]});
        assert_eq!(names(layout), ["0-0", "1-0", "1-1", "1-2"]);
    }

    #[test]
    fn replica_first_layout() {
        let layout =
            json!({"replicas": [{"name": "r0", "shardsCount": 2}, {"shards": [{"name": "h"}]}]});
        assert_eq!(names(layout), ["0-r0", "h", "1-r0", "1-1"]);
    }

    #[test]
    fn bad_layouts_are_errors() {
        assert!(host_names(Some(&json!({"shardsCount": -1}))).is_err());
        assert!(host_names(Some(&json!({"shardsCount": "2"}))).is_err());
        assert!(host_names(Some(&json!({"shards": {}}))).is_err());
        let huge = json!({"shardsCount": 1_000_000_000u64, "replicasCount": 1_000_000_000u64});
        assert!(host_names(Some(&huge)).is_err());
    }
}
