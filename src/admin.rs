//! Admin endpoint: `/metrics` (Prometheus), `/healthz`, `/readyz`, `/routes`.
//!
//! Served by hyper on its own listener, separate from the data path.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::server::Shared;

/// Slow or silent admin clients cannot hold a connection open.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves admin requests; keeps serving while the proxy drains, so
/// `/readyz` can report it (the task is aborted when the proxy exits).
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(address = %addr, "admin listening");
    }
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(respond(&req, &shared)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let body = crate::telemetry::render_metrics();
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            resp
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            // Before the first discovery list is live, a table without the
            // CHIs' names would refuse their clients.
            let awaiting = shared.discovery.load().awaiting_first_sync;
            if shared.ready.load(Ordering::Acquire) && !awaiting {
                text(StatusCode::OK, "ready\n")
            } else if shared.draining.load(Ordering::Acquire) {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else if awaiting {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: waiting for the first Kubernetes discovery list\n",
                )
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        "/routes" => {
            let mut resp = Response::new(Full::new(Bytes::from(routes_json(shared))));
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
fn routes_json(shared: &Shared) -> String {
    let state = shared.state.load();
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
                })).collect::<Vec<_>>(),
                "proxy_protocol": format!("{:?}", r.proxy_protocol).to_lowercase(),
                "source": &*r.source,
            })
        })
        .collect();
    let status = shared.reload.borrow().clone();
    let at = |t| crate::reload::unix_seconds(t);
    serde_json::json!({
        "generation": state.generation,
        "config_hash": format!("{:016x}", state.config_hash),
        "route_count": state.routes.len(),
        "last_reload": {
            "result": status.outcome.label(),
            "trigger": status.trigger.label(),
            "at": at(status.at),
            "duration_ms": status.took.as_secs_f64() * 1e3,
            "error": match &status.outcome {
                crate::reload::Outcome::Error(e) => Some(e.as_str()),
                _ => None,
            },
        },
        "last_success_at": at(status.last_success),
        "last_error": status.last_error.as_ref().map(|(message, t)| serde_json::json!({
            "message": message,
            "at": at(*t),
        })),
        "discovery": shared.discovery.load().to_json(),
        "routes": routes,
    })
    .to_string()
}
