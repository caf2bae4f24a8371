//! Admin endpoint: `/metrics` (Prometheus), `/healthz`, `/readyz`, `/routes`.
//!
//! Served by hyper on its own listener, separate from the data path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::model::config::ConfigError;
use crate::runtime::meters::unix_seconds;
use crate::runtime::reload::ReloadResult;
use crate::runtime::resolve::Upstream;
use crate::runtime::server::{Handle, NotReady};

/// Slow or silent admin clients cannot hold a connection open.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves admin requests; keeps serving while the proxy drains, so
/// `/readyz` can report it (the task is aborted when the proxy exits).
pub async fn serve(listener: TcpListener, proxy: Handle) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(address = %addr, "admin listening");
    }
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(respond(&req, &proxy)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(req: &Request<Incoming>, proxy: &Handle) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let body = crate::surface::metrics::render_metrics();
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
                "source": &*r.source,
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
