//! End-to-end over the PostgreSQL wire: real PostgreSQL 15 (`SSLRequest` only, as
//! ClickHouse's interface) and 18 (also direct SSL) with TLS on, behind a `protocol: postgres`
//! listener, queried by real clients (psql with libpq 15; psycopg with libpq 18, both
//! negotiations; asyncpg, both). Each client asks the server for its port, its version and
//! whether the session arrived over TLS, so a test sees which server answered and whether the
//! proxy passed TLS through (server_ssl) or terminated it. One test per row of the README's
//! client × server × route-mode table. Environment: tests/postgres_e2e/env.rs. Tools missing:
//! skipped locally, failed in CI.

#[path = "postgres_e2e/env.rs"]
mod env;
mod support;

use env::{env, Answer, Client, Env, PG15, PG18, PROXY_DOMAIN};
use serde_json::Value;
use support::Proxy;

/// Names of the routes below (PG15 and PG18 certificates cover `*.<their name>`).
const PG18_SSLREQUEST: &str = "sslrequest.pg18.pg.example.test";
const RESTRICTED: &str = "restricted.pg15.pg.example.test";
/// Routed to PG15, whose certificate does not name it.
const UNNAMED: &str = "unnamed.pg.example.test";
const UNKNOWN: &str = "nosuch.pg.example.test";
/// An upstream without a port: the route's `postgres_port` names it.
const PORTLESS: &str = "portless.pg15.pg.example.test";
/// Routed to a PostgreSQL with TLS off.
const TLS_OFF: &str = "tls-off.pg.example.test";

fn terminate(server: &str) -> String {
    format!("{server}-terminate.{PROXY_DOMAIN}")
}

fn reencrypt(server: &str) -> String {
    format!("{server}-reencrypt.{PROXY_DOMAIN}")
}

/// Every route of the suite: passthrough to each server (PG18 by two names: marked as
/// accepting direct SSL, and not), an allowlist no loopback client but 127.0.0.2 passes,
/// a name the server's certificate does not cover, and terminate / reencrypt to each.
fn routes(env: &Env) -> String {
    let ca = env.ca.display();
    let mut routes = format!(
        "  - name: pg15\n    sni: {PG15}\n    upstream: \"127.0.0.1:{pg15}\"\n\
         \x20 - name: pg18\n    sni: {PG18}\n    upstream: \"127.0.0.1:{pg18}\"\n    postgres_direct_ssl: true\n\
         \x20 - name: pg18-sslrequest\n    sni: {PG18_SSLREQUEST}\n    upstream: \"127.0.0.1:{pg18}\"\n\
         \x20 - name: restricted\n    sni: {RESTRICTED}\n    upstream: \"127.0.0.1:{pg15}\"\n    allow: [\"127.0.0.2/32\"]\n\
         \x20 - name: unnamed\n    sni: {UNNAMED}\n    upstream: \"127.0.0.1:{pg15}\"\n\
         \x20 - name: portless\n    sni: {PORTLESS}\n    upstream: 127.0.0.1\n    postgres_port: {pg15}\n\
         \x20 - name: tls-off\n    sni: {TLS_OFF}\n    upstream: \"127.0.0.1:{off}\"\n",
        pg15 = env.pg15,
        off = env.pg15_without_tls,
        pg18 = env.pg18,
    );
    for (server, port, name) in [("pg15", env.pg15, PG15), ("pg18", env.pg18, PG18)] {
        routes += &format!(
            "  - name: {server}-terminate\n    sni: {}\n    upstream: \"127.0.0.1:{port}\"\n    tls: terminate\n\
             \x20 - name: {server}-reencrypt\n    sni: {}\n    upstream: \"127.0.0.1:{port}\"\n    tls: reencrypt\n\
             \x20   upstream_tls:\n      ca: {ca}\n      server_name: {name}\n",
            terminate(server),
            reencrypt(server),
        );
    }
    routes
}

/// The environment and a proxy with every route, or None (skipped).
fn setup() -> Option<(&'static Env, Proxy)> {
    let env = env()?;
    let proxy = env.proxy(&routes(env));
    Some((env, proxy))
}

fn pg_port(proxy: &Proxy) -> u16 {
    proxy.addr("pg").port()
}

/// The access line of the next connection for `sni`.
fn access(proxy: &mut Proxy, sni: &str) -> Value {
    proxy.wait_log(|l| l["target"] == "access" && l["sni"] == sni)
}

/// `answer` came from the server on `port`, major version `major`, and the server saw TLS
/// (`server_ssl`: passthrough or reencrypt) or plaintext (terminate).
fn assert_served(answer: &Answer, port: u16, major: u64, server_ssl: bool) {
    assert!(answer.ok, "refused: {answer:?}");
    assert_eq!(answer.port, port, "wrong server: {answer:?}");
    assert_eq!(answer.major, major, "{answer:?}");
    assert_eq!(answer.server_ssl, server_ssl, "{answer:?}");
}

/// One row: `client` through the proxy to `sni` is served by the server on `port`.
fn row_served(client: Client, sni: &str, (port, major): (u16, u64), server_ssl: bool) {
    let Some((env, mut proxy)) = setup() else {
        return;
    };
    let answer = env.verified(client, sni, pg_port(&proxy));
    assert_served(&answer, port, major, server_ssl);
    if matches!(client, Client::PsycopgDirect | Client::AsyncpgDirect) {
        // Direct SSL needs ALPN `postgresql`: from the server, or from the proxy terminating.
        assert_eq!(answer.alpn.as_deref(), Some("postgresql"), "{answer:?}");
    }
    let line = access(&mut proxy, sni);
    if sni.ends_with(PROXY_DOMAIN) {
        // Terminated at the proxy: its TLS reads the client's close_notify, no reset.
        assert_eq!(line["outcome"], "relayed", "{line}");
    } else {
        assert_ended_after_serving(&line);
    }
    assert_eq!(line["protocol"], "postgres", "{line}");
    assert_eq!(line["negotiation"], client.negotiation(), "{line}");
}

/// The access line of a session the client was served on. PostgreSQL over TLS ends in a TCP
/// reset: after Terminate, libpq sends close_notify and closes; the server sends its own
/// close_notify and closes without reading the client's (seen with strace on psql and a
/// PG15 backend), so each kernel answers unread bytes with RST. Through the passthrough relay
/// the proxy mostly sees the reset after a side had closed: a normal end, `relayed`, whose
/// `detail` names it. A side that closes with the other's close_notify unread sends a reset
/// instead of its FIN, and that can reach the proxy before any close (the two race): a
/// `relay_error` ("client: connection reset" or "upstream: …"), accepted here after the
/// session's bytes.
fn assert_ended_after_serving(line: &Value) {
    let detail = line["detail"].as_str().unwrap_or("");
    let reset_won_the_race = line["outcome"] == "relay_error"
        && matches!(
            detail,
            "client: connection reset" | "upstream: connection reset"
        );
    assert!(line["outcome"] == "relayed" || reset_won_the_race, "{line}");
    assert!(
        detail.is_empty() || detail.ends_with("after close") || reset_won_the_race,
        "{line}"
    );
    assert!(line["bytes_from_upstream"].as_u64() > Some(0), "{line}");
}

/// Whether a client's error text names `alert` ("unrecognized name"): libpq writes
/// "tlsv1 unrecognized name", Python's ssl module "TLSV1_UNRECOGNIZED_NAME".
fn shows(error: &str, alert: &str) -> bool {
    error.to_lowercase().replace('_', " ").contains(alert)
}

/// One row: `client` through the proxy to `sni` is refused with the TLS alert `alert`.
fn row_refused(client: Client, sni: &str, alert: &str, outcome: &str) {
    let Some((env, mut proxy)) = setup() else {
        return;
    };
    let answer = env.verified(client, sni, pg_port(&proxy));
    assert!(!answer.ok, "served: {answer:?}");
    assert!(shows(&answer.error, alert), "{client:?}: {}", answer.error);
    let line = access(&mut proxy, sni);
    assert_eq!(line["outcome"], outcome, "{line}");
}

// --- The servers themselves, without the proxy: the harness's own check. ---

/// Both servers serve TLS verified for their names; PG18 also takes direct SSL (ALPN
/// `postgresql`), PG15 does not.
#[test]
fn servers_alone_serve_verified_tls_and_pg18_direct_ssl() {
    let Some(env) = env() else { return };
    assert!(env.pg15_version.contains(" 15."), "{}", env.pg15_version);
    assert!(env.pg18_version.contains(" 18."), "{}", env.pg18_version);
    for client in [
        Client::Psql,
        Client::PsycopgPostgres,
        Client::AsyncpgPostgres,
    ] {
        assert_served(&env.verified(client, PG15, env.pg15), env.pg15, 15, true);
        assert_served(&env.verified(client, PG18, env.pg18), env.pg18, 18, true);
    }
    for client in [Client::PsycopgDirect, Client::AsyncpgDirect] {
        let answer = env.verified(client, PG18, env.pg18);
        assert_served(&answer, env.pg18, 18, true);
        assert_eq!(answer.alpn.as_deref(), Some("postgresql"), "{answer:?}");
        assert!(!env.verified(client, PG15, env.pg15).ok);
    }
    // verify-full checks the name: PG15's certificate does not cover PG18's.
    let wrong = env.verified(Client::Psql, PG18, env.pg15);
    assert!(!wrong.ok, "{wrong:?}");
}

// --- Routing and refusals, each as the client sees it. ---

/// SNI chooses the server: the same listener, two names, two servers; TLS passes through
/// (each server saw TLS and its own certificate was verified for the name).
#[test]
fn sni_chooses_between_pg15_and_pg18() {
    let Some((env, mut proxy)) = setup() else {
        return;
    };
    let port = pg_port(&proxy);
    assert_served(&env.verified(Client::Psql, PG15, port), env.pg15, 15, true);
    assert_served(
        &env.verified(Client::Psql, PG18_SSLREQUEST, port),
        env.pg18,
        18,
        true,
    );
    for (sni, route) in [(PG15, "pg15"), (PG18_SSLREQUEST, "pg18-sslrequest")] {
        let line = access(&mut proxy, sni);
        assert_eq!(line["route"], route, "{line}");
        assert_ended_after_serving(&line);
    }
}

/// A name with no route: the TLS alert unrecognized_name (112), shown by libpq 15 after
/// `SSLRequest` and by libpq 18 and asyncpg in direct SSL.
#[test]
fn unknown_name_is_refused_with_unrecognized_name() {
    let Some((env, mut proxy)) = setup() else {
        return;
    };
    let port = pg_port(&proxy);
    for client in [Client::Psql, Client::PsycopgDirect, Client::AsyncpgDirect] {
        let answer = env.verified(client, UNKNOWN, port);
        assert!(!answer.ok, "{answer:?}");
        assert!(
            shows(&answer.error, "unrecognized name"),
            "{client:?}: {}",
            answer.error
        );
        let line = access(&mut proxy, UNKNOWN);
        assert_eq!(line["outcome"], "unknown_sni", "{line}");
    }
}

/// A route whose allowlist does not hold the client: the TLS alert access_denied.
#[test]
fn allowlist_refusal_is_an_access_denied_alert() {
    row_refused(Client::Psql, RESTRICTED, "access denied", "access_denied");
}

/// A plaintext client (`sslmode=disable`) gets a PostgreSQL ErrorResponse it shows:
/// "SSL required", SQLSTATE 28000 (asyncpg reports the code).
#[test]
fn plaintext_client_gets_ssl_required_error_response() {
    let Some((env, mut proxy)) = setup() else {
        return;
    };
    let port = pg_port(&proxy);
    for client in [
        Client::Psql,
        Client::PsycopgPostgres,
        Client::AsyncpgPostgres,
    ] {
        let answer = env.query(client, PG15, port, "disable");
        assert!(!answer.ok, "{answer:?}");
        assert!(
            answer.error.contains("SSL required"),
            "{client:?}: {}",
            answer.error
        );
        if matches!(client, Client::AsyncpgPostgres) {
            assert_eq!(answer.sqlstate.as_deref(), Some("28000"), "{answer:?}");
        }
        let line = proxy.wait_log(|l| l["target"] == "access");
        assert_eq!(line["outcome"], "postgres_plaintext", "{line}");
    }
}

/// verify-full through the proxy checks the server's certificate against the SNI: a route
/// whose server's certificate does not name it fails verification at the client.
#[test]
fn verify_full_fails_where_the_certificate_does_not_name_the_sni() {
    let Some((env, proxy)) = setup() else { return };
    let port = pg_port(&proxy);
    let answer = env.verified(Client::Psql, UNNAMED, port);
    assert!(!answer.ok, "{answer:?}");
    assert!(
        answer.error.contains("does not match host name"),
        "{}",
        answer.error
    );
    // Without verification (sslmode=require) the same route serves.
    let answer = env.query(Client::Psql, UNNAMED, port, "require");
    assert_served(&answer, env.pg15, 15, true);
}

// --- The matrix: client × server × route mode, one test per row. ---

fn pg15() -> (u16, u64) {
    env().map_or((0, 15), |e| (e.pg15, 15))
}

fn pg18() -> (u16, u64) {
    env().map_or((0, 18), |e| (e.pg18, 18))
}

/// One `#[test]` per row: `name: row_served(…)` or `name: row_refused(…)`.
macro_rules! matrix {
    ($($name:ident: $row:ident($($arg:expr),* $(,)?);)*) => {
        $(
            #[test]
            fn $name() {
                $row($($arg),*);
            }
        )*
    };
}

matrix! {
    // libpq 15 (psql): SSLRequest, no ALPN.
    psql_to_pg15_passthrough: row_served(Client::Psql, PG15, pg15(), true);
    psql_to_pg15_terminate: row_served(Client::Psql, &terminate("pg15"), pg15(), false);
    psql_to_pg15_reencrypt: row_served(Client::Psql, &reencrypt("pg15"), pg15(), true);
    psql_to_pg18_passthrough: row_served(Client::Psql, PG18_SSLREQUEST, pg18(), true);
    psql_to_pg18_passthrough_direct_ssl_route: row_served(Client::Psql, PG18, pg18(), true);
    psql_to_pg18_terminate: row_served(Client::Psql, &terminate("pg18"), pg18(), false);
    psql_to_pg18_reencrypt: row_served(Client::Psql, &reencrypt("pg18"), pg18(), true);
    // libpq 18 (psycopg) sslnegotiation=postgres: SSLRequest, ALPN postgresql offered.
    psycopg_sslrequest_to_pg15_passthrough: row_served(Client::PsycopgPostgres, PG15, pg15(), true);
    psycopg_sslrequest_to_pg15_terminate: row_served(Client::PsycopgPostgres, &terminate("pg15"), pg15(), false);
    psycopg_sslrequest_to_pg15_reencrypt: row_served(Client::PsycopgPostgres, &reencrypt("pg15"), pg15(), true);
    psycopg_sslrequest_to_pg18_passthrough: row_served(Client::PsycopgPostgres, PG18_SSLREQUEST, pg18(), true);
    psycopg_sslrequest_to_pg18_passthrough_direct_ssl_route: row_served(Client::PsycopgPostgres, PG18, pg18(), true);
    psycopg_sslrequest_to_pg18_terminate: row_served(Client::PsycopgPostgres, &terminate("pg18"), pg18(), false);
    psycopg_sslrequest_to_pg18_reencrypt: row_served(Client::PsycopgPostgres, &reencrypt("pg18"), pg18(), true);
    // asyncpg, SSLRequest.
    asyncpg_sslrequest_to_pg15_passthrough: row_served(Client::AsyncpgPostgres, PG15, pg15(), true);
    // libpq 18 (psycopg) sslnegotiation=direct: passed through only to a postgres_direct_ssl
    // route (else TLS alert internal_error); terminate and reencrypt choose ALPN postgresql.
    psycopg_direct_to_pg15_passthrough_is_refused: row_refused(Client::PsycopgDirect, PG15, "internal error", "postgres_direct_unsupported");
    psycopg_direct_to_pg15_terminate: row_served(Client::PsycopgDirect, &terminate("pg15"), pg15(), false);
    psycopg_direct_to_pg15_reencrypt: row_served(Client::PsycopgDirect, &reencrypt("pg15"), pg15(), true);
    psycopg_direct_to_pg18_passthrough_direct_ssl_route: row_served(Client::PsycopgDirect, PG18, pg18(), true);
    psycopg_direct_to_pg18_passthrough_without_direct_ssl_is_refused: row_refused(Client::PsycopgDirect, PG18_SSLREQUEST, "internal error", "postgres_direct_unsupported");
    psycopg_direct_to_pg18_terminate: row_served(Client::PsycopgDirect, &terminate("pg18"), pg18(), false);
    psycopg_direct_to_pg18_reencrypt: row_served(Client::PsycopgDirect, &reencrypt("pg18"), pg18(), true);
    // asyncpg direct_tls=True: the same.
    asyncpg_direct_to_pg15_passthrough_is_refused: row_refused(Client::AsyncpgDirect, PG15, "internal error", "postgres_direct_unsupported");
    asyncpg_direct_to_pg15_terminate: row_served(Client::AsyncpgDirect, &terminate("pg15"), pg15(), false);
    asyncpg_direct_to_pg15_reencrypt: row_served(Client::AsyncpgDirect, &reencrypt("pg15"), pg15(), true);
    asyncpg_direct_to_pg18_passthrough_direct_ssl_route: row_served(Client::AsyncpgDirect, PG18, pg18(), true);
    asyncpg_direct_to_pg18_passthrough_without_direct_ssl_is_refused: row_refused(Client::AsyncpgDirect, PG18_SSLREQUEST, "internal error", "postgres_direct_unsupported");
    asyncpg_direct_to_pg18_terminate: row_served(Client::AsyncpgDirect, &terminate("pg18"), pg18(), false);
    asyncpg_direct_to_pg18_reencrypt: row_served(Client::AsyncpgDirect, &reencrypt("pg18"), pg18(), true);
    // An upstream whose TLS is off answers the proxy's SSLRequest with N: the client, already
    // told S by the proxy, gets a TLS alert; counted as the upstream's failure.
    psql_to_pg15_with_tls_off_is_refused: row_refused(Client::Psql, TLS_OFF, "internal error", "upstream_ssl_refused");
    // An upstream named without a port (as routes from a CHI or ClickHouseCluster are): the
    // route's postgres_port chooses the server's port, not the listener's upstream_port (9005).
    psql_to_pg15_by_route_postgres_port: row_served(Client::Psql, PORTLESS, pg15(), true);
}

/// `GSSENCRequest` first (what libpq sends under `gssencmode=prefer` when it holds Kerberos
/// credentials, which no client here has, so written by hand): the proxy answers `N`, the
/// `SSLRequest` that follows `S`, and the ClientHello reaches PG15, whose certificate is
/// verified for the name; PG15 then accepts a StartupMessage (AuthenticationOk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gssenc_request_is_declined_then_ssl_request_reaches_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some((env, mut proxy)) = setup() else {
        return;
    };
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr("pg"))
        .await
        .unwrap();
    let mut answer = [0u8; 1];
    for (code, expected) in [(80_877_104u32, b'N'), (80_877_103, b'S')] {
        let mut request = 8u32.to_be_bytes().to_vec();
        request.extend_from_slice(&code.to_be_bytes());
        tcp.write_all(&request).await.unwrap();
        tokio::time::timeout(support::WAIT, tcp.read_exact(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer[0], expected, "answer to request code {code}");
    }
    let ca = std::fs::read_to_string(&env.ca).unwrap();
    let connector = support::certs::client_trusting(&ca, &[], None);
    let name = rustls::pki_types::ServerName::try_from(PG15).unwrap();
    let mut tls = tokio::time::timeout(support::WAIT, connector.connect(name, tcp))
        .await
        .unwrap()
        .expect("TLS verified for pg15's name");
    let params = b"user\0postgres\0database\0postgres\0\0";
    let mut startup = ((8 + params.len()) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    startup.extend_from_slice(params);
    tls.write_all(&startup).await.unwrap();
    let mut auth = [0u8; 9];
    tokio::time::timeout(support::WAIT, tls.read_exact(&mut auth))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(auth, [b'R', 0, 0, 0, 8, 0, 0, 0, 0], "AuthenticationOk");
    drop(tls);
    let line = access(&mut proxy, PG15);
    assert_ended_after_serving(&line);
    assert_eq!(line["negotiation"], "gssenc_then_ssl", "{line}");
}

/// 120 asyncpg sessions, 24 at a time, through one listener, SSLRequest and direct SSL, to
/// both servers, passed through and terminated: each reaches its own server and reads back
/// its own number.
#[test]
fn concurrent_sessions_each_reach_their_own_server() {
    let Some((env, proxy)) = setup() else {
        return;
    };
    let terminated = terminate("pg15");
    let targets = [
        (PG15, "postgres"),
        (PG18, "direct"),
        (PG18_SSLREQUEST, "postgres"),
        (terminated.as_str(), "direct"),
    ];
    let result = env.asyncpg_sessions(pg_port(&proxy), 120, 24, &targets);
    assert_eq!(result["failed"], 0, "{result}");
    for ((sni, negotiation), server) in targets.iter().zip([env.pg15, env.pg18, env.pg18, env.pg15])
    {
        let reached = &result["ports"][format!("{sni}/{negotiation}")];
        assert_eq!(*reached, serde_json::json!([server]), "{sni}: {result}");
    }
}
