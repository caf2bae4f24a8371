//! Route files (`routes: [...]`): read from YAML or JSON into validated specs, and written back
//! in either format. One grammar, [`super::raw::RawRoutesFile`], serves all four directions.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::{ConfigError, Problem, Problems};
use super::raw::{self, Format, RawRoute, RawRoutesFile, S};
use super::{route_entry, routes};
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
    let read = parse_routes(format, text, source, |entry| validator.add(entry));
    if format == Format::Json && read.is_ok() && validator.errs.len() > 0 {
        // serde_json keeps no lines for what it read well; JSON is YAML, and the YAML reader
        // does. Only on this error path: it is several times slower.
        let mut located = Problems::default();
        read_yaml_for_lines(text, source, &mut located);
        if located.len() == validator.errs.len() {
            validator.errs = located;
        }
    }
    validator.finish(read, errs)
}

/// The problems of a JSON route file's `text` as the YAML reader finds them, with lines.
fn read_yaml_for_lines(text: &str, source: &str, errs: &mut Problems) {
    let mut validator = Validator {
        source: Arc::from(source),
        index: 0,
        specs: Vec::new(),
        errs: Problems::default(),
        earlier: Earlier::new(&[], |s: &RouteSpec| s.sni.first().map(|p| &**p)),
    };
    let read = parse_routes(Format::Yaml, text, source, |entry| validator.add(entry));
    if read.is_ok() {
        errs.append(validator.errs);
    }
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

const ROUTES_FILE_FIELDS: &[&str] = &["routes"];

/// Reads a route file in `format`, handing each entry to `each` as soon as it is read: a file
/// of 100k routes is never held as 100k raw entries (a big, growing list of spanned values
/// cost more than reading them). Refuses what [`RawRoutesFile`] would: any key but `routes`,
/// no `routes`; `routes:` left empty means none.
pub(super) fn parse_routes(
    format: Format,
    text: &str,
    file: &str,
    each: impl FnMut(S<RawRoute>),
) -> Result<(), Problem> {
    let seed = RoutesFileSeed(each);
    match format {
        Format::Yaml => {
            serde_saphyr::with_deserializer_from_str_with_options(text, raw::yaml_options(), |d| {
                seed.deserialize(d)
            })
            .map_err(|e| raw::describe_yaml(&e, text, file))
        }
        Format::Json => {
            let mut d = serde_json::Deserializer::from_str(text);
            seed.deserialize(&mut d)
                .and_then(|()| d.end())
                .map_err(|e| raw::describe_json(&e, file))
        }
    }
}

/// The file: a map whose one key is `routes`.
struct RoutesFileSeed<F>(F);

impl<'de, F: FnMut(S<RawRoute>)> DeserializeSeed<'de> for RoutesFileSeed<F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_struct("RawRoutesFile", ROUTES_FILE_FIELDS, self)
    }
}

impl<'de, F: FnMut(S<RawRoute>)> Visitor<'de> for RoutesFileSeed<F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a route file: `routes: [...]`")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<String>()? {
            if key != "routes" {
                return Err(de::Error::unknown_field(&key, ROUTES_FILE_FIELDS));
            }
            if seen {
                return Err(de::Error::duplicate_field("routes"));
            }
            seen = true;
            map.next_value_seed(RouteListSeed(&mut self.0))?;
        }
        if !seen {
            return Err(de::Error::missing_field("routes"));
        }
        Ok(())
    }
}

/// The `routes` value: a list of [`RawRoute`], or empty.
struct RouteListSeed<'f, F>(&'f mut F);

impl<'de, F: FnMut(S<RawRoute>)> DeserializeSeed<'de> for RouteListSeed<'_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, F: FnMut(S<RawRoute>)> Visitor<'de> for RouteListSeed<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of routes")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(route) = seq.next_element::<S<RawRoute>>()? {
            (self.0)(route);
        }
        Ok(())
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
        let known = super::claims::Known {
            file: source,
            text,
            main: false,
        };
        errs.push(super::claims::problem(e, known));
    }
    errs.finish(routes)
}

/// Why routes could not be written out (the serializer's own message).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Yaml(#[from] serde_saphyr::ser::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// A route file holding `routes`, in `format`; reading it back gives the same specs.
pub fn render_routes_file(routes: &[RouteSpec], format: Format) -> Result<String, RenderError> {
    let file = RawRoutesFile {
        routes: routes.iter().map(route_entry::entry).collect(),
    };
    let mut text = match format {
        Format::Yaml => {
            // Each value on its key's line (no folded long names), lists indented under keys.
            let options = serde_saphyr::ser_options! {
                prefer_block_scalars: false,
                compact_list_indent: false,
            };
            serde_saphyr::to_string_with_options(&file, options)?
        }
        Format::Json => serde_json::to_string_pretty(&file)?,
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}
