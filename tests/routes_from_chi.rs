//! `ch-edge-proxy routes from-chi`: golden outputs for operator-shaped CHI
//! manifests (tests/fixtures/chi/NAME.yaml → NAME.routes.yaml), each of which
//! must also load as an include and pass `check`; and the error exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ch_edge_proxy::model::config::{self, Format};

const DOMAIN: &str = "ch.example.com";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chi")
}

fn from_chi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"))
        .args(["routes", "from-chi"])
        .args(args)
        .output()
        .expect("run ch-edge-proxy")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every `*.yaml` manifest (not `*.routes.yaml`) in the fixtures directory.
fn manifests() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".yaml") && !name.ends_with(".routes.yaml")
        })
        .collect();
    out.sort();
    out
}

fn check_includes(routes_file: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.yaml");
    let text = format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\ninclude:\n  - {:?}\n",
        routes_file.display().to_string()
    );
    std::fs::write(&cfg, text).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"))
        .arg("check")
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "check with {} failed: {}",
        routes_file.display(),
        stderr(&out)
    );
    assert!(stdout(&out).contains("config OK"));
}

#[test]
fn golden_outputs() {
    let inputs = manifests();
    assert!(inputs.len() >= 8, "fixtures missing: {inputs:?}");
    for input in inputs {
        let out = from_chi(&["--domain", DOMAIN, input.to_str().expect("utf-8 path")]);
        assert!(
            out.status.success(),
            "{}: {}",
            input.display(),
            stderr(&out)
        );
        let golden_path = input.with_extension("routes.yaml");
        let golden = std::fs::read_to_string(&golden_path)
            .unwrap_or_else(|e| panic!("{}: {e}", golden_path.display()));
        let got = stdout(&out);
        assert_eq!(
            got,
            golden,
            "{} differs from its golden file",
            input.display()
        );

        let routes = config::parse_routes_file(&got, "generated", Format::Yaml)
            .unwrap_or_else(|e| panic!("{}: {e:#}", input.display()));
        assert!(!routes.is_empty(), "{}", input.display());
        assert!(routes
            .iter()
            .all(|r| r.upstreams.iter().all(|u| u.port.is_none())));
        check_includes(&golden_path);

        // The same routes as JSON, which `include` reads too.
        let out = from_chi(&[
            "--domain",
            DOMAIN,
            "--format",
            "json",
            input.to_str().expect("utf-8 path"),
        ]);
        assert!(
            out.status.success(),
            "{}: {}",
            input.display(),
            stderr(&out)
        );
        let json = stdout(&out);
        let from_json = config::parse_routes_file(&json, "generated", Format::Json)
            .unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        assert_eq!(
            from_json,
            routes,
            "{}: JSON and YAML differ",
            input.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let json_path = dir.path().join("routes.json");
        std::fs::write(&json_path, json).expect("write routes.json");
        check_includes(&json_path);
    }
}

#[test]
fn several_files_make_one_routes_file() {
    let simple = fixtures().join("simple.yaml");
    let list = fixtures().join("list.yaml");
    let out = from_chi(&[
        "--domain",
        DOMAIN,
        simple.to_str().unwrap(),
        list.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let routes = config::parse_routes_file(&stdout(&out), "generated", Format::Yaml).unwrap();
    let golden = |name: &str| {
        let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
        config::parse_routes_file(&text, "generated", Format::Yaml).unwrap()
    };
    let mut want = golden("simple.routes.yaml");
    want.extend(golden("list.routes.yaml"));
    assert_eq!(routes, want);
}

#[test]
fn namespace_option_applies_to_chis_without_one() {
    let simple = fixtures().join("simple.yaml");
    let out = from_chi(&[
        "--domain",
        DOMAIN,
        "--namespace",
        "staging",
        simple.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let routes = config::parse_routes_file(&stdout(&out), "generated", Format::Yaml).unwrap();
    assert_eq!(&*routes[0].name, "staging/simple-01");
    assert_eq!(
        &*routes[0].upstreams[0].host,
        "clickhouse-simple-01.staging.svc.cluster.local"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = from_chi(args);
    assert_eq!(out.status.code(), Some(1), "args {args:?}");
    assert!(out.stdout.is_empty(), "no partial output on error");
    let err = stderr(&out);
    for n in needles {
        assert!(err.contains(n), "stderr {err:?} lacks {n:?}");
    }
}

const CHI_HEAD: &str =
    "apiVersion: clickhouse.altinity.com/v1\nkind: ClickHouseInstallation\nmetadata:\n";

#[test]
fn errors_exit_1_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    fails_with(
        &["--domain", DOMAIN, missing.to_str().unwrap()],
        &["cannot read", "missing.yaml"],
    );

    let bad_allow = write(
        dir.path(),
        "allow.yaml",
        &format!("{CHI_HEAD}  name: demo\n  namespace: ns\n  annotations:\n    ch-edge-proxy/allow: \"10.0.0.0/8, nonsense\"\n"),
    );
    fails_with(
        &["--domain", DOMAIN, &bad_allow],
        &["allow.yaml", "ns/demo", "ch-edge-proxy/allow", "nonsense"],
    );

    let bad_pp = write(
        dir.path(),
        "pp.yaml",
        &format!("{CHI_HEAD}  name: demo\n  annotations:\n    ch-edge-proxy/proxy-protocol: v3\n"),
    );
    fails_with(
        &["--domain", DOMAIN, &bad_pp],
        &["default/demo", "ch-edge-proxy/proxy-protocol", "v3"],
    );

    let not_yaml = write(dir.path(), "broken.yaml", "kind: [unclosed\n");
    fails_with(&["--domain", DOMAIN, &not_yaml], &["broken.yaml"]);

    // A CHI name the operator cannot turn into valid Service names.
    let long = write(
        dir.path(),
        "long.yaml",
        &format!("{CHI_HEAD}  name: {}\n", "x".repeat(61)),
    );
    fails_with(&["--domain", DOMAIN, &long], &["longer than 63"]);

    // Two CHIs of the same name in different namespaces claim the same SNI.
    let clash = write(
        dir.path(),
        "clash.yaml",
        &format!(
            "{CHI_HEAD}  name: demo\n  namespace: a\n---\n{CHI_HEAD}  name: demo\n  namespace: b\n"
        ),
    );
    fails_with(&["--domain", DOMAIN, &clash], &["demo.ch.example.com"]);

    let simple = fixtures().join("simple.yaml");
    fails_with(
        &["--domain", "bad domain", simple.to_str().unwrap()],
        &["simple.yaml"],
    );
}
