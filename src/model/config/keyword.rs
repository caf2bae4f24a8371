//! The two value wrappers the grammar's types are made of, in a leaf module that the grammar
//! ([`super::raw`]) and the error type ([`super::error`]) both use: a value with its source
//! location ([`S`]) and a keyword kept even when it is none of its type's words ([`Keyword`]).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_saphyr::Spanned;

/// A value with where it was written (line, column), so validation can point at it.
pub(crate) type S<T> = Spanned<T>;

/// A keyword value (`off`, `v1`, `required`, …), read and written through its type's one
/// spelling (`FromStr` + `Display`, [`ch_edge_wire::keywords`]). A word that is none of them
/// is kept, not refused by the parser: validation reports it with its key, route and line
/// (a parser error would name neither, and stop at the first). YAML 1.1 reads a plain `off`
/// as the boolean `false`; serde-saphyr hands a typed field the text `off`, but a deserializer
/// that has already made it a boolean `false` gets `off` too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keyword<T>(pub Result<T, String>);

impl<T: Copy> Keyword<T> {
    pub fn of(value: T) -> Self {
        Keyword(Ok(value))
    }

    /// The value, if the word is one.
    pub fn known(&self) -> Option<T> {
        self.0.as_ref().ok().copied()
    }
}

impl<'de, T> Deserialize<'de> for Keyword<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T> Visitor<'_> for V<T>
        where
            T: FromStr,
            T::Err: fmt::Display,
        {
            type Value = Keyword<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a keyword")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Keyword<T>, E> {
                Ok(Keyword(v.parse().map_err(|e| format!("invalid value {e}"))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Keyword<T>, E> {
                if v {
                    Err(E::invalid_value(de::Unexpected::Bool(v), &self))
                } else {
                    self.visit_str("off")
                }
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

impl<T: fmt::Display> Serialize for Keyword<T> {
    fn serialize<Z: Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        match &self.0 {
            Ok(value) => z.collect_str(value),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}
