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
pub const RELOADS: &str = "ch_edge_proxy_reloads_total";
pub const CONFIG_GENERATION: &str = "ch_edge_proxy_config_generation";
pub const CONFIG_LAST_SUCCESS: &str = "ch_edge_proxy_config_last_success_timestamp_seconds";

/// Registers help texts (shown as `# HELP` in `/metrics`).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        CONNECTIONS,
        "Connections by listener, route and outcome (every refusal reason is its own outcome)."
    );
    describe_gauge!(ACTIVE_CONNECTIONS, "Connections currently open.");
    describe_counter!(
        BYTES_FROM_CLIENT,
        Unit::Bytes,
        "Bytes relayed from clients to upstreams, by route."
    );
    describe_counter!(
        BYTES_FROM_UPSTREAM,
        Unit::Bytes,
        "Bytes relayed from upstreams to clients, by route."
    );
    describe_histogram!(
        CLIENT_HELLO_SECONDS,
        Unit::Seconds,
        "Time from accept until PROXY header and ClientHello were complete."
    );
    describe_histogram!(
        UPSTREAM_CONNECT_SECONDS,
        Unit::Seconds,
        "Time to connect to an upstream, failovers included."
    );
    describe_counter!(
        UPSTREAM_CONNECT_FAILURES,
        "Failed upstream connect attempts, by upstream host."
    );
    describe_counter!(
        ACCEPT_ERRORS,
        "accept() errors by listener (EMFILE and the like back off)."
    );
    describe_counter!(DNS_LOOKUPS, "Upstream DNS lookups by result.");
    describe_gauge!(ROUTES, "Routes in the live table.");
    describe_counter!(
        RELOADS,
        "Configuration reload attempts by result (ok, error, unchanged)."
    );
    describe_gauge!(
        CONFIG_GENERATION,
        "Generation of the live configuration (1 at start, +1 per successful reload)."
    );
    describe_gauge!(
        CONFIG_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last successful configuration load."
    );
}
