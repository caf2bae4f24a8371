//! Route files (`routes: [...]`): read from YAML or JSON into validated specs, and written back
//! in either format. One grammar, [`super::raw::RawRoutesFile`], serves all four directions.

use std::sync::Arc;

use super::error::{ConfigError, Problem, Problems};
use super::raw::{self, Format, RawRoute, RawRoutesFile, S};
use super::routes;
use crate::model::route::earlier::Earlier;
use crate::model::route::{duplicate_claims, RouteSpec};

/// The routes of one file's `text`, written in `format`; `source` names the file in problems
/// and in each spec. `earlier` are the specs read from an earlier text of the file: an entry
/// written as one of them gives that spec again instead of being validated anew. Problems go
/// to `errs` (the routes are then incomplete).
pub(crate) fn read(
    text: &str,
    source: &str,
    format: Format,
    earlier: &[RouteSpec],
    errs: &mut Problems,
) -> Vec<RouteSpec> {
    let blank = |l: &str| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    };
    if text.lines().all(blank) {
        // Refused rather than read as "no routes": a half-written file must not drop them.
        errs.add(source, None, "", "empty file (expected `routes: [...]`)");
        return Vec::new();
    }
    let name: Arc<str> = Arc::from(source);
    let mut validator = Validator {
        source: name,
        index: 0,
        // Room for about as many routes as a compact JSON file of this size holds: growing a
        // list of 100k specs step by step copies megabytes several times.
        specs: Vec::with_capacity(text.len() / 64),
        errs: Problems::default(),
        earlier: Earlier::new(earlier, |s: &RouteSpec| s.sni.first().map(|p| &**p)),
    };
    let read = raw::parse_routes(format, text, source, |entry| validator.add(entry));
    validator.finish(read, errs)
}

/// Validates a file's entries in order, numbering them from 1.
struct Validator<'p> {
    source: Arc<str>,
    index: usize,
    specs: Vec<RouteSpec>,
    errs: Problems,
    earlier: Earlier<'p, RouteSpec, &'p str>,
}

impl Validator<'_> {
    fn add(&mut self, entry: S<RawRoute>) {
        self.index += 1;
        let first = routes::first_sni(&entry.value);
        if let Some((_, spec)) = self
            .earlier
            .find(first, |s| routes::written_as(&entry.value, s))
        {
            self.specs.push(spec.clone());
            return;
        }
        if let Some(spec) = routes::route(entry, self.index, &self.source, &mut self.errs) {
            self.specs.push(spec);
        }
    }

    /// The specs; problems (the entries', then the parser's) go to `errs`.
    fn finish(self, read: Result<(), Problem>, errs: &mut Problems) -> Vec<RouteSpec> {
        errs.append(self.errs);
        if let Err(problem) = read {
            errs.push(problem);
        }
        self.specs
    }
}

/// Parses and validates one route file as an `include` would (claims within it checked too).
pub fn parse_routes_file(
    text: &str,
    source: &str,
    format: Format,
) -> Result<Vec<RouteSpec>, ConfigError> {
    let mut errs = Problems::default();
    let routes = read(text, source, format, &[], &mut errs);
    for e in duplicate_claims(&routes) {
        errs.push(e.into());
    }
    errs.finish(routes)
}

/// A route file holding `routes`, in `format`; reading it back gives the same specs.
pub fn render_routes_file(routes: &[RouteSpec], format: Format) -> Result<String, String> {
    let file = RawRoutesFile {
        routes: routes.iter().map(routes::entry).collect(),
    };
    let mut text = match format {
        Format::Yaml => {
            // Each value on its key's line (no folded long names), lists indented under keys.
            let options = serde_saphyr::ser_options! {
                prefer_block_scalars: false,
                compact_list_indent: false,
            };
            serde_saphyr::to_string_with_options(&file, options).map_err(|e| e.to_string())?
        }
        Format::Json => serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?,
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}
