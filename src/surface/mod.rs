//! The surface layer: what operators and other programs touch.
//!
//! - [`cli`]: the command line (`run`, `check`, `routes from-chi`);
//! - [`from_chi`]: `routes from-chi`, manifests to a routes file;
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz`, `/routes`;
//! - [`metrics`]: the Prometheus recorder and exposition;
//! - [`access_log`]: one line per connection, and the log setup;
//! - [`log_sink`]: the one batched writer every log line goes through.
//!
//! May use every layer below; nothing below uses it (the runtime reports through
//! [`crate::runtime::observe::Observer`], which [`access_log::AccessLog`] implements).

pub mod access_log;
pub mod admin;
pub mod cli;
pub mod from_chi;
pub mod log_sink;
pub mod metrics;
