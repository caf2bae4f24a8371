use super::build::PARALLEL_FROM;
use super::*;
use proptest::prelude::*;

/// Upstreams carry their host name: enough to see what a route was built with.
#[derive(Default)]
struct Resolver;

impl Resolve for Resolver {
    type Addrs = Arc<str>;
    type Meters = ();

    fn addrs(&self, host: &Arc<str>) -> Arc<str> {
        host.clone()
    }

    fn refused(&self) -> Arc<str> {
        Arc::from("")
    }
}

type RouteTable = super::RouteTable<Arc<str>, ()>;
type Route = super::Route<Arc<str>, ()>;

fn spec(name: &str, sni: &[&str], source: &str) -> RouteSpec {
    RouteSpec {
        name: name.into(),
        sni: sni.iter().map(|s| Arc::from(*s)).collect(),
        upstreams: Arc::from([UpstreamAddr::new("127.0.0.1", Some(9440))]),
        allow: None,
        proxy_protocol: None,
        balance: None,
        sticky: None,
        tls: None,
        postgres: None,
        source: source.into(),
    }
}

fn table(specs: &[RouteSpec]) -> RouteTable {
    RouteTable::build(specs, &Defaults::default(), &Resolver).expect("valid table")
}

fn hit<'a>(t: &'a RouteTable, sni: &str) -> Result<&'a str, Miss> {
    t.lookup(Some(sni.as_bytes())).map(|r| &*r.name)
}

fn sample() -> RouteTable {
    table(&[
        spec("chi", &["demo.ch.example.com"], "c.yaml"),
        spec("pod", &["chi-demo-cluster-0-0.ch.example.com"], "c.yaml"),
        spec("wild", &["*.ch.example.com"], "c.yaml"),
        spec("deeper", &["*.eu.ch.example.com"], "c.yaml"),
        spec("other", &["*.example.org", "example.org"], "c.yaml"),
    ])
}

#[test]
fn exact_beats_wildcard_beats_catch_all() {
    let mut specs = vec![
        spec("exact", &["a.ch.example.com"], "c.yaml"),
        spec("wild", &["*.ch.example.com"], "c.yaml"),
    ];
    let t = table(&specs);
    assert_eq!(hit(&t, "a.ch.example.com"), Ok("exact"));
    assert_eq!(hit(&t, "b.ch.example.com"), Ok("wild"));
    assert_eq!(hit(&t, "elsewhere.net"), Err(Miss::UnknownName));
    specs.push(spec("all", &["*"], "c.yaml"));
    let t = table(&specs);
    assert_eq!(hit(&t, "a.ch.example.com"), Ok("exact"));
    assert_eq!(hit(&t, "b.ch.example.com"), Ok("wild"));
    assert_eq!(hit(&t, "elsewhere.net"), Ok("all"));
}

#[test]
fn longest_suffix_wins_at_any_depth() {
    let t = sample();
    assert_eq!(hit(&t, "x.eu.ch.example.com"), Ok("deeper"));
    assert_eq!(hit(&t, "a.b.c.eu.ch.example.com"), Ok("deeper"));
    assert_eq!(hit(&t, "a.b.ch.example.com"), Ok("wild"));
    // The wildcard needs at least one label in front of its suffix.
    assert_eq!(hit(&t, "eu.ch.example.com"), Ok("wild"));
    assert_eq!(hit(&t, "ch.example.com"), Err(Miss::UnknownName));
    assert_eq!(hit(&t, "example.org"), Ok("other"));
    assert_eq!(hit(&t, "www.example.org"), Ok("other"));
}

#[test]
fn case_and_one_trailing_dot_are_ignored() {
    let t = sample();
    assert_eq!(hit(&t, "DEMO.Ch.Example.COM"), Ok("chi"));
    assert_eq!(hit(&t, "demo.ch.example.com."), Ok("chi"));
    assert_eq!(hit(&t, "X.CH.EXAMPLE.COM."), Ok("wild"));
    assert_eq!(hit(&t, "demo.ch.example.com.."), Err(Miss::UnknownName));
}

#[test]
fn malformed_names_are_unknown() {
    let t = sample();
    for bad in [
        &b"d\xc3\xa9mo.ch.example.com"[..],
        b"\xff\xfe",
        b"",
        b".",
        b".ch.example.com",
        b"a..ch.example.com",
        b"a b.ch.example.com",
        b"a\0.ch.example.com",
    ] {
        assert_eq!(
            t.lookup(Some(bad)).map(|r| &*r.name),
            Err(Miss::UnknownName),
            "{bad:?}"
        );
    }
    let long = format!("{}.ch.example.com", "a".repeat(300));
    assert_eq!(hit(&t, &long), Err(Miss::UnknownName));
    // Malformed names still reach the catch-all, which takes everything.
    let with_all = table(&[spec("all", &["*"], "c.yaml")]);
    assert_eq!(with_all.lookup(Some(b"\xff")).map(|r| &*r.name), Ok("all"));
    assert_eq!(hit(&with_all, &long), Ok("all"));
}

#[test]
fn longest_acceptable_name_routes() {
    // 253 characters plus the trailing dot fill the whole buffer.
    let label = "a".repeat(61);
    let name = format!("{label}.{label}.{label}.{label}.ch.example.com");
    let name = &name[name.len() - 253..];
    let t = table(&[spec("n", &[name], "c.yaml")]);
    assert_eq!(hit(&t, name), Ok("n"));
    assert_eq!(hit(&t, &format!("{name}.")), Ok("n"));
}

#[test]
fn no_sni_goes_to_catch_all_only() {
    let t = sample();
    assert_eq!(t.lookup(None).map(|r| &*r.name), Err(Miss::NoSni));
    let t = table(&[spec("all", &["*"], "c.yaml"), spec("w", &["*.a"], "c.yaml")]);
    assert_eq!(t.lookup(None).map(|r| &*r.name), Ok("all"));
}

#[test]
fn patterns_are_normalised_on_build() {
    let t = table(&[spec("x", &["Demo.CH.example.com."], "c.yaml")]);
    assert_eq!(hit(&t, "demo.ch.example.com"), Ok("x"));
}

#[test]
fn duplicate_claims_name_both_routes() {
    let specs = [
        spec("a", &["x.example.com"], "main.yaml"),
        spec("b", &["y.example.com"], "routes.d/r.yaml"),
        spec("c", &["X.example.com."], "routes.d/r.yaml"),
    ];
    let err = RouteTable::build(&specs, &Defaults::default(), &Resolver).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SNI \"x.example.com\" is claimed twice: route \"a\" (#1) in main.yaml and route \"c\" (#2) in routes.d/r.yaml"
    );
    let normalised = [spec("a", &["*.e"], "m"), spec("b", &["*.e"], "m")];
    assert!(matches!(
        check_claims(&normalised),
        Err(RouteError::DuplicateClaim { .. })
    ));
    assert_eq!(check_claims(&specs[..2]), Ok(()));
}

#[test]
fn build_rejects_invalid_specs() {
    let d = Defaults::default();
    let r = Resolver;
    let bad = [spec("w", &["a.*.b"], "s.yaml")];
    let e = RouteTable::build(&bad, &d, &r).unwrap_err().to_string();
    assert!(
        e.contains("route \"w\" (#1) in s.yaml: invalid SNI pattern \"a.*.b\""),
        "{e}"
    );
    let mut none = spec("n", &["a"], "s.yaml");
    none.upstreams = Arc::from([]);
    let e = RouteTable::build(&[none], &d, &r).unwrap_err();
    assert!(matches!(e, RouteError::NoUpstream { .. }), "{e}");
    let e = RouteTable::build(&[spec("n", &[], "s.yaml")], &d, &r).unwrap_err();
    assert!(matches!(e, RouteError::NoSni { .. }), "{e}");
}

#[test]
fn routes_take_defaults_and_overrides() {
    let mut own = spec("own", &["own.example.com"], "c.yaml");
    own.allow = Some(Arc::from(["10.0.0.0/8".parse().unwrap()]));
    own.proxy_protocol = Some(ProxyVersion::V1);
    let defaults = Defaults {
        allow: vec!["192.0.2.0/24".parse().unwrap()],
        proxy_protocol: ProxyVersion::V2,
        ..Defaults::default()
    };
    let specs = [own, spec("dflt", &["dflt.example.com"], "c.yaml")];
    let t = RouteTable::build(&specs, &defaults, &Resolver).unwrap();
    assert_eq!(t.len(), 2);
    assert!(!t.is_empty());
    let own = t.lookup(Some(b"own.example.com")).unwrap();
    assert_eq!(own.proxy_protocol, ProxyVersion::V1);
    assert!(own.allow.allows("10.1.1.1".parse().unwrap()));
    assert!(!own.allow.allows("192.0.2.1".parse().unwrap()));
    let d = t.lookup(Some(b"dflt.example.com")).unwrap();
    assert_eq!(d.proxy_protocol, ProxyVersion::V2);
    assert!(d.allow.allows("192.0.2.1".parse().unwrap()));
    assert_eq!(&*d.upstreams[0].host, "127.0.0.1");
    assert_eq!(
        &*d.upstreams[0].addrs, "127.0.0.1",
        "built with the resolver's handle"
    );
    let names: Vec<&str> = t.routes().map(|r| &*r.name).collect();
    assert_eq!(names, ["own", "dflt"]);
}

/// Brute-force reference: scan every pattern.
fn reference<'a>(patterns: &'a [String], query: &str) -> Option<&'a str> {
    let q = query.to_ascii_lowercase();
    let q = q.strip_suffix('.').unwrap_or(&q);
    if let Some(p) = patterns.iter().find(|p| *p == q) {
        return Some(p);
    }
    let wild = patterns
        .iter()
        .filter_map(|p| p.strip_prefix("*.").map(|s| (p, s)))
        .filter(|(_, s)| q.len() > s.len() + 1 && q.ends_with(&format!(".{s}")))
        .max_by_key(|(_, s)| s.len());
    if let Some((p, _)) = wild {
        return Some(p);
    }
    patterns.iter().find(|p| *p == "*").map(|p| p.as_str())
}

fn name_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "ch", "x-1"]), 1..5)
        .prop_map(|l| l.join("."))
}

fn pattern_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => name_strategy(),
        3 => name_strategy().prop_map(|n| format!("*.{n}")),
        1 => Just("*".to_owned()),
    ]
}

proptest! {
    #[test]
    fn lookup_matches_brute_force(
        patterns in prop::collection::btree_set(pattern_strategy(), 0..24),
        queries in prop::collection::vec((name_strategy(), any::<bool>(), any::<bool>()), 1..16),
    ) {
        let patterns: Vec<String> = patterns.into_iter().collect();
        // One route per pattern, named by its pattern.
        let specs: Vec<RouteSpec> = patterns.iter().map(|p| spec(p, &[p], "p.yaml")).collect();
        let t = table(&specs);
        for (q, upper, dot) in queries {
            let mut q = if upper { q.to_ascii_uppercase() } else { q };
            if dot { q.push('.'); }
            let got = t.lookup(Some(q.as_bytes())).ok().map(|r| &*r.name);
            prop_assert_eq!(got, reference(&patterns, &q), "query {}", q);
        }
    }

    #[test]
    fn exact_always_beats_wildcard(name in name_strategy(), wild_depth in 0usize..4) {
        let labels: Vec<&str> = name.split('.').collect();
        let suffix = labels[labels.len().saturating_sub(wild_depth + 1)..].join(".");
        let specs = [spec("wild", &[&format!("*.{suffix}")], "p"), spec("exact", &[&name], "p")];
        let t = table(&specs);
        prop_assert_eq!(hit(&t, &name), Ok("exact"));
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_never_say_no_sni(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let t = sample();
        match t.lookup(Some(&bytes)) {
            Ok(r) => prop_assert!(bytes.is_ascii(), "routed non-ASCII to {}", r.name),
            Err(miss) => prop_assert_eq!(miss, Miss::UnknownName),
        }
    }
}

/// Routes as a config holds them: one shared group per file.
fn groups(files: &[Arc<[RouteSpec]>]) -> Routes {
    let mut routes = Routes::default();
    for f in files {
        routes.push_group(f.clone());
    }
    routes
}

fn route<'a>(t: &'a RouteTable, sni: &str) -> &'a Arc<Route> {
    t.lookup(Some(sni.as_bytes())).expect("routed")
}

#[test]
fn unchanged_groups_keep_their_routes_changed_ones_are_rebuilt() {
    let (d, r) = (Defaults::default(), Resolver);
    let a: Arc<[RouteSpec]> = vec![spec("a", &["a.test", "*.a.test"], "a.yaml")].into();
    let b: Arc<[RouteSpec]> = vec![spec("b", &["b.test"], "b.yaml")].into();
    let first = RouteTable::build(&groups(&[a.clone(), b]), &d, &r).unwrap();
    // b.yaml re-read with other text: a new group, equal or not.
    let b2: Arc<[RouteSpec]> = vec![spec("b", &["b.test", "b2.test"], "b.yaml")].into();
    let second = RouteTable::build_reusing(&groups(&[a.clone(), b2]), &d, &r, &first).unwrap();
    assert!(Arc::ptr_eq(
        route(&first, "a.test"),
        route(&second, "a.test")
    ));
    assert!(Arc::ptr_eq(
        route(&first, "x.a.test"),
        route(&second, "x.a.test")
    ));
    assert!(!Arc::ptr_eq(
        route(&first, "b.test"),
        route(&second, "b.test")
    ));
    assert_eq!(hit(&second, "b2.test"), Ok("b"));
    assert_eq!(second.len(), 2);
    // Reuse carries over to the next build too.
    let c: Arc<[RouteSpec]> = vec![spec("c", &["c.test"], "c.yaml")].into();
    let third = RouteTable::build_reusing(&groups(&[c, a]), &d, &r, &second).unwrap();
    assert!(Arc::ptr_eq(
        route(&first, "a.test"),
        route(&third, "a.test")
    ));
    assert_eq!(hit(&third, "b.test"), Err(Miss::UnknownName));
    let names: Vec<&str> = third.routes().map(|r| &*r.name).collect();
    assert_eq!(names, ["c", "a"]);
}

#[test]
fn changed_defaults_rebuild_every_route() {
    let r = Resolver;
    let a: Arc<[RouteSpec]> = vec![spec("a", &["a.test"], "a.yaml")].into();
    let specs = groups(&[a]);
    let first = RouteTable::build(&specs, &Defaults::default(), &r).unwrap();
    let same = RouteTable::build_reusing(&specs, &Defaults::default(), &r, &first).unwrap();
    assert!(Arc::ptr_eq(route(&first, "a.test"), route(&same, "a.test")));
    let strict = Defaults {
        allow: vec!["192.0.2.0/24".parse().unwrap()],
        proxy_protocol: ProxyVersion::V2,
        ..Defaults::default()
    };
    let second = RouteTable::build_reusing(&specs, &strict, &r, &first).unwrap();
    let a2 = route(&second, "a.test");
    assert!(!Arc::ptr_eq(route(&first, "a.test"), a2));
    assert_eq!(a2.proxy_protocol, ProxyVersion::V2);
    assert!(!a2.allow.allows("10.0.0.1".parse().unwrap()));
}

#[test]
fn unshared_specs_are_never_reused() {
    let (d, r) = (Defaults::default(), Resolver);
    let specs = vec![spec("a", &["a.test"], "a.yaml")];
    let first = RouteTable::build(&specs, &d, &r).unwrap();
    let second = RouteTable::build_reusing(&specs, &d, &r, &first).unwrap();
    assert!(!Arc::ptr_eq(
        route(&first, "a.test"),
        route(&second, "a.test")
    ));
}

#[test]
fn claims_are_checked_across_reused_and_new_groups() {
    let (d, r) = (Defaults::default(), Resolver);
    let a: Arc<[RouteSpec]> = vec![spec("a", &["a.test"], "a.yaml")].into();
    let first = RouteTable::build(&groups(std::slice::from_ref(&a)), &d, &r).unwrap();
    let b: Arc<[RouteSpec]> = vec![
        spec("b", &["b.test"], "b.yaml"),
        spec("b-a", &["A.test."], "b.yaml"),
    ]
    .into();
    let err = RouteTable::build_reusing(&groups(&[a, b]), &d, &r, &first).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"SNI "a.test" is claimed twice: route "a" (#1) in a.yaml and route "b-a" (#2) in b.yaml"#
    );
}

#[test]
fn an_edited_file_keeps_the_routes_it_did_not_change() {
    let (d, r) = (Defaults::default(), Resolver);
    let a: Arc<[RouteSpec]> = vec![
        spec("a1", &["a1.test"], "a.yaml"),
        spec("a2", &["a2.test"], "a.yaml"),
        spec("a3", &["a3.test"], "a.yaml"),
    ]
    .into();
    let first = RouteTable::build(&groups(&[a]), &d, &r).unwrap();
    let mut edited = spec("a2", &["a2.test"], "a.yaml");
    edited.proxy_protocol = Some(ProxyVersion::V1);
    let a: Arc<[RouteSpec]> = vec![
        spec("a1", &["a1.test"], "a.yaml"),
        edited,
        spec("a3", &["a3.test"], "a.yaml"),
        spec("a4", &["a4.test"], "a.yaml"),
    ]
    .into();
    let second = RouteTable::build_reusing(&groups(&[a]), &d, &r, &first).unwrap();
    assert!(Arc::ptr_eq(
        route(&first, "a1.test"),
        route(&second, "a1.test")
    ));
    assert!(Arc::ptr_eq(
        route(&first, "a3.test"),
        route(&second, "a3.test")
    ));
    assert!(!Arc::ptr_eq(
        route(&first, "a2.test"),
        route(&second, "a2.test")
    ));
    assert_eq!(route(&second, "a2.test").proxy_protocol, ProxyVersion::V1);
    assert_eq!(hit(&second, "a4.test"), Ok("a4"));
}

#[test]
fn a_big_group_compiles_in_jobs_like_a_small_one() {
    let (d, r) = (Defaults::default(), Resolver);
    let n = 3 * PARALLEL_FROM;
    let specs: Vec<RouteSpec> = (0..n)
        .map(|k| spec(&format!("r{k}"), &[&format!("R{k}.test.")], "big.yaml"))
        .collect();
    let shared: Arc<[RouteSpec]> = specs.clone().into();
    let first = RouteTable::build(&groups(std::slice::from_ref(&shared)), &d, &r).unwrap();
    let names: Vec<&str> = first.routes().map(|r| &*r.name).collect();
    let expected: Vec<String> = (0..n).map(|k| format!("r{k}")).collect();
    assert_eq!(names, expected);
    assert_eq!(
        hit(&first, &format!("r{}.test", n - 1)),
        Ok(&*format!("r{}", n - 1))
    );

    // Edited at both ends: the rest keep their routes, across jobs.
    let mut edited = specs.clone();
    edited[0].proxy_protocol = Some(ProxyVersion::V1);
    edited[n - 1].proxy_protocol = Some(ProxyVersion::V2);
    let edited: Arc<[RouteSpec]> = edited.into();
    let second = RouteTable::build_reusing(&groups(&[edited]), &d, &r, &first).unwrap();
    for k in [1, n / 2, n - 2] {
        let sni = format!("r{k}.test");
        assert!(
            Arc::ptr_eq(route(&first, &sni), route(&second, &sni)),
            "{sni}"
        );
    }
    assert_eq!(route(&second, "r0.test").proxy_protocol, ProxyVersion::V1);

    // Errors in several jobs: the first in spec order, numbered in its file.
    let mut bad = specs.clone();
    bad[n - 10].sni = Arc::from([Arc::from("a.*.b")]);
    bad[n / 2].upstreams = Arc::from([]);
    bad[n / 2 + 1].sni = Arc::from([]);
    let e = RouteTable::build(&bad, &d, &r).unwrap_err();
    assert_eq!(
        e,
        RouteError::NoUpstream {
            route: RouteRef {
                name: format!("r{}", n / 2),
                index: n / 2 + 1,
                source: "big.yaml".into()
            }
        }
    );
    // A claim across jobs.
    let mut twice = specs;
    twice[n - 1].sni = Arc::from([Arc::from("r0.test")]);
    let e = RouteTable::build(&twice, &d, &r).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            r#"SNI "r0.test" is claimed twice: route "r0" (#1) in big.yaml and route "r{}" (#{n}) in big.yaml"#,
            n - 1
        )
    );
}

#[test]
fn an_entry_inserted_before_the_others_keeps_their_routes() {
    let (d, r) = (Defaults::default(), Resolver);
    let a: Arc<[RouteSpec]> = (1..=3)
        .map(|k| spec(&format!("a{k}"), &[&format!("a{k}.test")], "a.yaml"))
        .collect();
    let first = RouteTable::build(&groups(std::slice::from_ref(&a)), &d, &r).unwrap();
    let mut shifted = vec![spec("a0", &["a0.test"], "a.yaml")];
    shifted.extend(a.iter().skip(1).cloned());
    let second = RouteTable::build_reusing(&groups(&[shifted.into()]), &d, &r, &first).unwrap();
    for sni in ["a2.test", "a3.test"] {
        assert!(
            Arc::ptr_eq(route(&first, sni), route(&second, sni)),
            "{sni}"
        );
    }
    assert_eq!(hit(&second, "a0.test"), Ok("a0"));
    assert_eq!(hit(&second, "a1.test"), Err(Miss::UnknownName));
}

fn found(t: &RouteTable, sni: &str) -> Result<(String, Option<String>), Miss> {
    t.find(Some(sni.as_bytes())).map(|f| {
        (
            f.route.name.to_string(),
            f.sticky.map(|t| t.as_str().to_owned()),
        )
    })
}

fn pair(route: &str, tag: Option<&str>) -> Result<(String, Option<String>), Miss> {
    Ok((route.to_owned(), tag.map(str::to_owned)))
}

#[test]
fn sticky_names_are_served_by_the_named_route_with_their_tag() {
    let mut off = spec("off", &["off.ch.example.com"], "c.yaml");
    off.sticky = Some(false);
    let t = table(&[
        spec("cluster", &["demo-cluster.ch.example.com"], "c.yaml"),
        spec(
            "pinned",
            &["s1.sticky.demo-cluster.ch.example.com"],
            "c.yaml",
        ),
        spec("wild", &["*.ch.example.com"], "c.yaml"),
        off,
    ]);
    // The tag, lower-cased, goes with the route of the rest of the name.
    assert_eq!(
        found(&t, "Session-7.STICKY.demo-cluster.ch.example.com."),
        pair("cluster", Some("session-7"))
    );
    // An exact route for the whole name wins over the sticky form.
    assert_eq!(
        found(&t, "s1.sticky.demo-cluster.ch.example.com"),
        pair("pinned", None)
    );
    // The sticky form beats a wildcard that matches the whole name.
    assert_eq!(
        found(&t, "x.sticky.demo-cluster.ch.example.com"),
        pair("cluster", Some("x"))
    );
    // `sticky: false`: the name is an ordinary one again (here: the wildcard's).
    assert_eq!(found(&t, "x.sticky.off.ch.example.com"), pair("wild", None));
    // Only `<tag>.sticky.<exact name>`: anything else is an ordinary name.
    for plain in [
        "sticky.demo-cluster.ch.example.com",
        "a.b.sticky.demo-cluster.ch.example.com",
        "x.sticky.nothing.ch.example.com",
        "x.stickyy.demo-cluster.ch.example.com",
    ] {
        assert_eq!(found(&t, plain), pair("wild", None), "{plain}");
    }
    // A label too long to be a tag is not a sticky name.
    let long = format!("{}.sticky.demo-cluster.ch.example.com", "a".repeat(64));
    assert_eq!(found(&t, &long), pair("wild", None));
    // Without the wildcard, a sticky form of an unknown name is unknown.
    let narrow = table(&[spec("cluster", &["demo.example.com"], "c.yaml")]);
    assert_eq!(
        found(&narrow, "x.sticky.other.example.com"),
        Err(Miss::UnknownName)
    );
    assert_eq!(
        found(&narrow, "t.sticky.demo.example.com"),
        pair("cluster", Some("t"))
    );
}

#[test]
fn balance_and_sticky_come_from_the_route_else_the_defaults() {
    let mut own = spec("own", &["own.example.com"], "c.yaml");
    own.balance = Some(Balance::RoundRobin);
    own.sticky = Some(true);
    let specs = [own, spec("dflt", &["dflt.example.com"], "c.yaml")];
    let t = table(&specs);
    let r = |t: &RouteTable, n: &str| {
        let r = t.lookup(Some(n.as_bytes())).unwrap();
        (r.balance, r.sticky)
    };
    assert_eq!(r(&t, "own.example.com"), (Balance::RoundRobin, true));
    assert_eq!(r(&t, "dflt.example.com"), (Balance::LeastConn, true));
    let defaults = Defaults {
        balance: Balance::RoundRobin,
        sticky: false,
        ..Defaults::default()
    };
    let t = RouteTable::build(&specs, &defaults, &Resolver).unwrap();
    assert_eq!(r(&t, "own.example.com"), (Balance::RoundRobin, true));
    assert_eq!(r(&t, "dflt.example.com"), (Balance::RoundRobin, false));
    assert!(t.find(Some(b"x.sticky.dflt.example.com")).is_err());
}
