//! File routes + discovered routes → one conflict-free list of specs.
//!
//! File routes come first and are never refused here (their own clashes
//! fail the file reload). CHIs follow in claim order ([`Catalog::in_claim_order`]):
//! a CHI route whose name or any SNI pattern is already claimed is refused,
//! with the reason kept for the log, `/routes` and the metrics; the CHI's
//! other routes still apply.

use std::collections::HashMap;

use super::catalog::{Catalog, ChiKey};
use crate::model::route::RouteSpec;
use crate::model::sources::SourceKind;

/// Why a discovered route was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// One of its SNI patterns belongs to an earlier route.
    SniClaimed,
    /// Its name belongs to an earlier route.
    NameClaimed,
    /// It terminates TLS (`ch-edge-proxy/tls`) and no certificate covers one of its names.
    NoCertificate,
}

ch_edge_wire::keywords!(RefusalReason {
    SniClaimed => "sni_claimed",
    NameClaimed => "name_claimed",
    NoCertificate => "no_certificate",
});

impl RefusalReason {
    pub const ALL: [RefusalReason; 3] = [
        RefusalReason::SniClaimed,
        RefusalReason::NameClaimed,
        RefusalReason::NoCertificate,
    ];
}

/// One refused discovered route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Refusal {
    /// The object it comes from: `namespace/name` of a CHI, `ClickHouseCluster namespace/name`.
    pub chi: String,
    pub kind: SourceKind,
    pub route: String,
    pub reason: RefusalReason,
    /// What is contested and who holds it, for people.
    pub detail: String,
}

/// What one merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// ClickHouseInstallations in the catalog.
    pub chis: usize,
    /// ClickHouseClusters in the catalog.
    pub clusters: usize,
    /// Discovered routes in the table.
    pub routes: usize,
    pub refused: Vec<Refusal>,
    /// `(chi, error)` of CHIs whose routes could not be derived.
    pub invalid: Vec<(String, String)>,
    /// The catalog's [`Catalog::tls_routes_listed`].
    pub tls_routes_listed: bool,
}

/// Who holds a claim, for people.
fn describe(owner: &RouteSpec) -> String {
    format!("route {:?} from {}", owner.name, owner.source)
}

/// `file` followed by every discovered route that claims nothing already
/// claimed (what [`super::build_table`] builds, as one list).
#[cfg(test)]
pub fn merge(file: &[RouteSpec], catalog: &Catalog) -> (Vec<RouteSpec>, Merged) {
    let (accepted, report) = discovered(file, file.len(), catalog, |_| None);
    let mut specs = Vec::with_capacity(file.len() + accepted.len());
    specs.extend_from_slice(file);
    specs.extend(accepted);
    (specs, report)
}

/// The discovered routes [`merge`] would append to `file` (`file_len`
/// specs, not copied). `uncovered` says why a route cannot be served (a terminating route
/// without a certificate for a name), if it cannot.
pub fn discovered<'a>(
    file: impl IntoIterator<Item = &'a RouteSpec>,
    file_len: usize,
    catalog: &Catalog,
    uncovered: impl Fn(&RouteSpec) -> Option<String>,
) -> (Vec<RouteSpec>, Merged) {
    let size = file_len;
    let mut names: HashMap<&str, &RouteSpec> = HashMap::with_capacity(size);
    let mut patterns: HashMap<&str, &RouteSpec> = HashMap::with_capacity(size);
    for r in file {
        names.entry(&r.name).or_insert(r);
        for p in r.sni.iter() {
            patterns.entry(p).or_insert(r);
        }
    }
    let count = |kind| catalog.chis.keys().filter(|k| k.kind == kind).count();
    let mut report = Merged {
        chis: count(SourceKind::Chi),
        clusters: count(SourceKind::ClickHouseCluster),
        tls_routes_listed: catalog.tls_routes_listed,
        ..Merged::default()
    };
    let mut accepted: Vec<&RouteSpec> = Vec::new();
    for (key, entry) in catalog.in_claim_order() {
        let routes = match &entry.routes {
            Ok(routes) => routes,
            Err(e) => {
                report.invalid.push((key.to_string(), e.to_string()));
                continue;
            }
        };
        for r in routes {
            if let Some(refusal) = conflict(key, r, &names, &patterns) {
                report.refused.push(refusal);
                continue;
            }
            if let Some(detail) = uncovered(r) {
                let detail = if entry.plaintext_only {
                    format!(
                        "the ClickHouseCluster has no TLS (spec.settings.tls.enabled), so its \
                         routes can only terminate TLS here: {detail}"
                    )
                } else {
                    detail
                };
                report.refused.push(Refusal {
                    chi: key.to_string(),
                    kind: key.kind,
                    route: r.name.to_string(),
                    reason: RefusalReason::NoCertificate,
                    detail,
                });
                continue;
            }
            names.insert(&r.name, r);
            for p in r.sni.iter() {
                patterns.insert(p, r);
            }
            accepted.push(r);
        }
    }
    report.routes = accepted.len();
    (accepted.into_iter().cloned().collect(), report)
}

fn conflict(
    chi: &ChiKey,
    route: &RouteSpec,
    names: &HashMap<&str, &RouteSpec>,
    patterns: &HashMap<&str, &RouteSpec>,
) -> Option<Refusal> {
    let refusal = |reason, detail| Refusal {
        chi: chi.to_string(),
        kind: chi.kind,
        route: route.name.to_string(),
        reason,
        detail,
    };
    // A route that repeats a pattern of its own is a clash too.
    let mut own = std::collections::HashSet::new();
    for p in route.sni.iter() {
        if let Some(owner) = patterns.get(&**p) {
            return Some(refusal(
                RefusalReason::SniClaimed,
                format!("SNI {p:?} is already claimed by {}", describe(owner)),
            ));
        }
        if !own.insert(&**p) {
            return Some(refusal(
                RefusalReason::SniClaimed,
                format!("SNI {p:?} is listed twice"),
            ));
        }
    }
    names.get(&*route.name).map(|owner| {
        refusal(
            RefusalReason::NameClaimed,
            format!(
                "name {:?} is already used by {}",
                route.name,
                describe(owner)
            ),
        )
    })
}
