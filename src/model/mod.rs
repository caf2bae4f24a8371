//! The model layer: what the proxy is configured to do, as plain data and pure functions.
//!
//! - [`route`]: route specs, the SNI route table and its lookup;
//! - [`allow`]: client-CIDR allowlists;
//! - [`config`]: files → typed configuration and route specs, validation, one error type;
//! - [`chi`]: ClickHouseInstallation manifests → route specs (operator naming);
//! - [`gateway`]: Gateway API objects (GatewayClass, Gateway, TLSRoute, ReferenceGrant) → route
//!   specs and statuses;
//! - [`tls`]: certificates to serve (checked pairs, chosen by name) and CAs to trust.
//!
//! Uses the wire layer ([`ch_edge_wire`]) only: no sockets, no async runtime, no metrics.
//! `config` parses into `route`'s types; `route` never imports `config`.

pub mod allow;
pub mod chi;
pub mod config;
pub mod gateway;
pub mod route;
pub mod tls;
