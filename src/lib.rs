//! ch-edge-proxy: an L4 edge proxy for ClickHouse on Kubernetes.
//!
//! The modules follow one connection through the proxy:
//! accept → preamble (proxy_in + client_hello) → route → allow → connect →
//! proxy_out → relay; around them: config, server (state, drain), admin,
//! metrics/telemetry, access_log, and reload (watch, listeners).

pub mod accept;
pub mod access_log;
pub mod admin;
pub mod allow;
pub mod chi;
pub mod cli;
pub mod client_hello;
pub mod config;
pub mod connect;
pub mod connection;
pub mod discovery;
pub mod listeners;
pub mod metrics;
pub mod outcome;
pub mod preamble;
pub mod proxy_in;
pub mod proxy_out;
pub mod relay;
pub mod reload;
pub mod resolve;
pub mod route;
pub mod server;
pub mod telemetry;
pub mod tls_alert;
pub mod watch;
