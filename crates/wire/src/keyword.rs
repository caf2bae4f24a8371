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

/// `"v3": expected one of off, v1, v2`
impl fmt::Display for UnknownKeyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: expected one of {}",
            self.got,
            self.expected.join(", ")
        )
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
        assert_eq!(e.to_string(), "\" on\": expected one of off, on");
        assert_eq!(Mode::KEYWORDS, ["off", "on"]);
    }
}
