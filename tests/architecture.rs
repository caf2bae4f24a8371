//! The layering of DESIGN.md ("Architecture"), checked on the source: every module belongs to a
//! layer, imports only from its own layer or the ones below, and no two modules import each
//! other, directly or round a cycle; no two files inside a module either ([`files`]); and each
//! layer uses only the outside crates it may ([`crates`]). A failure names the file and the edge.
//!
//! wire (crate `ch-edge-wire`) → model → runtime → surface. Cargo keeps the wire crate free of
//! everything above it; this test covers the modules inside each crate. Test code (`tests.rs`
//! files and trailing `#[cfg(test)] mod tests` blocks) may reach across.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers of the main crate, lowest first, with the modules each holds. A new module must
/// be added here, to the layer whose dependencies it fits.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "model",
        &[
            "allow",
            "annotations",
            "chc",
            "chi",
            "config",
            "gateway",
            "manifests",
            "route",
            "sources",
            "tls",
        ],
    ),
    (
        "runtime",
        &[
            "addrs",
            "control",
            "drain",
            "meters",
            "observe",
            "outcome",
            "pipeline",
            "route_counters",
            "socket",
            "table",
            "tls",
            "upstream",
            "workers",
        ],
    ),
    (
        "surface",
        &[
            "access_log",
            "access_text",
            "admin",
            "cli",
            "from_chi",
            "json_out",
            "log_sink",
            "log_text",
            "main",
            "metrics",
            "reload_log",
            "signals",
        ],
    ),
];

/// Rooms: folders of a layer that gather several modules, with the modules each holds. A
/// room's modules are checked one by one, as `room::module` (a room is where to find things;
/// its module comment says what it may call). A new module in a room is added here.
const ROOMS: &[(&str, &str, &[&str])] = &[
    (
        "runtime",
        "control",
        &[
            "discovery",
            "listeners",
            "reload",
            "server",
            "state",
            "watch",
        ],
    ),
    (
        "runtime",
        "upstream",
        &["clients", "endpoint", "resolve", "resolve_log"],
    ),
];

/// The wire crate's modules: one layer, checked for cycles only.
const WIRE: &[&str] = &[
    "client_hello",
    "keyword",
    "postgres",
    "proxy_in",
    "proxy_out",
    "sni",
    "tls_alert",
];

#[path = "architecture/crates.rs"]
mod crates;
#[path = "architecture/files.rs"]
mod files;

type Module = (String, String);

#[test]
fn layers_point_down_and_modules_form_no_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();

    let edges = edges(root, &mut problems);
    for ((from, to), file) in &edges {
        let (Some(a), Some(b)) = (layer(&from.0), layer(&to.0)) else {
            continue;
        };
        if b > a {
            problems.push(format!(
                "{file}: {} uses {} ({} is above {})",
                name(from),
                name(to),
                to.0,
                from.0
            ));
        }
    }
    for (layer, modules) in LAYERS {
        let dir = root.join("src").join(layer);
        for found in module_names(&dir) {
            if !modules.contains(&found.as_str()) {
                problems.push(format!(
                    "src/{layer}/{found}: module {layer}::{found} is in no layer of this test's LAYERS"
                ));
            }
        }
    }
    for (layer, room, modules) in ROOMS {
        for found in module_names(&root.join("src").join(layer).join(room)) {
            if !modules.contains(&found.as_str()) {
                problems.push(format!(
                    "src/{layer}/{room}/{found}: module {layer}::{room}::{found} is in no room of this test's ROOMS"
                ));
            }
        }
    }
    problems.extend(cycles(&edges));

    let wire_edges = edges_in_wire(root, &mut problems);
    for ((_, to), file) in &wire_edges {
        if !WIRE.contains(&to.1.as_str()) {
            problems.push(format!("{file}: wire module {} is not in WIRE", to.1));
        }
    }
    problems.extend(cycles(&wire_edges));

    problems.extend(files::file_cycles(root, "src", "crate", files::KNOWN));
    problems.extend(files::file_cycles(root, "crates/wire/src", "wire", &[]));
    problems.extend(crates::problems(root));

    assert!(
        problems.is_empty(),
        "architecture (DESIGN.md: wire → model → runtime → surface, no cycles, crates per layer):\n  {}",
        problems.join("\n  ")
    );
    // The check saw the code: the layers import downwards a good deal.
    assert!(edges.len() > 50, "only {} edges found", edges.len());
}

/// Where a failing edge can be demonstrated: an upward import and a cycle are both found.
#[test]
fn the_check_catches_an_upward_import_and_a_cycle() {
    let mut edges = BTreeMap::new();
    let m = |l: &str, n: &str| (l.to_owned(), n.to_owned());
    edges.insert(
        (m("model", "route"), m("runtime", "state")),
        "a.rs".to_owned(),
    );
    edges.insert((m("runtime", "a"), m("runtime", "b")), "b.rs".to_owned());
    edges.insert((m("runtime", "b"), m("runtime", "c")), "c.rs".to_owned());
    edges.insert((m("runtime", "c"), m("runtime", "a")), "d.rs".to_owned());
    let found = cycles(&edges);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("runtime::a -> runtime::b -> runtime::c -> runtime::a"),
        "{found:?}"
    );
    assert!(layer("runtime") > layer("model"));
}

fn layer(name: &str) -> Option<usize> {
    LAYERS.iter().position(|(l, _)| *l == name)
}

/// The module a path (or a file's module path) under `layer` is in: `[room, module, ..]` for
/// a room's module, `[module, ..]` otherwise (`None` for the layer's root).
fn module_of(layer: &str, rest: &[String]) -> Option<String> {
    let first = rest.first()?;
    let room = ROOMS
        .iter()
        .find(|(l, r, _)| *l == layer && r == first)
        .map(|(_, _, modules)| modules);
    match (room, rest.get(1)) {
        (Some(modules), Some(m)) if modules.contains(&m.as_str()) => Some(format!("{first}::{m}")),
        _ => Some(first.clone()),
    }
}

fn name(m: &Module) -> String {
    format!("{}::{}", m.0, m.1)
}

/// Module names directly under `dir`: `x.rs` and `x/`.
fn module_names(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if stem == "mod" || stem.is_empty() {
            continue;
        }
        if path.is_dir() || path.extension().is_some_and(|e| e == "rs") {
            out.insert(stem.to_owned());
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

/// The module path of a file under `src`: `runtime/reload/plan.rs` → `[runtime, reload, plan]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file that counts: no comments, no string literals, no `#[cfg(test)] mod tests`.
fn code(text: &str) -> String {
    without_test_modules(&without_comments_and_strings(text))
}

/// `code` without any `#[cfg(test)] mod tests { … }` block (found by matching braces, which
/// comments and strings no longer hide).
fn without_test_modules(code: &str) -> String {
    const START: &str = "#[cfg(test)]\nmod tests {";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find(START) {
        out.push_str(&rest[..at]);
        let body = &rest[at + START.len()..];
        let mut depth = 1;
        let mut end = body.len();
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = i + 1;
                break;
            }
        }
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

fn without_comments_and_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push_str("\"\"");
            }
            // A char literal that is a quote would open a string above.
            '\'' if chars.peek() == Some(&'"') => {
                chars.next();
                chars.next();
            }
            c => out.push(c),
        }
    }
    out
}

/// Paths in `code` that start with `prefix::` (`crate`, `ch_edge_proxy`) or `super::`,
/// resolved against `here` (the file's module path): each as a list of segments. Grouped
/// imports (`use crate::a::{b, c::d}`) give one path per member.
fn paths(code: &str, prefix: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &code[i..];
        let boundary = i == 0 || !is_ident(bytes[i - 1]);
        let (base, len) = if boundary && rest.starts_with(&format!("{prefix}::")) {
            (Vec::new(), prefix.len() + 2)
        } else if boundary && rest.starts_with("super::") {
            let mut base = here.to_vec();
            let mut len = 0;
            while code[i + len..].starts_with("super::") {
                base.pop();
                len += "super::".len();
            }
            (base, len)
        } else {
            i += 1;
            continue;
        };
        i += len;
        let (segments, used) = path_tail(&code[i..]);
        for tail in segments {
            let mut p = base.clone();
            p.extend(tail);
            out.push(p);
        }
        i += used.max(1);
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The segments after `crate::` at the start of `s`, expanding one level of `{…}` groups;
/// macros (`name!`) are not paths. Returns the paths and the bytes read.
fn path_tail(s: &str) -> (Vec<Vec<String>>, usize) {
    let mut segs = Vec::new();
    let mut i = 0;
    let b = s.as_bytes();
    loop {
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if i > start {
            if b.get(i) == Some(&b'!') {
                return (Vec::new(), i);
            }
            segs.push(s[start..i].to_owned());
        }
        if s[i..].starts_with("::{") {
            let close = s[i..].find('}').map_or(s.len(), |c| i + c);
            let inner = &s[i + 3..close];
            let members = inner
                .split(',')
                .map(|m| {
                    m.trim()
                        .split("::")
                        .map(str::trim)
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .filter(|m| m.first().is_some_and(|f| !f.is_empty() && f != "self"));
            let mut out: Vec<Vec<String>> = members
                .map(|m| segs.iter().cloned().chain(m).collect())
                .collect();
            if inner.split(',').any(|m| m.trim() == "self") {
                out.push(segs.clone());
            }
            return (out, close + 1);
        }
        if s[i..].starts_with("::") {
            i += 2;
            continue;
        }
        return (vec![segs], i);
    }
}

/// A non-test source file: its module path under `src`, its name as shown, its code.
struct Source {
    here: Vec<String>,
    shown: String,
    code: String,
}

/// The source files under `src` (the crate root `dir`), test files left out.
fn sources(root: &Path, dir: &str) -> Vec<Source> {
    let src = root.join(dir);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .map(|file| Source {
            here: module_path(&src, &file),
            shown: format!(
                "{dir}/{}",
                file.strip_prefix(&src).expect("under src").display()
            ),
            code: code(&fs::read_to_string(&file).expect("read source")),
        })
        .filter(|s| !s.shown.ends_with("/tests.rs") && !s.here.iter().any(|p| p == "tests"))
        .collect()
}

/// Edges between `(layer, module)` pairs of the main crate, each with a file that makes it.
fn edges(root: &Path, problems: &mut Vec<String>) -> BTreeMap<(Module, Module), String> {
    let mut out = BTreeMap::new();
    for Source { here, shown, code } in sources(root, "src") {
        let from: Module = match here.as_slice() {
            [root] if root == "lib" => continue,
            [root] if root == "main" => ("surface".into(), "main".into()),
            [l] => (l.clone(), String::new()),
            [l, rest @ ..] => (l.clone(), module_of(l, rest).unwrap_or_default()),
            [] => continue,
        };
        if layer(&from.0).is_none() {
            problems.push(format!(
                "{shown}: not under a layer directory (src/model, src/runtime, src/surface)"
            ));
            continue;
        }
        let prefix = if from.1 == "main" {
            "ch_edge_proxy"
        } else {
            "crate"
        };
        for path in paths(&code, prefix, &here) {
            let to: Module = match path.as_slice() {
                [l, rest @ ..] if layer(l).is_some() && !rest.is_empty() => {
                    (l.clone(), module_of(l, rest).unwrap_or_default())
                }
                _ => continue,
            };
            if to != from && !from.1.is_empty() {
                out.entry((from.clone(), to))
                    .or_insert_with(|| shown.clone());
            }
        }
    }
    out
}

/// Edges between the wire crate's modules.
fn edges_in_wire(root: &Path, problems: &mut Vec<String>) -> BTreeMap<(Module, Module), String> {
    let mut out = BTreeMap::new();
    for Source { here, shown, code } in sources(root, "crates/wire/src") {
        let Some(module) = here.first().filter(|m| *m != "lib") else {
            continue;
        };
        if !WIRE.contains(&module.as_str()) {
            problems.push(format!("{shown}: wire module {module} is not in WIRE"));
        }
        let from: Module = ("wire".into(), module.clone());
        for path in paths(&code, "crate", &here) {
            let Some(to) = path.first() else { continue };
            // Items at the crate root (macros, re-exports) are not modules.
            if to != module && WIRE.contains(&to.as_str()) {
                out.entry((from.clone(), ("wire".into(), to.clone())))
                    .or_insert_with(|| shown.clone());
            }
        }
    }
    out
}

/// Every cycle among the modules, as `a -> b -> … -> a (files …)`: one per strongly
/// connected component of more than one module.
fn cycles(edges: &BTreeMap<(Module, Module), String>) -> Vec<String> {
    let mut graph: BTreeMap<&Module, Vec<&Module>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().push(to);
        graph.entry(to).or_default();
    }
    let mut out = Vec::new();
    let mut reported: BTreeSet<&Module> = BTreeSet::new();
    for start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        // A shortest path back to `start`, if any (breadth first).
        let mut back: BTreeMap<&Module, &Module> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([*start]);
        let mut found = false;
        while let Some(m) = queue.pop_front() {
            for next in &graph[m] {
                if *next == *start {
                    back.insert(start, m);
                    found = true;
                    break;
                }
                if !back.contains_key(next) {
                    back.insert(next, m);
                    queue.push_back(next);
                }
            }
            if found {
                break;
            }
        }
        if !found {
            continue;
        }
        let mut path = vec![*start];
        let mut at = back[start];
        while at != *start {
            path.push(at);
            at = back[at];
        }
        path.push(start);
        path.reverse();
        let files: Vec<&str> = path
            .windows(2)
            .filter_map(|w| edges.get(&(w[0].clone(), w[1].clone())).map(String::as_str))
            .collect();
        reported.extend(path.iter().copied());
        let names: Vec<String> = path.iter().map(|m| name(m)).collect();
        out.push(format!(
            "cycle: {} (imports in {})",
            names.join(" -> "),
            files.join(", ")
        ));
    }
    out
}
