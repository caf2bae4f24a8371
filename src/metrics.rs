//! Metric names and their descriptions, in one place.
//!
//! Labels are bounded by the configuration (listener, route, outcome), never
//! by anything a client sends.

pub const CONNECTIONS: &str = "ch_edge_proxy_connections_total";
pub const ACTIVE_CONNECTIONS: &str = "ch_edge_proxy_active_connections";
pub const BYTES_FROM_CLIENT: &str = "ch_edge_proxy_client_bytes_total";
pub const BYTES_FROM_UPSTREAM: &str = "ch_edge_proxy_upstream_bytes_total";
pub const CLIENT_HELLO_SECONDS: &str = "ch_edge_proxy_client_hello_seconds";
pub const UPSTREAM_CONNECT_SECONDS: &str = "ch_edge_proxy_upstream_connect_seconds";
pub const UPSTREAM_CONNECT_FAILURES: &str = "ch_edge_proxy_upstream_connect_failures_total";
pub const ACCEPT_ERRORS: &str = "ch_edge_proxy_accept_errors_total";
pub const DNS_LOOKUPS: &str = "ch_edge_proxy_dns_lookups_total";
pub const ROUTES: &str = "ch_edge_proxy_routes";
