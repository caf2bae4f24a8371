//! Problems worded for the operator: each names file:line once, the route and the key, says
//! what is expected, and every problem of a file is reported, not only the first.

use super::*;

const LISTENER: &str = "listeners:\n  - name: native\n    address: \"127.0.0.1:9440\"\n";

/// Every problem of `text` read as a route file named `file`, as `check` prints them.
fn route_file_problems(text: &str, file: &str) -> Vec<String> {
    let format = raw::Format::of(std::path::Path::new(file));
    let e = parse_routes_file(text, file, format).unwrap_err();
    e.problems().iter().map(ToString::to_string).collect()
}

/// Every problem of main file `text` (named `cfg.yaml`).
fn main_file_problems(text: &str) -> Vec<String> {
    let e = from_str(text, std::path::Path::new("cfg.yaml")).unwrap_err();
    e.problems().iter().map(ToString::to_string).collect()
}

/// Three different problems in three routes: all three, each at its line.
const THREE: &str = "\
routes:
  - name: web
    sni: web.example.com
    upstream: \"http://127.0.0.1:8123\"
  - name: native
    sni: native.example.com
    upstream: 127.0.0.1:9000
    tls: termiante
  - name: spread
    sni: spread.example.com
    upstream: [a:9000, b:9000]
    balance: leastconn
";

#[test]
fn a_url_as_upstream_says_to_drop_the_scheme() {
    let got = route_file_problems(THREE, "r.yaml");
    assert_eq!(
        got[0],
        "r.yaml:4: route \"web\" (#1): upstream: invalid upstream \"http://127.0.0.1:8123\": \
         an upstream is host[:port], not a URL: drop `http://`"
    );
}

#[test]
fn every_problem_of_a_file_is_reported_at_its_line() {
    let want = [
        "r.yaml:4: route \"web\" (#1): upstream: invalid upstream \"http://127.0.0.1:8123\": \
         an upstream is host[:port], not a URL: drop `http://`",
        "r.yaml:8: route \"native\" (#2): tls: invalid value \"termiante\": expected one of \
         passthrough, terminate, reencrypt (did you mean \"terminate\"?)",
        "r.yaml:12: route \"spread\" (#3): balance: invalid value \"leastconn\": expected one of \
         least_conn, round_robin (did you mean \"least_conn\"?)",
    ];
    assert_eq!(route_file_problems(THREE, "r.yaml"), want);

    // The same file inline in the main file: the same problems, three lines further down.
    let got = main_file_problems(&format!("{LISTENER}{THREE}"));
    let shifted: Vec<String> = want
        .iter()
        .zip([7, 11, 15])
        .map(|(w, line)| {
            let (_, rest) = w.split_once(": ").unwrap();
            format!("cfg.yaml:{line}: {rest}")
        })
        .collect();
    assert_eq!(got, shifted);
}

#[test]
fn a_json_route_file_reports_every_problem_at_its_line_too() {
    let json = r#"{"routes": [
  {"name": "web", "sni": "web.example.com", "upstream": "http://127.0.0.1:8123"},
  {"name": "native", "sni": "native.example.com", "upstream": "127.0.0.1:9000",
   "tls": "termiante"},
  {"name": "spread", "sni": "spread.example.com", "upstream": ["a:9000", "b:9000"],
   "balance": "leastconn", "sni": "again.example.com", "alow": []}
]}
"#;
    let got = route_file_problems(json, "r.json");
    assert_eq!(
        got,
        [
            "r.json:2: route \"web\" (#1): upstream: invalid upstream \"http://127.0.0.1:8123\": \
             an upstream is host[:port], not a URL: drop `http://`",
            "r.json:4: route \"native\" (#2): tls: invalid value \"termiante\": expected one of \
             passthrough, terminate, reencrypt (did you mean \"terminate\"?)",
            "r.json:6: route \"spread\" (#3): sni: written twice in this route: keep one",
            "r.json:6: route \"spread\" (#3): alow: unknown key (expected one of name, sni, \
             upstream, allow, proxy_protocol, balance, sticky, tls, upstream_tls, alpn, postgres_direct_ssl, postgres_port; did you \
             mean \"allow\"?)",
            "r.json:6: route \"spread\" (#3): balance: invalid value \"leastconn\": expected one \
             of least_conn, round_robin (did you mean \"least_conn\"?)",
        ]
    );
}

#[test]
fn a_repeated_key_is_refused_in_our_words_at_its_line() {
    // In a route entry: that route refused, the next still read and checked.
    let yaml = "\
routes:
  - name: a
    sni: a.example.com
    upstream: h:1
    sni: b.example.com
  - sni: c.example.com
    upstream: h:1
    allow: [10.0.0.0/33]
";
    assert_eq!(
        route_file_problems(yaml, "r.yaml"),
        [
            "r.yaml:5: route \"a\" (#1): sni: written twice in this route: keep one",
            "r.yaml:8: route \"c.example.com\" (#2): allow: invalid CIDR \"10.0.0.0/33\"",
        ]
    );
    // In a section of the main file: at the repeat, not the section's first line.
    let got = main_file_problems(&format!(
        "{LISTENER}timeouts:\n  connect: 3s\n  idle: 1h\n  connect: 4s\n"
    ));
    assert_eq!(
        got,
        ["cfg.yaml:7: connect: written twice in this section: keep one"]
    );
    for p in got {
        assert!(!p.contains("DuplicateKeyPolicy"), "{p}");
    }
}

#[test]
fn keywords_outside_routes_name_their_key_and_the_valid_words() {
    let got = main_file_problems(&format!(
        "{LISTENER}log:\n  access: jsn\ndefaults:\n  balance: random\n"
    ));
    assert_eq!(
        got,
        [
            "cfg.yaml:5: log.access: invalid value \"jsn\": expected one of json, text, off \
             (did you mean \"json\"?)",
            "cfg.yaml:7: defaults.balance: invalid value \"random\": expected one of \
             least_conn, round_robin",
        ]
    );
}

#[test]
fn a_duplicate_sni_names_both_lines() {
    let yaml = "\
routes:
  - name: first
    sni: [a.example.com, x.example.com]
    upstream: h:1
  - name: second
    sni:
      - b.example.com
      - X.example.com.
    upstream: h:1
";
    assert_eq!(
        route_file_problems(yaml, "r.yaml"),
        [
            "r.yaml:8: route \"second\" (#2): sni: \"x.example.com\" is already claimed by route \
          \"first\" (#1) at r.yaml:3"
        ]
    );
}
