//! ch-edge-proxy: an L4 edge proxy for ClickHouse on Kubernetes.
//!
//! The modules follow one connection through the proxy:
//! accept → proxy_in → client_hello → route → allow → connect → proxy_out → relay.

pub mod allow;
pub mod client_hello;
pub mod config;
pub mod metrics;
pub mod proxy_in;
pub mod proxy_out;
pub mod resolve;
pub mod route;
