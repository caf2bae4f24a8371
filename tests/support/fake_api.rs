//! The fake Kubernetes API server every discovery test uses, on loopback, for any kind
//! (ClickHouseInstallations, ClickHouseClusters, Pods, the Gateway API kinds, Services,
//! Namespaces, CRDs, Leases…; the resource path comes from an object's `apiVersion` and `kind`).
//!
//! It answers as the API server does: lists with a resourceVersion; watches as a stream of JSON
//! lines replaying the events after the requested resourceVersion, filtered by namespace,
//! `labelSelector` (`k=v`) and `fieldSelector` (`metadata.name=x`), ended after
//! `timeoutSeconds`, with BOOKMARK events on request; merge patches on the `status`
//! subresource (with the MODIFIED event a real server sends); creates and updates with
//! optimistic concurrency (a `PUT` with a stale `resourceVersion` is answered 409, as Leases
//! need). The test drives faults: changes with or without events, a 410 Gone in the stream or as
//! the watch request's status (compaction), dropped streams, black-holed streams, 500s. Every
//! request and every status patch is recorded for the test to wait on.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

/// `(resource path without namespace, e.g. "/apis/gateway.networking.k8s.io/v1/gateways",
/// namespace, name)`.
type Key = (String, String, String);

const CHIS: &str = "/apis/clickhouse.altinity.com/v1/clickhouseinstallations";
const CLUSTERS: &str = "/apis/clickhouse.com/v1alpha1/clickhouseclusters";
const PODS: &str = "/api/v1/pods";

/// What a watch or list selects.
#[derive(Clone, Default)]
struct Selection {
    namespace: Option<String>,
    /// `labelSelector=k=v`.
    label: Option<(String, String)>,
    /// `fieldSelector=metadata.name=x`.
    name: Option<String>,
}

impl Selection {
    fn selects(&self, obj: &Value) -> bool {
        let meta = &obj["metadata"];
        self.namespace
            .as_ref()
            .is_none_or(|ns| meta["namespace"] == *ns)
            && self
                .label
                .as_ref()
                .is_none_or(|(k, v)| meta["labels"][k] == v.as_str())
            && self.name.as_ref().is_none_or(|n| meta["name"] == *n)
    }
}

/// One open watch: what it selects and where its lines go.
struct Watch {
    id: u64,
    resource: String,
    selection: Selection,
    /// `allowWatchBookmarks=true` was asked for.
    bookmarks: bool,
    lines: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct Inner {
    objects: BTreeMap<Key, Value>,
    resource_version: u64,
    /// `(resource, resourceVersion, event type, object)` of every event sent.
    history: Vec<(String, u64, &'static str, Value)>,
    watches: Vec<Watch>,
    watch_ids: u64,
    failing: bool,
    /// Resources (paths without namespace) whose every request is answered with 500.
    failing_resources: Vec<String>,
    /// Watch requests from a resourceVersion below this are answered with
    /// HTTP status 410 (the history before it is compacted away).
    compacted: u64,
    gone_answered: usize,
    /// So many next watch requests get their headers and then nothing, ever.
    black_holes_armed: usize,
    black_holed: usize,
    /// The senders of black-holed streams, kept so the streams never end.
    black_holes: Vec<mpsc::UnboundedSender<Bytes>>,
    /// `timeoutSeconds` is not honoured (as by a server with a long timeout).
    ignore_timeouts: bool,
    bookmarks_sent: usize,
    /// Request URIs in order: `path?query` for a GET, `METHOD path?query` otherwise.
    requests: Vec<String>,
    watches_started: usize,
    /// `(resource, namespace, name, patch)` of every status patch received.
    patches: Vec<(String, String, String, Value)>,
}

/// The running fake; stops with the test's runtime.
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

    /// Adds or replaces `obj` (its resource from `apiVersion` and `kind`), sending ADDED or
    /// MODIFIED to open watches.
    pub fn apply(&self, obj: Value) {
        self.change(obj, true);
    }

    /// Adds or replaces `obj` without an event (as if the watch missed it).
    pub fn apply_silently(&self, obj: Value) {
        self.change(obj, false);
    }

    /// Deletes a CHI, sending DELETED to open watches.
    pub fn delete(&self, namespace: &str, name: &str) {
        self.remove(CHIS, namespace, name, true);
    }

    /// Deletes a CHI without an event.
    pub fn delete_silently(&self, namespace: &str, name: &str) {
        self.remove(CHIS, namespace, name, false);
    }

    /// Deletes a pod, sending DELETED to open watches.
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        self.remove(PODS, namespace, name, true);
    }

    /// Deletes a ClickHouseCluster, sending DELETED to open watches.
    pub fn delete_cluster(&self, namespace: &str, name: &str) {
        self.remove(CLUSTERS, namespace, name, true);
    }

    /// Deletes any object (by resource path), sending DELETED to open watches.
    pub fn delete_object(&self, resource: &str, namespace: &str, name: &str) {
        self.remove(resource, namespace, name, true);
    }

    /// Sends every open watch a 410 Gone error and ends it, as the API server
    /// does when the watched resourceVersion is too old: clients must relist.
    pub fn expire_watches(&self) {
        let mut inner = self.lock();
        let gone = json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "too old resource version", "reason": "Expired", "code": 410,
        }});
        for w in inner.watches.drain(..) {
            let _ = w.lines.send(line(&gone));
        }
    }

    /// Ends every open watch stream without an error.
    pub fn drop_watches(&self) {
        self.lock().watches.clear();
    }

    /// While set, every request is answered with 500.
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// While set, every request for `resource` (e.g. `/apis/g/v1/gatewayclasses`) is answered
    /// with 500.
    pub fn set_failing_resource(&self, resource: &str, failing: bool) {
        let mut inner = self.lock();
        inner.failing_resources.retain(|r| r != resource);
        if failing {
            inner.failing_resources.push(resource.to_owned());
        }
    }

    /// Watch requests from a resourceVersion older than the current one are
    /// answered with HTTP status 410 Gone from now on, as the API server does
    /// once etcd compacted the history they would replay.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.compacted = inner.resource_version;
    }

    /// The next `n` watch requests are answered with headers and then
    /// nothing at all, never ending: a black-holed connection.
    pub fn black_hole_watches(&self, n: usize) {
        self.lock().black_holes_armed += n;
    }

    /// Whether watches end after their `timeoutSeconds` (they do by default,
    /// as on the API server); a watch keeps what held when it started.
    pub fn honour_timeouts(&self, honour: bool) {
        self.lock().ignore_timeouts = !honour;
    }

    /// Sends a BOOKMARK with the current resourceVersion every `every` to
    /// each open watch that asked for bookmarks, for as long as the test runs.
    pub fn send_bookmarks(&self, every: Duration) {
        let fake = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                let mut inner = fake.lock();
                let rv = inner.resource_version.to_string();
                let bookmark = line(&json!({"type": "BOOKMARK", "object": {
                    "apiVersion": "clickhouse.altinity.com/v1",
                    "kind": "ClickHouseInstallation",
                    "metadata": {"resourceVersion": rv},
                }}));
                let mut sent = 0;
                inner.watches.retain(|w| {
                    let ok = !w.bookmarks || w.lines.send(bookmark.clone()).is_ok();
                    sent += usize::from(ok && w.bookmarks);
                    ok
                });
                inner.bookmarks_sent += sent;
                drop(inner);
                fake.changed.notify_waiters();
            }
        });
    }

    /// Bookmarks sent so far.
    pub fn bookmarks_sent(&self) -> usize {
        self.lock().bookmarks_sent
    }

    /// Waits until at least `n` bookmarks were sent in total.
    pub async fn wait_bookmarks(&self, n: usize) {
        self.wait_inner(|i| i.bookmarks_sent >= n).await;
    }

    /// Waits until at least `n` watch requests were black-holed.
    pub async fn wait_black_holed(&self, n: usize) {
        self.wait_inner(|i| i.black_holed >= n).await;
    }

    /// Waits until at least `n` watch requests were answered 410 Gone.
    pub async fn wait_gone_answered(&self, n: usize) {
        self.wait_inner(|i| i.gone_answered >= n).await;
    }

    /// Watch streams started so far.
    pub fn watches_started(&self) -> usize {
        self.lock().watches_started
    }

    /// Waits until at least `n` watch streams were started in total.
    pub async fn wait_watches_started(&self, n: usize) {
        self.wait_inner(|i| i.watches_started >= n).await;
    }

    /// Waits until `n` watch streams are open.
    pub async fn wait_watches_open(&self, n: usize) {
        self.wait_inner(|i| i.watches.iter().filter(|w| !w.lines.is_closed()).count() >= n)
            .await;
    }

    /// Request URIs seen so far: `path?query` for a GET, `METHOD path?query` otherwise.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Every status patch so far: `(resource, namespace, name, patch)`.
    pub fn patches(&self) -> Vec<(String, String, String, Value)> {
        self.lock().patches.clone()
    }

    /// The object as stored now (statuses patched in).
    pub fn object(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(resource.to_owned(), ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Waits (bounded by [`super::WAIT`]) until `done` holds.
    pub async fn wait(&self, what: &str, done: impl Fn(&FakeApi) -> bool) {
        let deadline = tokio::time::Instant::now() + super::WAIT;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
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

    async fn wait_inner(&self, done: impl Fn(&Inner) -> bool) {
        tokio::time::timeout(super::WAIT, async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if done(&self.lock()) {
                    return;
                }
                changed.await;
            }
        })
        .await
        .expect("fake API server: condition not reached in time");
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn change(&self, obj: Value, notify: bool) {
        let key = key_of(&obj);
        self.lock().put(key, obj, notify);
        self.changed.notify_waiters();
    }

    fn remove(&self, resource: &str, namespace: &str, name: &str, notify: bool) {
        let mut inner = self.lock();
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        let Some(mut obj) = inner.objects.remove(&key) else {
            panic!("no {resource} {namespace}/{name} to delete");
        };
        inner.resource_version += 1;
        let rv = inner.resource_version;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if notify {
            inner.send(&key.0, rv, "DELETED", obj);
        }
        drop(inner);
        self.changed.notify_waiters();
    }

    fn respond(&self, method: &Method, uri: &hyper::Uri, body: &[u8]) -> Response<Lines> {
        let path = uri.path().to_owned();
        let query = uri.query().unwrap_or("").to_owned();
        let response = {
            let mut inner = self.lock();
            inner.requests.push(if *method == Method::GET {
                format!("{path}?{query}")
            } else {
                format!("{method} {path}?{query}")
            });
            if inner.failing || inner.failing_resources.contains(&split(&path).0) {
                status(StatusCode::INTERNAL_SERVER_ERROR, "injected failure")
            } else {
                self.answer(&mut inner, method, &path, &query, body)
            }
        };
        self.changed.notify_waiters();
        response
    }

    fn answer(
        &self,
        inner: &mut Inner,
        method: &Method,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> Response<Lines> {
        let (resource, ns, name, sub) = split(path);
        let params: BTreeMap<String, String> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), percent_decode(v)))
            .collect();
        let selection = Selection {
            namespace: ns.clone(),
            label: params
                .get("labelSelector")
                .and_then(|s| s.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            name: params
                .get("fieldSelector")
                .and_then(|s| s.strip_prefix("metadata.name="))
                .map(str::to_owned),
        };
        let watching = matches!(params.get("watch").map(String::as_str), Some("true" | "1"));
        match (method.clone(), name.as_deref(), sub.as_deref()) {
            (Method::GET, None, _) if watching => self.watch(inner, resource, selection, &params),
            (Method::GET, None, _) => {
                let items: Vec<&Value> = inner
                    .objects
                    .iter()
                    .filter(|((r, _, _), v)| *r == resource && selection.selects(v))
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
                let key = (resource, ns.unwrap_or_default(), name.to_owned());
                let patch: Value = serde_json::from_slice(body).unwrap_or_default();
                match inner.objects.get(&key).cloned() {
                    None => status(StatusCode::NOT_FOUND, "not found"),
                    Some(mut obj) => {
                        merge(&mut obj, &json!({"status": patch["status"].clone()}));
                        inner
                            .patches
                            .push((key.0.clone(), key.1.clone(), key.2.clone(), patch));
                        let obj = inner.put(key, obj, true);
                        body_of(StatusCode::OK, &obj)
                    }
                }
            }
            (Method::POST, None, _) => {
                let mut obj: Value = serde_json::from_slice(body).unwrap_or_default();
                let n = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
                let key = (resource, ns.unwrap_or_default(), n);
                if inner.objects.contains_key(&key) {
                    status(StatusCode::CONFLICT, "already exists")
                } else {
                    obj["metadata"]["namespace"] = json!(key.1);
                    let obj = inner.put(key, obj, true);
                    body_of(StatusCode::CREATED, &obj)
                }
            }
            (Method::PUT, Some(name), None) => {
                let mut obj: Value = serde_json::from_slice(body).unwrap_or_default();
                let key = (resource, ns.unwrap_or_default(), name.to_owned());
                let current = inner
                    .objects
                    .get(&key)
                    .map(|o| o["metadata"]["resourceVersion"].clone());
                if current.as_ref() != Some(&obj["metadata"]["resourceVersion"]) {
                    status(StatusCode::CONFLICT, "the object has been modified")
                } else {
                    obj["metadata"]["namespace"] = json!(key.1);
                    let obj = inner.put(key, obj, true);
                    body_of(StatusCode::OK, &obj)
                }
            }
            _ => status(StatusCode::NOT_FOUND, "not supported by the fake"),
        }
    }

    /// A watch request: 410 if compacted away, a black hole if armed, else the events after
    /// its resourceVersion and then live ones until `timeoutSeconds`.
    fn watch(
        &self,
        inner: &mut Inner,
        resource: String,
        selection: Selection,
        params: &BTreeMap<String, String>,
    ) -> Response<Lines> {
        let from: u64 = params
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if from < inner.compacted {
            inner.gone_answered += 1;
            let message = format!("too old resource version: {from} ({})", inner.compacted);
            return status(StatusCode::GONE, &message);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        if inner.black_holes_armed > 0 {
            inner.black_holes_armed -= 1;
            inner.black_holed += 1;
            inner.black_holes.push(tx);
            return Response::new(Lines(rx));
        }
        for (r, rv, kind, obj) in &inner.history {
            if *r == resource && *rv > from && selection.selects(obj) {
                let _ = tx.send(line(&json!({"type": kind, "object": obj})));
            }
        }
        inner.watch_ids += 1;
        let id = inner.watch_ids;
        inner.watches.push(Watch {
            id,
            resource,
            selection,
            bookmarks: params.get("allowWatchBookmarks").map(String::as_str) == Some("true"),
            lines: tx,
        });
        inner.watches_started += 1;
        let timeout = params.get("timeoutSeconds").and_then(|t| t.parse().ok());
        if let (Some(secs), false) = (timeout, inner.ignore_timeouts) {
            // The API server's own timer: the stream ends, without an error.
            let fake = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                fake.lock().watches.retain(|w| w.id != id);
                fake.changed.notify_waiters();
            });
        }
        Response::new(Lines(rx))
    }
}

impl Inner {
    /// Stores `obj` with a new resourceVersion and, if `notify`, sends its event; returns it
    /// as stored.
    fn put(&mut self, key: Key, mut obj: Value, notify: bool) -> Value {
        self.resource_version += 1;
        let rv = self.resource_version;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let kind = if self.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.objects.insert(key.clone(), obj.clone());
        if notify {
            self.send(&key.0, rv, kind, obj.clone());
        }
        obj
    }

    fn send(&mut self, resource: &str, rv: u64, kind: &'static str, obj: Value) {
        let event = line(&json!({"type": kind, "object": &obj}));
        self.watches.retain(|w| {
            w.resource != resource
                || !w.selection.selects(&obj)
                || w.lines.send(event.clone()).is_ok()
        });
        self.history.push((resource.to_owned(), rv, kind, obj));
    }
}

fn key_of(obj: &Value) -> Key {
    let meta = &obj["metadata"];
    (
        resource_of(obj),
        meta["namespace"].as_str().unwrap_or("").to_owned(),
        meta["name"].as_str().unwrap().to_owned(),
    )
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

fn line(v: &Value) -> Bytes {
    Bytes::from(format!("{v}\n"))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status(code: StatusCode, message: &str) -> Response<Lines> {
    let reason = match code {
        StatusCode::GONE => "Expired",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::CONFLICT => "Conflict",
        _ => "",
    };
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    body_of(code, &status)
}

fn body_of(code: StatusCode, v: &Value) -> Response<Lines> {
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(line(v));
    let mut resp = Response::new(Lines(rx));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A response body fed line by line; it ends when the sender is dropped.
pub struct Lines(mpsc::UnboundedReceiver<Bytes>);

impl Body for Lines {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}
