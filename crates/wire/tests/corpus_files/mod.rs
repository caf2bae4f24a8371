//! The files of a fuzz corpus or fixture directory, for the tests that replay them.

use std::fs;
use std::path::Path;

/// Every file in `dir` (relative to the wire crate), or only those ending in `.ext`, as
/// `(name, bytes)` sorted by name.
pub fn files(dir: &str, ext: Option<&str>) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() && ext.is_none_or(|ext| path.extension().is_some_and(|e| e == ext)) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}
