//! A reload that reuses parsed files loads exactly what a fresh load does.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::text_hash;
use crate::model::config::{load, load_reusing, Config};
use crate::model::route::RouteSpec;

fn routes_file(dir: &Path, name: &str, snis: &[&str]) {
    let text = if name.ends_with(".json") {
        let routes: Vec<String> = snis
            .iter()
            .map(|s| format!("{{\"sni\": \"{s}\", \"upstream\": \"up\"}}"))
            .collect();
        format!("{{\"routes\": [{}]}}\n", routes.join(", "))
    } else {
        let mut text = String::from("routes:\n");
        for s in snis {
            text.push_str(&format!("  - sni: {s}\n    upstream: up\n"));
        }
        text
    };
    fs::write(dir.join("routes.d").join(name), text).unwrap();
}

/// A temp dir with a config including `routes.d/`, which holds `a.yaml` (a1.test, a2.test) and
/// `b.json` (b1.test); the path of the main config.
fn two_files() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("routes.d")).unwrap();
    routes_file(d, "a.yaml", &["a1.test", "a2.test"]);
    routes_file(d, "b.json", &["b1.test"]);
    let main = d.join("config.yaml");
    fs::write(
        &main,
        "listeners:\n  - name: native\n    address: \"127.0.0.1:9440\"\ninclude: [routes.d]\n",
    )
    .unwrap();
    (dir, main)
}

/// The cached routes of a file.
fn cached(config: &Config, dir: &Path, name: &str) -> Option<Arc<[RouteSpec]>> {
    let path = dir.join("routes.d").join(name);
    let text = fs::read_to_string(&path).unwrap();
    config.route_files.get(&path, text_hash(&text)).cloned()
}

#[test]
fn unchanged_files_are_reused_changed_ones_parsed_and_checks_still_run() {
    let (dir, main) = two_files();
    let d = dir.path();
    let first = load(&main).unwrap();
    assert_eq!(first.route_files.len(), 2);
    let a_first = cached(&first, d, "a.yaml").expect("a cached");
    let names: Vec<&str> = first.routes.iter().map(|r| r.name.as_ref()).collect();
    assert_eq!(
        names,
        ["a1.test", "a2.test", "b1.test"],
        "YAML and JSON files"
    );

    // b edited: a is reused as is (the very specs the config holds), b parsed; the result
    // equals a fresh load.
    routes_file(d, "b.json", &["b2.test", "b3.test"]);
    let second = load_reusing(&main, &first.route_files).unwrap();
    let fresh = load(&main).unwrap();
    assert_eq!(second.routes, fresh.routes);
    assert_eq!(second.content_hash, fresh.content_hash);
    let a_second = cached(&second, d, "a.yaml").expect("a still cached");
    assert!(Arc::ptr_eq(&a_first, &a_second), "a.yaml was parsed again");
    assert!(Arc::ptr_eq(&a_second, &second.routes.groups()[1]));
    let b = cached(&second, d, "b.json").expect("b cached");
    let names: Vec<&str> = b.iter().map(|r| r.name.as_ref()).collect();
    assert_eq!(names, ["b2.test", "b3.test"]);

    // A new file claiming a cached file's SNI: the cross-file check still sees both.
    routes_file(d, "c.yaml", &["a1.test"]);
    let err = load_reusing(&main, &second.route_files)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sni: \"a1.test\" is already claimed"), "{err}");
    assert!(err.contains("a.yaml") && err.contains("c.yaml"), "{err}");

    // A broken file is not kept; removing files shrinks the set.
    routes_file(d, "c.yaml", &["bad..name"]);
    let err = load_reusing(&main, &second.route_files)
        .unwrap_err()
        .to_string();
    assert!(err.contains("c.yaml:2"), "{err}");
    fs::remove_file(d.join("routes.d/c.yaml")).unwrap();
    fs::remove_file(d.join("routes.d/b.json")).unwrap();
    let third = load_reusing(&main, &second.route_files).unwrap();
    assert_eq!(third.route_files.len(), 1);
    assert_eq!(third.routes, load(&main).unwrap().routes);
}

#[test]
fn json_problems_name_the_file_and_the_route() {
    let (dir, main) = two_files();
    let d = dir.path();
    fs::write(
        d.join("routes.d/b.json"),
        "{\"routes\": [{\"sni\": \"b.test\",\n \"upstrem\": \"x\"}]}",
    )
    .unwrap();
    let e = load(&main).unwrap_err();
    let p = &e.problems()[1];
    assert_eq!(p.line, Some(2), "{e}");
    assert!(
        p.message
            .contains("upstrem: unknown key (expected one of name, sni, upstream,"),
        "{e}"
    );
    assert!(p.message.ends_with("did you mean \"upstream\"?)"), "{e}");
    fs::write(
        d.join("routes.d/b.json"),
        "{\"routes\": [{\"sni\": \"b.test\", \"upstream\": \"x\", \"allow\": [\"10.0.0.0/33\"]}]}",
    )
    .unwrap();
    let e = load(&main).unwrap_err();
    let b = d.join("routes.d/b.json").display().to_string();
    assert_eq!(
        e.to_string(),
        // A JSON file's problems have lines too (read again as YAML on this error path).
        format!("{b}:1: route \"b.test\" (#1): allow: invalid CIDR \"10.0.0.0/33\"")
    );
    assert_eq!(e.problems()[0].route.as_deref(), Some("b.test"));
    assert_eq!(e.problems()[0].file.as_deref(), Some(b.as_str()));
}

#[test]
fn an_edited_file_keeps_the_specs_of_the_entries_it_did_not_change() {
    let (dir, main) = two_files();
    let d = dir.path();
    routes_file(d, "a.yaml", &["a1.test", "a2.test", "a3.test"]);
    let first = load(&main).unwrap();
    let same = |x: &RouteSpec, y: &RouteSpec| Arc::ptr_eq(&x.sni, &y.sni);
    // An entry inserted before the others, one edited (by a name), one removed.
    fs::write(
        d.join("routes.d/a.yaml"),
        "routes:\n  - sni: a0.test\n    upstream: up\n  - sni: a1.test\n    upstream: up\n  - name: two\n    sni: a2.test\n    upstream: up\n",
    )
    .unwrap();
    let second = load_reusing(&main, &first.route_files).unwrap();
    assert_eq!(
        second.routes,
        load(&main).unwrap().routes,
        "as a fresh load"
    );
    let (a1, a2) = (&first.routes[0], &first.routes[1]);
    assert!(same(&second.routes[1], a1), "a1 kept");
    assert!(!same(&second.routes[2], a2), "a2 edited");
    assert_eq!(&*second.routes[2].name, "two");
    // A change the spec would not show (another spelling) reads the entry again.
    fs::write(
        d.join("routes.d/a.yaml"),
        "routes:\n  - sni: A1.test\n    upstream: up\n",
    )
    .unwrap();
    let third = load_reusing(&main, &first.route_files).unwrap();
    assert!(!same(&third.routes[0], a1));
    assert_eq!(third.routes[0], *a1, "the same spec all the same");
}
