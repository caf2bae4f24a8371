//! The one error type for configuration problems, from parsing through validation to `check`'s
//! output, the reload log line and `/routes`: every problem with its file, line where known, the
//! route it is in, and what is wrong.

use std::fmt;

use serde_saphyr::Location;

use super::keyword::{Keyword, S};
use crate::model::route::RouteError;

/// Most problems listed in one message; the rest are counted.
const MAX_LISTED: usize = 50;

/// One thing wrong with the configuration, e.g.
/// `routes.d/a.yaml:7: route "demo" (#2): allow: invalid CIDR "10.0.0.0/33"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file at fault; `None` when the message names several (a duplicate claim).
    pub file: Option<String>,
    /// 1-based line, where the parser knows it (YAML always; JSON for syntax errors).
    pub line: Option<u64>,
    /// Name of the route the problem is in, if it is in one.
    pub route: Option<String>,
    /// What is wrong, with where inside the file: `route "demo" (#2): allow: invalid CIDR …`.
    pub message: String,
}

impl Problem {
    /// A problem of `file` as a whole (unreadable, not a route file, …).
    pub fn in_file(file: &str, message: impl fmt::Display) -> Problem {
        Problem {
            file: Some(file.to_owned()),
            line: None,
            route: None,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, _) => {}
        }
        f.write_str(&self.message)
    }
}

/// A configuration refused: one or more [`Problem`]s, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<Problem>,
}

impl ConfigError {
    /// Never empty.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// A route table that could not be built from `file`'s configuration.
    pub fn route_table(file: &str, error: &RouteError) -> ConfigError {
        ConfigError::from(Problem {
            route: error.route().map(|r| r.name.clone()),
            ..Problem::in_file(file, error)
        })
    }
}

impl From<Problem> for ConfigError {
    fn from(problem: Problem) -> ConfigError {
        ConfigError {
            problems: vec![problem],
        }
    }
}

/// One problem as itself; several as `N configuration errors:` and one per line.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} configuration errors:", all.len())?;
                for p in all.iter().take(MAX_LISTED) {
                    write!(f, "\n  {p}")?;
                }
                if all.len() > MAX_LISTED {
                    write!(f, "\n  ... and {} more", all.len() - MAX_LISTED)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Problems collected while loading, so one run reports all of them.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<Problem>);

impl Problems {
    /// Records a problem of `file` at `at`, if known; `what` names the key (and the route or
    /// listener) it is about, empty for the file as a whole.
    pub fn add(&mut self, file: &str, at: Option<&Location>, what: &str, msg: impl fmt::Display) {
        self.add_line(file, at.map_or(0, Location::line), what, msg);
    }

    /// Like [`Problems::add`] with a line number; 0 means unknown.
    pub fn add_line(&mut self, file: &str, line: u64, what: &str, msg: impl fmt::Display) {
        self.push(Problem {
            file: Some(file.to_owned()),
            line: Some(line).filter(|l| *l > 0),
            route: None,
            message: if what.is_empty() {
                msg.to_string()
            } else {
                format!("{what}: {msg}")
            },
        });
    }

    /// Like [`Problems::add_line`], for a problem in the route named `route`.
    pub fn add_in_route(
        &mut self,
        route: Option<&str>,
        file: &str,
        line: u64,
        what: &str,
        msg: impl fmt::Display,
    ) {
        let from = self.len();
        self.add_line(file, line, what, msg);
        for p in self.since(from) {
            p.route = route.map(str::to_owned);
        }
    }

    /// The value of keyword field `raw`, or a problem about `what` (the key, after the route or
    /// section it is in) that lists the accepted words.
    pub fn keyword<T: Copy>(&mut self, file: &str, raw: &S<Keyword<T>>, what: &str) -> Option<T> {
        match &raw.value.0 {
            Ok(value) => Some(*value),
            Err(e) => {
                self.add(file, Some(&raw.referenced), what, e);
                None
            }
        }
    }

    /// The problems recorded since there were `from`.
    pub fn since(&mut self, from: usize) -> &mut [Problem] {
        self.0.get_mut(from..).unwrap_or_default()
    }

    pub fn push(&mut self, problem: Problem) {
        self.0.push(problem);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Appends `other`'s problems after these.
    pub fn append(&mut self, mut other: Problems) {
        self.0.append(&mut other.0);
    }

    /// `Ok(value)` if nothing was recorded; else the problems, each file's in line order
    /// (files in the order first named), whichever check found them.
    pub fn finish<T>(mut self, value: T) -> Result<T, ConfigError> {
        if self.0.is_empty() {
            return Ok(value);
        }
        let mut files: Vec<Option<String>> = Vec::new();
        for p in &self.0 {
            if !files.contains(&p.file) {
                files.push(p.file.clone());
            }
        }
        self.0.sort_by_key(|p| {
            let file = files.iter().position(|f| *f == p.file);
            (file, p.line.unwrap_or(0))
        });
        Err(ConfigError { problems: self.0 })
    }
}

impl From<RouteError> for Problem {
    /// A clash between routes: the message names both, and their files.
    fn from(error: RouteError) -> Problem {
        Problem {
            file: None,
            line: None,
            route: error.route().map(|r| r.name.clone()),
            message: error.to_string(),
        }
    }
}
