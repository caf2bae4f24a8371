//! Signals through the real binary: SIGUSR1/SIGUSR2 (which HAProxy and nginx users send out of
//! habit) and SIGPIPE never stop the proxy; SIGTERM still drains and exits 0.

mod support;

use std::net::SocketAddr;

use support::peers::{client_hello, exchange, RawBackend};
use support::*;

fn config(backend: SocketAddr) -> String {
    format!(
        "listeners:\n  - name: native\n    address: \"127.0.0.1:0\"\n    upstream_port: 9440\n\
         admin:\n  address: \"127.0.0.1:0\"\nroutes:\n  - sni: a.test\n    upstream: \"{backend}\"\n"
    )
}

/// A ClientHello for a.test reaches the backend and its echo comes back.
async fn routes(proxy: &Proxy, backend: &mut RawBackend) {
    let hello = client_hello("a.test");
    let echoed = exchange(proxy.addr("native"), &hello).await;
    assert_eq!(echoed, hello, "the connection was not relayed");
    assert_eq!(backend.next().await.bytes, hello);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_signals_and_sigpipe_never_stop_the_proxy() {
    let mut backend = RawBackend::start(false).await;
    let mut proxy = Proxy::start(&config(backend.addr));
    routes(&proxy, &mut backend).await;

    for name in ["USR1", "USR2", "PIPE"] {
        proxy.signal(name);
    }
    // Each user signal is answered by a line naming it and what the signals are.
    for name in ["SIGUSR1", "SIGUSR2"] {
        let line = proxy.wait_log(|l| l["signal"] == name);
        let message = line["message"].as_str().unwrap();
        assert!(
            message.starts_with("signal ignored") && message.contains("SIGHUP reloads"),
            "{line}"
        );
        assert_eq!(line["level"], "INFO", "{line}");
    }
    // Had any of them stopped the process, this reload would never be logged.
    proxy.signal("HUP");
    proxy.wait_reload("unchanged");

    assert_eq!(proxy.admin_get("/healthz").0, 200);
    routes(&proxy, &mut backend).await;

    // Again at once: rate-limited (no second line within the period), still alive.
    proxy.signal("USR1");
    proxy.signal("HUP");
    proxy.wait_reload("unchanged");
    assert_eq!(proxy.admin_get("/healthz").0, 200);

    let status = proxy.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}");
    let rest = proxy.rest_of_log();
    assert_eq!(
        rest.iter().filter(|l| l["signal"] == "SIGUSR1").count(),
        0,
        "a second SIGUSR1 line within the period: {rest:#?}"
    );
    assert!(
        rest.iter().any(|l| l["message"] == "drained; exiting"),
        "{rest:#?}"
    );
}
