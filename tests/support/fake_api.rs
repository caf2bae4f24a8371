//! A fake Kubernetes API server on loopback for any kind (Gateway API kinds, Services,
//! ClickHouseInstallations…): lists and watches every resource by its path, merge-patches a
//! `status` subresource (with the MODIFIED event a real server sends), and keeps Leases
//! (`coordination.k8s.io/v1`) with optimistic concurrency (a `PUT` with a stale
//! `resourceVersion` is answered 409). Every request and every status patch is recorded for
//! the test to wait on.
//!
//! (A separate file from fake_kube.rs, whose CHI-specific faults the watch tests use, so that
//! both can grow without stepping on each other.)

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

/// A response body fed line by line; it ends when the sender is dropped.
pub struct Lines(mpsc::UnboundedReceiver<Bytes>);

impl hyper::body::Body for Lines {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// `(resource path without namespace, e.g. "/apis/gateway.networking.k8s.io/v1/gateways",
/// namespace, name)`.
type Key = (String, String, String);

#[derive(Default)]
struct Inner {
    objects: BTreeMap<Key, Value>,
    resource_version: u64,
    /// `(resource, event line)` of every event, for watches that start later.
    history: Vec<(String, u64, Bytes)>,
    watches: Vec<(String, mpsc::UnboundedSender<Bytes>)>,
    /// `(resource, namespace, name, patch)` of every status patch received.
    patches: Vec<(String, String, String, Value)>,
    requests: Vec<String>,
}

#[derive(Clone)]
pub struct FakeApi {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeApi {
            addr: listener.local_addr().unwrap(),
            inner: Arc::default(),
            changed: Arc::default(),
        };
        let server = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let server = server.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                Ok::<_, Infallible>(server.respond(
                                    &parts.method,
                                    &parts.uri,
                                    &body,
                                ))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        fake
    }

    /// A kubeconfig pointing at this server (default namespace `default`), written into `dir`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: test-token\n",
            self.addr
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Adds or replaces `obj` (its resource from `apiVersion` and `kind`), with an event.
    pub fn apply(&self, obj: Value) {
        let resource = resource_of(&obj);
        let meta = &obj["metadata"];
        let ns = meta["namespace"].as_str().unwrap_or("").to_owned();
        let name = meta["name"].as_str().unwrap().to_owned();
        self.lock().put((resource, ns, name), obj);
        self.changed.notify_waiters();
    }

    /// Every status patch so far: `(resource, namespace, name, patch)`.
    pub fn patches(&self) -> Vec<(String, String, String, Value)> {
        self.lock().patches.clone()
    }

    pub fn object(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(resource.to_owned(), ns.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Waits (bounded by [`super::WAIT`]) until `done` holds.
    pub async fn wait(&self, what: &str, done: impl Fn(&FakeApi) -> bool) {
        let deadline = tokio::time::Instant::now() + super::WAIT;
        loop {
            let notified = self.changed.notified();
            if done(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out waiting for {what}; patches: {:#?}",
                    self.patches()
                );
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn respond(&self, method: &Method, uri: &hyper::Uri, body: &[u8]) -> Response<Lines> {
        let path = uri.path().to_owned();
        let query = uri.query().unwrap_or("");
        let watching = query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1");
        let response = {
            let mut inner = self.lock();
            inner.requests.push(format!("{method} {path}?{query}"));
            let (resource, ns, name, sub) = split(&path);
            match (method.clone(), name.as_deref(), sub.as_deref()) {
                (Method::GET, None, _) if watching => {
                    let from: u64 = query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("resourceVersion="))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let (tx, rx) = mpsc::unbounded_channel();
                    for (r, rv, line) in &inner.history {
                        if *r == resource && *rv > from {
                            let _ = tx.send(line.clone());
                        }
                    }
                    inner.watches.push((resource, tx));
                    Response::new(Lines(rx))
                }
                (Method::GET, None, _) => {
                    let items: Vec<&Value> = inner
                        .objects
                        .iter()
                        .filter(|((r, n, _), _)| {
                            *r == resource && ns.as_ref().is_none_or(|ns| ns == n)
                        })
                        .map(|(_, v)| v)
                        .collect();
                    let list = json!({
                        "apiVersion": "v1", "kind": "List",
                        "metadata": {"resourceVersion": inner.resource_version.to_string()},
                        "items": items,
                    });
                    body_of(StatusCode::OK, &list)
                }
                (Method::GET, Some(name), None) => {
                    let key = (resource, ns.unwrap_or_default(), name.to_owned());
                    match inner.objects.get(&key) {
                        Some(v) => body_of(StatusCode::OK, v),
                        None => status(StatusCode::NOT_FOUND, "not found"),
                    }
                }
                (Method::PATCH, Some(name), Some("status")) => {
                    let key = (
                        resource.clone(),
                        ns.clone().unwrap_or_default(),
                        name.to_owned(),
                    );
                    let patch: Value = serde_json::from_slice(body).unwrap_or_default();
                    match inner.objects.get(&key).cloned() {
                        None => status(StatusCode::NOT_FOUND, "not found"),
                        Some(mut obj) => {
                            merge(&mut obj, &json!({"status": patch["status"].clone()}));
                            inner.patches.push((
                                key.0.clone(),
                                key.1.clone(),
                                key.2.clone(),
                                patch,
                            ));
                            let obj = inner.put(key, obj);
                            body_of(StatusCode::OK, &obj)
                        }
                    }
                }
                (Method::POST, None, _) => {
                    let mut obj: Value = serde_json::from_slice(body).unwrap_or_default();
                    let n = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
                    let key = (resource, ns.clone().unwrap_or_default(), n);
                    if inner.objects.contains_key(&key) {
                        status(StatusCode::CONFLICT, "already exists")
                    } else {
                        obj["metadata"]["namespace"] = json!(key.1);
                        let obj = inner.put(key, obj);
                        body_of(StatusCode::CREATED, &obj)
                    }
                }
                (Method::PUT, Some(name), None) => {
                    let mut obj: Value = serde_json::from_slice(body).unwrap_or_default();
                    let key = (resource, ns.clone().unwrap_or_default(), name.to_owned());
                    let current = inner
                        .objects
                        .get(&key)
                        .map(|o| o["metadata"]["resourceVersion"].clone());
                    if current.as_ref() != Some(&obj["metadata"]["resourceVersion"]) {
                        status(StatusCode::CONFLICT, "the object has been modified")
                    } else {
                        obj["metadata"]["namespace"] = json!(key.1);
                        let obj = inner.put(key, obj);
                        body_of(StatusCode::OK, &obj)
                    }
                }
                _ => status(StatusCode::NOT_FOUND, "not supported by the fake"),
            }
        };
        self.changed.notify_waiters();
        response
    }
}

impl Inner {
    /// Stores `obj` with a new resourceVersion and sends its event; returns it as stored.
    fn put(&mut self, key: Key, mut obj: Value) -> Value {
        self.resource_version += 1;
        let rv = self.resource_version;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let kind = if self.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let line = Bytes::from(format!("{}\n", json!({"type": kind, "object": &obj})));
        self.watches
            .retain(|(r, tx)| *r != key.0 || tx.send(line.clone()).is_ok());
        self.history.push((key.0.clone(), rv, line));
        self.objects.insert(key, obj.clone());
        obj
    }
}

/// `/apis/g/v[/namespaces/ns]/plural[/name[/sub]]` or `/api/v1/...` → (`/apis/g/v/plural`,
/// namespace, name, subresource).
fn split(path: &str) -> (String, Option<String>, Option<String>, Option<String>) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let base = if parts.first() == Some(&"api") { 2 } else { 3 };
    let prefix = parts.get(..base).unwrap_or(&parts[..]).join("/");
    let mut rest = parts.get(base..).unwrap_or(&[]).to_vec();
    let mut ns = None;
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        ns = Some(rest[1].to_owned());
        rest.drain(..2);
    }
    let plural = rest.first().copied().unwrap_or("");
    (
        format!("/{prefix}/{plural}"),
        ns,
        rest.get(1).map(|s| (*s).to_owned()),
        rest.get(2).map(|s| (*s).to_owned()),
    )
}

/// The resource path of an object, from its `apiVersion` and `kind` (plural: lower case + s,
/// `-es` after `s`, `-ies` after a consonant and `y`: enough for the kinds used here).
pub fn resource_of(obj: &Value) -> String {
    let api = obj["apiVersion"].as_str().unwrap();
    let kind = obj["kind"].as_str().unwrap().to_ascii_lowercase();
    let plural = if kind.ends_with('s') {
        format!("{kind}es")
    } else if let Some(stem) = kind
        .strip_suffix('y')
        .filter(|s| !s.ends_with(['a', 'e', 'o']))
    {
        format!("{stem}ies")
    } else {
        format!("{kind}s")
    };
    if api.contains('/') {
        format!("/apis/{api}/{plural}")
    } else {
        format!("/api/{api}/{plural}")
    }
}

/// RFC 7386 merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn body_of(code: StatusCode, v: &Value) -> Response<Lines> {
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(Bytes::from(v.to_string()));
    let mut resp = Response::new(Lines(rx));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn status(code: StatusCode, message: &str) -> Response<Lines> {
    let reason = match code {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::CONFLICT => "Conflict",
        _ => "",
    };
    body_of(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code.as_u16()}),
    )
}
