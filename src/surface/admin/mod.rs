//! Admin endpoint: `/` (an index), `/metrics` (Prometheus), `/healthz`, `/readyz`, `/routes`,
//! `/connections`.
//!
//! Served by hyper on listeners of its own, separate from the data path; each listener serves
//! the endpoints the config gives it (`admin.listeners[].serve`). The admin port is reachable
//! by more than the kubelet, so it is treated as hostile like the data ports: accept errors
//! back off, connections per listener are capped, and every connection has a short header
//! deadline and a bounded life.
//!
//! The cap must not starve the kubelet: anyone holding it (32 idle connections) would get the
//! proxy restarted or taken out of its Service. So past the cap a second, small budget takes
//! connections for one request each, under a much shorter header deadline and the smallest
//! head buffer hyper allows: probes are answered, anything else gets a 503, and the connection
//! closes. A probe sends its request at once; an idle or slow connection gives its place up
//! within a second, so holding this budget too takes a steady stream of new connections rather
//! than a handful. Past both, connections are closed at accept. One peer address gets at most a
//! quarter of each budget ([`places`]), so holding them all takes several addresses, and the
//! kubelet keeps its own. Everything stays bounded: connections (32 + 16), time per
//! connection, bytes per head.

mod connections;
mod places;
mod routes;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::{Counter, SharedString};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::model::config::AdminEndpoint;
use crate::runtime::control::server::{AdminSocket, Handle, NotReady};
use crate::runtime::meters;
use crate::runtime::pipeline::accept::Backoff;
use places::{Budget, Place, Places, MAX_CONNECTIONS, OVERFLOW_CONNECTIONS};

/// Slow or silent admin clients cannot hold a connection open: the request head (also the
/// next one on a kept-alive connection) must arrive within this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one admin connection, however busy (a slow reader of a big `/routes`).
const CONNECTION_MAX: Duration = Duration::from_secs(60);
/// Header deadline over the cap: a probe's request arrives in a round trip.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// Life of a connection over the cap (one request, one short answer).
const OVERFLOW_MAX: Duration = Duration::from_secs(2);
/// Bytes of request head buffered over the cap (hyper's smallest).
const OVERFLOW_HEAD_BYTES: usize = 8192;
/// At most one warning about connections over the cap per this interval; the rest are counted.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Refusals over the cap: counted, and logged at most once per [`REFUSAL_LOG_EVERY`].
struct Refusals {
    address: String,
    counter: Counter,
    throttle: Mutex<Throttle>,
}

impl Refusals {
    fn refused(&self, why: &'static str) {
        self.counter.increment(1);
        let ready = self
            .throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ready();
        if let Some(suppressed) = ready {
            tracing::warn!(
                address = %self.address,
                limit = MAX_CONNECTIONS,
                overflow = OVERFLOW_CONNECTIONS,
                suppressed,
                "admin connection refused: {why}"
            );
        }
    }
}

/// Serves admin requests on `socket`; keeps serving while the proxy drains, so
/// `/readyz` can report it (the task is aborted when the proxy exits).
pub async fn serve(socket: AdminSocket, proxy: Handle) {
    let AdminSocket { listener, serve } = socket;
    let address = listener
        .local_addr()
        .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
    let serves: Vec<&str> = serve.iter().map(|e| e.keyword()).collect();
    tracing::info!(address = %address, serve = serves.join(","), "admin listening");
    let label = SharedString::from_owned(address.clone());
    let accept_errors = metrics::counter!(meters::ADMIN_ACCEPT_ERRORS, "address" => label.clone());
    let over_limit = metrics::counter!(meters::ADMIN_OVER_LIMIT, "address" => label);
    // Exported at 0 from the start, so rates and alerts see them before the first event.
    accept_errors.increment(0);
    over_limit.increment(0);
    let refusals = Arc::new(Refusals {
        address,
        counter: over_limit,
        throttle: Mutex::default(),
    });
    let serve: Arc<[AdminEndpoint]> = serve.into();
    let places = Places::default();
    let mut backoff = Backoff::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                accept_errors.increment(1);
                backoff.failed("admin", &error).await;
                continue;
            }
        };
        backoff.reset();
        let Some(place) = places.take(peer.ip()) else {
            drop(stream);
            refusals.refused("too many open");
            continue;
        };
        let connection = Connection {
            serve: serve.clone(),
            proxy: proxy.clone(),
            refusals: refusals.clone(),
            budget: place.budget,
        };
        tokio::spawn(connection.run(stream, place));
    }
}

/// One accepted admin connection and what it is served with.
struct Connection {
    serve: Arc<[AdminEndpoint]>,
    proxy: Handle,
    refusals: Arc<Refusals>,
    budget: Budget,
}

impl Connection {
    /// Serves the connection to its end (or its life's end), then gives its place back.
    async fn run(self, stream: TcpStream, place: Place) {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new());
        let life = match self.budget {
            Budget::Full => {
                builder.header_read_timeout(HEADER_READ_TIMEOUT);
                CONNECTION_MAX
            }
            Budget::ProbesOnly => {
                builder
                    .header_read_timeout(OVERFLOW_HEADER_TIMEOUT)
                    .max_buf_size(OVERFLOW_HEAD_BYTES)
                    .keep_alive(false);
                OVERFLOW_MAX
            }
        };
        let this = Arc::new(self);
        let service = hyper::service::service_fn(move |req| {
            let response = this.answer(&req);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let _ = tokio::time::timeout(life, connection).await;
        drop(place);
    }

    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let probe = endpoint(req.uri().path()) == Some(AdminEndpoint::Probes);
        if self.budget == Budget::ProbesOnly && !probe {
            self.refusals
                .refused("too many open; over the cap only probes are answered");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many admin connections: only /healthz and /readyz are answered now\n",
            );
        }
        respond(req, &self.serve, &self.proxy)
    }
}

/// Lets one log line through per [`REFUSAL_LOG_EVERY`], counting those held back.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(lines held back since the last one)` when a line may be written now.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now < t + REFUSAL_LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Every path: the endpoint group that serves it, and what it is (for the `/` index).
const PATHS: &[(&str, AdminEndpoint, &str)] = &[
    (
        "/healthz",
        AdminEndpoint::Probes,
        "liveness: 200 while the process serves",
    ),
    (
        "/readyz",
        AdminEndpoint::Probes,
        "readiness: 200 when load balancers should send connections; 503 while starting, waiting for the first discovery list, or draining",
    ),
    (
        "/metrics",
        AdminEndpoint::Metrics,
        "Prometheus metrics (text format)",
    ),
    (
        "/routes",
        AdminEndpoint::Routes,
        "the live route table, last reload, certificates and discovery (JSON)",
    ),
    (
        "/connections",
        AdminEndpoint::Routes,
        "live relayed connections, oldest first: client, SNI, route, upstream, state, age, bytes (JSON; ?limit=N, default 100, at most 10000)",
    ),
];

/// Which endpoint group serves `path`.
fn endpoint(path: &str) -> Option<AdminEndpoint> {
    PATHS.iter().find(|p| p.0 == path).map(|p| p.1)
}

fn respond(
    req: &Request<Incoming>,
    serve: &[AdminEndpoint],
    proxy: &Handle,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path != "/" && !endpoint(path).is_some_and(|e| serve.contains(&e)) {
        return text(
            StatusCode::NOT_FOUND,
            "not found; / lists what is served here\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match path {
        "/" => index(req, serve),
        "/metrics" => {
            let ready = f64::from(u8::from(proxy.ready().is_ok()));
            metrics::gauge!(meters::READY).set(ready);
            // Counted by the drain, copied here: nothing per connection.
            metrics::gauge!(meters::ACTIVE_CONNECTIONS).set(proxy.active_connections() as f64);
            metrics::gauge!(meters::PARKED_CONNECTIONS).set(proxy.parked_connections() as f64);
            let mut body = crate::surface::metrics::render_metrics();
            let state = proxy.state();
            body.push_str(&crate::surface::metrics::certificate_expiry(
                &state.tls.certificates,
            ));
            with_type(body, "text/plain; version=0.0.4")
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match proxy.ready() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(NotReady::Draining) => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            // Before the first discovery list is live, a table without the CHIs' names would
            // refuse their clients.
            Err(NotReady::AwaitingDiscovery) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: waiting for the first Kubernetes discovery list\n",
            ),
            Err(NotReady::Starting) => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        },
        "/routes" => with_type(routes::routes_json(proxy), "application/json"),
        "/connections" => match connections::limit(req.uri().query()) {
            Ok(limit) => with_type(
                connections::connections_json(proxy, limit),
                "application/json",
            ),
            Err(why) => {
                let mut resp = with_type(why, "text/plain");
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                resp
            }
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// `/`: the paths this listener serves, one line each (JSON on `Accept: application/json`).
fn index(req: &Request<Incoming>, serve: &[AdminEndpoint]) -> Response<Full<Bytes>> {
    let served = PATHS.iter().filter(|p| serve.contains(&p.1));
    let json = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if json {
        let endpoints: Vec<serde_json::Value> = served
            .map(|(path, _, what)| serde_json::json!({"path": path, "description": what}))
            .collect();
        let body = serde_json::json!({ "endpoints": endpoints }).to_string();
        return with_type(body, "application/json");
    }
    let mut body = String::from("ch-edge-proxy admin; served here:\n");
    for (path, _, what) in served {
        body.push_str(&format!("{path:<13} {what}\n"));
    }
    with_type(body, "text/plain; charset=utf-8")
}

fn with_type(body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}
#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn refusal_lines_are_throttled_and_count_what_they_held_back() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.ready(), Some(0));
        assert_eq!(throttle.ready(), None);
        assert_eq!(throttle.ready(), None);
        tokio::time::advance(REFUSAL_LOG_EVERY).await;
        assert_eq!(throttle.ready(), Some(2));
        assert_eq!(throttle.ready(), None);
    }

    #[test]
    fn each_path_belongs_to_one_endpoint_group() {
        assert_eq!(endpoint("/healthz"), Some(AdminEndpoint::Probes));
        assert_eq!(endpoint("/readyz"), Some(AdminEndpoint::Probes));
        assert_eq!(endpoint("/metrics"), Some(AdminEndpoint::Metrics));
        assert_eq!(endpoint("/routes"), Some(AdminEndpoint::Routes));
        assert_eq!(endpoint("/connections"), Some(AdminEndpoint::Routes));
        assert_eq!(endpoint("/routes/"), None);
        assert_eq!(endpoint("/"), None, "the index is on every listener");
    }
}
