//! Gateway API statuses written back ([`super::gateway_watch`]): by the replica holding the
//! Lease ([`super::lease`]), as merge patches on the `status` subresource, only those that
//! differ from what the object says ([`crate::model::gateway::patch`]).

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::gateway_store::{
    resource, Key, Store, CLASS, GATEWAY, KINDS, LEASE_DURATION, LEASE_NAME, ROUTE,
};
use super::lease::{self, Decision};
use super::watch_stream;
use crate::model::gateway::{self, patch, Statuses};

/// Writes statuses while holding the Lease.
pub(super) struct Writer {
    client: kube::Client,
    controller: String,
    leases: Api<DynamicObject>,
    pub(super) identity: String,
    pub(super) leader: bool,
    /// The other replica holding the Lease, once logged.
    waiting_for: Option<String>,
    /// The last patch written per object, without its transition times ([`patch::timeless`]):
    /// not written again before the watch shows it.
    written: HashMap<(usize, Key), Value>,
    /// Objects whose last status write failed (logged once).
    failing: HashSet<(usize, Key)>,
}

impl Writer {
    pub(super) fn new(
        client: kube::Client,
        controller: String,
        leases: Api<DynamicObject>,
        identity: String,
    ) -> Writer {
        Writer {
            client,
            controller,
            leases,
            identity,
            leader: false,
            waiting_for: None,
            written: HashMap::new(),
            failing: HashSet::new(),
        }
    }

    /// Takes or renews the Lease; `leader` says whether we hold it now.
    pub(super) async fn lease(&mut self) {
        let now = SystemTime::now();
        let current = match self.leases.get_opt(LEASE_NAME).await {
            Ok(l) => l.map(|l| serde_json::to_value(l).unwrap_or_default()),
            Err(error) => {
                tracing::warn!(error = %error, "gateway api: cannot read the Lease");
                self.leader = false;
                return;
            }
        };
        let decision = lease::decide(current.as_ref(), &self.identity, now, LEASE_DURATION);
        if let Decision::Wait { holder, .. } = &decision {
            // Once per holder, not every check.
            if self.leader || self.waiting_for.as_deref() != Some(holder) {
                tracing::info!(
                    holder = holder.as_str(),
                    "gateway api: the Lease is held by another replica; not writing statuses"
                );
                self.waiting_for = Some(holder.clone());
            }
            self.leader = false;
            return;
        }
        self.waiting_for = None;
        let spec = lease::spec(
            current.as_ref(),
            &self.identity,
            now,
            LEASE_DURATION,
            &decision,
        );
        let mut obj = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME},
            "spec": spec,
        });
        let written = match &current {
            None => match serde_json::from_value::<DynamicObject>(obj) {
                Ok(o) => self
                    .leases
                    .create(&PostParams::default(), &o)
                    .await
                    .map(drop),
                Err(e) => Err(kube::Error::SerdeError(e)),
            },
            Some(cur) => {
                // With its resourceVersion: of two replicas taking it, one gets 409.
                obj["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
                match serde_json::from_value::<DynamicObject>(obj) {
                    Ok(o) => self
                        .leases
                        .replace(LEASE_NAME, &PostParams::default(), &o)
                        .await
                        .map(drop),
                    Err(e) => Err(kube::Error::SerdeError(e)),
                }
            }
        };
        let was = self.leader;
        self.leader = written.is_ok();
        match written {
            Ok(()) if !was => {
                tracing::info!(
                    identity = self.identity.as_str(),
                    "gateway api: holding the Lease; writing statuses"
                );
                self.written.clear();
            }
            Ok(()) => {}
            Err(error) => tracing::info!(error = %error, "gateway api: Lease not taken"),
        }
    }

    /// Patches every status that differs from what its object says.
    pub(super) async fn write(&mut self, store: &Store, statuses: &Statuses) {
        let now = lease::micro_time(SystemTime::now());
        let now = now
            .split('.')
            .next()
            .map(|s| format!("{s}Z"))
            .unwrap_or(now);
        let status = |kind: usize, ns: &str, name: &str| {
            store.objects[kind]
                .get(&(ns.to_owned(), name.to_owned()))
                .and_then(|v| v.get("status"))
                .cloned()
        };
        let mut patches: Vec<(usize, Key, Value)> = Vec::new();
        for (k, s) in &statuses.gateway_classes {
            if let Some(p) = patch::gateway_class(status(CLASS, "", &k.name).as_ref(), s, &now) {
                patches.push((CLASS, (String::new(), k.name.clone()), p));
            }
        }
        for (k, s) in &statuses.gateways {
            if let Some(p) =
                patch::gateway(status(GATEWAY, &k.namespace, &k.name).as_ref(), s, &now)
            {
                patches.push((GATEWAY, (k.namespace.clone(), k.name.clone()), p));
            }
        }
        let empty = gateway::status::RouteStatus { parents: vec![] };
        for ((ns, name), v) in &store.objects[ROUTE] {
            // Routes no longer attached to a Gateway of ours lose our parents entries.
            let desired = statuses.tls_route(ns, name).unwrap_or(&empty);
            if let Some(p) = patch::tls_route(v.get("status"), desired, &self.controller, &now) {
                patches.push((ROUTE, (ns.clone(), name.clone()), p));
            }
        }
        for (kind, key, p) in patches {
            // Compared without transition times: before the watch shows our last write, the
            // same status is computed again with a later `now` (seen as a second write, under load).
            let same = patch::timeless(&p);
            if self.written.get(&(kind, key.clone())) == Some(&same) {
                continue;
            }
            let api: Api<DynamicObject> = if KINDS[kind].4 {
                Api::namespaced_with(self.client.clone(), &key.0, &resource(kind))
            } else {
                Api::all_with(self.client.clone(), &resource(kind))
            };
            match api
                .patch_status(&key.1, &PatchParams::default(), &Patch::Merge(&p))
                .await
            {
                Ok(_) => {
                    self.failing.remove(&(kind, key.clone()));
                    self.written.insert((kind, key), same);
                }
                Err(error) => {
                    watch_stream::count_error("status");
                    // Once per object until it succeeds (retried on the next change).
                    if self.failing.insert((kind, key.clone())) {
                        tracing::warn!(
                            kind = KINDS[kind].2,
                            object = format!("{}/{}", key.0, key.1),
                            error = %error,
                            "gateway api: status not written"
                        );
                    }
                }
            }
        }
        // Forget what was written to objects that are gone.
        self.written
            .retain(|(kind, key), _| store.objects[*kind].contains_key(key));
        self.failing
            .retain(|(kind, key)| store.objects[*kind].contains_key(key));
    }
}
