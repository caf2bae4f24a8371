//! A reload that reuses parsed files loads exactly what a fresh load does.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::text_hash;
use crate::config::{load, load_reusing, Config, RouteSpec};

fn routes_file(dir: &Path, name: &str, snis: &[&str]) {
    let mut text = String::from("routes:\n");
    for s in snis {
        text.push_str(&format!("  - sni: {s}\n    upstream: up\n"));
    }
    fs::write(dir.join("routes.d").join(name), text).unwrap();
}

/// A main config including `routes.d/`, with `defaults` (YAML lines) added.
fn main_config(defaults: &str) -> String {
    format!("listeners:\n  - name: native\n    address: \"127.0.0.1:9440\"\n{defaults}include: [routes.d]\n")
}

/// A temp dir with that config and `routes.d/` holding `a.yaml` (a1.test,
/// a2.test) and `b.yaml` (b1.test); the path of the main config.
fn two_files() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("routes.d")).unwrap();
    routes_file(d, "a.yaml", &["a1.test", "a2.test"]);
    routes_file(d, "b.yaml", &["b1.test"]);
    let main = d.join("config.yaml");
    fs::write(&main, main_config("")).unwrap();
    (dir, main)
}

/// The cached routes of a small (one-chunk) file.
fn cached(config: &Config, dir: &Path, name: &str) -> Option<Arc<[RouteSpec]>> {
    let path = dir.join("routes.d").join(name);
    let text = fs::read_to_string(&path).unwrap();
    let chunks = config.route_files.get(&path, text_hash(&text))?;
    assert_eq!(chunks.len(), 1, "a small file is one chunk");
    chunks.first().map(|c| c.routes.clone())
}

#[test]
fn unchanged_files_are_reused_changed_ones_parsed_and_checks_still_run() {
    let (dir, main) = two_files();
    let d = dir.path();
    let first = load(&main).unwrap();
    assert_eq!(first.route_files.len(), 2);
    let a_first = cached(&first, d, "a.yaml").expect("a cached");

    // b edited: a is reused as is, b parsed; the result equals a fresh load.
    routes_file(d, "b.yaml", &["b2.test", "b3.test"]);
    let second = load_reusing(&main, &first.route_files).unwrap();
    let fresh = load(&main).unwrap();
    assert_eq!(second.routes, fresh.routes);
    assert_eq!(second.content_hash, fresh.content_hash);
    let a_second = cached(&second, d, "a.yaml").expect("a still cached");
    assert!(Arc::ptr_eq(&a_first, &a_second), "a.yaml was parsed again");
    let b = cached(&second, d, "b.yaml").expect("b cached");
    let names: Vec<&str> = b.iter().map(|r| r.name.as_ref()).collect();
    assert_eq!(names, ["b2.test", "b3.test"]);

    // A new file claiming a cached file's SNI: the cross-file check still sees both.
    routes_file(d, "c.yaml", &["a1.test"]);
    let err = load_reusing(&main, &second.route_files)
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"a1.test\" is claimed twice"), "{err}");
    assert!(err.contains("a.yaml") && err.contains("c.yaml"), "{err}");

    // A broken file is not kept; removing files shrinks the set.
    routes_file(d, "c.yaml", &["bad..name"]);
    let err = load_reusing(&main, &second.route_files)
        .unwrap_err()
        .to_string();
    assert!(err.contains("c.yaml:2"), "{err}");
    fs::remove_file(d.join("routes.d/c.yaml")).unwrap();
    fs::remove_file(d.join("routes.d/b.yaml")).unwrap();
    let third = load_reusing(&main, &second.route_files).unwrap();
    assert_eq!(third.route_files.len(), 1);
    assert_eq!(third.routes, load(&main).unwrap().routes);
}

#[test]
fn a_reload_rebuilds_only_the_routes_of_changed_files() {
    use crate::resolve::Resolver;
    use crate::route::RouteTable;
    let (dir, main) = two_files();
    let d = dir.path();
    let resolver = Resolver::default();
    let build = |c: &Config, previous: &RouteTable| {
        RouteTable::build_reusing(&c.routes, &c.defaults, &resolver, previous).unwrap()
    };
    let first = load(&main).unwrap();
    let t1 = build(&first, &RouteTable::default());
    let same = |x: &RouteTable, y: &RouteTable, sni: &str| {
        let get = |t: &RouteTable| t.lookup(Some(sni.as_bytes())).unwrap().clone();
        Arc::ptr_eq(&get(x), &get(y))
    };

    routes_file(d, "b.yaml", &["b1.test", "b2.test"]);
    let second = load_reusing(&main, &first.route_files).unwrap();
    let t2 = build(&second, &t1);
    assert!(same(&t1, &t2, "a1.test") && same(&t1, &t2, "a2.test"));
    // b.yaml changed, its first route did not.
    assert!(same(&t1, &t2, "b1.test"));
    assert!(t2.lookup(Some(b"b2.test")).is_ok());
    fs::write(
        d.join("routes.d/b.yaml"),
        "routes:\n  - sni: b1.test\n    upstream: other\n",
    )
    .unwrap();
    let edited = load_reusing(&main, &second.route_files).unwrap();
    let te = build(&edited, &t2);
    assert!(!same(&t2, &te, "b1.test"));
    assert_eq!(
        &*te.lookup(Some(b"b1.test")).unwrap().upstreams[0].host,
        "other"
    );
    assert!(te.lookup(Some(b"b2.test")).is_err());

    // Other defaults: the file is unchanged, its routes are not.
    fs::write(&main, main_config("defaults:\n  proxy_protocol: v2\n")).unwrap();
    let third = load_reusing(&main, &second.route_files).unwrap();
    let t3 = build(&third, &t2);
    assert!(!same(&t2, &t3, "a1.test"));
    let a1 = t3.lookup(Some(b"a1.test")).unwrap();
    assert_eq!(a1.proxy_protocol, crate::config::ProxyVersion::V2);
}

/// 20,000 routes in one file (~1.4 MB: a few dozen chunks).
fn big_file(dir: &Path, edit: impl Fn(usize) -> Option<String>) {
    let mut text = String::from("# generated\nroutes:\n");
    for k in 0..20_000 {
        let route = edit(k).unwrap_or_else(|| {
            format!(
                "  - sni: r{k}.ch.test\n    upstream: \"10.0.{}.{}:9440\"\n",
                k / 256,
                k % 256
            )
        });
        text.push_str(&route);
    }
    fs::write(dir.join("routes.d/big.yaml"), text).unwrap();
}

#[test]
fn a_big_file_reloads_only_the_chunks_around_an_edit() {
    use crate::resolve::Resolver;
    use crate::route::RouteTable;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("routes.d")).unwrap();
    let main = d.join("config.yaml");
    fs::write(&main, main_config("")).unwrap();
    big_file(d, |_| None);
    let first = load(&main).unwrap();
    let groups = first.routes.groups().len();
    assert!(groups > 10, "{groups} chunks");
    let resolver = Resolver::default();
    let build = |c: &Config, previous: &RouteTable| {
        RouteTable::build_reusing(&c.routes, &c.defaults, &resolver, previous).unwrap()
    };
    let t1 = build(&first, &RouteTable::default());
    let shared = |a: &Config, b: &Config| {
        a.routes
            .groups()
            .iter()
            .filter(|g| b.routes.groups().iter().any(|h| Arc::ptr_eq(g, h)))
            .count()
    };
    let route = |t: &RouteTable, sni: &str| t.lookup(Some(sni.as_bytes())).unwrap().clone();
    let same =
        |a: &RouteTable, b: &RouteTable, sni: &str| Arc::ptr_eq(&route(a, sni), &route(b, sni));
    // Reloads after an edit: equal to a fresh load, keeping all but `new` chunks.
    let reload = |previous: &Config, new: usize| {
        let next = load_reusing(&main, &previous.route_files).unwrap();
        assert_eq!(next.routes, load(&main).unwrap().routes);
        let kept = shared(previous, &next);
        assert!(kept >= groups - new, "{kept} of {groups} chunks kept");
        next
    };

    // One route edited in the middle: the other chunks are the same Arcs,
    // and so are the routes built from them.
    big_file(d, |k| {
        (k == 10_000).then(|| "  - sni: r10000.ch.test\n    upstream: \"10.9.9.9:9440\"\n".into())
    });
    let second = reload(&first, 2);
    let t2 = build(&second, &t1);
    assert!(same(&t1, &t2, "r5.ch.test") && same(&t1, &t2, "r19999.ch.test"));
    assert_eq!(&*route(&t2, "r10000.ch.test").upstreams[0].host, "10.9.9.9");
    // In the edited chunk, the unchanged routes keep theirs too.
    assert!(same(&t1, &t2, "r10001.ch.test"));

    // A route inserted at the top: chunk cuts depend on content, not on
    // offsets, so the chunks after the first few are still reused.
    big_file(d, |k| {
        (k == 0).then(|| "  - sni: new.ch.test\n    upstream: up\n  - sni: r0.ch.test\n    upstream: \"10.0.0.0:9440\"\n".into())
    });
    let third = reload(&second, 3);
    let t3 = build(&third, &t2);
    assert!(t3.lookup(Some(b"new.ch.test")).is_ok());
    assert!(same(&t2, &t3, "r15000.ch.test"));

    // A broken route in a cached file: refused as a whole, numbered in the file.
    big_file(d, |k| {
        (k == 12_345).then(|| "  - sni: bad..name\n    upstream: up\n".into())
    });
    let err = load_reusing(&main, &third.route_files)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("big.yaml:24693: route \"bad..name\" (#12346)"),
        "{err}"
    );
}
