//! What a new configuration changes in the running proxy, decided by a pure function of what is
//! live and what was loaded ([`plan`]), in the manner of a config diff; sockets, swaps and
//! watches are touched only after, by the reloader. (Which routes are reused is decided the
//! same way, inside the table build: `RouteTable::build_reusing`.)

use crate::model::config::{AdminConfig, Config, KubernetesDiscovery, ListenerConfig};
use crate::runtime::control::listeners;
use crate::runtime::control::watch::Targets;

/// What is live, as far as a reload is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub listeners: Vec<ListenerConfig>,
    /// Bound at start; its listeners move (or serve other endpoints) only on restart.
    pub admin: Option<AdminConfig>,
    pub targets: Targets,
    pub discovery: KubernetesDiscovery,
}

impl Current {
    /// Nothing live yet: what startup plans its first configuration over, so that it goes live
    /// by the same plan and apply as every later one.
    pub fn empty() -> Current {
        Current {
            listeners: Vec::new(),
            admin: None,
            targets: Targets::default(),
            discovery: KubernetesDiscovery::default(),
        }
    }
}

/// The changes one reload makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Listeners to keep, bind and stop.
    pub listeners: listeners::Plan,
    /// The directories and names to watch from now on, when they differ.
    pub watch: Option<Targets>,
    /// Discovery settings to restart the watch with, when they differ.
    pub discovery: Option<KubernetesDiscovery>,
    /// The `admin` section changed (an address, what a listener serves), which takes a
    /// restart: warned about, not applied (at startup, the server binds it).
    pub admin_moved: bool,
}

/// The plan for making `next` (watched through `targets`) live over `current`.
pub fn plan(current: &Current, next: &Config, targets: &Targets) -> Plan {
    Plan {
        listeners: listeners::plan::plan(&current.listeners, &next.listeners),
        watch: (*targets != current.targets).then(|| targets.clone()),
        discovery: (next.discovery.kubernetes != current.discovery)
            .then(|| next.discovery.kubernetes.clone()),
        admin_moved: next.admin != current.admin,
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::model::config;
    use crate::runtime::control::listeners::Step::{Bind, Keep};

    fn config(yaml: &str) -> Config {
        config::from_str(yaml, Path::new("/etc/p/c.yaml")).unwrap()
    }

    fn targets(dirs: &[&str]) -> Targets {
        Targets {
            dirs: dirs.iter().map(PathBuf::from).collect(),
            files: vec![(PathBuf::from("/etc/p"), OsString::from("c.yaml"))],
            route_dirs: dirs.iter().skip(1).map(PathBuf::from).collect(),
        }
    }

    const BASE: &str = "listeners:\n  - name: native\n    address: \"127.0.0.1:9440\"\nadmin:\n  address: \"127.0.0.1:9090\"\n";

    fn current() -> Current {
        let live = config(BASE);
        Current {
            listeners: live.listeners.clone(),
            admin: live.admin,
            targets: targets(&["/etc/p"]),
            discovery: Default::default(),
        }
    }

    #[test]
    fn reload_plans() {
        let k8s = "discovery:\n  kubernetes:\n    domain: ch.test\n";
        let https = "  - name: https\n    address: \"127.0.0.1:8443\"\n";
        #[rustfmt::skip]
        let cases: Vec<(&str, String, Vec<&str>, Plan)> = vec![
            ("unchanged", BASE.to_owned(), vec!["/etc/p"], Plan {
                listeners: listeners::Plan { steps: vec![Keep(0)], stop: vec![] },
                watch: None, discovery: None, admin_moved: false,
            }),
            ("a listener added, a directory included",
             BASE.replace("admin:", &format!("{https}admin:")), vec!["/etc/p", "/etc/p/routes.d"], Plan {
                listeners: listeners::Plan { steps: vec![Keep(0), Bind], stop: vec![] },
                watch: Some(targets(&["/etc/p", "/etc/p/routes.d"])), discovery: None, admin_moved: false,
            }),
            ("the listener moved, admin too",
             BASE.replace("9440", "9441").replace("9090", "9091"), vec!["/etc/p"], Plan {
                listeners: listeners::Plan { steps: vec![Bind], stop: vec![0] },
                watch: None, discovery: None, admin_moved: true,
            }),
            ("admin split into two listeners, the same address first",
             BASE.replace("  address: \"127.0.0.1:9090\"\n", "  listeners:\n    - {address: \"127.0.0.1:9090\", serve: [probes, metrics]}\n    - {address: \"127.0.0.1:9091\", serve: [routes]}\n"),
             vec!["/etc/p"], Plan {
                listeners: listeners::Plan { steps: vec![Keep(0)], stop: vec![] },
                watch: None, discovery: None, admin_moved: true,
            }),
            ("admin written as one listener serving everything: the same",
             BASE.replace("  address: \"127.0.0.1:9090\"\n", "  listeners:\n    - {address: \"127.0.0.1:9090\", serve: [probes, metrics, routes]}\n"),
             vec!["/etc/p"], Plan {
                listeners: listeners::Plan { steps: vec![Keep(0)], stop: vec![] },
                watch: None, discovery: None, admin_moved: false,
            }),
            ("admin removed", BASE.lines().take(3).map(|l| format!("{l}\n")).collect(), vec!["/etc/p"], Plan {
                listeners: listeners::Plan { steps: vec![Keep(0)], stop: vec![] },
                watch: None, discovery: None, admin_moved: true,
            }),
            ("discovery settings changed", format!("{BASE}{k8s}"), vec!["/etc/p"], Plan {
                listeners: listeners::Plan { steps: vec![Keep(0)], stop: vec![] },
                watch: None,
                discovery: Some(config(&format!("{BASE}{k8s}")).discovery.kubernetes),
                admin_moved: false,
            }),
        ];
        for (what, yaml, dirs, want) in cases {
            assert_eq!(
                plan(&current(), &config(&yaml), &targets(&dirs)),
                want,
                "{what}"
            );
        }
    }

    /// Startup is a reload from the empty state: every listener bound, every target watched,
    /// discovery started when configured, the admin section new (the server binds it).
    #[test]
    fn startup_plans_from_the_empty_state() {
        let k8s = "discovery:\n  kubernetes:\n    domain: ch.test\n";
        let https = "  - name: https\n    address: \"127.0.0.1:8443\"\n";
        let next = config(&format!(
            "{}{k8s}",
            BASE.replace("admin:", &format!("{https}admin:"))
        ));
        assert_eq!(
            plan(&Current::empty(), &next, &targets(&["/etc/p"])),
            Plan {
                listeners: listeners::Plan {
                    steps: vec![Bind, Bind],
                    stop: vec![]
                },
                watch: Some(targets(&["/etc/p"])),
                discovery: Some(next.discovery.kubernetes.clone()),
                admin_moved: true,
            }
        );
        let plain = plan(&Current::empty(), &config(BASE), &targets(&["/etc/p"]));
        assert_eq!(plain.discovery, None, "discovery off stays off");
    }
}
