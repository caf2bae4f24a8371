//! The Kubernetes API client every discovery watch uses: kube's own layers
//! (base URI, auth with token refresh, extra headers, retry of 429/503/504)
//! over a connector with TCP keepalive, plus a silence deadline on every
//! request ([`Deadline`]).
//!
//! Why our own stack and not `kube::Client::try_from(config)`: kube 5.0
//! builds its connector with `HttpConnector::new()` and no keepalive, and has
//! no setting for it (kube-client `client/builder.rs`, `Config` fields).
//!
//! Why the silence deadline sits here, under kube: liveness can only be seen
//! in the response bytes. kube's watcher swallows BOOKMARK events
//! (kube-runtime `watcher.rs`, `State::Watching`), so a detector above the
//! watcher stream would count a healthy, quiet watch as stalled; kube's own
//! idle timeout (`timeoutSeconds` + 5 s, `next_with_idle_timeout`) re-watches
//! silently, with no error to log or count, and kube-client turns a
//! `TimedOut` read (`Config::read_timeout`) into a silent end of stream
//! (`request_events`). Here every frame — event, bookmark, or the server
//! closing the watch at `timeoutSeconds` — resets the deadline, and silence
//! surfaces as an error naming [`Stalled`], which kube passes up as a watcher
//! error (the watch then resumes from its resourceVersion).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use tokio::time::{Instant, Sleep};
use tower::{BoxError, Service, ServiceBuilder};

/// Idle time before the first TCP keepalive probe on the API connections.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Between keepalive probes; the kernel drops the connection after the
/// default count (9) unanswered.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// A client of the cluster in `config` whose requests fail with [`Stalled`]
/// when the API server sends nothing for `silence`.
pub(super) fn build(config: kube::Config, silence: Duration) -> anyhow::Result<kube::Client> {
    if let Some(proxy) = &config.proxy_url {
        anyhow::bail!("kubeconfig proxy-url {proxy} is not supported");
    }
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_keepalive(Some(KEEPALIVE));
    connector.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
    let https = config.rustls_https_connector_with_connector(connector)?;
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, kube::client::Body>(https);
    // The order of kube's default stack (kube-client `make_generic_builder`).
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .service(Deadline {
            inner: hyper,
            silence,
        });
    Ok(kube::Client::new(service, config.default_namespace))
}

/// The API server sent nothing for the deadline: the connection is dropped.
#[derive(Debug, thiserror::Error)]
#[error("the API server sent {what} for {silence:?}; connection dropped")]
pub(super) struct Stalled {
    what: &'static str,
    silence: Duration,
}

#[cfg(test)]
impl Stalled {
    pub(super) fn for_tests() -> Stalled {
        Stalled {
            what: "no bytes",
            silence: Duration::from_secs(90),
        }
    }
}

/// The [`Stalled`] in `error`'s chain, if any. Looks inside `io::Error`s,
/// whose `source()` skips the error they wrap (kube wraps body errors so).
pub(super) fn stalled<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Stalled> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(s) = e.downcast_ref::<Stalled>() {
            return Some(s);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(s) = stalled(inner) {
                return Some(s);
            }
        }
        next = e.source();
    }
    None
}

/// Fails a request whose response headers do not come within `silence`,
/// and its body when no frame comes for `silence`.
#[derive(Clone)]
struct Deadline<S> {
    inner: S,
    silence: Duration,
}

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>, Response = Response<Incoming>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<Silence>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let silence = self.silence;
        let response = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(silence, response).await {
                Ok(response) => Ok(response
                    .map_err(Into::into)?
                    .map(|body| Silence::new(body, silence))),
                Err(_) => Err(Stalled {
                    what: "no response headers",
                    silence,
                }
                .into()),
            }
        })
    }
}

/// A response body that fails with [`Stalled`] after `silence` without a frame.
pub(super) struct Silence {
    inner: Incoming,
    silence: Duration,
    deadline: Pin<Box<Sleep>>,
    failed: bool,
}

impl Silence {
    fn new(inner: Incoming, silence: Duration) -> Silence {
        Silence {
            inner,
            silence,
            deadline: Box::pin(tokio::time::sleep(silence)),
            failed: false,
        }
    }
}

impl Body for Silence {
    type Data = hyper::body::Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, BoxError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(frame)) => {
                this.deadline.as_mut().reset(Instant::now() + this.silence);
                Poll::Ready(Some(frame.map_err(Into::into)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.failed = true;
                    Poll::Ready(Some(Err(Stalled {
                        what: "no bytes",
                        silence: this.silence,
                    }
                    .into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
