//! The runtime's metrics: names and help texts, in one place. They are recorded through the
//! `metrics` facade where things happen; the surface installs the Prometheus recorder, calls
//! [`describe`] and serves them.
//!
//! Labels are bounded by the configuration (listener, route, outcome) and DNS answers
//! (upstream addresses), never by anything a client sends.
//!
//! The per-address families ([`PER_ADDRESS`]) are not recorded through the facade: their
//! values live in each address's state ([`crate::runtime::upstream::endpoint`]) and the surface renders
//! them at each scrape, so the series of an address that left every table disappears (the
//! facade cannot forget a series).

use std::time::SystemTime;

pub const CONNECTIONS: &str = "ch_edge_proxy_connections_total";
pub const ACTIVE_CONNECTIONS: &str = "ch_edge_proxy_active_connections";
pub const PARKED_CONNECTIONS: &str = "ch_edge_proxy_parked_connections";
pub const BYTES_FROM_CLIENT: &str = "ch_edge_proxy_client_bytes_total";
pub const BYTES_FROM_UPSTREAM: &str = "ch_edge_proxy_upstream_bytes_total";
pub const CLIENT_HELLO_SECONDS: &str = "ch_edge_proxy_client_hello_seconds";
pub const UPSTREAM_CONNECT_SECONDS: &str = "ch_edge_proxy_upstream_connect_seconds";
pub const UPSTREAM_CONNECT_FAILURES: &str = "ch_edge_proxy_upstream_connect_failures_total";
pub const UPSTREAM_OPEN_CONNECTIONS: &str = "ch_edge_proxy_upstream_open_connections";
pub const UPSTREAM_EJECTED: &str = "ch_edge_proxy_upstream_ejected";
pub const UPSTREAM_EJECTIONS: &str = "ch_edge_proxy_upstream_ejections_total";
pub const ACCEPT_ERRORS: &str = "ch_edge_proxy_accept_errors_total";
pub const DNS_LOOKUPS: &str = "ch_edge_proxy_dns_lookups_total";
pub const ROUTES: &str = "ch_edge_proxy_routes";
pub const RELOADS: &str = "ch_edge_proxy_reloads_total";
pub const RELOAD_SECONDS: &str = "ch_edge_proxy_reload_seconds";
pub const CONFIG_GENERATION: &str = "ch_edge_proxy_config_generation";
pub const CONFIG_LAST_SUCCESS: &str = "ch_edge_proxy_config_last_success_timestamp_seconds";
pub const DISCOVERY_CHIS: &str = "ch_edge_proxy_discovery_chis";
pub const DISCOVERY_CHIS_INVALID: &str = "ch_edge_proxy_discovery_chis_invalid";
pub const DISCOVERY_ROUTES: &str = "ch_edge_proxy_discovery_routes";
pub const DISCOVERY_ROUTES_REFUSED: &str = "ch_edge_proxy_discovery_routes_refused";
pub const DISCOVERY_API_ERRORS: &str = "ch_edge_proxy_discovery_api_errors_total";
pub const DISCOVERY_LAST_SYNC: &str = "ch_edge_proxy_discovery_last_sync_timestamp_seconds";
pub const CONFIG_WATCH_EVENTS: &str = "ch_edge_proxy_config_watch_events_total";
pub const CLIENTS_TRACKED: &str = "ch_edge_proxy_clients_tracked";
pub const LOG_LINES_SUPPRESSED: &str = "ch_edge_proxy_log_lines_suppressed_total";
pub const LOG_LINES_DROPPED: &str = "ch_edge_proxy_log_lines_dropped_total";
pub const DISCOVERY_ENABLED: &str = "ch_edge_proxy_discovery_enabled";
pub const DISCOVERY_SYNCED: &str = "ch_edge_proxy_discovery_synced";
pub const CONFIG_LAST_RELOAD_SUCCESSFUL: &str = "ch_edge_proxy_config_last_reload_successful";
pub const MAX_CONNECTIONS: &str = "ch_edge_proxy_max_connections";
pub const READY: &str = "ch_edge_proxy_ready";
pub const ADMIN_ACCEPT_ERRORS: &str = "ch_edge_proxy_admin_accept_errors_total";
pub const ADMIN_OVER_LIMIT: &str = "ch_edge_proxy_admin_over_limit_total";
pub const TLS_HANDSHAKES: &str = "ch_edge_proxy_tls_handshakes_total";
pub const TLS_HANDSHAKE_SECONDS: &str = "ch_edge_proxy_tls_handshake_seconds";
pub const TLS_HANDSHAKES_IN_FLIGHT: &str = "ch_edge_proxy_tls_handshakes_in_flight";
/// Rendered by the surface at each scrape from the live certificates (a removed certificate's
/// series disappears), labelled `certificate="<cert file>"`.
pub const TLS_CERTIFICATE_EXPIRY: &str = "ch_edge_proxy_tls_certificate_expiry_timestamp_seconds";
/// PostgreSQL clients on `protocol: postgres` listeners that reached their ClientHello, by how
/// (`negotiation`: `sslrequest`, `direct`, `gssenc_then_ssl`).
pub const POSTGRES_NEGOTIATIONS: &str = "ch_edge_proxy_postgres_negotiations_total";
pub const CPU_LIMIT: &str = "ch_edge_proxy_cpu_limit_cores";
pub const MEMORY_LIMIT: &str = "ch_edge_proxy_memory_limit_bytes";

/// Metric type in the exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

ch_edge_wire::keywords!(Kind {
    Counter => "counter",
    Gauge => "gauge",
});

/// The families labelled `upstream="<host>:<port>"`, `address="<ip>:<port>"`: name, type, help.
pub const PER_ADDRESS: [(&str, Kind, &str); 4] = [
    (
        UPSTREAM_CONNECT_FAILURES,
        Kind::Counter,
        "Failed upstream connect attempts (refused or timed out), by upstream and address.",
    ),
    (
        UPSTREAM_OPEN_CONNECTIONS,
        Kind::Gauge,
        "Connections open from this proxy to the address (connects in progress included).",
    ),
    (
        UPSTREAM_EJECTED,
        Kind::Gauge,
        "1 while passive health keeps the address out after failed connects, else 0.",
    ),
    (
        UPSTREAM_EJECTIONS,
        Kind::Counter,
        "Times passive health took the address out.",
    ),
];

/// Registers help texts (shown as `# HELP` in `/metrics`).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        CONNECTIONS,
        "Connections by listener, route and outcome (every refusal reason is its own outcome)."
    );
    describe_gauge!(ACTIVE_CONNECTIONS, "Connections currently open.");
    describe_gauge!(
        PARKED_CONNECTIONS,
        "Open relayed connections parked: quiet, their sockets out of the reactor."
    );
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
        ACCEPT_ERRORS,
        "accept() errors by listener (EMFILE and the like back off)."
    );
    describe_counter!(DNS_LOOKUPS, "Upstream DNS lookups by result.");
    describe_gauge!(ROUTES, "Routes in the live table.");
    describe_counter!(
        RELOADS,
        "Configuration reload attempts by result (ok, error, unchanged)."
    );
    describe_histogram!(
        RELOAD_SECONDS,
        Unit::Seconds,
        "Time from a reload's start (after the watch debounce) until its result, by result."
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
    describe_gauge!(
        DISCOVERY_CHIS,
        "ClickHouseInstallations in the live table's discovery snapshot."
    );
    describe_gauge!(
        DISCOVERY_CHIS_INVALID,
        "ClickHouseInstallations skipped because their routes could not be derived."
    );
    describe_gauge!(DISCOVERY_ROUTES, "Discovered routes in the live table.");
    describe_gauge!(
        DISCOVERY_ROUTES_REFUSED,
        "Discovered routes left out of the live table, by reason (sni_claimed, name_claimed)."
    );
    describe_counter!(
        DISCOVERY_API_ERRORS,
        "Kubernetes API errors of discovery, by kind (client, list, watch_start, watch, watch_event, no_resource_version, stalled: the API server sent nothing for the stall timeout; status: a Gateway API status patch refused)."
    );
    describe_counter!(
        CONFIG_WATCH_EVENTS,
        "Events of the configuration's directory watches, by result: hint (a reload is due) or ignored (a file that cannot matter)."
    );
    describe_gauge!(
        CLIENTS_TRACKED,
        "Client addresses the per-client limits keep state for (open connections or a bucket refilling)."
    );
    describe_counter!(
        LOG_LINES_SUPPRESSED,
        "Refusal access-log lines left out (over the per-outcome rate), by outcome; every refusal is still counted in connections_total."
    );
    describe_counter!(
        LOG_LINES_DROPPED,
        "Log lines dropped because stdout did not keep up with them."
    );
    describe_gauge!(
        DISCOVERY_ENABLED,
        "1 when Kubernetes discovery is configured on, else 0."
    );
    describe_gauge!(
        DISCOVERY_SYNCED,
        "1 when a complete list of ClickHouseInstallations is behind the live table, else 0."
    );
    describe_gauge!(
        CONFIG_LAST_RELOAD_SUCCESSFUL,
        "1 while the configuration files are the running configuration (loaded, or equal to it again), 0 while they are refused."
    );
    describe_gauge!(
        MAX_CONNECTIONS,
        "limits.max_connections of the live configuration."
    );
    describe_gauge!(
        READY,
        "1 when /readyz answers 200, else 0 (starting, draining, awaiting discovery)."
    );
    describe_counter!(
        ADMIN_ACCEPT_ERRORS,
        "accept() errors of the admin listeners, by address (EMFILE and the like back off)."
    );
    describe_counter!(
        ADMIN_OVER_LIMIT,
        "Admin connections closed at accept because the listener's cap was reached, by address."
    );
    describe_gauge!(
        CPU_LIMIT,
        "CPU cores the process may use: its cgroup's quota, else the cores it can run on."
    );
    describe_gauge!(
        MEMORY_LIMIT,
        Unit::Bytes,
        "Memory the process may use: its cgroup's limit, else the machine's memory."
    );
    describe_counter!(
        TLS_HANDSHAKES,
        "TLS handshakes of terminating routes, by side (client, upstream) and result (ok, or why it failed: timeout, busy, closed, peer_alert, incompatible, bad_certificate, protocol_error, io_error)."
    );
    describe_histogram!(
        TLS_HANDSHAKE_SECONDS,
        Unit::Seconds,
        "Time of successful TLS handshakes, by side (client: from the complete ClientHello)."
    );
    describe_gauge!(
        TLS_HANDSHAKES_IN_FLIGHT,
        "Client TLS handshakes holding a slot now (at most tls.max_handshakes)."
    );
    describe_counter!(
        POSTGRES_NEGOTIATIONS,
        "PostgreSQL clients on postgres listeners that reached their ClientHello, by listener and negotiation (sslrequest, direct, gssenc_then_ssl); refusals are connections_total outcomes (postgres_plaintext, not_postgres, postgres_direct_unsupported, upstream_ssl_refused)."
    );
    describe_gauge!(
        DISCOVERY_LAST_SYNC,
        Unit::Seconds,
        "Unix time of discovery's last complete list of ClickHouseInstallations."
    );
}

/// Seconds since the Unix epoch, for timestamp gauges and JSON.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
