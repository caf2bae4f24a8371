//! The `admin:` section: which listener serves which admin endpoints.
//!
//! `admin: {address}` is one listener serving everything (as before listeners could be split);
//! `admin: {listeners: [{address, serve: [...]}]}` binds each endpoint group where it belongs,
//! e.g. probes and metrics on the pod address, `/routes` on loopback only.

use std::net::SocketAddr;

use serde_saphyr::Location;

use super::error::Problems;
use super::raw::{RawAdmin, RawAdminListener, S};
use super::values::{binds_same, socket_addr};
use super::{AdminConfig, AdminEndpoint, AdminListener, ListenerConfig};

/// Validates `raw` (the data `listeners` are checked against for address clashes).
pub(super) fn admin(
    raw: RawAdmin,
    data: &[ListenerConfig],
    file: &str,
    errs: &mut Problems,
) -> Option<AdminConfig> {
    let before = errs.len();
    let listeners = match (raw.address, raw.listeners.is_empty()) {
        (Some(address), true) => {
            let address = socket_addr(&address, file, "admin.address", errs)?;
            vec![AdminListener {
                address,
                serve: AdminEndpoint::ALL.to_vec(),
            }]
        }
        (Some(address), false) => {
            errs.add(
                file,
                Some(&address.referenced),
                "admin",
                "give either `address` (one listener serving every endpoint) or `listeners`, not both",
            );
            return None;
        }
        (None, true) => {
            errs.add(
                file,
                None,
                "admin",
                "needs `address` or `listeners` (each with `address` and `serve`)",
            );
            return None;
        }
        (None, false) => raw
            .listeners
            .into_iter()
            .enumerate()
            .filter_map(|(i, l)| listener(l, i + 1, file, errs))
            .collect(),
    };
    check_clashes(&listeners, data, file, errs);
    (errs.len() == before).then_some(AdminConfig { listeners })
}

fn listener(
    raw: S<RawAdminListener>,
    i: usize,
    file: &str,
    errs: &mut Problems,
) -> Option<AdminListener> {
    let at: Location = raw.referenced;
    let l = raw.value;
    let what = format!("admin.listeners #{i}");
    let address = match &l.address {
        None => {
            errs.add(file, Some(&at), &format!("{what}: address"), "missing");
            None
        }
        Some(a) => socket_addr(a, file, &format!("{what}: address"), errs),
    };
    if l.serve.is_empty() {
        errs.add(
            file,
            Some(&at),
            &format!("{what}: serve"),
            format!(
                "list what it serves: one or more of {}",
                AdminEndpoint::KEYWORDS.join(", ")
            ),
        );
        return None;
    }
    let mut serve = Vec::with_capacity(l.serve.len());
    for e in &l.serve {
        match errs.keyword(file, e, &format!("{what}: serve")) {
            Some(e) if !serve.contains(&e) => serve.push(e),
            _ => {}
        }
    }
    Some(AdminListener {
        address: address?,
        serve,
    })
}

/// No endpoint on two admin listeners (one place to look for it, one place to protect), no
/// two admin listeners, nor an admin listener and a data listener, binding the same address.
fn check_clashes(
    admin: &[AdminListener],
    data: &[ListenerConfig],
    file: &str,
    errs: &mut Problems,
) {
    for endpoint in AdminEndpoint::ALL {
        let on: Vec<SocketAddr> = admin
            .iter()
            .filter(|l| l.serve.contains(&endpoint))
            .map(|l| l.address)
            .collect();
        if on.len() > 1 {
            errs.add(
                file,
                None,
                "admin.listeners",
                format!(
                    "{endpoint} is served by more than one listener ({})",
                    join(&on)
                ),
            );
        }
    }
    for (j, b) in admin.iter().enumerate() {
        for a in admin.iter().take(j) {
            if binds_same(a.address, b.address) {
                errs.add(
                    file,
                    None,
                    "admin.listeners",
                    format!("{} and {} bind the same address", a.address, b.address),
                );
            }
        }
        for l in data {
            if binds_same(l.address, b.address) {
                errs.add(
                    file,
                    None,
                    "admin",
                    format!(
                        "{} binds the same address as listener {:?} ({})",
                        b.address, l.name, l.address
                    ),
                );
            }
        }
    }
}

fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl AdminConfig {
    /// `0.0.0.0:9090 (probes, metrics); 127.0.0.1:9091 (routes)`, plus what is not served.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .listeners
            .iter()
            .map(|l| {
                let serve: Vec<&str> = l.serve.iter().map(|e| e.keyword()).collect();
                format!("{} ({})", l.address, serve.join(", "))
            })
            .collect();
        let unserved: Vec<&str> = AdminEndpoint::ALL
            .iter()
            .filter(|e| !self.listeners.iter().any(|l| l.serve.contains(e)))
            .map(|e| e.keyword())
            .collect();
        if !unserved.is_empty() {
            parts.push(format!("not served: {}", unserved.join(", ")));
        }
        parts.join("; ")
    }
}
