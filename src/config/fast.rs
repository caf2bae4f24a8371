//! A fast reader for route files in the plain block layout that generators
//! and people write:
//!
//! ```yaml
//! routes:
//!   - name: ns/demo                     # comments anywhere
//!     sni: [demo.ch.example.com, "*.demo.ch.example.com"]
//!     upstream:
//!       - "10.0.0.1:9440"
//!     allow: ['10.0.0.0/8']
//!     proxy_protocol: v2
//! ```
//!
//! Why: serde-saphyr needs ~1.8 s for 100k routes (a general YAML 1.2
//! parser building spans and events for every node); this reads the same
//! file in a few tens of milliseconds. It accepts only a strict subset: one
//! key per line, known keys, scalars that are plain (letters, digits, `.-_/:`)
//! or quoted without escapes, one-line flow lists, block lists of scalars.
//! Anything else — anchors, tags, escapes, multi-line scalars, scalars YAML
//! would read as null, bool or number, unknown or repeated keys, tabs, CR,
//! documents markers, any syntax error — returns `None` and the caller parses
//! the file with serde-saphyr. So this path decides speed only: meaning and
//! every error message come from serde-saphyr whenever the file is not plain.
//! `tests.rs` checks both parsers agree on every input this one accepts.

use std::hash::BuildHasher;

use super::routes::{Lined, RouteIn};
use super::ProxyVersion;

/// The routes of `text`, or `None` when it is outside the subset (read in
/// one piece: the reference the pieces are tested against).
#[cfg(test)]
pub(crate) fn routes(text: &str) -> Option<Vec<RouteIn<'_>>> {
    whole(text)?.routes()
}

/// A run of whole route items of a plain file, parsed on its own: a big
/// file is read as many pieces, in parallel, and a reload re-reads only the
/// pieces whose text changed ([`chunks`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece<'a> {
    text: &'a str,
    /// Line number of `text`'s first line in the file.
    first_line: u64,
    /// Column of the `- ` that starts each route item.
    item_indent: usize,
}

/// A chunk holds at least this much text before a cut is looked for...
const MIN_CHUNK: usize = 32 << 10;
/// ...and is cut at the first item line past this much in any case.
const MAX_CHUNK: usize = 1 << 20;
/// Past [`MIN_CHUNK`], an item line whose hash is 0 modulo this starts a
/// new chunk (chunks of ~500 routes).
const CUT_EVERY: u64 = 64;

/// `text`'s route items cut where the text says (content-defined chunking):
/// a chunk ends before the first item line past [`MIN_CHUNK`] whose hash
/// hits [`CUT_EVERY`]. An edit, insertion or removal moves at most the cuts
/// next to it, so the other chunks keep their exact text, and a reload of a
/// big file parses only the chunks around what changed. `None` when the
/// file does not start like the subset; a chunk may still turn out to be
/// outside it.
pub(crate) fn chunks(text: &str) -> Option<Vec<Piece<'_>>> {
    let hasher = foldhash::fast::FixedState::with_seed(0x6368_756e_6b73);
    split(text, |rest, marker| {
        let mut at = (MIN_CHUNK..=rest.len()).find(|&i| rest.is_char_boundary(i))?;
        loop {
            // The next item line after `at`; the chunk would end before it.
            let line = at + rest.get(at..)?.find(marker)? + 1;
            let text = rest.get(line..)?;
            let end = text.bytes().position(|b| b == b'\n').unwrap_or(text.len());
            let hit = hasher.hash_one(text.get(..end)?) % CUT_EVERY == 0;
            if hit || line >= MAX_CHUNK {
                return Some(line);
            }
            at = line;
        }
    })
}

/// `text`'s route items as one piece (`None`: not the plain layout).
pub(crate) fn whole(text: &str) -> Option<Piece<'_>> {
    split(text, |_, _| None)?.pop()
}

/// `text`'s route items cut into at most `n` pieces of similar size.
#[cfg(test)]
pub(crate) fn pieces(text: &str, n: usize) -> Option<Vec<Piece<'_>>> {
    let n = n.max(1);
    let mut k = 0;
    let mut total = None;
    let mut consumed = 0;
    split(text, |rest, marker| {
        let total = *total.get_or_insert(rest.len());
        k += 1;
        if k >= n {
            return None;
        }
        let target = (total * k / n).saturating_sub(consumed).max(1);
        let target = (target..=rest.len()).find(|&i| rest.is_char_boundary(i))?;
        let cut = target + rest.get(target..)?.find(marker)? + 1;
        consumed += cut;
        Some(cut)
    })
}

/// Cuts the items of a plain route file into pieces, at lines that start an
/// item (a line at the items' column always does: every other line of an
/// item is deeper). `next_cut(rest, marker)` gives where in `rest` the next
/// piece starts, just after a `marker` (`"\n"`, the items' indent, `"- "`),
/// or `None` for no more cuts.
fn split<'a>(
    text: &'a str,
    mut next_cut: impl FnMut(&'a str, &str) -> Option<usize>,
) -> Option<Vec<Piece<'a>>> {
    let mut lines = Lines::new(text);
    let first = lines.next()?;
    if first.indent != 0 || strip_comment(first.rest)? != "routes:" {
        return None;
    }
    let item = lines.peek()?;
    let (item_indent, first_line) = (item.indent, item.number);
    // The item line's start, as an offset into `text` (`rest` points into it).
    let start = (item.rest.as_ptr() as usize - text.as_ptr() as usize).checked_sub(item_indent)?;
    let (head, body) = text.split_at_checked(start)?;
    if has_tab_or_cr(head) {
        return None;
    }
    let marker = format!("\n{:item_indent$}- ", "");
    let mut out = Vec::new();
    let (mut rest, mut line) = (body, first_line);
    while let Some(cut) = next_cut(rest, &marker).filter(|&c| c > 0) {
        let Some((piece, next)) = rest.split_at_checked(cut) else {
            break;
        };
        out.push(Piece {
            text: piece,
            first_line: line,
            item_indent,
        });
        line += piece.bytes().filter(|&b| b == b'\n').count() as u64;
        rest = next;
    }
    out.push(Piece {
        text: rest,
        first_line: line,
        item_indent,
    });
    Some(out)
}

fn has_tab_or_cr(text: &str) -> bool {
    text.bytes().any(|b| b == b'\t' || b == b'\r')
}

impl<'a> Piece<'a> {
    /// The piece's text.
    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// The piece's routes, or `None` when it is outside the subset. Values
    /// borrow from the file's text.
    #[cfg(test)]
    pub(crate) fn routes(&self) -> Option<Vec<RouteIn<'a>>> {
        let mut out = Vec::new();
        self.for_each_route(|r| out.push(r))?;
        Some(out)
    }

    /// Hands each route to `take` as it is read (no list of them all is
    /// built); `None` when the piece is outside the subset, possibly after
    /// some routes were handed over.
    pub(crate) fn for_each_route(&self, mut take: impl FnMut(RouteIn<'a>)) -> Option<()> {
        if has_tab_or_cr(self.text) {
            return None;
        }
        let mut lines = Lines::starting_at(self.text, self.first_line);
        while let Some(line) = lines.next() {
            if line.indent != self.item_indent {
                return None;
            }
            let after_dash = line.rest.strip_prefix("- ")?;
            let key = after_dash.trim_start_matches(' ');
            let key_indent = line.indent + line.rest.len() - key.len();
            let mut route = RouteIn {
                line: line.number,
                name: None,
                sni: None,
                upstream: None,
                allow: None,
                proxy_protocol: None,
            };
            entry(&mut route, key, line.number, key_indent, &mut lines)?;
            while lines.peek().is_some_and(|l| l.indent == key_indent) {
                let l = lines.next()?;
                entry(&mut route, l.rest, l.number, key_indent, &mut lines)?;
            }
            take(route);
        }
        Some(())
    }
}

/// One `key: value` at column `indent`, its block list (if any) included.
fn entry<'a>(
    route: &mut RouteIn<'a>,
    text: &'a str,
    number: u64,
    indent: usize,
    lines: &mut Lines<'a>,
) -> Option<()> {
    let (key, value) = split_at_byte(text, b':')?;
    let value = match value.strip_prefix(' ') {
        Some(v) => v.trim_start_matches(' '),
        None if value.is_empty() => value,
        None => return None,
    };
    let value = strip_comment(value)?;
    let list = if value.is_empty() {
        Some(block_list(indent, lines)?)
    } else if let Some(inner) = value.strip_prefix('[') {
        Some(flow_list(inner, number)?)
    } else {
        None
    };
    let scalar = || -> Option<Lined<'a>> {
        let (value, rest) = scalar(value, false)?;
        rest.is_empty().then_some(Lined {
            value: value.into(),
            line: number,
        })
    };
    // A deeper line after a value would continue it (or be an error).
    if lines.peek().is_some_and(|l| l.indent > indent) {
        return None;
    }
    let many = |list: Option<Vec<Lined<'a>>>| list.or_else(|| scalar().map(|s| vec![s]));
    match key {
        "name" if route.name.is_none() && list.is_none() => route.name = Some(scalar()?),
        "sni" if route.sni.is_none() => route.sni = Some(many(list)?),
        "upstream" if route.upstream.is_none() => route.upstream = Some(many(list)?),
        "allow" if route.allow.is_none() => route.allow = Some(list?),
        "proxy_protocol" if route.proxy_protocol.is_none() && list.is_none() => {
            let word = scalar()?.value;
            let version = [
                ("off", ProxyVersion::Off),
                ("v1", ProxyVersion::V1),
                ("v2", ProxyVersion::V2),
            ]
            .into_iter()
            .find(|(w, _)| word.eq_ignore_ascii_case(w))?;
            route.proxy_protocol = Some(version.1);
        }
        _ => return None,
    }
    Some(())
}

/// `- scalar` lines, all at one column deeper than the key at `indent`.
fn block_list<'a>(indent: usize, lines: &mut Lines<'a>) -> Option<Vec<Lined<'a>>> {
    let item_indent = lines.peek()?.indent;
    if item_indent <= indent {
        return None;
    }
    let mut out = Vec::new();
    while lines.peek().is_some_and(|l| l.indent == item_indent) {
        let l = lines.next()?;
        let item = l.rest.strip_prefix("- ")?.trim_start_matches(' ');
        let (value, rest) = scalar(item, false)?;
        if !strip_comment(rest)?.is_empty() {
            return None;
        }
        out.push(Lined {
            value: value.into(),
            line: l.number,
        });
    }
    Some(out)
}

/// `a, "b", 'c']` (after the `[`), on one line, nothing but a comment after.
fn flow_list(mut text: &str, number: u64) -> Option<Vec<Lined<'_>>> {
    let mut out = Vec::new();
    text = text.trim_start_matches(' ');
    if let Some(rest) = text.strip_prefix(']') {
        return strip_comment(rest)?.is_empty().then_some(out);
    }
    loop {
        let (value, rest) = scalar(text, true)?;
        out.push(Lined {
            value: value.into(),
            line: number,
        });
        let rest = rest.trim_start_matches(' ');
        if let Some(rest) = rest.strip_prefix(']') {
            return strip_comment(rest)?.is_empty().then_some(out);
        }
        text = rest.strip_prefix(',')?.trim_start_matches(' ');
    }
}

/// A scalar at the start of `text`: its value and what follows it (trailing
/// spaces dropped). `None` for anything that is not plainly a string.
fn scalar(text: &str, in_flow: bool) -> Option<(&str, &str)> {
    let (value, rest) = match text.as_bytes().first()? {
        b'"' => {
            let (inner, rest) = split_at_byte(text.get(1..)?, b'"')?;
            if inner.contains('\\') || !printable(inner) {
                return None;
            }
            (inner, rest)
        }
        b'\'' => {
            let (inner, rest) = split_at_byte(text.get(1..)?, b'\'')?;
            if rest.starts_with('\'') || !printable(inner) {
                return None; // '' is an escaped quote
            }
            (inner, rest)
        }
        _ => {
            let end = text
                .bytes()
                .position(|b| b == b' ' || (in_flow && (b == b',' || b == b']')))
                .unwrap_or(text.len());
            let (plain, rest) = text.split_at(end);
            if !plain_string(plain) {
                return None;
            }
            (plain, rest)
        }
    };
    // After a scalar: spaces, then end, a comment, or (in a flow list) `,`/`]`.
    let rest = rest.trim_start_matches(' ');
    let ok = match rest.as_bytes().first() {
        None => true,
        Some(b'#') => {
            rest.len() < text.len() && text.as_bytes()[text.len() - rest.len() - 1] == b' '
        }
        Some(b',' | b']') => in_flow,
        Some(_) => false,
    };
    ok.then_some((value, rest))
}

/// Printable ASCII only: other characters have YAML-version-dependent meanings.
fn printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A plain scalar that YAML reads as exactly this string.
fn plain_string(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(&first) = b.first() else {
        return false;
    };
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return false;
    }
    for (i, &c) in b.iter().enumerate() {
        let ok = match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'/' => true,
            // `: ` would start a mapping; a colon inside (`host:9440`) is text.
            b':' => i + 1 < b.len(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    if first.is_ascii_digit() {
        // Numbers, dates and times never hold a `/` or two dots; addresses do.
        return s.contains('/') || s.bytes().filter(|c| *c == b'.').count() >= 2;
    }
    const WORDS: [&str; 11] = [
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "inf", "nan",
    ];
    s.len() > 5 || !WORDS.iter().any(|w| s.eq_ignore_ascii_case(w))
}

/// `text` without a trailing ` # comment` and trailing spaces; `None` if a
/// `#` could be part of the value (not preceded by a space).
fn strip_comment(text: &str) -> Option<&str> {
    let body = match text.bytes().position(|b| b == b'#') {
        Some(0) => "",
        Some(i) if text.as_bytes().get(i - 1) == Some(&b' ') => text.get(..i)?,
        Some(_) => return None,
        None => text,
    };
    Some(body.trim_end_matches(' '))
}

/// `text` before and after the first `byte` (ASCII), like `split_once`.
fn split_at_byte(text: &str, byte: u8) -> Option<(&str, &str)> {
    let at = text.bytes().position(|b| b == byte)?;
    Some((text.get(..at)?, text.get(at + 1..)?))
}

struct Line<'a> {
    number: u64,
    indent: usize,
    rest: &'a str,
}

/// Content lines: blank and comment-only lines skipped; `---`/`...` end the
/// fast path (a caller sees them as a line it cannot place).
///
/// Searches here are plain byte loops: lines and values are a few dozen
/// bytes, where `str`'s memchr-based searches cost more than they save.
struct Lines<'a> {
    /// The text after the lines returned so far.
    rest: &'a str,
    /// Number of the next line in `rest`.
    number: u64,
    peeked: Option<Option<Line<'a>>>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self::starting_at(text, 1)
    }

    fn starting_at(text: &'a str, first: u64) -> Self {
        Lines {
            rest: text,
            number: first,
            peeked: None,
        }
    }

    fn peek(&mut self) -> Option<&Line<'a>> {
        if self.peeked.is_none() {
            self.peeked = Some(self.advance());
        }
        self.peeked.as_ref().and_then(Option::as_ref)
    }

    fn advance(&mut self) -> Option<Line<'a>> {
        while !self.rest.is_empty() {
            let (raw, after) = split_at_byte(self.rest, b'\n').unwrap_or((self.rest, ""));
            self.rest = after;
            let number = self.number;
            self.number += 1;
            let rest = raw.trim_start_matches(' ');
            if rest.is_empty() || rest.starts_with('#') {
                continue;
            }
            return Some(Line {
                number,
                indent: raw.len() - rest.len(),
                rest,
            });
        }
        None
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        match self.peeked.take() {
            Some(line) => line,
            None => self.advance(),
        }
    }
}

#[cfg(test)]
mod tests;
