//! The route table: SNI → route, as one immutable snapshot shared by `Arc`.
//!
//! Lookup cost depends on the length of the name, never on the number of routes.
