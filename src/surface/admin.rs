//! Admin endpoint: `/metrics` (Prometheus), `/healthz`, `/readyz`, `/routes`.
//!
//! Served by hyper on listeners of its own, separate from the data path; each listener serves
//! the endpoints the config gives it (`admin.listeners[].serve`). The admin port is reachable
//! by more than the kubelet, so it is treated as hostile like the data ports: accept errors
//! back off, connections per listener are capped, and every connection has a short header
//! deadline and a bounded life.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::SharedString;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::model::config::{AdminEndpoint, ConfigError};
use crate::runtime::accept::Backoff;
use crate::runtime::meters::{self, unix_seconds};
use crate::runtime::reload::ReloadResult;
use crate::runtime::resolve::Upstream;
use crate::runtime::server::{AdminSocket, Handle, NotReady};

/// Slow or silent admin clients cannot hold a connection open: the request head (also the
/// next one on a kept-alive connection) must arrive within this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one admin connection, however busy (a slow reader of a big `/routes`).
const CONNECTION_MAX: Duration = Duration::from_secs(60);
/// Open connections per admin listener; more are closed at accept and counted. Probes,
/// a Prometheus or two and a person need a handful.
const MAX_CONNECTIONS: usize = 32;
/// At most one warning about connections over the cap per this interval; the rest are counted.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

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
    let serve: Arc<[AdminEndpoint]> = serve.into();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Backoff::default();
    let mut refusals = Throttle::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                accept_errors.increment(1);
                backoff.failed("admin", &error).await;
                continue;
            }
        };
        backoff.reset();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            over_limit.increment(1);
            if let Some(suppressed) = refusals.ready() {
                tracing::warn!(
                    address = %address,
                    limit = MAX_CONNECTIONS,
                    suppressed,
                    "admin connection refused: too many open"
                );
            }
            continue;
        };
        let proxy = proxy.clone();
        let serve = serve.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = respond(&req, &serve, &proxy);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_MAX, connection).await;
            drop(slot);
        });
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

/// Which endpoint group serves `path`.
fn endpoint(path: &str) -> Option<AdminEndpoint> {
    match path {
        "/healthz" | "/readyz" => Some(AdminEndpoint::Probes),
        "/metrics" => Some(AdminEndpoint::Metrics),
        "/routes" => Some(AdminEndpoint::Routes),
        _ => None,
    }
}

fn respond(
    req: &Request<Incoming>,
    serve: &[AdminEndpoint],
    proxy: &Handle,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !endpoint(path).is_some_and(|e| serve.contains(&e)) {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match path {
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
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            resp
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
        "/routes" => {
            let mut resp = Response::new(Full::new(Bytes::from(routes_json(proxy))));
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}

/// The live route table as JSON.
fn routes_json(proxy: &Handle) -> String {
    let state = proxy.state();
    let routes: Vec<serde_json::Value> = state
        .routes
        .routes()
        .map(|r| {
            serde_json::json!({
                "name": &*r.name,
                "sni": r.patterns.iter().map(|p| &**p).collect::<Vec<_>>(),
                "upstreams": r.upstreams.iter().map(|u| serde_json::json!({
                    "host": &*u.host,
                    "port": u.port,
                    "addresses": u.addrs.current().iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
                    "endpoints": endpoints(u),
                })).collect::<Vec<_>>(),
                "balance": r.balance.keyword(),
                "sticky": r.sticky,
                "proxy_protocol": r.proxy_protocol.keyword(),
                "tls": r.tls.keyword(),
                "alpn": r.alpn.as_deref().map(|a| a.iter().map(|p| &**p).collect::<Vec<_>>()),
                "upstream_tls": r.upstream_tls.as_deref().map(|u| serde_json::json!({
                    "ca": u.ca.as_ref().map(|p| p.display().to_string()),
                    "server_name": u.server_name.as_deref(),
                })),
                "source": &*r.source,
            })
        })
        .collect();
    let now = unix_seconds(std::time::SystemTime::now());
    let certificates: Vec<serde_json::Value> = state
        .tls
        .certificates
        .iter()
        .map(|c| {
            serde_json::json!({
                "cert": c.cert_file.display().to_string(),
                "key": c.key_file.display().to_string(),
                "names": c.names.iter().map(|n| &**n).collect::<Vec<_>>(),
                "not_before": c.not_before,
                "not_after": c.not_after,
                "expires_in_days": ((c.not_after as f64 - now) / 86400.0).floor(),
            })
        })
        .collect();
    let status = proxy.last_reload();
    let error = match &status.result {
        ReloadResult::Error(e) => Some(e),
        _ => None,
    };
    serde_json::json!({
        "generation": state.generation,
        "config_hash": format!("{:016x}", state.config_hash),
        "route_count": state.routes.len(),
        "last_reload": {
            "result": status.result.label(),
            "successful": status.successful,
            "trigger": status.trigger.keyword(),
            "at": unix_seconds(status.at),
            "duration_ms": status.took.as_secs_f64() * 1e3,
            "error": error.map(ToString::to_string),
            "problems": error.map(problems),
        },
        "last_success_at": unix_seconds(status.last_success),
        "last_error": status.last_error.as_ref().map(|(e, t)| serde_json::json!({
            "message": e.to_string(),
            "problems": problems(e),
            "at": unix_seconds(*t),
        })),
        "discovery": state.discovery.to_json(),
        "tls": {"certificates": certificates},
        "routes": routes,
    })
    .to_string()
}

/// The live state of each address of `upstream`: per port connections have used (only its
/// own port if it has one), else its addresses with nothing recorded yet.
fn endpoints(upstream: &Upstream) -> Vec<serde_json::Value> {
    let used: Vec<serde_json::Value> = upstream
        .addrs
        .endpoints_by_port()
        .iter()
        .filter(|(port, _)| upstream.port.is_none_or(|p| p == *port))
        .flat_map(|(_, list)| list.iter())
        .map(|e| {
            let s = e.stats();
            serde_json::json!({
                "address": e.addr.to_string(),
                "open": s.open,
                "failures": s.failures,
                "ejected": s.ejected_until.is_some(),
                "ejected_until": s.ejected_until.map(unix_seconds),
            })
        })
        .collect();
    if !used.is_empty() {
        return used;
    }
    upstream
        .addrs
        .current()
        .iter()
        .map(|ip| {
            let address = match upstream.port {
                Some(port) => SocketAddr::new(*ip, port).to_string(),
                None => ip.to_string(),
            };
            serde_json::json!({
                "address": address,
                "open": 0,
                "failures": 0,
                "ejected": false,
                "ejected_until": null,
            })
        })
        .collect()
}

/// Each problem of `error` with its parts: `file`, `line`, `route`, `message`.
fn problems(error: &ConfigError) -> serde_json::Value {
    error
        .problems()
        .iter()
        .map(|p| {
            serde_json::json!({
                "file": p.file,
                "line": p.line,
                "route": p.route,
                "message": p.message,
            })
        })
        .collect()
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
        assert_eq!(endpoint("/routes/"), None);
    }
}
