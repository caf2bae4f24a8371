//! The connect phase against a real listener on loopback: an invalid backendRef's share.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::*;
use crate::model::route::{Balance, Defaults, RouteSpec, UpstreamAddr};
use crate::runtime::table::RouteTable;
use crate::runtime::upstream::resolve::Resolver;

const GONE: &str = "invalid backendRef: Service not found";

/// A route to `127.0.0.1:port` weighing 3 and a refusal placeholder weighing 1.
fn spec(port: u16, balance: Balance) -> RouteSpec {
    let upstream = |host: &str, port, weight, refused| UpstreamAddr {
        host: host.into(),
        port: Some(port),
        weight,
        refused,
    };
    RouteSpec {
        name: "r".into(),
        sni: Arc::from([Arc::from("r.test")]),
        upstreams: Arc::from([
            upstream("127.0.0.1", port, 3, None),
            upstream("Service/ns/gone", 443, 1, Some(GONE)),
        ]),
        allow: None,
        proxy_protocol: None,
        balance: Some(balance),
        sticky: None,
        tls: None,
        postgres: None,
        source: "test".into(),
    }
}

/// Every balance refuses 1 connection in 4, in the same places, and connects the others; the
/// connections are held open, so least_conn sees load (a placeholder, holding none, would
/// otherwise take every new connection).
#[tokio::test]
async fn an_invalid_refs_share_is_refused_and_the_rest_connect() {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = backend.local_addr().unwrap().port();
    let health = Health::default();
    let attempt = Attempt {
        default_port: 9440,
        budget: Duration::from_secs(5),
        health: &health,
        sticky: None,
    };
    for balance in [Balance::RoundRobin, Balance::LeastConn] {
        let specs = vec![spec(port, balance)];
        let table = RouteTable::build(&specs, &Defaults::default(), &Resolver::default()).unwrap();
        let route = table.lookup(Some(b"r.test")).unwrap();
        let mut held = Vec::new();
        let mut got = String::new();
        for _ in 0..8 {
            match connect(route, attempt).await {
                Ok(c) => {
                    held.push(c);
                    got.push('S');
                }
                Err(ConnectError::Refused(detail)) => {
                    assert_eq!(detail, GONE);
                    got.push('R');
                }
                Err(e) => panic!("{balance:?}: {e}"),
            }
        }
        assert_eq!(got, "SSRSSSRS", "{balance:?}");
    }
}
