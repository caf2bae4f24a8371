//! Reading one route entry ([`RawRoute`]) by hand rather than by derive: an unknown key or a
//! key written twice is recorded on the entry and its value skipped, so validation reports it
//! with the route and line, and goes on to the next entry (a derived reader stops the whole
//! file at the first).

use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::raw::{KeyProblem, RawRoute, S};

/// Every key of a route entry, in the order documented.
pub(crate) const ROUTE_KEYS: &[&str] = &[
    "name",
    "sni",
    "upstream",
    "allow",
    "proxy_protocol",
    "balance",
    "sticky",
    "tls",
    "upstream_tls",
    "alpn",
    "postgres_direct_ssl",
    "postgres_port",
];

impl<'de> Deserialize<'de> for RawRoute {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct("RawRoute", ROUTE_KEYS, EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = RawRoute;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a route: a mapping with sni, upstream, …")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRoute, A::Error> {
        let mut r = RawRoute::default();
        while let Some(key) = map.next_key::<Key>()? {
            let (key, message) = match key {
                Key::Known(k) if !is_set(&r, k) => {
                    read(&mut r, k, &mut map)?;
                    continue;
                }
                Key::Known(k) => (
                    ROUTE_KEYS[k].to_owned(),
                    "written twice in this route: keep one".to_owned(),
                ),
                Key::Unknown(key) => {
                    let expected = format!("expected one of {}", ROUTE_KEYS.join(", "));
                    let message = match suggestion(&key) {
                        Some(near) => format!("unknown key ({expected}; did you mean {near:?}?)"),
                        None => format!("unknown key ({expected})"),
                    };
                    (key, message)
                }
            };
            // The value is skipped; its line stands for the key's (the same, but for a
            // nested block, which starts on the next).
            let line = map.next_value::<S<IgnoredAny>>()?.referenced.line();
            r.key_problems.push(KeyProblem { line, key, message });
        }
        Ok(r)
    }
}

/// A key of a route entry: its number in [`ROUTE_KEYS`], or the text of an unknown one (only
/// then allocated: a big file has hundreds of thousands of keys).
enum Key {
    Known(usize),
    Unknown(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a route key")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match ROUTE_KEYS.iter().position(|k| *k == v) {
                    Some(k) => Key::Known(k),
                    None => Key::Unknown(v.to_owned()),
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// Reads the value of key number `k` into `r`.
fn read<'de, A: MapAccess<'de>>(r: &mut RawRoute, k: usize, map: &mut A) -> Result<(), A::Error> {
    // Every field named: a new one does not compile until it is read here (and in `is_set`,
    // and in [`ROUTE_KEYS`] at its number).
    let RawRoute {
        name,
        sni,
        upstream,
        allow,
        proxy_protocol,
        balance,
        sticky,
        tls,
        upstream_tls,
        alpn,
        postgres_direct_ssl,
        postgres_port,
        key_problems: _,
    } = r;
    match k {
        0 => *name = Some(map.next_value()?),
        1 => *sni = Some(map.next_value()?),
        2 => *upstream = Some(map.next_value()?),
        3 => *allow = Some(map.next_value()?),
        4 => *proxy_protocol = Some(map.next_value()?),
        5 => *balance = Some(map.next_value()?),
        6 => *sticky = Some(map.next_value()?),
        7 => *tls = Some(map.next_value()?),
        8 => *upstream_tls = Some(map.next_value()?),
        9 => *alpn = Some(map.next_value()?),
        10 => *postgres_direct_ssl = Some(map.next_value()?),
        _ => *postgres_port = Some(map.next_value()?),
    }
    Ok(())
}

/// Whether key number `k` already has a value.
fn is_set(r: &RawRoute, k: usize) -> bool {
    let RawRoute {
        name,
        sni,
        upstream,
        allow,
        proxy_protocol,
        balance,
        sticky,
        tls,
        upstream_tls,
        alpn,
        postgres_direct_ssl,
        postgres_port,
        key_problems: _,
    } = r;
    match k {
        0 => name.is_some(),
        1 => sni.is_some(),
        2 => upstream.is_some(),
        3 => allow.is_some(),
        4 => proxy_protocol.is_some(),
        5 => balance.is_some(),
        6 => sticky.is_some(),
        7 => tls.is_some(),
        8 => upstream_tls.is_some(),
        9 => alpn.is_some(),
        10 => postgres_direct_ssl.is_some(),
        _ => postgres_port.is_some(),
    }
}

/// The key an unknown `key` is likely a typo of.
fn suggestion(key: &str) -> Option<&'static str> {
    ch_edge_wire::keyword::closest(key, ROUTE_KEYS.iter().copied())
}
