//! One spelling per value: keyword enums (`off | v1 | v2`, `off | optional | required`, …) get
//! their `FromStr`, `Display` and error message from one table each, via [`keywords!`]. The
//! configuration, CHI annotations, `/routes` and `check`'s summary all go through them, so a
//! value is accepted and shown the same way everywhere.

use std::fmt;

/// A word that is none of a keyword enum's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKeyword {
    got: String,
    expected: &'static [&'static str],
}

impl UnknownKeyword {
    pub fn new(got: &str, expected: &'static [&'static str]) -> Self {
        UnknownKeyword {
            got: got.to_owned(),
            expected,
        }
    }
}

impl UnknownKeyword {
    /// The accepted word this one is likely a typo of ([`closest`]).
    pub fn suggestion(&self) -> Option<&'static str> {
        closest(&self.got, self.expected.iter().copied())
    }
}

/// The word of `words` that `got` is likely a typo of: the one closest, within two edits
/// (none when two are as close: `v3` is as near `v1` as `v2`). ASCII case is ignored.
pub fn closest<'w>(got: &str, words: impl IntoIterator<Item = &'w str>) -> Option<&'w str> {
    let got = got.trim().to_ascii_lowercase();
    let mut near = words
        .into_iter()
        .map(|w| (edit_distance(&got, w), w))
        .filter(|(d, _)| *d <= 2 && *d < got.len());
    let mut best = near.next()?;
    let mut tie = false;
    for (d, w) in near {
        if d < best.0 {
            (best, tie) = ((d, w), false);
        } else if d == best.0 {
            tie = true;
        }
    }
    (!tie).then_some(best.1)
}

/// Levenshtein distance, with a swap of two neighbours counting as one edit (`termiante`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // Three rows: two back (for swaps), one back, this one.
    let mut two: Vec<usize> = vec![0; b.len() + 1];
    let mut one: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (one[j] + 1).min(row[j - 1] + 1).min(one[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(two[j - 2] + 1);
            }
        }
        two = std::mem::replace(&mut one, row);
    }
    one[b.len()]
}

/// `"v3": expected one of off, v1, v2`, and `(did you mean "v2"?)` for a close typo.
impl fmt::Display for UnknownKeyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: expected one of {}",
            self.got,
            self.expected.join(", ")
        )?;
        match self.suggestion() {
            Some(word) => write!(f, " (did you mean {word:?}?)"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for UnknownKeyword {}

/// Implements `KEYWORDS`, `keyword()`, `FromStr` (ASCII case-insensitive: `V1` is `v1`) and
/// `Display` for a fieldless enum from one `Variant => "word"` table.
#[macro_export]
macro_rules! keywords {
    ($ty:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $ty {
            /// Every accepted word, in the order they are documented.
            pub const KEYWORDS: &'static [&'static str] = &[$($word),+];

            /// The word for this value.
            pub fn keyword(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),+
                }
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::keyword::UnknownKeyword;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $(if s.eq_ignore_ascii_case($word) {
                    return Ok($ty::$variant);
                })+
                Err($crate::keyword::UnknownKeyword::new(s, Self::KEYWORDS))
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.keyword())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Off,
        On,
    }

    keywords!(Mode { Off => "off", On => "on" });

    #[test]
    fn one_table_gives_parse_display_and_error() {
        assert_eq!("off".parse::<Mode>(), Ok(Mode::Off));
        assert_eq!("ON".parse::<Mode>(), Ok(Mode::On));
        assert_eq!(Mode::On.to_string(), "on");
        for m in [Mode::Off, Mode::On] {
            assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
        }
        let e = " on".parse::<Mode>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\" on\": expected one of off, on (did you mean \"on\"?)"
        );
        assert_eq!(Mode::KEYWORDS, ["off", "on"]);
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Tls {
        Passthrough,
        Terminate,
        Reencrypt,
    }

    keywords!(Tls { Passthrough => "passthrough", Terminate => "terminate", Reencrypt => "reencrypt" });

    #[test]
    fn a_close_typo_gets_a_suggestion() {
        let e = "termiante".parse::<Tls>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"termiante\": expected one of passthrough, terminate, reencrypt (did you mean \"terminate\"?)"
        );
        assert_eq!(
            "REENCRIPT".parse::<Tls>().unwrap_err().suggestion(),
            Some("reencrypt")
        );
        assert_eq!("leastconn".parse::<Tls>().unwrap_err().suggestion(), None);
        // A short word is not "close" to everything.
        assert_eq!("x".parse::<Mode>().unwrap_err().suggestion(), None);
        assert_eq!(
            "offf".parse::<Mode>().unwrap_err().suggestion(),
            Some("off")
        );
        // Equally close to two words: no guess.
        assert_eq!("of".parse::<Mode>().unwrap_err().suggestion(), None);
    }
}
