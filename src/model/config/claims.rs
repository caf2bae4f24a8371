//! SNI names claimed by two routes, reported like every other problem: at the file and line
//! of the second claim, naming its route, the key, and where the first claim is. A claim is
//! found over validated specs, which keep no lines: on this error path the files are read
//! again to find them.

use std::path::Path;

use super::error::Problem;
use super::raw::{self, Format, RawConfig, RawRoute, S};
use super::{include, route_file, routes};
use crate::model::route::{RouteError, RouteRef};

/// A file whose text is at hand (other files are read from disk).
#[derive(Clone, Copy)]
pub(crate) struct Known<'a> {
    pub file: &'a str,
    pub text: &'a str,
    /// The main configuration file (its routes under `routes:`), not a route file.
    pub main: bool,
}

/// The problem for `error`.
pub(crate) fn problem(error: RouteError, known: Known<'_>) -> Problem {
    let RouteError::DuplicateClaim {
        pattern,
        first,
        second,
    } = &error
    else {
        return error.into();
    };
    let at = |r: &RouteRef| {
        let line = sni_line(r, pattern, known);
        match line {
            Some(line) => format!("{}:{line}", r.source),
            None => r.source.clone(),
        }
    };
    Problem {
        file: Some(second.source.clone()),
        line: sni_line(second, pattern, known),
        route: Some(second.name.clone()),
        message: format!(
            "route {:?} (#{}): sni: {pattern:?} is already claimed by route {:?} (#{}) at {}",
            second.name,
            second.index,
            first.name,
            first.index,
            at(first)
        ),
    }
}

/// The line where route `r` claims `pattern`, if its file still says so.
fn sni_line(r: &RouteRef, pattern: &str, known: Known<'_>) -> Option<u64> {
    let index = r.index.checked_sub(1)?;
    let entry = match known {
        Known {
            file,
            text,
            main: true,
        } if file == r.source => {
            let config: RawConfig = raw::parse(Format::Yaml, text, file).ok()?;
            config.routes.into_iter().nth(index)?
        }
        Known {
            file,
            text,
            main: false,
        } if file == r.source => nth_entry(text, r.index)?,
        _ => {
            let text = include::read(Path::new(&r.source)).ok()?;
            nth_entry(&text, r.index)?
        }
    };
    Some(routes::sni_line(&entry, pattern)).filter(|l| *l > 0)
}

/// Entry number `index` (1-based) of a route file's `text`. Read as YAML whatever the file's
/// format: JSON is YAML too, and only the YAML reader knows lines.
pub(crate) fn nth_entry(text: &str, index: usize) -> Option<S<RawRoute>> {
    let mut seen = 0;
    let mut found = None;
    let _ = route_file::parse_routes(Format::Yaml, text, "", |entry| {
        seen += 1;
        if seen == index {
            found = Some(entry);
        }
    });
    found
}
