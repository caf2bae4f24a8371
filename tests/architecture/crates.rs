//! Which outside crates each layer may use (the `[dependencies]` of Cargo.toml, test code left
//! out). The model is pure: it reads and checks, with no I/O runtime, no sockets, no metrics and
//! no Kubernetes client, so it runs the same in `check`, `routes from-*`, tests and the proxy.
//! The runtime does the I/O, but the command line, the log subscriber and the metrics exporter
//! are the surface's. The surface may use everything. The wire crate's own Cargo.toml is its
//! list (Cargo enforces it).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::sources;

/// What each layer may use, from what it uses today and DESIGN.md (crate names as in code).
/// A new dependency of a layer is added here, after checking it against [`MUST_NOT`].
pub const MAY_USE: &[(&str, &[&str])] = &[
    (
        "model",
        &[
            "ch_edge_wire",
            "serde",
            "serde_json",
            "serde_saphyr",
            "humantime",
            "ipnet",
            "thiserror",
            // Pure computation: route table hashing and building in parallel.
            "foldhash",
            "rapidhash",
            "rayon",
            // TLS configs and certificates as values (no handshakes, no sockets).
            "rustls",
            "x509_parser",
            // Only to check `log.level` with the filter grammar it is used with.
            "tracing_subscriber",
        ],
    ),
    (
        "runtime",
        &[
            "ch_edge_wire",
            "anyhow",
            "arc_swap",
            "foldhash",
            "futures_util",
            "humantime",
            "hyper",
            "hyper_util",
            "inotify",
            "k8s_openapi",
            "kube",
            "libc",
            "metrics",
            "notify",
            "rustix",
            "rustls",
            "rustls_native_certs",
            "serde",
            "serde_json",
            "slab",
            "smallvec",
            "socket2",
            "thiserror",
            "tokio",
            "tokio_rustls",
            "tower",
            "tracing",
        ],
    ),
];

/// Crates a layer must never use, whatever [`MAY_USE`] says: the model has no I/O runtime, no
/// sockets, no metrics, no watch and no Kubernetes client; the runtime has no command line, log
/// subscriber or metrics exporter (the surface's). The model's errors are typed (`anyhow` is
/// for the layers that only report them).
pub const MUST_NOT: &[(&str, &[&str])] = &[
    (
        "model",
        &[
            "tokio",
            "tokio_rustls",
            "hyper",
            "hyper_util",
            "metrics",
            "metrics_exporter_prometheus",
            "metrics_process",
            "notify",
            "inotify",
            "kube",
            "k8s_openapi",
            "rustix",
            "socket2",
            "libc",
            "tracing",
            "anyhow",
        ],
    ),
    (
        "runtime",
        &[
            "clap",
            "clap_complete",
            "tracing_subscriber",
            "metrics_exporter_prometheus",
            "metrics_process",
            "http_body_util",
        ],
    ),
];

/// The crates named in the `[dependencies]` sections of `root/Cargo.toml` (target-specific
/// ones included, dev-dependencies not), as code names them (`-` → `_`).
pub fn dependencies(root: &Path) -> Vec<String> {
    let text = fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line.ends_with("dependencies]") && !line.contains("dev-dependencies");
            continue;
        }
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if inside && !name.is_empty() && !name.starts_with('#') {
            out.push(name.replace('-', "_"));
        }
    }
    out
}

/// Each outside crate each layer's non-test code uses, with a file that uses it: a path that
/// starts with the crate's name (`tokio::spawn`, `use tokio::net`, `use tokio;`).
pub fn uses(root: &Path) -> BTreeMap<(String, String), String> {
    let crates = dependencies(root);
    let mut out = BTreeMap::new();
    // `*_tests.rs` files are test modules too (they may use what tests use).
    let code = sources(root, "src")
        .into_iter()
        .filter(|s| !s.shown.ends_with("_tests.rs"));
    for s in code {
        let layer = match s.here.first().map(String::as_str) {
            Some("lib") | None => continue,
            Some("main") => "surface".to_owned(),
            Some(l) => l.to_owned(),
        };
        for name in &crates {
            if names(&s.code, name) {
                out.entry((layer.clone(), name.clone()))
                    .or_insert_with(|| s.shown.clone());
            }
        }
    }
    out
}

/// Whether `code` has a path starting with crate `name`: not part of a longer name or path.
fn names(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = &code[at + name.len()..];
        let starts = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        starts && (after.starts_with("::") || after.starts_with(';'))
    })
}

/// The uses of crates a layer may not use, and any crate both allowed and forbidden.
pub fn problems(root: &Path) -> Vec<String> {
    let list = |table: &'static [(&str, &[&str])], layer: &str| {
        table.iter().find(|(l, _)| *l == layer).map(|(_, c)| *c)
    };
    let mut out = Vec::new();
    for ((layer, name), file) in uses(root) {
        let Some(may) = list(MAY_USE, &layer) else {
            continue;
        };
        if !may.contains(&name.as_str())
            || list(MUST_NOT, &layer).is_some_and(|n| n.contains(&name.as_str()))
        {
            out.push(format!(
                "{file}: the {layer} layer uses crate {name}, which it may not (tests/architecture/crates.rs)"
            ));
        }
    }
    for (layer, forbidden) in MUST_NOT {
        for name in list(MAY_USE, layer).unwrap_or_default() {
            if forbidden.contains(name) {
                out.push(format!(
                    "crates.rs: {name} is both allowed and forbidden in {layer}"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod detection {
    use super::*;

    #[test]
    fn a_crate_a_layer_may_not_use_is_found_in_code_not_in_tests_or_comments() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, text).expect("write");
        };
        write(
            "Cargo.toml",
            "[package]\nname = \"x\"\n[dependencies]\ntokio = \"1\"\nserde = \"1\"\n\
             metrics-exporter-prometheus = \"0.18\"\n[dev-dependencies]\nproptest = \"1\"\n",
        );
        write("src/lib.rs", "pub mod model; pub mod runtime;");
        write("src/model/mod.rs", "pub mod a; pub mod b;");
        write(
            "src/model/a.rs",
            "use serde::Deserialize;\nfn f() { tokio::spawn(g()); }",
        );
        write(
            "src/model/b.rs",
            "// tokio::spawn\nstruct my_tokio;\nuse crate::x::tokio::y;\n\
             #[cfg(test)]\nmod tests {\n    use tokio;\n}\n",
        );
        write("src/model/tests.rs", "use tokio::net;");
        write("src/model/b_tests.rs", "use tokio::net;");
        write(
            "src/runtime/mod.rs",
            "use metrics_exporter_prometheus::PrometheusBuilder;",
        );

        assert_eq!(
            dependencies(dir.path()),
            ["tokio", "serde", "metrics_exporter_prometheus"]
        );
        let found = problems(dir.path());
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("src/model/a.rs: the model layer uses crate tokio"),
            "{found:?}"
        );
        assert!(
            found[1].contains(
                "src/runtime/mod.rs: the runtime layer uses crate metrics_exporter_prometheus"
            ),
            "{found:?}"
        );
    }
}
