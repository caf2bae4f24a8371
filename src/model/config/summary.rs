//! The human-readable summary printed by `ch-edge-proxy check`.

use std::collections::HashMap;
use std::fmt::Write;

use ch_edge_wire::postgres::ListenerProtocol;
use ch_edge_wire::proxy_in::ProxyInMode;

use super::Config;

/// A multi-line description of `config`: listeners, admin, timeouts, limits,
/// defaults, route counts per source, includes and discovery.
pub fn summary(config: &Config) -> String {
    let mut out = String::new();
    // `write!` into a String cannot fail.
    let _ = write_summary(&mut out, config);
    out
}

fn write_summary(out: &mut String, c: &Config) -> std::fmt::Result {
    writeln!(out, "config: {}", c.path.display())?;
    writeln!(out, "listeners ({}):", c.listeners.len())?;
    let width = c.listeners.iter().map(|l| l.name.len()).max().unwrap_or(0);
    for l in &c.listeners {
        let pp = &l.proxy_protocol;
        write!(
            out,
            "  {:width$}  {}  upstream port {} (plain {})  PROXY in: {}",
            l.name, l.address, l.upstream_port, l.upstream_port_plain, pp.mode
        )?;
        if pp.mode != ProxyInMode::Off {
            write!(out, " from {}", join(&pp.trusted))?;
        }
        if l.protocol != ListenerProtocol::Tls {
            write!(out, "  protocol {}", l.protocol)?;
        }
        writeln!(out)?;
    }
    match &c.admin {
        Some(a) => writeln!(out, "admin: {}", a.describe())?,
        None => writeln!(out, "admin: none")?,
    }
    let t = &c.timeouts;
    writeln!(
        out,
        "timeouts: client_hello {}, connect {}, idle {}, drain {}",
        humantime::format_duration(t.client_hello),
        humantime::format_duration(t.connect),
        humantime::format_duration(t.idle),
        humantime::format_duration(t.drain),
    )?;
    write!(out, "limits: max_connections {}", c.limits.max_connections)?;
    let per_client = &c.limits.per_client;
    if per_client.is_off() {
        writeln!(out, "; per client: none")?;
    } else {
        write!(out, "; per client:")?;
        if let Some(max) = per_client.max_connections {
            write!(out, " max_connections {max}")?;
        }
        if let Some(rate) = per_client.rate {
            write!(out, " rate {}/s burst {}", rate.per_second, rate.burst)?;
        }
        writeln!(out)?;
    }
    let allow = if c.defaults.allow.is_empty() {
        "nobody".to_owned()
    } else {
        join(&c.defaults.allow)
    };
    writeln!(
        out,
        "defaults: allow {allow}; proxy_protocol to upstreams {}; balance {}; sticky {}",
        c.defaults.proxy_protocol,
        c.defaults.balance,
        if c.defaults.sticky { "on" } else { "off" },
    )?;
    let tls = &c.tls;
    writeln!(
        out,
        "tls: default {}; min_version {}; max_handshakes {}; {}",
        c.defaults.tls,
        tls.min_version,
        tls.max_handshakes,
        plural(tls.certificates.iter().count(), "certificate"),
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for cert in tls.certificates.iter() {
        let days = (cert.not_after - now).div_euclid(86400);
        writeln!(
            out,
            "  {}  {}  expires in {days} days",
            cert.cert_file.display(),
            cert.names.join(", ")
        )?;
    }
    writeln!(
        out,
        "health: eject_after {}, eject_for {} (doubling per repeat, at most 5m)",
        c.health.eject_after,
        humantime::format_duration(c.health.eject_for),
    )?;

    let terminating = c
        .routes
        .iter()
        .filter(|r| {
            let mode = r.tls.as_ref().and_then(|t| t.mode);
            mode.unwrap_or(c.defaults.tls).terminates()
        })
        .count();
    let (mut exact, mut wild, mut catch_all) = (0, 0, false);
    for p in c.routes.iter().flat_map(|r| r.sni.iter()) {
        match &**p {
            "*" => catch_all = true,
            p if p.starts_with("*.") => wild += 1,
            _ => exact += 1,
        }
    }
    writeln!(
        out,
        "routes: {} ({}, {}, catch-all: {}; {} TLS here)",
        c.routes.len(),
        plural(exact, "exact name"),
        plural(wild, "wildcard"),
        if catch_all { "yes" } else { "no" },
        terminating,
    )?;
    let mut sources: Vec<(&str, usize)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for r in &c.routes {
        let i = *index.entry(&r.source).or_insert_with(|| {
            sources.push((&r.source, 0));
            sources.len() - 1
        });
        if let Some(s) = sources.get_mut(i) {
            s.1 += 1;
        }
    }
    for (source, n) in sources {
        writeln!(out, "  {n:>6}  {source}")?;
    }
    if c.includes.is_empty() {
        writeln!(out, "includes: none")?;
    } else {
        writeln!(out, "includes:")?;
        for i in &c.includes {
            writeln!(out, "  {}", i.display())?;
        }
    }
    writeln!(
        out,
        "log: format {}, access {}, sample {} (refusals always), level {:?} (unless RUST_LOG is set)",
        c.log.format, c.log.access, c.log.sample, c.log.level
    )?;
    let k = &c.discovery.kubernetes;
    if k.enabled {
        let ns = if k.namespaces.is_empty() {
            "all".to_owned()
        } else {
            k.namespaces.join(", ")
        };
        writeln!(
            out,
            "discovery: kubernetes on, domain {}, namespaces {ns}, label selector {:?}, sources {}",
            k.domain,
            k.label_selector,
            join(&k.sources)
        )?;
    } else {
        writeln!(out, "discovery: kubernetes off")?;
    }
    Ok(())
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
