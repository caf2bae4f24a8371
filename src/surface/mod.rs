//! The surface layer: what operators and other programs touch.
//!
//! - [`cli`]: the command line (`run`, `check`, `routes from-chi`, `completions`);
//! - [`from_chi`]: `routes from-chi`, manifests to a routes file;
//! - [`admin`]: `/` (index), `/metrics`, `/healthz`, `/readyz`, `/routes`, `/connections`;
//! - [`metrics`]: the Prometheus recorder and exposition;
//! - [`access_log`]: one line per connection, and the log setup;
//! - [`access_text`]: the access line in the text format;
//! - [`json_out`]: the JSON access line's pieces, written without `core::fmt`;
//! - [`reload_log`]: the reload line, one per attempt the control plane reports;
//! - [`log_text`]: the log format in force, and the text format of every line;
//! - [`log_sink`]: the one batched writer every log line goes through;
//! - [`signals`]: what `run` does on each signal.
//!
//! May use every layer below; nothing below uses it (the runtime reports through
//! [`crate::runtime::observe::Observer`], which [`access_log::AccessLog`] implements).

pub mod access_log;
pub mod access_text;
pub mod admin;
pub mod cli;
pub mod from_chi;
pub mod json_out;
pub mod log_sink;
pub mod log_text;
pub mod metrics;
pub mod reload_log;
pub mod signals;
