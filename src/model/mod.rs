//! The model layer: what the proxy is configured to do, as plain data and pure functions.
//!
//! - [`route`]: route specs, the SNI route table and its lookup;
//! - [`allow`]: client-CIDR allowlists;
//! - [`config`]: files → typed configuration and route specs, validation, one error type;
//! - [`chi`]: ClickHouseInstallation manifests → route specs (Altinity operator naming);
//! - [`chc`]: ClickHouseCluster manifests → route specs (official operator naming);
//! - [`annotations`], [`manifests`]: what every Kubernetes source shares (the
//!   `ch-edge-proxy/*` annotations; multi-document and `kind: List` manifests);
//! - [`sources`]: manifests of every source at once (`routes from-manifests`);
//! - [`gateway`]: Gateway API objects (GatewayClass, Gateway, TLSRoute, ReferenceGrant) → route
//!   specs and statuses;
//! - [`tls`]: certificates to serve (checked pairs, chosen by name) and CAs to trust.
//!
//! Uses the wire layer ([`ch_edge_wire`]) only: no sockets, no async runtime, no metrics.
//! `config` parses into `route`'s types; `route` never imports `config`.

pub mod allow;
pub mod annotations;
pub mod chc;
pub mod chi;
pub mod config;
pub mod gateway;
pub mod manifests;
pub mod route;
pub mod sources;
pub mod tls;
