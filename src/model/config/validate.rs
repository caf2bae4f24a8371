//! Raw schema → typed [`Config`]: every value checked, every problem collected
//! with its file, line and what it belongs to, e.g.
//! `routes.d/a.yaml:7: route "demo" (#2): allow: invalid CIDR "10.0.0.0/33"`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ch_edge_wire::proxy_in::{Policy, ProxyInMode};
use ch_edge_wire::sni::check_name;
use serde_saphyr::Location;

use super::error::Problems;
use super::raw::{RawConfig, RawDiscovery, RawGatewayApi, RawHealth, RawListener, RawLog, S};
use super::values::{binds_same, cidrs, relative_to, socket_addr};
use super::*;
use crate::model::route::Defaults;

/// Longest accepted timeout: keeps `Instant + timeout` arithmetic far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Whether this binary can watch Kubernetes (feature `k8s`).
const KUBERNETES: bool = cfg!(feature = "k8s");

/// One `include` entry, resolved against the config file's directory.
pub(crate) struct IncludeEntry {
    pub path: PathBuf,
    pub at: Location,
}

/// Validates the main file. Routes are the inline ones; includes are returned
/// for the caller to read.
pub(crate) fn config(
    raw: RawConfig,
    path: &Path,
    errs: &mut Problems,
) -> (Config, Vec<IncludeEntry>, super::tls::Entries) {
    let file = path.display().to_string();
    let file = file.as_str();
    let base = path.parent().unwrap_or(Path::new(""));

    if raw.listeners.is_empty() {
        errs.add(file, None, "listeners", "at least one listener is required");
    }
    let listeners: Vec<ListenerConfig> = raw
        .listeners
        .into_iter()
        .enumerate()
        .filter_map(|(i, l)| listener(l, i + 1, file, errs))
        .collect();
    check_listener_clashes(&listeners, file, errs);

    let admin = raw
        .admin
        .and_then(|a| super::admin::admin(a, &listeners, file, errs));

    let dflt = Timeouts::default();
    let t = raw.timeouts;
    let timeouts = Timeouts {
        client_hello: duration(
            t.client_hello,
            dflt.client_hello,
            "timeouts.client_hello",
            file,
            errs,
        ),
        connect: duration(t.connect, dflt.connect, "timeouts.connect", file, errs),
        idle: duration(t.idle, dflt.idle, "timeouts.idle", file, errs),
        drain: duration(t.drain, dflt.drain, "timeouts.drain", file, errs),
    };

    let limits = super::limits::limits(raw.limits, file, errs);

    let mut defaults = Defaults::default();
    if let Some(allow) = &raw.defaults.allow {
        defaults.allow = cidrs(located(allow), file, "defaults.allow", errs);
    }
    let d = &raw.defaults;
    if let Some(pp) = d.proxy_protocol.as_ref() {
        let pp = errs.keyword(file, pp, "defaults.proxy_protocol");
        defaults.proxy_protocol = pp.unwrap_or(defaults.proxy_protocol);
    }
    if let Some(balance) = d.balance.as_ref() {
        let balance = errs.keyword(file, balance, "defaults.balance");
        defaults.balance = balance.unwrap_or(defaults.balance);
    }
    if let Some(sticky) = raw.defaults.sticky {
        defaults.sticky = sticky;
    }
    if let Some(tls) = d.tls.as_ref() {
        defaults.tls = errs
            .keyword(file, tls, "defaults.tls")
            .unwrap_or(defaults.tls);
    }
    if let Some(u) = raw.defaults.upstream_tls {
        if let Some(n) = &u.value.server_name {
            let at = Some(&n.referenced);
            let msg = "set per route (the default is each upstream's host)";
            errs.add(file, at, "defaults.upstream_tls.server_name", msg);
        }
        match &u.value.ca {
            Some(ca) if !ca.value.is_empty() => {
                defaults.upstream_ca = Some(relative_to(file, &ca.value));
            }
            _ => errs.add(
                file,
                Some(&u.referenced),
                "defaults.upstream_tls.ca",
                "missing or empty",
            ),
        }
    }
    let tls = super::tls::section(raw.tls, base, file, errs);
    let health = health(raw.health, file, errs);

    let routes = super::routes::routes(raw.routes, &file.into(), errs);

    let mut entries = Vec::new();
    for inc in raw.include {
        if inc.value.is_empty() {
            errs.add(file, Some(&inc.referenced), "include", "empty path");
            continue;
        }
        entries.push(IncludeEntry {
            path: base.join(&inc.value),
            at: inc.referenced,
        });
    }

    let discovery = discovery(raw.discovery, file, errs);
    let log = log(raw.log, file, errs);

    let config = Config {
        path: path.to_path_buf(),
        listeners,
        admin,
        timeouts,
        limits,
        defaults,
        routes: routes.into(),
        includes: entries.iter().map(|e| e.path.clone()).collect(),
        discovery,
        log,
        health,
        tls: Default::default(),
        tls_files: Vec::new(),
        content_hash: 0,
        route_files: RouteFiles::default(),
    };
    (config, entries, tls)
}

/// A count that must be at least 1 (kept as written either way: a problem refuses the file).
fn at_least_one<T: Copy + PartialEq + From<u8>>(
    raw: &S<T>,
    field: &str,
    hint: &str,
    file: &str,
    errs: &mut Problems,
) -> T {
    if raw.value == T::from(0) {
        errs.add(
            file,
            Some(&raw.referenced),
            field,
            format!("must be at least 1{hint}"),
        );
    }
    raw.value
}

fn health(raw: RawHealth, file: &str, errs: &mut Problems) -> Health {
    let mut health = Health::default();
    if let Some(after) = raw.eject_after {
        let hint = " (consecutive connect failures)";
        health.eject_after = at_least_one(&after, "health.eject_after", hint, file, errs);
    }
    if let Some(raw) = raw.eject_for {
        let at = raw.referenced;
        let text = raw.value.clone();
        let d = duration(Some(raw), health.eject_for, "health.eject_for", file, errs);
        if d > MAX_EJECTION {
            errs.add(
                file,
                Some(&at),
                "health.eject_for",
                format!("{text:?}: at most 5m (ejections double up to 5m)"),
            );
        }
        health.eject_for = d.min(MAX_EJECTION);
    }
    health
}

fn log(raw: RawLog, file: &str, errs: &mut Problems) -> LogConfig {
    let mut log = LogConfig::default();
    if let Some(format) = raw
        .format
        .and_then(|f| errs.keyword(file, &f, "log.format"))
    {
        log.format = format;
    }
    log.access = match raw
        .access
        .and_then(|a| errs.keyword(file, &a, "log.access"))
    {
        Some(access) => access,
        None => log.format.into(),
    };
    if let Some(sample) = raw.sample {
        if (0.0..=1.0).contains(&sample.value) {
            log.sample = sample.value;
        } else {
            errs.add(
                file,
                Some(&sample.referenced),
                "log.sample",
                format!("{} is not between 0.0 and 1.0", sample.value),
            );
        }
    }
    if let Some(level) = raw.level {
        match tracing_subscriber::EnvFilter::builder().parse(&level.value) {
            Ok(_) => log.level = level.value,
            Err(e) => errs.add(
                file,
                Some(&level.referenced),
                "log.level",
                format!(
                    "invalid filter {:?}: {e} (e.g. info, debug, warn,access=off)",
                    level.value
                ),
            ),
        }
    }
    log
}

fn listener(
    raw: S<RawListener>,
    i: usize,
    file: &str,
    errs: &mut Problems,
) -> Option<ListenerConfig> {
    let at = raw.referenced;
    let l = raw.value;
    let name = l.name.as_ref().map(|n| n.value.clone()).unwrap_or_default();
    let what = if name.is_empty() {
        format!("listener #{i}")
    } else {
        format!("listener {name:?} (#{i})")
    };
    let ok_before = errs.len();
    if name.is_empty() {
        let at = l.name.as_ref().map_or(&at, |n| &n.referenced);
        errs.add(
            file,
            Some(at),
            &format!("{what}: name"),
            "missing or empty (it labels metrics and logs)",
        );
    }
    let address = match &l.address {
        None => {
            errs.add(file, Some(&at), &format!("{what}: address"), "missing");
            None
        }
        Some(a) => socket_addr(a, file, &format!("{what}: address"), errs),
    };
    let protocol = l
        .protocol
        .as_ref()
        .and_then(|p| errs.keyword(file, p, &format!("{what}: protocol")))
        .unwrap_or_default();
    let upstream_port = match (&l.upstream_port, address) {
        (Some(p), _) if p.value == 0 => {
            errs.add(
                file,
                Some(&p.referenced),
                &format!("{what}: upstream_port"),
                "must be 1-65535",
            );
            0
        }
        (Some(p), _) => p.value,
        (None, _) if protocol == ListenerProtocol::Postgres => POSTGRES_UPSTREAM_PORT,
        (None, Some(a)) if a.port() == 0 => {
            errs.add(
                file,
                Some(&at),
                &format!("{what}: upstream_port"),
                "required when the address has port 0",
            );
            0
        }
        (None, Some(a)) => a.port(),
        (None, None) => 0,
    };
    let upstream_port_plain = match &l.upstream_port_plain {
        Some(p) if p.value == 0 => {
            let what = format!("{what}: upstream_port_plain");
            errs.add(file, Some(&p.referenced), &what, "must be 1-65535");
            0
        }
        Some(p) => p.value,
        None => plain_port(upstream_port),
    };
    let mut proxy_protocol = Policy::default();
    if let Some(pp) = l.proxy_protocol {
        let field = format!("{what}: proxy_protocol");
        proxy_protocol.trusted = cidrs(
            located(&pp.trusted),
            file,
            &format!("{field}.trusted"),
            errs,
        );
        let mode = pp.mode.as_ref();
        let known = mode.and_then(|m| errs.keyword(file, m, &format!("{field}.mode")));
        if let (Some(m), Some(at)) = (known, mode) {
            proxy_protocol.mode = m;
            if m != ProxyInMode::Off && pp.trusted.is_empty() {
                errs.add(
                    file,
                    Some(&at.referenced),
                    &field,
                    format!("mode {m} needs `trusted`: the CIDRs of the peers (load balancers) allowed to send a PROXY header"),
                );
            }
        }
    }
    let address = address?;
    (errs.len() == ok_before).then_some(ListenerConfig {
        name,
        address,
        upstream_port,
        upstream_port_plain,
        proxy_protocol,
        protocol,
    })
}

/// ClickHouse's plaintext port for one of its TLS ports (native 9440 → 9000, HTTPS 8443 →
/// 8123); any other port stays as it is.
pub(super) fn plain_port(tls_port: u16) -> u16 {
    match tls_port {
        9440 => 9000,
        8443 => 8123,
        p => p,
    }
}

/// Two listeners may not share a name, nor an address they would both bind
/// (the same address, or the same port where one is the wildcard address of
/// the same family). Listeners are few, so pairwise is fine.
fn check_listener_clashes(listeners: &[ListenerConfig], file: &str, errs: &mut Problems) {
    for (j, b) in listeners.iter().enumerate() {
        for a in listeners.iter().take(j) {
            if a.name == b.name {
                errs.add(
                    file,
                    None,
                    "listeners",
                    format!("two listeners are named {:?}", a.name),
                );
            }
            let (x, y) = (a.address, b.address);
            if binds_same(x, y) {
                errs.add(
                    file,
                    None,
                    "listeners",
                    format!(
                        "listeners {:?} ({x}) and {:?} ({y}) bind the same address",
                        a.name, b.name
                    ),
                );
            }
        }
    }
}

/// Whether two sockets would both bind one address: the same address, or the same port where
/// one is the wildcard address of the same family (port 0 never clashes).
fn duration(
    raw: Option<S<String>>,
    default: Duration,
    what: &str,
    file: &str,
    errs: &mut Problems,
) -> Duration {
    let Some(raw) = raw else { return default };
    match humantime::parse_duration(&raw.value) {
        Ok(d) if d.is_zero() => {
            errs.add(
                file,
                Some(&raw.referenced),
                what,
                format!("{:?}: must be greater than zero", raw.value),
            );
            default
        }
        Ok(d) if d > MAX_DURATION => {
            errs.add(
                file,
                Some(&raw.referenced),
                what,
                format!("{:?}: at most 365d", raw.value),
            );
            default
        }
        Ok(d) => d,
        Err(e) => {
            errs.add(
                file,
                Some(&raw.referenced),
                what,
                format!(
                    "invalid duration {:?} ({e}; write e.g. 5s, 1m30s, 1h)",
                    raw.value
                ),
            );
            default
        }
    }
}

fn located(items: &[S<String>]) -> impl ExactSizeIterator<Item = (&str, u64)> {
    items
        .iter()
        .map(|s| (s.value.as_str(), s.referenced.line()))
}

/// CIDRs; a bare address means that one host.
fn gateway_api(g: RawGatewayApi, kubernetes: bool, file: &str, errs: &mut Problems) -> GatewayApi {
    let what = "discovery.kubernetes.gateway_api";
    let mut out = GatewayApi {
        enabled: g.enabled,
        ..GatewayApi::default()
    };
    if g.enabled && !kubernetes {
        errs.add(
            file,
            None,
            what,
            "enabled needs discovery.kubernetes.enabled",
        );
    }
    if let Some(c) = g.controller_name {
        // The spec: a domain-prefixed path, `example.com/some-controller`.
        let ok = c.value.split_once('/').is_some_and(|(domain, path)| {
            domain.contains('.') && check_name(domain).is_ok() && !path.is_empty()
        });
        if ok {
            out.controller_name = c.value;
        } else {
            errs.add(
                file,
                Some(&c.referenced),
                &format!("{what}.controller_name"),
                format!(
                    "{:?} is not a domain-prefixed path (example.com/controller)",
                    c.value
                ),
            );
        }
    }
    if let Some(d) = g.cluster_domain {
        match check_name(&d.value) {
            Ok(()) => out.cluster_domain = d.value.to_ascii_lowercase(),
            Err(e) => errs.add(
                file,
                Some(&d.referenced),
                &format!("{what}.cluster_domain"),
                format!("invalid cluster domain {:?}: {e}", d.value),
            ),
        }
    }
    out
}

fn discovery(raw: RawDiscovery, file: &str, errs: &mut Problems) -> Discovery {
    let k = raw.kubernetes;
    let what = "discovery.kubernetes";
    let mut domain = String::new();
    let mut domain_bad = false;
    if let Some(d) = &k.domain {
        let lower = d.value.to_ascii_lowercase();
        let norm = lower.strip_suffix('.').unwrap_or(&lower);
        match check_name(norm) {
            Ok(()) => domain = norm.to_owned(),
            Err(_) if norm.is_empty() => {}
            Err(e) => {
                domain_bad = true;
                errs.add(
                    file,
                    Some(&d.referenced),
                    &format!("{what}.domain"),
                    format!("invalid domain {:?}: {e}", d.value),
                );
            }
        }
    }
    if k.enabled && domain.is_empty() && !domain_bad {
        errs.add(
            file,
            None,
            what,
            "enabled needs a `domain` (routes are <name>.<domain>)",
        );
    } else if k.enabled && !KUBERNETES {
        errs.add(
            file,
            None,
            &format!("{what}.enabled"),
            "this binary was built without the k8s feature (build with `--features k8s`)",
        );
    }
    let mut seen = HashSet::new();
    let mut namespaces = Vec::new();
    for ns in k.namespaces {
        if ns.value.is_empty() || ns.value.contains('.') || check_name(&ns.value).is_err() {
            errs.add(
                file,
                Some(&ns.referenced),
                &format!("{what}.namespaces"),
                format!("invalid namespace {:?}", ns.value),
            );
        } else if seen.insert(ns.value.clone()) {
            namespaces.push(ns.value);
        }
    }
    let sources = match k.sources {
        None => DEFAULT_SOURCES.to_vec(),
        Some(written) => {
            let mut sources = Vec::new();
            for s in &written {
                match s.value.trim().parse::<SourceKind>() {
                    Ok(SourceKind::TlsRoute) => errs.add(
                        file,
                        Some(&s.referenced),
                        &format!("{what}.sources"),
                        "TLSRoutes come with the Gateway API: set gateway_api.enabled instead",
                    ),
                    Ok(kind) if !sources.contains(&kind) => sources.push(kind),
                    Ok(_) => {}
                    Err(e) => errs.add(
                        file,
                        Some(&s.referenced),
                        &format!("{what}.sources"),
                        e.to_string(),
                    ),
                }
            }
            if written.is_empty() {
                errs.add(
                    file,
                    None,
                    &format!("{what}.sources"),
                    "needs at least one source (leave it out for the default, [chi])",
                );
            }
            sources
        }
    };
    let gateway_api = gateway_api(k.gateway_api, k.enabled, file, errs);
    Discovery {
        kubernetes: KubernetesDiscovery {
            enabled: k.enabled,
            domain,
            namespaces,
            label_selector: k.label_selector,
            sources,
            gateway_api,
        },
    }
}
