//! Route files (`routes: [...]`): read from YAML or JSON into validated specs, and written back
//! in either format. One grammar, [`super::raw::RawRoutesFile`], serves all four directions.

use std::sync::Arc;

use super::error::{ConfigError, Problems};
use super::raw::{self, Format, RawRoutesFile};
use super::routes;
use crate::model::route::{duplicate_claims, RouteSpec};

/// The routes of one file's `text`, written in `format`; `source` names the file in problems
/// and in each spec. Problems go to `errs` (the routes are then incomplete).
pub(crate) fn read(
    text: &str,
    source: &str,
    format: Format,
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
    match raw::parse::<RawRoutesFile>(format, text, source) {
        Ok(file) => routes::routes(file.routes, &Arc::from(source), errs),
        Err(problem) => {
            errs.push(problem);
            Vec::new()
        }
    }
}

/// Parses and validates one route file as an `include` would (claims within it checked too).
pub fn parse_routes_file(
    text: &str,
    source: &str,
    format: Format,
) -> Result<Vec<RouteSpec>, ConfigError> {
    let mut errs = Problems::default();
    let routes = read(text, source, format, &mut errs);
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
