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

/// `from-chi` with `input` on standard input.
fn from_chi_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"))
        .args(["routes", "from-chi"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ch-edge-proxy");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

#[test]
fn dash_reads_standard_input() {
    let manifest = std::fs::read(fixtures().join("replcluster.yaml")).unwrap();
    let out = from_chi_stdin(&["--domain", DOMAIN, "-"], &manifest);
    assert!(out.status.success(), "{}", stderr(&out));
    let golden = std::fs::read_to_string(fixtures().join("replcluster.routes.yaml")).unwrap();
    assert_eq!(stdout(&out), golden);
    assert_eq!(stderr(&out), "");

    // `-` among files: read in its place.
    let simple = fixtures().join("simple.yaml");
    let out = from_chi_stdin(
        &["--domain", DOMAIN, "-", simple.to_str().unwrap()],
        &manifest,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let routes = config::parse_routes_file(&stdout(&out), "generated", Format::Yaml).unwrap();
    assert_eq!(&*routes[0].name, "analytics/repl-05");
    assert_eq!(
        &*routes.last().unwrap().name,
        "default/simple-01/cluster/0-0"
    );
}

#[test]
fn an_input_without_a_chi_is_named_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let other = write(
        dir.path(),
        "other.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n",
    );
    // No input has a CHI: exit 1, nothing on stdout, each input named with what it held.
    let out = from_chi_stdin(&["--domain", DOMAIN, &other, "-"], b"");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr(&out),
        format!(
            "note: {other}: no ClickHouseInstallation (clickhouse.altinity.com/v1) or ClickHouseCluster (clickhouse.com/v1alpha1); kinds seen: ConfigMap, Service\n\
             note: standard input: no ClickHouseInstallation (clickhouse.altinity.com/v1) or ClickHouseCluster (clickhouse.com/v1alpha1); it holds no objects\n\
             error: no ClickHouseInstallation (clickhouse.altinity.com/v1) or ClickHouseCluster (clickhouse.com/v1alpha1) in any input: nothing to write\n"
        )
    );

    // Another input has one: its routes are written, the note stays, exit 0.
    let simple = fixtures().join("simple.yaml");
    let out = from_chi(&["--domain", DOMAIN, &other, simple.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        std::fs::read_to_string(fixtures().join("simple.routes.yaml")).unwrap()
    );
    assert_eq!(
        stderr(&out),
        format!("note: {other}: no ClickHouseInstallation (clickhouse.altinity.com/v1) or ClickHouseCluster (clickhouse.com/v1alpha1); kinds seen: ConfigMap, Service\n")
    );
}

/// (name, SNI, upstream hosts) of the shard routes of `output`.
fn shard_routes(output: &str) -> Vec<(String, String, Vec<String>)> {
    config::parse_routes_file(output, "generated", Format::Yaml)
        .unwrap()
        .iter()
        .filter(|r| r.name.contains("/shards/"))
        .map(|r| {
            (
                r.name.to_string(),
                r.sni[0].to_string(),
                r.upstreams.iter().map(|u| u.host.to_string()).collect(),
            )
        })
        .collect()
}

#[test]
fn a_cluster_of_two_shards_by_two_replicas_gets_a_route_per_shard() {
    let input = fixtures().join("replcluster.yaml");
    let out = from_chi(&["--domain", DOMAIN, input.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let host = |h: &str| format!("chi-repl-05-replcluster-{h}.analytics.svc.cluster.local");
    assert_eq!(
        shard_routes(&stdout(&out)),
        [
            (
                "analytics/repl-05/replcluster/shards/0".to_owned(),
                "repl-05-replcluster-shard-0.ch.example.com".to_owned(),
                vec![host("0-0"), host("0-1")]
            ),
            (
                "analytics/repl-05/replcluster/shards/1".to_owned(),
                "repl-05-replcluster-shard-1.ch.example.com".to_owned(),
                vec![host("1-0"), host("1-1")]
            ),
        ]
    );
    // A cluster of one shard has none: its cluster route is that shard's.
    let simple = fixtures().join("simple.yaml");
    let out = from_chi(&["--domain", DOMAIN, simple.to_str().unwrap()]);
    assert!(shard_routes(&stdout(&out)).is_empty());
}

#[test]
fn explicit_shard_names_make_the_shard_route_names() {
    let input = fixtures().join("explicit.yaml");
    let out = from_chi(&["--domain", DOMAIN, input.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Vec<(String, String, usize)> = shard_routes(&stdout(&out))
        .into_iter()
        .map(|(name, sni, up)| (name, sni, up.len()))
        .collect();
    let route = |name: &str, sni: &str, n| (name.to_owned(), sni.to_owned(), n);
    assert_eq!(
        got,
        [
            route(
                "default/explicit/sharded/shards/shard0",
                "explicit-sharded-shard-shard0.ch.example.com",
                2
            ),
            route(
                "default/explicit/sharded/shards/1",
                "explicit-sharded-shard-1.ch.example.com",
                2
            ),
            route(
                "default/explicit/byreplica/shards/0",
                "explicit-byreplica-shard-0.ch.example.com",
                2
            ),
            route(
                "default/explicit/byreplica/shards/1",
                "explicit-byreplica-shard-1.ch.example.com",
                2
            ),
        ]
    );
}
