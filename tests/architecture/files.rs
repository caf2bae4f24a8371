//! Cycles between the files inside a module (the same analysis as `file-cycles.py`): a file
//! imports another through a `crate::` or `super::` path; a cycle among files means none of
//! them can be read, tested or moved without the others. Test files are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{cycles, paths, sources, Module};

/// Cycles tolerated until broken, each by the stems of its files (none now); a listed cycle
/// that is gone must be taken off this list.
pub const KNOWN: &[&[&str]] = &[];

/// The imports between the non-test files of the crate rooted at `root/dir` (`prefix` is how
/// its code names the crate root: `crate`): `(from, to)` files, each with the importing file.
/// An import of a file's own ancestor (its `mod.rs`, the module it is declared in) is not an
/// edge: a module's files naming their parent is the ordinary way down.
pub fn file_edges(root: &Path, dir: &str, label: &str) -> BTreeMap<(Module, Module), String> {
    let files: Vec<_> = sources(root, dir)
        .into_iter()
        .filter(|s| !s.shown.ends_with("_tests.rs"))
        .filter(|s| !matches!(s.here.as_slice(), [r] if r == "lib" || r == "main"))
        .collect();
    let known: BTreeSet<&[String]> = files.iter().map(|s| s.here.as_slice()).collect();
    let mut out = BTreeMap::new();
    for s in &files {
        for path in paths(&s.code, "crate", &s.here) {
            // The longest prefix of the path that is a file: the rest are items in it.
            let Some(to) = (1..=path.len())
                .rev()
                .map(|n| &path[..n])
                .find(|p| known.contains(p))
            else {
                continue;
            };
            if s.here.starts_with(to) {
                continue;
            }
            let name = |p: &[String]| (label.to_owned(), p.join("::"));
            out.entry((name(&s.here), name(to)))
                .or_insert_with(|| s.shown.clone());
        }
    }
    out
}

/// The file-level cycles of the crate at `root/dir`, less the [`KNOWN`] ones; and a problem
/// for each known cycle no longer found.
pub fn file_cycles(root: &Path, dir: &str, label: &str, known: &[&[&str]]) -> Vec<String> {
    let found = cycles(&file_edges(root, dir, label));
    let is =
        |cycle: &str, stems: &[&str]| stems.iter().all(|s| cycle.contains(&format!("::{s} ->")));
    let mut out: Vec<String> = found
        .iter()
        .filter(|c| !known.iter().any(|k| is(c, k)))
        .map(|c| format!("{dir}: file-level {c}"))
        .collect();
    if dir == "src" {
        for k in known {
            if !found.iter().any(|c| is(c, k)) {
                out.push(format!(
                    "{dir}: the known file cycle {k:?} is gone: take it off files::KNOWN"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod detection {
    use super::*;
    use std::fs;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, text).expect("write");
        }
        dir
    }

    #[test]
    fn a_cycle_between_files_of_one_module_is_found_and_a_way_down_is_not() {
        let dir = tree(&[
            ("src/lib.rs", "pub mod model;"),
            ("src/model/mod.rs", "pub mod config;"),
            (
                "src/model/config/mod.rs",
                "mod a; mod b; mod c; pub struct Config;",
            ),
            (
                "src/model/config/a.rs",
                "use super::b::parse;\nuse super::Config;",
            ),
            (
                "src/model/config/b.rs",
                "use crate::model::config::{c::leaf, a::A};",
            ),
            (
                "src/model/config/c.rs",
                "// use super::a;\npub fn leaf() {}",
            ),
            // Test code may reach anywhere.
            ("src/model/config/c_tests.rs", "use super::a;"),
        ]);
        let found = file_cycles(dir.path(), "src", "crate", &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains(
                "crate::model::config::a -> crate::model::config::b -> crate::model::config::a"
            ),
            "{found:?}"
        );
        // Known: tolerated; known but gone: reported.
        assert!(file_cycles(dir.path(), "src", "crate", &[&["a", "b"]]).is_empty());
        let gone = file_cycles(dir.path(), "src", "crate", &[&["a", "b"], &["c", "d"]]);
        assert!(gone.len() == 1 && gone[0].contains("is gone"), "{gone:?}");
    }
}
