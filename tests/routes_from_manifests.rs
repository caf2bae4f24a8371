//! `ch-edge-proxy routes from-manifests` (alias `from-chi`) on the official operator's own
//! sample manifests (tests/fixtures/chc/NAME.yaml → routes/NAME.routes.yaml): golden outputs,
//! which `check` accepts as an include (with a certificate for the names when the cluster has
//! no TLS and its routes terminate), and CHIs and ClickHouseClusters read together.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ch_edge_proxy::model::config::{self, Format};
use ch_edge_proxy::model::route::TlsMode;

const DOMAIN: &str = "ch.example.com";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn routes_cmd(command: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"))
        .args(["routes", command])
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

/// `check` with `include` of `routes_file`, and a certificate covering `*.ch.example.com`
/// when `with_cert`.
fn check(routes_file: &Path, with_cert: bool) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n",
    );
    if with_cert {
        let ca = support::certs::Ca::new("test ca");
        let (cert, key) = ca
            .leaf(&["*.ch.example.com"], 30)
            .write(dir.path(), "wildcard");
        text.push_str(&format!(
            "tls:\n  certificates:\n    - cert: {:?}\n      key: {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ));
    }
    text.push_str(&format!(
        "include:\n  - {:?}\n",
        routes_file.display().to_string()
    ));
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, text).expect("write config");
    Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"))
        .arg("check")
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run check")
}

/// Every sample with a ClickHouseCluster: (file, replicas, TLS on).
const SAMPLES: [(&str, usize, bool); 6] = [
    ("v1alpha1_clickhouse", 2, false),
    ("minimal", 2, false),
    ("custom_configuration", 2, false),
    ("cluster_with_ssl", 3, true),
    ("gcp_gke_ssd", 2, true),
    ("aws_eks_gp3", 3, true),
];

#[test]
fn the_operators_samples_make_the_golden_routes() {
    for (name, replicas, tls) in SAMPLES {
        let input = fixtures().join(format!("chc/{name}.yaml"));
        let input = input.to_str().expect("utf-8 path");
        let out = routes_cmd("from-manifests", &["--domain", DOMAIN, input]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let golden_path = fixtures().join(format!("chc/routes/{name}.routes.yaml"));
        let golden = std::fs::read_to_string(&golden_path)
            .unwrap_or_else(|e| panic!("{}: {e}", golden_path.display()));
        assert_eq!(stdout(&out), golden, "{name} differs from its golden file");
        // The old name is the same command.
        let alias = routes_cmd("from-chi", &["--domain", DOMAIN, input]);
        assert_eq!(stdout(&alias), golden, "{name}: from-chi differs");

        let routes = config::parse_routes_file(&golden, "generated", Format::Yaml).unwrap();
        // The cluster, its one shard, each replica.
        assert_eq!(routes.len(), 2 + replicas, "{name}");
        assert_eq!(&*routes[0].sni[0], "sample.ch.example.com");
        assert_eq!(routes[0].upstreams.len(), replicas);
        assert_eq!(
            &*routes[2].upstreams[0].host,
            "sample-clickhouse-0-0-0.sample-clickhouse-headless.default.svc.cluster.local"
        );
        let mode = |r: &ch_edge_proxy::model::route::RouteSpec| r.tls.as_ref().and_then(|t| t.mode);
        if tls {
            assert!(
                routes.iter().all(|r| mode(r).is_none()),
                "{name}: passthrough"
            );
            let out = check(&golden_path, false);
            assert!(out.status.success(), "{name}: {}", stderr(&out));
        } else {
            assert!(
                routes.iter().all(|r| mode(r) == Some(TlsMode::Terminate)),
                "{name}: terminate"
            );
            // Terminating needs a certificate for the names.
            let out = check(&golden_path, false);
            assert!(
                !out.status.success(),
                "{name}: check passed without a certificate"
            );
            assert!(
                stderr(&out).contains("needs a certificate"),
                "{name}: {}",
                stderr(&out)
            );
            let out = check(&golden_path, true);
            assert!(out.status.success(), "{name}: {}", stderr(&out));
        }
    }
}

#[test]
fn chis_and_clusters_from_the_same_invocation() {
    let chi = fixtures().join("chi/simple.yaml");
    let chc = fixtures().join("chc/cluster_with_ssl.yaml");
    let out = routes_cmd(
        "from-manifests",
        &[
            "--domain",
            DOMAIN,
            "--namespace",
            "prod",
            "--format",
            "json",
            chi.to_str().unwrap(),
            chc.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let routes = config::parse_routes_file(&stdout(&out), "generated", Format::Json).unwrap();
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_ref()).collect();
    assert_eq!(names[0], "prod/simple-01");
    // The sample sets metadata.namespace nowhere: --namespace applies.
    let chc_names = &names[names.len() - 5..];
    assert_eq!(
        chc_names,
        [
            "prod/sample",
            "prod/sample/shard-0",
            "prod/sample/0-0",
            "prod/sample/0-1",
            "prod/sample/0-2"
        ]
    );
}

#[test]
fn an_invalid_cluster_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "apiVersion: clickhouse.com/v1alpha1\nkind: ClickHouseCluster\nmetadata:\n  name: demo\n  \
         annotations: {ch-edge-proxy/tls: passthrough}\nspec: {replicas: 1}\n",
    )
    .unwrap();
    let out = routes_cmd(
        "from-manifests",
        &["--domain", DOMAIN, path.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("ClickHouseCluster default/demo") && err.contains("spec.settings.tls.enabled"),
        "{err}"
    );
}

/// The PostgreSQL port of a ClickHouseCluster (`additionalPorts` named `postgres`) and of a CHI
/// (`settings.postgresql_port`), and the direct-SSL annotation, written into the routes as
/// `postgres_port` and `postgres_direct_ssl`, which `check` reads back.
#[test]
fn postgres_ports_and_direct_ssl_reach_the_routes_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("pg.yaml");
    std::fs::write(
        &manifests,
        "apiVersion: clickhouse.com/v1alpha1\nkind: ClickHouseCluster\n\
         metadata: {name: bi, namespace: ch, annotations: {ch-edge-proxy/postgres-direct-ssl: \"true\"}}\n\
         spec:\n  replicas: 1\n  settings: {tls: {enabled: true, serverCertSecret: {name: x}}}\n\
         \x20 additionalPorts: [{name: mysql, port: 9004}, {name: postgres, port: 9005}]\n\
         ---\n\
         apiVersion: clickhouse.altinity.com/v1\nkind: ClickHouseInstallation\n\
         metadata: {name: demo, namespace: ch}\n\
         spec:\n  configuration:\n    settings: {postgresql_port: 9006}\n",
    )
    .unwrap();
    let out = routes_cmd(
        "from-manifests",
        &["--domain", DOMAIN, manifests.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let routes = config::parse_routes_file(&text, "pg.routes.yaml", Format::Yaml).unwrap();
    let postgres: Vec<(&str, Option<u16>, bool)> = routes
        .iter()
        .map(|r| {
            let pg = r.postgres;
            (
                &*r.name,
                pg.and_then(|p| p.port),
                pg.is_some_and(|p| p.direct_ssl),
            )
        })
        .collect();
    assert!(
        postgres.contains(&("ch/bi", Some(9005), true)),
        "{postgres:?}"
    );
    assert!(
        postgres.contains(&("ch/demo", Some(9006), false)),
        "{postgres:?}"
    );
    assert!(
        postgres.iter().all(|(_, port, _)| port.is_some()),
        "{postgres:?}"
    );
    let file = dir.path().join("pg.routes.yaml");
    std::fs::write(&file, &text).unwrap();
    let checked = check(&file, false);
    assert!(checked.status.success(), "{}", stderr(&checked));
}
