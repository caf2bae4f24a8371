//! The watch's targets and its events, on real directories.

use super::*;
use std::time::Duration;

#[tokio::test]
async fn an_atomic_rename_in_a_watched_directory_is_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(1);
    let mut w = DirWatcher::new(tx).unwrap();
    w.set(&Targets::of(&dir.path().join("c.conf"), &[]));
    assert_eq!(w.dirs().count(), 1);
    std::fs::write(dir.path().join("new.tmp"), "x").unwrap();
    // Renaming over the config file is a hint, whatever its extension.
    std::fs::rename(dir.path().join("new.tmp"), dir.path().join("c.conf")).unwrap();
    // Bounded wait for an event that must come; not a timing assertion.
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a hint")
        .expect("channel open");
}

#[tokio::test]
async fn a_file_written_in_place_is_a_hint_once_closed() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.conf");
    std::fs::write(&path, "a").unwrap();
    let (tx, mut rx) = mpsc::channel(1);
    let mut w = DirWatcher::new(tx).unwrap();
    w.set(&Targets::of(&path, &[]));
    // No rename: only the close after the write says the edit is complete.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"b").unwrap();
    drop(f);
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a hint")
        .expect("channel open");
}

/// kubelet's swap, alone: the new `..data` symlink is made before the watch starts, so
/// only its rename over the old one can wake the watch.
#[tokio::test]
async fn the_data_symlink_swap_is_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("..2026_11_22_03_00_01")).unwrap();
    std::os::unix::fs::symlink("..2026_11_22_03_00_01", d.join("..data_tmp")).unwrap();
    let (tx, mut rx) = mpsc::channel(1);
    let mut w = DirWatcher::new(tx).unwrap();
    w.set(&Targets::of(&d.join("config.yaml"), &[]));
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a hint")
        .expect("channel open");
}

#[tokio::test]
async fn a_missing_directory_is_skipped() {
    let (tx, _rx) = mpsc::channel(1);
    let mut w = DirWatcher::new(tx).unwrap();
    w.set(&Targets::of(
        Path::new("/nonexistent/ch-edge-proxy/c.yaml"),
        &[],
    ));
    assert_eq!(w.dirs().count(), 0);
}

#[test]
fn relevance() {
    let t = Targets::of(
        Path::new("/etc/p/config.yaml"),
        &[PathBuf::from("/etc/p/routes.conf")],
    );
    // A directory entry must exist to count as one.
    let dir = tempfile::tempdir().unwrap();
    let routes_d = dir.path().join("routes.d");
    std::fs::create_dir(&routes_d).unwrap();
    let with_dir = Targets::of(
        Path::new("/etc/p/config.yaml"),
        std::slice::from_ref(&routes_d),
    );
    for p in [
        "/etc/p/config.yaml",
        "/etc/p/routes.conf",
        "/etc/p/..data",
        "/etc/p/..data_tmp",
        "/etc/p/..2026_11_22",
    ] {
        assert!(t.relevant(Path::new(p)), "{p}");
    }
    for p in [
        "/etc/p/proxy.log",
        "/etc/p/other.yaml", // not included: the config's directory is not an include
        "/etc/p/a.yaml.tmp~",
        "/etc/p/4913",
        "/etc/p/.config.yaml.swp",
        "/elsewhere/config.yaml",
    ] {
        assert!(!t.relevant(Path::new(p)), "{p}");
    }
    for name in ["a.yaml", "b.yml", "c.json"] {
        assert!(with_dir.relevant(&routes_d.join(name)), "{name}");
    }
    assert!(!with_dir.relevant(&routes_d.join("notes.txt")));
}

/// `--config config.yaml` and includes written relative to it: the targets are absolute,
/// so the absolute paths notify reports match them.
#[test]
fn relative_paths_become_absolute_targets() {
    let cwd = std::env::current_dir().unwrap();
    let t = Targets::of(
        Path::new("config.yaml"),
        &[PathBuf::from("cfg/routes.yaml")],
    )
    .with_files(&[PathBuf::from("./certs/tls.crt")]);
    let mut dirs = vec![cwd.clone(), cwd.join("cfg"), cwd.join("certs")];
    dirs.sort();
    assert_eq!(t.dirs, dirs);
    assert!(t.files.iter().all(|(d, _)| d.is_absolute()), "{t:?}");
    for p in [
        "config.yaml",
        "cfg/routes.yaml",
        "certs/tls.crt",
        "cfg/..data",
    ] {
        assert!(t.relevant(&cwd.join(p)), "{p}");
    }
    // What notify reports for a directory watched as `./cfg`: the same directory.
    assert!(t.relevant(&cwd.join("./cfg/routes.yaml")));
    assert!(!t.relevant(&cwd.join("cfg/config.yaml")));
    // The same configuration named absolutely watches the same targets.
    assert_eq!(
        t,
        Targets::of(&cwd.join("config.yaml"), &[cwd.join("cfg/routes.yaml")])
            .with_files(&[cwd.join("certs/tls.crt")])
    );
}

#[test]
fn certificate_files_are_targets_by_name() {
    let t = Targets::of(Path::new("/etc/p/config.yaml"), &[]).with_files(&[
        PathBuf::from("/etc/certs/tls.crt"),
        PathBuf::from("/etc/certs/tls.key"),
    ]);
    assert_eq!(
        t.dirs,
        vec![PathBuf::from("/etc/certs"), PathBuf::from("/etc/p")]
    );
    for p in [
        "/etc/certs/tls.crt",
        "/etc/certs/tls.key",
        "/etc/certs/..data",
        "/etc/p/config.yaml",
    ] {
        assert!(t.relevant(Path::new(p)), "{p}");
    }
    assert!(!t.relevant(Path::new("/etc/certs/ca.crt")));
}

#[test]
fn targets_cover_the_config_and_every_include() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("routes.d")).unwrap();
    std::fs::create_dir(d.join("more")).unwrap();
    std::fs::write(d.join("more/extra.conf"), "routes: []\n").unwrap();
    let t = Targets::of(
        &d.join("config.yaml"),
        &[d.join("routes.d"), d.join("more/extra.conf")],
    );
    let mut want = vec![d.to_path_buf(), d.join("routes.d"), d.join("more")];
    want.sort();
    assert_eq!(t.dirs, want);
    assert_eq!(
        t.files,
        vec![
            (d.to_path_buf(), OsString::from("config.yaml")),
            (d.join("more"), OsString::from("extra.conf"))
        ]
    );
    assert_eq!(t.route_dirs, vec![d.join("routes.d")]);
}
