//! A fake Kubernetes API server on loopback for ClickHouseInstallations and
//! ClickHouseClusters (the official operator's `clickhouse.com/v1alpha1`):
//! answers list and watch requests the way the API server does (list with a
//! resourceVersion; watch as a stream of JSON lines, replaying the events
//! after the requested resourceVersion, ended after `timeoutSeconds`, with
//! BOOKMARK events on request), driven by the test: changes with or without
//! events, a 410 Gone watch error in the stream or as the watch request's
//! status (compaction), dropped streams, black-holed streams, 500s.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

/// `(API path, plural, kind)` of every resource served.
const RESOURCES: [(&str, &str, &str); 3] = [
    (
        "/apis/clickhouse.altinity.com/v1",
        "clickhouseinstallations",
        "ClickHouseInstallation",
    ),
    (
        "/apis/clickhouse.com/v1alpha1",
        "clickhouseclusters",
        "ClickHouseCluster",
    ),
    ("/api/v1", "pods", "Pod"),
];

/// The plural of `obj`'s kind.
fn plural_of(obj: &Value) -> &'static str {
    let kind = obj["kind"].as_str().unwrap_or("");
    RESOURCES
        .iter()
        .find(|(_, _, k)| *k == kind)
        .map(|(_, plural, _)| *plural)
        .unwrap_or_else(|| panic!("fake API server: no resource for kind {kind:?}"))
}

/// The resource (plural) and namespace a request path names.
fn resource_of(path: &str) -> Option<(&'static str, Option<String>)> {
    RESOURCES.iter().find_map(|(prefix, plural, _)| {
        let rest = path.strip_prefix(prefix)?;
        if rest.strip_prefix('/') == Some(plural) {
            return Some((*plural, None));
        }
        let ns = rest
            .strip_prefix("/namespaces/")?
            .strip_suffix(&format!("/{plural}"))?;
        Some((*plural, Some(ns.to_owned())))
    })
}

/// One open watch: what it selects and where its lines go.
struct Watch {
    id: u64,
    resource: &'static str,
    namespace: Option<String>,
    selector: Option<(String, String)>,
    /// `allowWatchBookmarks=true` was asked for.
    bookmarks: bool,
    lines: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct Inner {
    /// By (plural, namespace, name).
    objects: BTreeMap<(&'static str, String, String), Value>,
    resource_version: u64,
    /// `(resourceVersion, event type, object)` of every event sent.
    history: Vec<(u64, &'static str, Value)>,
    watches: Vec<Watch>,
    watch_ids: u64,
    failing: bool,
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
    /// Request URIs (path and query), in order.
    requests: Vec<String>,
    watches_started: usize,
}

/// The running fake; stops with the test's runtime.
#[derive(Clone)]
pub struct FakeKube {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
}

impl FakeKube {
    pub async fn start() -> FakeKube {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeKube {
            addr: listener.local_addr().unwrap(),
            inner: Arc::default(),
            changed: Arc::default(),
        };
        let server = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.respond(&req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        fake
    }

    /// A kubeconfig pointing at this server, written into `dir`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: test-token\n",
            self.addr
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Adds or replaces `chi`, sending ADDED or MODIFIED to open watches.
    pub fn apply(&self, chi: Value) {
        self.change(chi, true);
    }

    /// Adds or replaces `chi` without an event (as if the watch missed it).
    pub fn apply_silently(&self, chi: Value) {
        self.change(chi, false);
    }

    /// Deletes a CHI, sending DELETED to open watches.
    pub fn delete(&self, namespace: &str, name: &str) {
        self.remove("clickhouseinstallations", namespace, name, true);
    }

    /// Deletes a CHI without an event.
    pub fn delete_silently(&self, namespace: &str, name: &str) {
        self.remove("clickhouseinstallations", namespace, name, false);
    }

    /// Deletes a pod, sending DELETED to open watches.
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        self.remove("pods", namespace, name, true);
    }

    /// Deletes a ClickHouseCluster, sending DELETED to open watches.
    pub fn delete_cluster(&self, namespace: &str, name: &str) {
        self.remove("clickhouseclusters", namespace, name, true);
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
        self.wait(|i| i.bookmarks_sent >= n).await;
    }

    /// Waits until at least `n` watch requests were black-holed.
    pub async fn wait_black_holed(&self, n: usize) {
        self.wait(|i| i.black_holed >= n).await;
    }

    /// Waits until at least `n` watch requests were answered 410 Gone.
    pub async fn wait_gone_answered(&self, n: usize) {
        self.wait(|i| i.gone_answered >= n).await;
    }

    /// Watch streams started so far.
    pub fn watches_started(&self) -> usize {
        self.lock().watches_started
    }

    /// Waits until at least `n` watch streams were started in total.
    pub async fn wait_watches_started(&self, n: usize) {
        self.wait(|i| i.watches_started >= n).await;
    }

    /// Waits until `n` watch streams are open.
    pub async fn wait_watches_open(&self, n: usize) {
        self.wait(|i| i.watches.iter().filter(|w| !w.lines.is_closed()).count() >= n)
            .await;
    }

    /// Request URIs seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    async fn wait(&self, done: impl Fn(&Inner) -> bool) {
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

    fn change(&self, mut chi: Value, notify: bool) {
        let mut inner = self.lock();
        inner.resource_version += 1;
        let rv = inner.resource_version;
        chi["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = key_of(&chi);
        let kind = if inner.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        inner.objects.insert(key, chi.clone());
        if notify {
            inner.send(rv, kind, chi);
        }
    }

    fn remove(&self, plural: &'static str, namespace: &str, name: &str, notify: bool) {
        let mut inner = self.lock();
        let key = (plural, namespace.to_owned(), name.to_owned());
        let Some(mut chi) = inner.objects.remove(&key) else {
            panic!("no {plural} {namespace}/{name} to delete");
        };
        inner.resource_version += 1;
        let rv = inner.resource_version;
        chi["metadata"]["resourceVersion"] = json!(rv.to_string());
        if notify {
            inner.send(rv, "DELETED", chi);
        }
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Lines> {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let mut inner = self.lock();
        inner.requests.push(format!("{path}?{query}"));
        self.changed.notify_waiters();
        let Some((resource, namespace)) = resource_of(&path) else {
            return status(StatusCode::NOT_FOUND, "no such resource");
        };
        if inner.failing {
            return status(StatusCode::INTERNAL_SERVER_ERROR, "injected failure");
        }
        let params: BTreeMap<String, String> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), percent_decode(v)))
            .collect();
        let selector = params
            .get("labelSelector")
            .and_then(|s| s.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let selects = |chi: &Value| {
            plural_of(chi) == resource && selected(chi, namespace.as_deref(), selector.as_ref())
        };
        if params.get("watch").map(String::as_str) == Some("true") {
            let from: u64 = params
                .get("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if from < inner.compacted {
                inner.gone_answered += 1;
                self.changed.notify_waiters();
                let message = format!("too old resource version: {from} ({})", inner.compacted);
                return status(StatusCode::GONE, &message);
            }
            let (tx, rx) = mpsc::unbounded_channel();
            if inner.black_holes_armed > 0 {
                inner.black_holes_armed -= 1;
                inner.black_holed += 1;
                inner.black_holes.push(tx);
                self.changed.notify_waiters();
                return Response::new(Lines(rx));
            }
            for (rv, kind, chi) in &inner.history {
                if *rv > from && selects(chi) {
                    let _ = tx.send(line(&json!({"type": kind, "object": chi})));
                }
            }
            inner.watch_ids += 1;
            let id = inner.watch_ids;
            inner.watches.push(Watch {
                id,
                resource,
                namespace,
                selector,
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
            self.changed.notify_waiters();
            return Response::new(Lines(rx));
        }
        let items: Vec<&Value> = inner.objects.values().filter(|c| selects(c)).collect();
        let (prefix, _, kind) = RESOURCES.iter().find(|r| r.1 == resource).unwrap();
        let list = json!({
            "apiVersion": prefix.trim_start_matches("/apis/").trim_start_matches("/api/"),
            "kind": format!("{kind}List"),
            "metadata": {"resourceVersion": inner.resource_version.to_string()},
            "items": items,
        });
        body(StatusCode::OK, line(&list))
    }
}

impl Inner {
    fn send(&mut self, rv: u64, kind: &'static str, chi: Value) {
        let event = line(&json!({"type": kind, "object": &chi}));
        let resource = plural_of(&chi);
        self.watches.retain(|w| {
            w.resource != resource
                || !selected(&chi, w.namespace.as_deref(), w.selector.as_ref())
                || w.lines.send(event.clone()).is_ok()
        });
        self.history.push((rv, kind, chi));
    }
}

fn key_of(chi: &Value) -> (&'static str, String, String) {
    let meta = &chi["metadata"];
    (
        plural_of(chi),
        meta["namespace"].as_str().unwrap().to_owned(),
        meta["name"].as_str().unwrap().to_owned(),
    )
}

fn selected(chi: &Value, namespace: Option<&str>, selector: Option<&(String, String)>) -> bool {
    let meta = &chi["metadata"];
    namespace.is_none_or(|ns| meta["namespace"] == ns)
        && selector.is_none_or(|(k, v)| meta["labels"][k] == v.as_str())
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
    let reason = if code == StatusCode::GONE {
        "Expired"
    } else {
        ""
    };
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    body(code, line(&status))
}

fn body(code: StatusCode, bytes: Bytes) -> Response<Lines> {
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(bytes);
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
