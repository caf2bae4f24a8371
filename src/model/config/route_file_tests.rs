//! A route spec written out as a route file (`routes from-manifests`) and read back is the same
//! spec, over generated specs that use every field; and the written entry is recognised as the
//! spec (`written_as`, what a reload uses to keep unchanged specs).

use std::net::Ipv6Addr;
use std::path::Path;
use std::sync::Arc;

use ch_edge_wire::proxy_out::ProxyVersion;
use ipnet::{IpNet, Ipv4Net};
use proptest::prelude::*;

use super::{parse_routes_file, render_routes_file, route_entry, routes, Format};
use crate::model::route::{
    Balance, RoutePostgres, RouteSpec, RouteTls, TlsMode, UpstreamAddr, UpstreamTls,
};

const SOURCE: &str = "routes.d/generated.yaml";

fn label() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,6}[a-z0-9]"
}

/// A normalised SNI pattern under a suffix of its own (`route` keeps routes' claims apart).
fn pattern(route: usize) -> impl Strategy<Value = Arc<str>> {
    prop_oneof![
        label().prop_map(move |l| format!("{l}.r{route}.example")),
        label().prop_map(move |l| format!("*.{l}.r{route}.example")),
    ]
    .prop_map(Arc::from)
}

fn upstream() -> impl Strategy<Value = UpstreamAddr> {
    let host = prop_oneof![
        (label(), label()).prop_map(|(a, b)| format!("{a}.{b}.svc")),
        any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
        any::<u128>().prop_map(|b| Ipv6Addr::from(b).to_string()),
    ];
    (host, prop::option::of(1u16..), 0u32..=4).prop_map(|(host, port, weight)| UpstreamAddr {
        refused: None,
        host: host.into(),
        port,
        weight,
    })
}

fn net() -> impl Strategy<Value = IpNet> {
    (any::<[u8; 4]>(), 0u8..=32)
        .prop_map(|(a, len)| IpNet::V4(Ipv4Net::new(a.into(), len).expect("len").trunc()))
}

fn route_tls() -> impl Strategy<Value = RouteTls> {
    let mode = prop::option::of(prop_oneof![
        Just(TlsMode::Passthrough),
        Just(TlsMode::Terminate),
        Just(TlsMode::Reencrypt),
    ]);
    let upstream = prop::option::of(
        (prop::option::of(label()), prop::option::of(label())).prop_map(|(ca, name)| UpstreamTls {
            ca: ca.map(|c| Arc::from(Path::new(&format!("/etc/ca/{c}.pem")))),
            server_name: name.map(|n| format!("{n}.example").into()),
        }),
    );
    let alpn = prop::option::of(
        prop::collection::vec("[a-z0-9/.]{1,8}", 1..3)
            .prop_map(|list| list.into_iter().map(Arc::from).collect::<Arc<[Arc<str>]>>()),
    );
    (mode, upstream, alpn)
        .prop_map(|(mode, upstream, alpn)| RouteTls {
            mode,
            upstream,
            alpn,
        })
        // A TLS block with nothing in it is not written at all (and reads back as none).
        .prop_filter("something written", |t| {
            t.mode.is_some() || t.upstream.is_some() || t.alpn.is_some()
        })
}

/// Every combination, `false` with no port included (written as `postgres_direct_ssl: false`).
fn route_postgres() -> impl Strategy<Value = RoutePostgres> {
    (any::<bool>(), prop::option::of(1u16..))
        .prop_map(|(direct_ssl, port)| RoutePostgres { direct_ssl, port })
}

fn spec(route: usize) -> impl Strategy<Value = RouteSpec> {
    (
        prop::collection::vec(pattern(route), 1..4),
        prop::option::of(label()),
        prop::collection::vec(upstream(), 1..4),
        prop::option::of(prop::collection::vec(net(), 1..4)),
        prop::option::of(prop_oneof![
            Just(ProxyVersion::Off),
            Just(ProxyVersion::V1),
            Just(ProxyVersion::V2)
        ]),
        prop::option::of(prop_oneof![
            Just(Balance::LeastConn),
            Just(Balance::RoundRobin)
        ]),
        prop::option::of(any::<bool>()),
        prop::option::of(route_tls()),
        prop::option::of(route_postgres()),
    )
        .prop_filter("distinct patterns", |(sni, ..)| {
            sni.iter().collect::<std::collections::BTreeSet<_>>().len() == sni.len()
        })
        .prop_map(
            |(sni, name, upstreams, allow, proxy_protocol, balance, sticky, tls, postgres)| {
                RouteSpec {
                    // Without a name, the name is the first pattern.
                    name: name.map_or_else(|| sni[0].clone(), Arc::from),
                    sni: sni.into(),
                    upstreams: upstreams.into(),
                    allow: allow.map(Arc::from),
                    proxy_protocol,
                    balance,
                    sticky,
                    tls: tls.map(Arc::new),
                    postgres,
                    source: SOURCE.into(),
                }
            },
        )
}

fn specs() -> impl Strategy<Value = Vec<RouteSpec>> {
    (spec(0), spec(1), spec(2), 1usize..=3).prop_map(|(a, b, c, n)| {
        let mut all = vec![a, b, c];
        all.truncate(n);
        all
    })
}

proptest! {
    #[test]
    fn a_spec_written_out_and_read_back_is_unchanged(specs in specs(), json in any::<bool>()) {
        let format = if json { Format::Json } else { Format::Yaml };
        let text = render_routes_file(&specs, format).expect("rendered");
        let back = parse_routes_file(&text, SOURCE, format)
            .unwrap_or_else(|e| panic!("{e}\n--- written:\n{text}"));
        prop_assert_eq!(&back, &specs, "written:\n{}", text);
        for spec in &specs {
            prop_assert!(routes::written_as(&route_entry::entry(spec).value, spec), "{:?}", spec);
        }
    }
}
