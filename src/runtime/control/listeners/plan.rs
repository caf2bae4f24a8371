//! Which running listeners a new configuration keeps, which it binds anew and which stop: a
//! pure function of the two listener lists, decided before any socket is touched.

use crate::model::config::ListenerConfig;

/// What happens to one configured listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keeps running listener number `.0` (same socket) and takes the new settings.
    Keep(usize),
    /// Needs a new socket.
    Bind,
}

/// The listener changes of one reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One step per configured listener, in configuration order.
    pub steps: Vec<Step>,
    /// Running listeners no configured one keeps: they stop accepting (their connections go on).
    pub stop: Vec<usize>,
}

/// A listener is kept when its configured address is unchanged; for port 0 (tests) the name
/// must match too, since several listeners may ask for port 0 on one address. Each running
/// listener is kept at most once, by the first configured listener that matches it.
pub fn plan(running: &[ListenerConfig], wanted: &[ListenerConfig]) -> Plan {
    let mut kept = vec![false; running.len()];
    let steps = wanted
        .iter()
        .map(|w| {
            let found = running
                .iter()
                .zip(&kept)
                .position(|(r, &taken)| !taken && same_listener(r, w));
            match found {
                Some(i) => {
                    if let Some(k) = kept.get_mut(i) {
                        *k = true;
                    }
                    Step::Keep(i)
                }
                None => Step::Bind,
            }
        })
        .collect();
    let stop = (0..running.len())
        .filter(|&i| !kept.get(i).copied().unwrap_or(false))
        .collect();
    Plan { steps, stop }
}

fn same_listener(running: &ListenerConfig, wanted: &ListenerConfig) -> bool {
    running.address == wanted.address && (wanted.address.port() != 0 || running.name == wanted.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(spec: &str) -> ListenerConfig {
        let (name, address) = spec.split_once('@').unwrap();
        ListenerConfig {
            name: name.into(),
            address: address.parse().unwrap(),
            upstream_port: 9440,
            upstream_port_plain: 9000,
            proxy_protocol: Default::default(),
            protocol: Default::default(),
        }
    }

    fn listeners(specs: &[&str]) -> Vec<ListenerConfig> {
        specs.iter().map(|s| listener(s)).collect()
    }

    use Step::{Bind, Keep};

    /// What, running listeners, configured listeners, expected steps, expected stops.
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        &'static [Step],
        &'static [usize],
    );

    #[test]
    fn listener_changes() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("first start binds all",
             &[], &["a@127.0.0.1:9440", "b@127.0.0.1:8443"], &[Bind, Bind], &[]),
            ("nothing changed",
             &["a@127.0.0.1:9440"], &["a@127.0.0.1:9440"], &[Keep(0)], &[]),
            ("a rename keeps the socket",
             &["a@127.0.0.1:9440"], &["renamed@127.0.0.1:9440"], &[Keep(0)], &[]),
            ("a new address binds; the old one stops",
             &["a@127.0.0.1:9440"], &["a@127.0.0.1:9441"], &[Bind], &[0]),
            ("added and removed",
             &["a@127.0.0.1:1", "b@127.0.0.1:2"], &["b@127.0.0.1:2", "c@127.0.0.1:3"],
             &[Keep(1), Bind], &[0]),
            ("reordered: kept by address, not position",
             &["a@127.0.0.1:1", "b@127.0.0.1:2"], &["b@127.0.0.1:2", "a@127.0.0.1:1"],
             &[Keep(1), Keep(0)], &[]),
            ("port 0 is kept only under the same name",
             &["a@127.0.0.1:0", "b@127.0.0.1:0"], &["b@127.0.0.1:0", "c@127.0.0.1:0"],
             &[Keep(1), Bind], &[0]),
            ("same address, another family: new",
             &["a@127.0.0.1:9440"], &["a@[::1]:9440"], &[Bind], &[0]),
            ("everything removed",
             &["a@127.0.0.1:1"], &[], &[], &[0]),
        ];
        for (what, running, wanted, steps, stop) in cases {
            let got = plan(&listeners(running), &listeners(wanted));
            assert_eq!(got.steps, *steps, "{what}");
            assert_eq!(got.stop, *stop, "{what}");
        }
    }
}
