//! A Gateway's listeners judged against this proxy: protocol TLS only, TLS mode Passthrough
//! (or Terminate where the proxy holds a certificate), a port the proxy listens on, route
//! kinds it supports, no two listeners claiming the same port and hostname.

use crate::model::route::TlsMode;

use super::objects::{Gateway, Listener, GROUP, KIND_TLS_ROUTE};
use super::selector::LabelSelector;
use super::status::{reason, Condition, GroupKind, ListenerStatus, TLS_ROUTE_KIND};
use super::Settings;

/// Where a listener takes routes from (`allowedRoutes.namespaces.from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    Same,
    All,
    /// `Selector`: namespaces whose labels match (`None`: no selector written, none match).
    Selector(Option<LabelSelector>),
}

/// One listener as the route attachment needs it, with its status in progress.
#[derive(Debug, Clone)]
pub struct Judged {
    pub name: String,
    pub port: u16,
    /// Lower case; `None`: any name.
    pub hostname: Option<String>,
    pub mode: TlsMode,
    /// TLSRoute is among its supported kinds.
    pub takes_tls_routes: bool,
    pub from: From,
    /// Why routes attached to it are not served, if they are not.
    pub unusable: Option<String>,
    pub status: ListenerStatus,
}

/// The listeners of `gw` judged, in their order.
pub fn judge(gw: &Gateway, settings: &Settings<'_>) -> Vec<Judged> {
    let generation = gw.metadata.generation;
    let mut judged: Vec<Judged> = gw
        .spec
        .listeners
        .iter()
        .map(|l| judge_one(l, settings, generation))
        .collect();
    mark_conflicts(&mut judged, generation);
    judged
}

fn judge_one(l: &Listener, settings: &Settings<'_>, generation: Option<i64>) -> Judged {
    let hostname = l
        .hostname
        .as_deref()
        .filter(|h| !h.is_empty())
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase());
    let cond = |kind, ok, why, msg: String| Condition::new(kind, ok, why, msg, generation);
    let mut accepted = cond(reason::ACCEPTED, true, reason::ACCEPTED, String::new());
    let mut resolved = cond(
        reason::RESOLVED_REFS,
        true,
        reason::RESOLVED_REFS,
        String::new(),
    );
    let mut programmed_fault: Option<String> = None;

    let is_tls = l.protocol == "TLS";
    let (supported_kinds, bad_kinds) = kinds(l, is_tls);
    if !bad_kinds.is_empty() {
        resolved = cond(
            reason::RESOLVED_REFS,
            false,
            reason::INVALID_ROUTE_KINDS,
            format!("unsupported route kinds: {}", bad_kinds.join(", ")),
        );
    }
    let mut mode = TlsMode::Passthrough;
    if !is_tls {
        accepted = cond(
            reason::ACCEPTED,
            false,
            reason::UNSUPPORTED_PROTOCOL,
            format!(
                "protocol {:?}: this controller serves TLS listeners only",
                l.protocol
            ),
        );
    } else {
        // The API's default mode is Terminate.
        let m = l
            .tls
            .as_ref()
            .and_then(|t| t.mode.as_deref())
            .unwrap_or("Terminate");
        match m {
            "Passthrough" => mode = TlsMode::Passthrough,
            "Terminate" => {
                mode = TlsMode::Terminate;
                match &hostname {
                    Some(h) if !(settings.has_certificate)(h) => {
                        resolved = cond(
                            reason::RESOLVED_REFS,
                            false,
                            reason::INVALID_CERTIFICATE_REF,
                            format!(
                                "the proxy holds no certificate for {h} (certificateRefs are \
                                 not read: the proxy serves its own certificates)"
                            ),
                        );
                    }
                    _ if resolved.is_true() => {
                        resolved.message = "certificateRefs are not read: the proxy serves its \
                                            own certificates"
                            .into();
                    }
                    _ => {}
                }
            }
            other => {
                accepted = cond(
                    reason::ACCEPTED,
                    false,
                    reason::UNSUPPORTED_VALUE,
                    format!("tls.mode {other:?} is not supported"),
                )
            }
        }
        if accepted.is_true() && !settings.listener_ports.contains(&l.port) {
            accepted = cond(
                reason::ACCEPTED,
                false,
                reason::PORT_UNAVAILABLE,
                format!(
                    "no proxy listener on port {} (the proxy listens on {})",
                    l.port,
                    ports(settings.listener_ports)
                ),
            );
        }
    }
    if !accepted.is_true() {
        programmed_fault = Some(accepted.message.clone());
    } else if !resolved.is_true() && resolved.reason == reason::INVALID_CERTIFICATE_REF {
        programmed_fault = Some(resolved.message.clone());
    }
    let programmed = match &programmed_fault {
        Some(why) => cond(reason::PROGRAMMED, false, reason::INVALID, why.clone()),
        None => cond(reason::PROGRAMMED, true, reason::PROGRAMMED, String::new()),
    };
    let conflicted = cond(
        reason::CONFLICTED,
        false,
        reason::NO_CONFLICTS,
        String::new(),
    );
    let from = match l.allowed_routes.namespaces.from.as_deref() {
        Some("All") => From::All,
        Some("Selector") => From::Selector(l.allowed_routes.namespaces.selector.clone()),
        _ => From::Same,
    };
    Judged {
        name: l.name.clone(),
        port: l.port,
        hostname,
        mode,
        takes_tls_routes: !supported_kinds.is_empty(),
        from,
        unusable: programmed_fault,
        status: ListenerStatus {
            name: l.name.clone(),
            supported_kinds,
            attached_routes: 0,
            conditions: vec![accepted, programmed, resolved, conflicted],
        },
    }
}

/// The supported kinds and the names of the asked-for kinds that are not supported.
fn kinds(l: &Listener, is_tls: bool) -> (Vec<GroupKind>, Vec<String>) {
    let asked = &l.allowed_routes.kinds;
    if asked.is_empty() {
        return (if is_tls { vec![TLS_ROUTE_KIND] } else { vec![] }, vec![]);
    }
    let mut supported = Vec::new();
    let mut bad = Vec::new();
    for k in asked {
        let group = k.group.as_deref().unwrap_or(GROUP);
        if is_tls && group == GROUP && k.kind == KIND_TLS_ROUTE {
            if supported.is_empty() {
                supported.push(TLS_ROUTE_KIND);
            }
        } else {
            bad.push(k.kind.clone());
        }
    }
    (supported, bad)
}

/// Listeners of one Gateway on the same port with the same hostname conflict: none is served.
fn mark_conflicts(judged: &mut [Judged], generation: Option<i64>) {
    let keys: Vec<(u16, Option<String>, bool)> = judged
        .iter()
        .map(|j| (j.port, j.hostname.clone(), j.unusable.is_none()))
        .collect();
    for (i, j) in judged.iter_mut().enumerate() {
        let clash = keys.iter().enumerate().any(|(k, (port, host, usable))| {
            k != i && *usable && *port == j.port && *host == j.hostname
        });
        if clash && j.unusable.is_none() {
            let msg = format!(
                "another listener has port {} and hostname {}",
                j.port,
                j.hostname.as_deref().unwrap_or("(any)")
            );
            for c in &mut j.status.conditions {
                if c.kind == reason::CONFLICTED {
                    *c = Condition::new(c.kind, true, reason::HOSTNAME_CONFLICT, &msg, generation);
                } else if c.kind == reason::PROGRAMMED {
                    *c = Condition::new(c.kind, false, reason::INVALID, &msg, generation);
                }
            }
            j.unusable = Some(msg);
        }
    }
}

fn ports(ports: &[u16]) -> String {
    if ports.is_empty() {
        return "no port".into();
    }
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
