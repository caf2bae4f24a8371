//! In-process reloads: results arrive on the reload channel, old states are
//! freed, a re-check of the same broken files is not a new error.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::*;
use crate::model::config;
use crate::runtime::control::server::Server;
use crate::runtime::observe::Silent;

/// Bound for waits that must end (not a timing assertion).
const WAIT: Duration = Duration::from_secs(20);

fn yaml(routes: &[&str]) -> String {
    let mut out = "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\nroutes:\n".to_owned();
    for sni in routes {
        out.push_str(&format!("  - sni: {sni}\n    upstream: \"127.0.0.1:1\"\n"));
    }
    out
}

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn next(
    status: &mut tokio::sync::watch::Receiver<Status>,
    pred: impl FnMut(&Status) -> bool,
) -> Status {
    tokio::time::timeout(WAIT, status.wait_for(pred))
        .await
        .expect("a reload result in time")
        .expect("server running")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_results_are_published_and_old_states_freed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml(&["a.test"])).unwrap();
    let server = Server::bind(config::load(&path).unwrap(), Arc::new(Silent))
        .await
        .unwrap();
    let proxy = server.handle();
    let mut status = proxy.reloads();
    assert_eq!(status.borrow().generation, 1);
    assert_eq!(status.borrow().trigger, Trigger::Startup);
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    // A request answers once the reloader runs (and its watches are set).
    proxy.request_reload();
    let s = next(&mut status, |s| s.trigger == Trigger::Signal).await;
    assert_eq!(s.result, ReloadResult::Unchanged);
    assert_eq!(s.generation, 1);

    let first = Arc::downgrade(&proxy.state());
    write_atomic(&path, &yaml(&["a.test", "b.test"]));
    let s = next(&mut status, |s| s.generation == 2).await;
    assert_eq!(s.result, ReloadResult::Ok);
    let state = proxy.state();
    assert_eq!(state.generation, 2);
    assert_eq!(state.config_hash, s.config_hash);
    assert!(state.routes.lookup(Some(b"b.test")).is_ok());
    drop(state);
    // Nothing holds a replaced state once its connections are gone: it is
    // freed after its successor is published, before the next reload.
    proxy.request_reload();
    let s = next(&mut status, |s| s.trigger == Trigger::Signal).await;
    assert_eq!(s.result, ReloadResult::Unchanged);
    assert!(first.upgrade().is_none(), "generation 1 state leaked");

    // Two routes claiming one name: refused, generation 2 stays.
    write_atomic(&path, &yaml(&["a.test", "b.test", "A.test"]));
    let s = next(&mut status, |s| matches!(s.result, ReloadResult::Error(_))).await;
    let ReloadResult::Error(e) = &s.result else {
        unreachable!()
    };
    assert!(
        e.to_string()
            .contains("sni: \"a.test\" is already claimed by route"),
        "{e}"
    );
    assert_eq!(s.generation, 2);
    assert!(s.last_error.is_some());
    assert!(!s.successful);
    assert!(proxy.state().routes.lookup(Some(b"a.test")).is_ok());

    // The same broken files again: already reported, so not a second error.
    proxy.request_reload();
    let s = next(&mut status, |s| s.trigger == Trigger::Signal).await;
    assert_eq!(s.result, ReloadResult::Unchanged);
    assert!(!s.successful, "the same broken files are still refused");

    // Back to the live files (good again), then broken the same way again: a new error.
    // (The only watch-triggered `unchanged` so far: earlier ones were ok/error.)
    write_atomic(&path, &yaml(&["a.test", "b.test"]));
    let s = next(&mut status, |s| {
        s.trigger == Trigger::Watch && s.result == ReloadResult::Unchanged
    })
    .await;
    assert!(s.successful, "the files equal the running configuration");
    write_atomic(&path, &yaml(&["a.test", "b.test", "A.test"]));
    next(&mut status, |s| matches!(s.result, ReloadResult::Error(_))).await;

    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("drained")
        .unwrap();
}
