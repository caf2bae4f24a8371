//! Choosing a route's upstream address for one connection: least connections (ties by
//! rotation), round robin, or, for a sticky name (`<tag>.sticky.<name>`), rendezvous hashing
//! of the tag; each honouring the addresses' weights (see [`super::weighted`]). Pure: the runtime says what it knows of each address (open connections,
//! ejected, already tried) and claims the choice.
//!
//! Ejected addresses are skipped while any other is left; when all are ejected, all are
//! candidates again (a route never refuses for health alone).

use std::net::IpAddr;

use rapidhash::v3::{RapidSecrets, RapidStreamHasherV3};

/// How a route spreads connections over its addresses (`balance:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Fewest open connections (this proxy's count); ties by rotation.
    #[default]
    LeastConn,
    /// Each connection the next address.
    RoundRobin,
}

ch_edge_wire::keywords!(Balance {
    LeastConn => "least_conn",
    RoundRobin => "round_robin",
});

/// The longest sticky tag (one DNS label).
pub const MAX_TAG: usize = 63;

/// The label that marks a sticky name: `<tag>.sticky.<name>`.
pub const STICKY_LABEL: &str = "sticky";

/// rapidhash v3 with a fixed seed: its output is specified and stable across crate versions
/// and platforms, so every proxy replica (and every release) sends a tag to the same address.
const STICKY_SECRETS: RapidSecrets = RapidSecrets::seed(0x6368_2d65_6467_6521);

/// A sticky tag: one host-name label, lower case (copied: the name it came from is a
/// short-lived buffer).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    bytes: [u8; MAX_TAG],
    len: u8,
}

impl Tag {
    /// `label` as a tag, if it is one: 1..=63 bytes of lower-case host-name characters.
    pub fn new(label: &str) -> Option<Tag> {
        let ok = (1..=MAX_TAG).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return None;
        }
        let mut bytes = [0u8; MAX_TAG];
        bytes
            .get_mut(..label.len())?
            .copy_from_slice(label.as_bytes());
        Some(Tag {
            bytes,
            len: label.len() as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

impl std::fmt::Debug for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tag({:?})", self.as_str())
    }
}

/// An address as sticky hashing knows it. The upstream host as configured (and its port, if
/// configured) identifies it, so a replica behind its own Service keeps its tags when its pod
/// comes back with a new IP; the IP is added only where one name has several addresses. The
/// listener's port is not part of it: a tag reaches the same server on every listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node<'a> {
    pub host: &'a str,
    pub port: Option<u16>,
    pub ip: Option<IpAddr>,
}

/// The rendezvous score of `tag` on `node`: the tag goes to the highest score.
pub fn score(tag: &Tag, node: &Node<'_>) -> u64 {
    let mut h = RapidStreamHasherV3::new(&STICKY_SECRETS);
    h.write(tag.as_str().as_bytes());
    // A separator no host name or tag contains, so (tag, host) pairs cannot run together.
    h.write(&[0xff]);
    h.write(node.host.as_bytes());
    if let Some(port) = node.port {
        h.write(b":");
        h.write(&port.to_be_bytes());
    }
    match node.ip {
        Some(IpAddr::V4(ip)) => h.write(&ip.octets()),
        Some(IpAddr::V6(ip)) => h.write(&ip.octets()),
        None => {}
    }
    h.finish()
}

/// What the chooser knows of one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seen {
    /// This proxy's open connections to it.
    pub open: u32,
    /// Taken out by passive health (and not yet due for a retry).
    pub ejected: bool,
}

/// A route's addresses for one connection, in a fixed order.
pub trait Pool {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `None`: not a candidate now (already tried by this connection).
    fn seen(&self, i: usize) -> Option<Seen>;
    /// Its identity for sticky hashing.
    fn node(&self, i: usize) -> Node<'_>;
    /// Its weight: its upstream's (each address of a name carries the name's, as in nginx);
    /// 0: never chosen.
    fn weight(&self, _i: usize) -> u32 {
        1
    }
    /// Whether every address weighs the same (then the unweighted paths choose, at their
    /// cost). A pool that knows it without a pass over its addresses says so here.
    fn uniform(&self) -> bool {
        // An empty pool is uniform, and `weight(0)` is not asked of it.
        (1..self.len()).all(|i| self.weight(i) == self.weight(0))
    }
}

/// How one connection chooses.
#[derive(Debug, Clone, Copy)]
pub enum Choose<'t> {
    /// By the route's `balance`; `rotation` is the route's per-connection counter.
    Balance(Balance, usize),
    /// The tag's rendezvous order.
    Sticky(&'t Tag),
}

/// The address to try next, or `None` when every one was tried (or weighs 0).
///
/// Equal weights (the usual case) cost what they did before weights existed: least_conn's
/// comparison is the same, round robin a rotation, sticky the raw rendezvous hash.
pub fn choose<P: Pool + ?Sized>(pool: &P, how: Choose<'_>) -> Option<usize> {
    let n = pool.len();
    let live = |i: usize| pool.seen(i).filter(|s| !s.ejected && pool.weight(i) > 0);
    let any = |i: usize| pool.seen(i).filter(|_| pool.weight(i) > 0);
    let uniform = pool.uniform();
    // Ejected addresses only when nothing else is left.
    let pick = |eligible: &dyn Fn(usize) -> Option<Seen>| match how {
        Choose::Balance(Balance::LeastConn, rotation) if uniform => rotated(n, rotation)
            .filter_map(|i| eligible(i).map(|s| (i, s.open)))
            // `min_by_key` keeps the first of equals: ties go by rotation.
            .min_by_key(|&(_, open)| open)
            .map(|(i, _)| i),
        Choose::Balance(Balance::LeastConn, rotation) => rotated(n, rotation)
            .filter_map(|i| eligible(i).map(|s| (i, s.open, pool.weight(i))))
            // Fewest (open + 1) / weight, compared without dividing (HAProxy's measure: an
            // idle pool fills in proportion to the weights). `min_by` keeps the first of
            // equals: ties go by rotation.
            .min_by(|&(_, oa, wa), &(_, ob, wb)| {
                let a = (u64::from(oa) + 1) * u64::from(wb);
                let b = (u64::from(ob) + 1) * u64::from(wa);
                a.cmp(&b)
            })
            .map(|(i, _, _)| i),
        Choose::Balance(Balance::RoundRobin, rotation) => {
            if uniform {
                rotated(n, rotation).find(|&i| eligible(i).is_some())
            } else {
                super::weighted::round_robin(n, &|i| pool.weight(i), rotation, &|i| {
                    eligible(i).is_some()
                })
            }
        }
        Choose::Sticky(tag) => {
            let candidates = (0..n).filter(|&i| eligible(i).is_some());
            if uniform {
                // Ties (the same node written twice) go to the first.
                candidates.max_by_key(|&i| (score(tag, &pool.node(i)), std::cmp::Reverse(i)))
            } else {
                candidates.max_by(|&a, &b| {
                    let key =
                        |i| super::weighted::rendezvous(score(tag, &pool.node(i)), pool.weight(i));
                    key(a).total_cmp(&key(b)).then(b.cmp(&a))
                })
            }
        }
    };
    pick(&live).or_else(|| pick(&any))
}

/// `0..n`, starting at `rotation % n` and wrapping.
fn rotated(n: usize, rotation: usize) -> impl Iterator<Item = usize> {
    let start = rotation.checked_rem(n).unwrap_or(0);
    (start..n).chain(0..start)
}

#[cfg(test)]
#[path = "weighted_tests.rs"]
mod weighted_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses `a0`, `a1`, … as literal-like hosts, with weights (1 unless made
    /// [`Fake::weighted`]) and open connections; shared with the weighted tables.
    pub(super) struct Fake {
        hosts: Vec<String>,
        weights: Vec<u32>,
        pub(super) seen: Vec<Option<Seen>>,
    }

    impl Fake {
        pub(super) fn new(n: usize) -> Fake {
            Fake::weighted(&vec![1; n])
        }
        pub(super) fn weighted(weights: &[u32]) -> Fake {
            Fake {
                hosts: (0..weights.len()).map(|i| format!("a{i}")).collect(),
                weights: weights.to_vec(),
                seen: vec![Some(Seen::default()); weights.len()],
            }
        }
        pub(super) fn open(mut self, open: &[u32]) -> Fake {
            for (s, &o) in self.seen.iter_mut().zip(open) {
                if let Some(s) = s {
                    s.open = o;
                }
            }
            self
        }
        pub(super) fn eject(mut self, i: usize) -> Fake {
            if let Some(Some(s)) = self.seen.get_mut(i) {
                s.ejected = true;
            }
            self
        }
        pub(super) fn tried(mut self, i: usize) -> Fake {
            self.seen[i] = None;
            self
        }
    }

    impl Pool for Fake {
        fn len(&self) -> usize {
            self.hosts.len()
        }
        fn seen(&self, i: usize) -> Option<Seen> {
            self.seen[i]
        }
        fn node(&self, i: usize) -> Node<'_> {
            Node {
                host: &self.hosts[i],
                port: None,
                ip: None,
            }
        }
        fn weight(&self, i: usize) -> u32 {
            self.weights[i]
        }
    }

    fn tag(s: &str) -> Tag {
        Tag::new(s).unwrap()
    }

    #[test]
    fn balance_keywords_read_and_show_one_way() {
        assert_eq!("least_conn".parse::<Balance>(), Ok(Balance::LeastConn));
        assert_eq!("ROUND_ROBIN".parse::<Balance>(), Ok(Balance::RoundRobin));
        assert_eq!(Balance::default(), Balance::LeastConn);
        assert_eq!(Balance::RoundRobin.to_string(), "round_robin");
        assert!("random".parse::<Balance>().is_err());
    }

    #[test]
    fn least_conn_takes_the_fewest_open_ties_by_rotation() {
        let lc = |r| Choose::Balance(Balance::LeastConn, r);
        let pool = Fake::new(3).open(&[5, 1, 7]);
        for r in 0..6 {
            assert_eq!(choose(&pool, lc(r)), Some(1));
        }
        // Equal counts: the rotation decides, so connections spread.
        let even = Fake::new(3).open(&[2, 2, 2]);
        let picks: Vec<_> = (0..6).map(|r| choose(&even, lc(r)).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        // Ties among some: the first of them at or after the rotation.
        let some = Fake::new(4).open(&[1, 3, 1, 3]);
        assert_eq!(choose(&some, lc(1)), Some(2));
        assert_eq!(choose(&some, lc(3)), Some(0));
    }

    #[test]
    fn round_robin_ignores_open_connections() {
        let pool = Fake::new(3).open(&[0, 100, 100]);
        let picks: Vec<_> = (0..4)
            .map(|r| choose(&pool, Choose::Balance(Balance::RoundRobin, r)).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0]);
    }

    #[test]
    fn ejected_are_skipped_while_another_is_live_and_all_are_tried_at_the_end() {
        for how in [
            Choose::Balance(Balance::LeastConn, 0),
            Choose::Balance(Balance::RoundRobin, 0),
        ] {
            let pool = Fake::new(3).open(&[0, 9, 9]).eject(0);
            assert_eq!(choose(&pool, how), Some(1), "{how:?}");
            // Every address ejected: they are all candidates again.
            let all = Fake::new(2).open(&[3, 1]).eject(0).eject(1);
            let picked = choose(&all, how);
            assert!(picked.is_some(), "{how:?}");
            // Tried ones are never chosen again; nothing left is None.
            let rest = Fake::new(2).eject(0).tried(1);
            assert_eq!(choose(&rest, how), Some(0), "{how:?}");
            assert_eq!(choose(&Fake::new(2).tried(0).tried(1), how), None);
        }
        assert_eq!(
            choose(&Fake::new(0), Choose::Balance(Balance::LeastConn, 3)),
            None
        );
    }

    #[test]
    fn tags_are_host_name_labels_of_at_most_63_bytes() {
        assert_eq!(tag("session-42").as_str(), "session-42");
        assert_eq!(
            Tag::new(&"a".repeat(63)).map(|t| t.as_str().len()),
            Some(63)
        );
        for bad in ["", "UPPER", "a.b", "sp ace", "é", &"a".repeat(64)] {
            assert!(Tag::new(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn scores_are_fixed_across_processes_and_releases() {
        // Golden values: a change here moves every client's tag in a mixed-version fleet.
        let node = Node {
            host: "chi-demo-cluster-0-0.ns.svc.cluster.local",
            port: None,
            ip: None,
        };
        let with_ip = Node {
            host: "10.0.0.1",
            port: Some(9440),
            ip: Some("10.0.0.1".parse().unwrap()),
        };
        assert_eq!(score(&tag("abc"), &node), score(&tag("abc"), &node));
        assert_ne!(score(&tag("abc"), &node), score(&tag("abd"), &node));
        assert_eq!(
            [score(&tag("abc"), &node), score(&tag("abc"), &with_ip)],
            GOLDEN
        );
        // The bytes hashed, spelled out: another implementation can compute the same.
        let mut bytes = b"abc\xff10.0.0.1:".to_vec();
        bytes.extend_from_slice(&9440u16.to_be_bytes());
        bytes.extend_from_slice(&[10, 0, 0, 1]);
        assert_eq!(
            rapidhash::v3::rapidhash_v3_seeded(&bytes, &STICKY_SECRETS),
            GOLDEN[1]
        );
    }

    const GOLDEN: [u64; 2] = [11454609127007629386, 3673967767667756227];

    #[test]
    fn sticky_tags_spread_and_stay_on_their_address() {
        let pool = Fake::new(4);
        let tags: Vec<Tag> = (0..1000).map(|i| tag(&format!("t{i}"))).collect();
        let first: Vec<usize> = tags
            .iter()
            .map(|t| choose(&pool, Choose::Sticky(t)).unwrap())
            .collect();
        let mut per = [0usize; 4];
        for &i in &first {
            per[i] += 1;
        }
        // 250 expected each; rendezvous over a good hash stays well within this.
        assert!(per.iter().all(|&c| (180..=320).contains(&c)), "{per:?}");
        // Open connections do not move a tag.
        let busy = Fake::new(4).open(&[50, 0, 50, 0]);
        for (t, &f) in tags.iter().zip(&first) {
            assert_eq!(choose(&busy, Choose::Sticky(t)), Some(f));
        }
        // Ejecting an address moves exactly its tags, each to its next choice, and they come
        // back when it returns.
        let ejected = Fake::new(4).eject(2);
        for (t, &f) in tags.iter().zip(&first) {
            let now = choose(&ejected, Choose::Sticky(t)).unwrap();
            if f == 2 {
                assert_ne!(now, 2);
                assert_eq!(Some(now), choose(&Fake::new(4).tried(2), Choose::Sticky(t)));
            } else {
                assert_eq!(now, f);
            }
        }
    }

    #[test]
    fn removing_an_address_moves_only_its_tags() {
        let four = Fake::new(4);
        let mut three = Fake::new(4);
        three.hosts.remove(1);
        three.seen.remove(1);
        let mut moved = 0;
        for i in 0..1000 {
            let t = tag(&format!("s{i}"));
            let before = &four.hosts[choose(&four, Choose::Sticky(&t)).unwrap()];
            let after = &three.hosts[choose(&three, Choose::Sticky(&t)).unwrap()];
            if before == "a1" {
                moved += 1;
            } else {
                assert_eq!(before, after, "tag {i} moved although its address stayed");
            }
        }
        assert!(moved > 150, "{moved}");
    }
}
