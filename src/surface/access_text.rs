//! The access line in the text format (`log.access: text`, or `log.format: text` with
//! `log.access` unset): the JSON line's fields, in its order and with its names, as
//! `key=value` after `<time> INFO access` —
//!
//! `2026-12-07T13:00:00.123456Z INFO access outcome=relayed listener=native
//! client=203.0.113.7:50112 peer=10.0.0.5:41000 proxy_version=2 sni=a.ch.example.com
//! route=a.ch.example.com upstream=10.1.2.3:9440 bytes_from_client=517 bytes_from_upstream=4210
//! connect_us=310 duration_ms=12`
//!
//! Written straight into the worker's buffer (no allocation per line); values a client
//! controls go through [`Value`], so they can neither forge a field nor break the line.

use std::io::Write as _;

use super::log_text::{timestamp, Value};
use crate::runtime::observe::Record;
use crate::runtime::outcome::Outcome;
use ch_edge_wire::postgres::ListenerProtocol;

/// Appends one access line, ending in `\n`, to `out`.
pub fn text_line(out: &mut Vec<u8>, r: &Record, outcome: Outcome) {
    let _ = write!(
        out,
        "{} INFO access outcome={} listener={} client={} peer={}",
        timestamp(),
        outcome.keyword(),
        Value(Some(&r.listener)),
        r.client_or_peer(),
        r.peer,
    );
    if let Some(v) = r.proxy_version {
        let _ = write!(out, " proxy_version={v}");
    }
    if let Some(vpce) = &r.vpce {
        let _ = write!(out, " vpce={}", Value(Some(vpce)));
    }
    let _ = write!(out, " sni={}", Value(r.sni.as_deref()));
    if r.ech {
        out.extend_from_slice(b" ech=true");
    }
    let _ = write!(out, " route={}", Value(r.route.as_deref()));
    if let Some(tag) = &r.sticky {
        let _ = write!(out, " sticky={}", Value(Some(tag)));
    }
    match r.upstream {
        Some(u) => {
            let _ = write!(out, " upstream={u}");
        }
        None => out.extend_from_slice(b" upstream=-"),
    }
    if let Some(u) = r.upstream_failed {
        let _ = write!(out, " upstream_failed={u}");
    }
    if let Some(detail) = r.detail {
        let _ = write!(out, " detail={}", Value(Some(detail)));
    }
    let _ = write!(
        out,
        " bytes_from_client={} bytes_from_upstream={}",
        r.from_client, r.from_upstream
    );
    if let Some(us) = r.client_hello_us {
        let _ = write!(out, " client_hello_us={us}");
    }
    if let Some(us) = r.connect_us {
        let _ = write!(out, " connect_us={us}");
    }
    if r.protocol != ListenerProtocol::Tls {
        let _ = write!(out, " protocol={}", r.protocol.keyword());
    }
    if let Some(pg) = r.postgres {
        let _ = write!(out, " negotiation={}", pg.negotiation.keyword());
    }
    if let Some(tls) = r.tls {
        let _ = write!(out, " tls={}", tls.mode.keyword());
        if tls.version != 0 {
            let _ = write!(
                out,
                " tls_version=1.{} handshake_us={}",
                tls.version % 10,
                tls.handshake_us
            );
        }
    }
    let _ = writeln!(out, " duration_ms={}", r.accepted.elapsed().as_millis());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn line(r: &Record, outcome: Outcome) -> String {
        let mut out = Vec::new();
        text_line(&mut out, r, outcome);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn one_line_of_key_values_after_time_and_level() {
        let mut r = Record::new(Arc::from("native"), "10.0.0.5:41000".parse().unwrap());
        r.client = Some("203.0.113.7:50112".parse().unwrap());
        r.proxy_version = Some(2);
        r.sni = Some("a.ch.test".into());
        r.route = Some(Arc::from("a.ch.test"));
        r.upstream = Some("10.1.2.3:9440".parse().unwrap());
        r.from_client = 517;
        let text = line(&r, Outcome::Relayed);
        let (time, rest) = text.split_once(' ').unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{text}");
        assert!(
            rest.starts_with(
                "INFO access outcome=relayed listener=native client=203.0.113.7:50112 \
                 peer=10.0.0.5:41000 proxy_version=2 sni=a.ch.test route=a.ch.test \
                 upstream=10.1.2.3:9440 bytes_from_client=517 bytes_from_upstream=0 duration_ms="
            ),
            "{text}"
        );
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
    }

    #[test]
    fn a_hostile_sni_is_one_quoted_value() {
        let mut r = Record::new(Arc::from("native"), "10.0.0.5:41000".parse().unwrap());
        r.sni = Some("x route=a\n2026 INFO forged\u{1b}[2J".into());
        let text = line(&r, Outcome::UnknownSni);
        assert!(
            text.contains(" sni=\"x route=a\\n2026 INFO forged\\u{1b}[2J\" route=- upstream=-"),
            "{text}"
        );
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(!text.trim_end().chars().any(char::is_control), "{text}");
    }
}
