//! The command line through the real binary: `--version`, `completions`, the
//! `CH_EDGE_PROXY_CONFIG` variable and the startup line.

mod support;

use std::process::{Command, Output};

use support::*;

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ch-edge-proxy"));
    command.env_remove("CH_EDGE_PROXY_CONFIG");
    command
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const CONFIG: &str = "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
     admin:\n  address: \"127.0.0.1:0\"\nroutes:\n  - sni: a.test\n    upstream: \"127.0.0.1:1\"\n\
     \x20 - sni: b.test\n    upstream: \"127.0.0.1:1\"\n  - sni: c.test\n    upstream: \"127.0.0.1:1\"\n";

#[test]
fn version_names_the_commit_and_the_features() {
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    let expected_features = if cfg!(feature = "k8s") { "k8s" } else { "none" };
    let rest = text
        .trim_end()
        .strip_prefix(&format!(
            "ch-edge-proxy {} (commit ",
            env!("CARGO_PKG_VERSION")
        ))
        .unwrap_or_else(|| panic!("{text}"));
    let commit = rest
        .strip_suffix(&format!(", features: {expected_features})"))
        .unwrap_or_else(|| panic!("{text}"));
    // A short hash (maybe `-dirty`), or `unknown` when built without git.
    let hash = commit.strip_suffix("-dirty").unwrap_or(commit);
    assert!(
        hash == "unknown" || (hash.len() >= 7 && hash.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text}"
    );
}

#[test]
fn completions_cover_every_subcommand() {
    let out = bin().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let script = stdout(&out);
    for word in [
        "run",
        "check",
        "routes",
        "from-chi",
        "completions",
        "--config",
    ] {
        assert!(script.contains(word), "{word} missing from:\n{script}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(
            out.status.success() && stdout(&out).contains("from-chi"),
            "{shell}"
        );
    }
    let out = bin().args(["completions", "tcsh"]).output().unwrap();
    assert!(!out.status.success());
}

/// A reader that stops early (`completions bash | head`): the command ends quietly with
/// status 0, as Unix tools do, instead of a panic about a broken pipe.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::process::Stdio;
    for args in [&["completions", "bash"][..], &["completions", "zsh"][..]] {
        let mut child = bin()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reading end closed before the command writes a byte.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn check_reads_the_config_named_by_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from-env.yaml");
    std::fs::write(&path, CONFIG).unwrap();
    // Run from the temp dir: the default `config/ch-edge-proxy.yaml` does not exist there.
    let out = bin()
        .arg("check")
        .current_dir(dir.path())
        .env("CH_EDGE_PROXY_CONFIG", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("config OK"), "{out:?}");

    // `--config` wins over the variable.
    let out = bin()
        .args(["check", "--config", "missing.yaml"])
        .current_dir(dir.path())
        .env("CH_EDGE_PROXY_CONFIG", &path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yaml"));
}

#[test]
fn startup_line_says_version_config_listeners_and_routes() {
    let mut proxy = Proxy::start(CONFIG);
    let line = proxy.wait_log(|l| l["message"] == "ch-edge-proxy starting");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["version"], env!("CARGO_PKG_VERSION"), "{line}");
    assert!(
        line["commit"].as_str().is_some_and(|c| !c.is_empty()),
        "{line}"
    );
    assert_eq!(line["routes"], 3, "{line}");
    let config = proxy.config.display().to_string();
    assert_eq!(line["config"], config.as_str(), "{line}");
    assert_eq!(line["config_path"], config.as_str(), "{line}");
    let native = proxy.addr("native");
    let listeners = line["listeners"].as_str().unwrap();
    assert!(
        listeners.contains(&format!("native={native}")),
        "{listeners}"
    );
    let admin = line["admin"].as_str().unwrap();
    assert!(admin.contains(&proxy.admin.unwrap().to_string()), "{admin}");
    assert!(proxy.terminate().success());
}

#[test]
fn run_reads_the_config_named_by_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("run")
        .current_dir(dir.path())
        .env("CH_EDGE_PROXY_CONFIG", "no-such.yaml")
        .output()
        .unwrap();
    // The variable was used (the default path was not): the error names its file.
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such.yaml"),
        "{out:?}"
    );
}
