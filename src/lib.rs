//! ch-edge-proxy: an L4 edge proxy for ClickHouse on Kubernetes.
//!
//! The code is layered; each layer uses only the ones below it (`tests/architecture.rs` fails
//! on any import upwards and on any cycle between modules):
//!
//! | layer | where | what |
//! |---|---|---|
//! | wire | crate `ch-edge-wire` | pure parsers/encoders: ClickHouse clients' ClientHello, PROXY in/out, TLS alerts, SNI names |
//! | model | [`model`] | routes and their table, allowlists, configuration, CHI → routes |
//! | runtime | [`runtime`] | sockets and tasks: accept → preamble → connect → relay; reload, discovery, drain |
//! | surface | [`surface`], `main.rs` | command line, admin endpoint, metrics exposition, access log |

pub mod model;
pub mod runtime;
pub mod surface;
