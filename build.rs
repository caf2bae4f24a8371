//! Build information for `--version` and the startup line: the commit (from
//! `CH_EDGE_PROXY_COMMIT`, else git, else `unknown`) and the optional features compiled in.
//!
//! Reruns only when the commit can have changed (HEAD, its ref, the index) or a source file
//! changed (the crate is rebuilt then anyway, and `-dirty` must follow the edit) — not on every
//! build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CH_EDGE_PROXY_COMMIT");
    let commit = match std::env::var("CH_EDGE_PROXY_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => from_git().unwrap_or_else(|| "unknown".to_owned()),
    };
    // Only `k8s` is optional; Cargo tells build scripts which features are on.
    let features = if std::env::var_os("CARGO_FEATURE_K8S").is_some() {
        "k8s"
    } else {
        "none"
    };
    println!("cargo:rustc-env=CH_EDGE_PROXY_COMMIT={commit}");
    println!("cargo:rustc-env=CH_EDGE_PROXY_FEATURES={features}");
    println!(
        "cargo:rustc-env=CH_EDGE_PROXY_LONG_VERSION={} (commit {commit}, features: {features})",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default()
    );
}

/// `git rev-parse --short HEAD`, plus `-dirty` when tracked files differ from it.
fn from_git() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let hash = git(&["rev-parse", "--short", "HEAD"]).filter(|h| !h.is_empty())?;
    watch_git(&git);
    for dir in ["src", "crates", "Cargo.toml", "Cargo.lock", "build.rs"] {
        println!("cargo:rerun-if-changed={dir}");
    }
    // `status` (unlike `diff-index`) looks past files that were only touched; without optional
    // locks it does not rewrite the index, which would rerun this script on the next build.
    let dirty = git(&[
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=no",
    ])
    .is_some_and(|changes| !changes.is_empty());
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}

/// Reruns when HEAD moves: the HEAD file (a worktree has its own), the branch's ref (loose or
/// packed) and the index (a commit or `git add` changes it).
fn watch_git(git: &dyn Fn(&[&str]) -> Option<String>) {
    let absolute = |p: String| -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            Path::new(".").join(p)
        }
    };
    if let Some(dir) = git(&["rev-parse", "--git-dir"]).map(absolute) {
        for file in ["HEAD", "index"] {
            println!("cargo:rerun-if-changed={}", dir.join(file).display());
        }
    }
    if let (Some(common), Some(head_ref)) = (
        git(&["rev-parse", "--git-common-dir"]).map(absolute),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        let loose = common.join(&head_ref);
        if loose.exists() {
            println!("cargo:rerun-if-changed={}", loose.display());
        }
        let packed = common.join("packed-refs");
        if packed.exists() {
            // (A path that does not exist would rerun the script on every build.)
            println!("cargo:rerun-if-changed={}", packed.display());
        }
    }
}
