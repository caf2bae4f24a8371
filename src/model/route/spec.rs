//! Routes as configured, before compilation: what configuration, CHI derivation and discovery
//! produce and the table builder takes.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use ch_edge_wire::proxy_out::ProxyVersion;
use ch_edge_wire::sni::{check_name, PatternError};
use ipnet::IpNet;

use super::balance::Balance;
use super::tls::{TlsMode, UpstreamTls};

/// One route as configured.
///
/// Every part is shared (`Arc`): the table's routes share the strings (a name with its first
/// pattern, a file's routes one source), so 100k routes are not 100k copies of each and
/// building a route allocates no strings; and a spec read again from an unchanged entry of an
/// edited file is the earlier spec, cloned without allocating (comparing the same parts is
/// then a pointer comparison).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// `name`, else the first SNI pattern.
    pub name: Arc<str>,
    /// Normalised patterns: lower-case, no trailing dot; `name`, `*.suffix` or `*`.
    pub sni: Arc<[Arc<str>]>,
    pub upstreams: Arc<[UpstreamAddr]>,
    /// `None`: use `defaults.allow`.
    pub allow: Option<Arc<[IpNet]>>,
    /// `None`: use `defaults.proxy_protocol`.
    pub proxy_protocol: Option<ProxyVersion>,
    /// `None`: use `defaults.balance`.
    pub balance: Option<Balance>,
    /// `None`: use `defaults.sticky`.
    pub sticky: Option<bool>,
    /// `tls`, `upstream_tls` and `alpn`, when any is written (`None`: all from `defaults`).
    pub tls: Option<Arc<RouteTls>>,
    /// `postgres_direct_ssl` and `postgres_port`, when either is written (`None`: neither).
    pub postgres: Option<RoutePostgres>,
    /// Where the route came from: a file's path, or `kubernetes:<ns>/<chi>`.
    pub source: Arc<str>,
}

/// A route's TLS settings as written; what is left out comes from `defaults`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteTls {
    /// `None`: `defaults.tls`.
    pub mode: Option<TlsMode>,
    /// `None`: verify against `defaults.upstream_tls.ca` (else the system's roots) for the
    /// upstream host's name.
    pub upstream: Option<UpstreamTls>,
    /// Protocols the route accepts from a client's ALPN offer, in the server's order of
    /// preference; `None`: none is negotiated.
    pub alpn: Option<Arc<[Arc<str>]>>,
}

/// A route's settings for clients of a `postgres` listener, as written (the default when the
/// route writes none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct RoutePostgres {
    /// `postgres_direct_ssl`: the upstream accepts direct SSL (PostgreSQL 17+), so a client that
    /// starts TLS at once on a `postgres` listener is passed through to it as it came.
    pub direct_ssl: bool,
    /// `postgres_port`: the upstreams' PostgreSQL port, for upstreams written without a port on
    /// a `postgres` listener (`None`: the listener's `upstream_port`, 9005 by default). A CHI's
    /// `postgresql_port`, a ClickHouseCluster's `additionalPorts` entry named `postgres`.
    pub port: Option<u16>,
}

/// An upstream as written: `host`, `host:port`, `1.2.3.4:9440`, `[::1]:9440`, `[::1]` or `::1`,
/// optionally followed by ` weight=N` (as nginx writes `server host weight=N`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamAddr {
    /// DNS name or IP literal (IPv6 without brackets).
    pub host: Arc<str>,
    /// `None`: the listener's `upstream_port`.
    pub port: Option<u16>,
    /// Its share of the route's connections relative to the other upstreams (each address it
    /// resolves to carries it, as in nginx); 0: never chosen. [`DEFAULT_WEIGHT`] unless written.
    pub weight: u32,
    /// A placeholder for a Gateway API backendRef that is invalid (`Some`: the access log's
    /// detail): never resolved nor connected to, its weight is its share of connections
    /// refused (the spec's rule; the valid refs keep theirs). Never read from a file.
    pub refused: Option<&'static str>,
}

/// An upstream's weight when none is written (Gateway API's default too).
pub const DEFAULT_WEIGHT: u32 = 1;

/// The largest weight (Gateway API's bound on a backendRef's `weight`).
pub const MAX_WEIGHT: u32 = 1_000_000;

/// What follows the address to give its weight: `host:port weight=3`.
const WEIGHT_PREFIX: &str = " weight=";

/// Why a text is not an upstream address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamAddrError {
    #[error("an upstream is host[:port], not a URL: drop `{scheme}://`")]
    Url { scheme: String },
    #[error("missing ']'")]
    MissingBracket,
    #[error("{ip:?} is not an IPv6 address")]
    NotIpv6 { ip: String },
    #[error("expected ':port' after ']'")]
    NoPortAfterBracket,
    #[error("write an IPv6 address with a port as [addr]:port")]
    Ipv6PortWithoutBrackets,
    #[error("host {host:?}: {error}")]
    Host { host: String, error: PatternError },
    #[error("{host:?} is not a valid IPv4 address")]
    NotIpv4 { host: String },
    #[error("invalid port {port:?} (1-65535)")]
    Port { port: String },
    #[error(
        "invalid weight {weight:?} (an integer 0-1000000, after one space: `host:port weight=3`)"
    )]
    Weight { weight: String },
}

impl FromStr for UpstreamAddr {
    type Err = UpstreamAddrError;

    fn from_str(s: &str) -> Result<Self, UpstreamAddrError> {
        // `http://host:8123` is the likeliest slip (ClickHouse is reached by URL elsewhere).
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(UpstreamAddrError::Url {
                scheme: scheme.into(),
            });
        }
        let (s, weight) = match s.split_once(WEIGHT_PREFIX) {
            None => (s, DEFAULT_WEIGHT),
            Some((addr, w)) => (addr, parse_weight(w)?),
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (ip, after) = rest
                .split_once(']')
                .ok_or(UpstreamAddrError::MissingBracket)?;
            ip.parse::<Ipv6Addr>()
                .map_err(|_| UpstreamAddrError::NotIpv6 { ip: ip.into() })?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or(UpstreamAddrError::NoPortAfterBracket)?,
                ),
            };
            (ip, port)
        } else if s.bytes().filter(|&b| b == b':').count() >= 2 && s.parse::<Ipv6Addr>().is_ok() {
            (s, None)
        } else {
            match s.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(UpstreamAddrError::Ipv6PortWithoutBrackets)
                }
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        if !host.contains(':') {
            check_host(host)?;
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(UpstreamAddrError::Port { port: p.into() }),
            },
        };
        Ok(UpstreamAddr {
            refused: None,
            host: host.into(),
            port,
            weight,
        })
    }
}

fn parse_weight(w: &str) -> Result<u32, UpstreamAddrError> {
    match w.parse::<u32>() {
        Ok(n) if n <= MAX_WEIGHT && w.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(UpstreamAddrError::Weight { weight: w.into() }),
    }
}

impl UpstreamAddr {
    /// Whether reading `s` gives this address ([`FromStr`]), checked without allocating: `s`
    /// is this address as [`Display`](fmt::Display) writes it, up to how the port is written.
    pub fn is_written_as(&self, s: &str) -> bool {
        let (s, weight) = match s.split_once(WEIGHT_PREFIX) {
            None => (s, Ok(DEFAULT_WEIGHT)),
            Some((addr, w)) => (addr, parse_weight(w)),
        };
        if weight != Ok(self.weight) || self.refused.is_some() {
            return false;
        }
        let host = &*self.host;
        let Some(port) = self.port else {
            return s == host;
        };
        let rest = if host.contains(':') {
            s.strip_prefix('[')
                .and_then(|r| r.strip_prefix(host))
                .and_then(|r| r.strip_prefix("]:"))
        } else {
            s.strip_prefix(host).and_then(|r| r.strip_prefix(':'))
        };
        rest.is_some_and(|p| !p.contains(':') && p.parse::<u16>() == Ok(port))
    }
}

/// The form [`FromStr`] reads: IPv6 with a port in brackets, the weight only when it is not
/// the default.
impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port, self.host.contains(':')) {
            (None, _) => f.write_str(&self.host)?,
            (Some(p), true) => write!(f, "[{}]:{p}", self.host)?,
            (Some(p), false) => write!(f, "{}:{p}", self.host)?,
        }
        if self.weight != DEFAULT_WEIGHT {
            write!(f, "{WEIGHT_PREFIX}{}", self.weight)?;
        }
        Ok(())
    }
}

impl UpstreamAddr {
    /// `host` (and `port`) with the default weight.
    pub fn new(host: impl Into<Arc<str>>, port: Option<u16>) -> UpstreamAddr {
        UpstreamAddr {
            host: host.into(),
            port,
            weight: DEFAULT_WEIGHT,
            refused: None,
        }
    }
}

/// A DNS name (one trailing dot allowed) or an IPv4 literal.
fn check_host(host: &str) -> Result<(), UpstreamAddrError> {
    let name = host.strip_suffix('.').unwrap_or(host);
    check_name(name).map_err(|error| UpstreamAddrError::Host {
        host: host.into(),
        error,
    })?;
    // A name whose last label is numeric can only be an IPv4 address.
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.bytes().all(|b| b.is_ascii_digit()) && name.parse::<Ipv4Addr>().is_err() {
        return Err(UpstreamAddrError::NotIpv4 { host: host.into() });
    }
    Ok(())
}

/// What routes without their own setting use (`defaults:` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub allow: Vec<IpNet>,
    pub proxy_protocol: ProxyVersion,
    pub balance: Balance,
    /// Whether `<tag>.sticky.<name>` pins `<tag>` to one address of `<name>`'s route.
    pub sticky: bool,
    pub tls: TlsMode,
    /// `defaults.upstream_tls.ca`: the CA file `reencrypt` routes trust unless they name one.
    pub upstream_ca: Option<Arc<std::path::Path>>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            allow: vec![IpNet::V4(Default::default()), IpNet::V6(Default::default())],
            proxy_protocol: ProxyVersion::Off,
            balance: Balance::default(),
            sticky: true,
            tls: TlsMode::Passthrough,
            upstream_ca: None,
        }
    }
}

/// Route specs in order, shared per group (inline routes, then each included file's): a reload
/// takes an unchanged file's specs as one `Arc` instead of copying each spec, and the table
/// builder recognises the same `Arc` to reuse the routes it built from it.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    groups: Vec<Arc<[RouteSpec]>>,
    len: usize,
}

impl Routes {
    /// Appends one group (kept shared, not copied).
    pub fn push_group(&mut self, group: Arc<[RouteSpec]>) {
        self.len += group.len();
        self.groups.push(group);
    }

    /// The groups as added (empty ones included).
    pub fn groups(&self) -> &[Arc<[RouteSpec]>] {
        &self.groups
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &RouteSpec> + '_ {
        self.groups.iter().flat_map(|g| g.iter())
    }

    pub fn get(&self, mut i: usize) -> Option<&RouteSpec> {
        for g in &self.groups {
            match g.get(i) {
                Some(s) => return Some(s),
                None => i -= g.len(),
            }
        }
        None
    }

    /// A copy as one list.
    pub fn to_vec(&self) -> Vec<RouteSpec> {
        self.iter().cloned().collect()
    }
}

impl From<Vec<RouteSpec>> for Routes {
    fn from(specs: Vec<RouteSpec>) -> Routes {
        let mut r = Routes::default();
        r.push_group(specs.into());
        r
    }
}

impl<'a> IntoIterator for &'a Routes {
    type Item = &'a RouteSpec;
    type IntoIter = Box<dyn Iterator<Item = &'a RouteSpec> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Panics when out of range, like a slice (tests and tools index; the proxy iterates).
impl std::ops::Index<usize> for Routes {
    type Output = RouteSpec;

    fn index(&self, i: usize) -> &RouteSpec {
        match self.get(i) {
            Some(s) => s,
            None => panic!("route index {i} out of range ({} routes)", self.len),
        }
    }
}

impl PartialEq for Routes {
    fn eq(&self, other: &Routes) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Routes {}

impl PartialEq<Vec<RouteSpec>> for Routes {
    fn eq(&self, other: &Vec<RouteSpec>) -> bool {
        self.len == other.len() && self.iter().eq(other.iter())
    }
}

/// Route specs as the table builder takes them: one or more slices, each with the `Arc` that
/// shares it, if any (only shared groups are reused by [`super::RouteTable::build_reusing`]).
pub trait RouteSpecs {
    fn spec_groups(&self) -> impl Iterator<Item = SpecGroup<'_>>;
}

/// One slice of specs and the `Arc` it is shared by, if any.
pub type SpecGroup<'a> = (&'a [RouteSpec], Option<&'a Arc<[RouteSpec]>>);

impl RouteSpecs for [RouteSpec] {
    fn spec_groups(&self) -> impl Iterator<Item = SpecGroup<'_>> {
        std::iter::once((self, None))
    }
}

impl RouteSpecs for Vec<RouteSpec> {
    fn spec_groups(&self) -> impl Iterator<Item = SpecGroup<'_>> {
        std::iter::once((self.as_slice(), None))
    }
}

impl<const N: usize> RouteSpecs for [RouteSpec; N] {
    fn spec_groups(&self) -> impl Iterator<Item = SpecGroup<'_>> {
        std::iter::once((self.as_slice(), None))
    }
}

impl RouteSpecs for Routes {
    fn spec_groups(&self) -> impl Iterator<Item = SpecGroup<'_>> {
        self.groups().iter().map(|g| (&**g, Some(g)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(s: &str) -> Result<UpstreamAddr, UpstreamAddrError> {
        s.parse()
    }

    #[test]
    fn weights_read_and_show_one_way() {
        for (text, host, port, weight) in [
            ("a weight=3", "a", None, 3),
            ("a:9440 weight=0", "a", Some(9440), 0),
            ("[::1]:9440 weight=1000000", "::1", Some(9440), MAX_WEIGHT),
            ("10.0.0.1 weight=7", "10.0.0.1", None, 7),
        ] {
            let u = up(text).unwrap();
            assert_eq!((&*u.host, u.port, u.weight), (host, port, weight), "{text}");
            assert_eq!(u.to_string(), text);
            assert!(u.is_written_as(text), "{text}");
        }
        // The default weight is not written, and written it is the same upstream.
        let one = up("a:1 weight=1").unwrap();
        assert_eq!(
            (one.to_string(), one.weight),
            ("a:1".to_owned(), DEFAULT_WEIGHT)
        );
        assert!(one.is_written_as("a:1") && one.is_written_as("a:1 weight=1"));
        assert!(!one.is_written_as("a:1 weight=2"));
        assert!(!up("a:1 weight=2").unwrap().is_written_as("a:1"));
    }

    #[test]
    fn upstreams_read_and_show_one_way() {
        for (text, host, port) in [
            ("svc.ns.svc.cluster.local", "svc.ns.svc.cluster.local", None),
            ("svc:9000", "svc", Some(9000)),
            ("10.0.0.1:9440", "10.0.0.1", Some(9440)),
            ("[::1]:9440", "::1", Some(9440)),
            ("[2001:db8::1]", "2001:db8::1", None),
            ("2001:db8::1", "2001:db8::1", None),
        ] {
            let u = up(text).unwrap();
            assert_eq!((&*u.host, u.port), (host, port), "{text}");
            assert!(u.is_written_as(&u.to_string()), "{text}");
            assert_eq!(up(&u.to_string()), Ok(u), "{text}");
        }
        assert_eq!(up("[::1]:9440").unwrap().to_string(), "[::1]:9440");
        for bad in [
            "",
            "a:0",
            "a:70000",
            "[::1",
            "1.2.3.999",
            "a b",
            "a weight=",
            "a weight=-1",
            "a weight=+1",
            "a weight=1000001",
            "a  weight=1",
            "a weight=1 weight=2",
        ] {
            assert!(up(bad).is_err(), "{bad}");
        }
        // Not the same address, though the text is close: read it in full.
        let v6 = up("[::1]:9440").unwrap();
        let v4 = up("a:9440").unwrap();
        for (u, other) in [
            (&v6, "::1:9440"),
            (&v6, "[::1]"),
            (&v6, "::1"),
            (&v4, "a:9441"),
            (&v4, "a"),
            (&v4, "ab:9440"),
            (&v4, "a:9440:1"),
        ] {
            assert!(!u.is_written_as(other), "{u} as {other}");
            assert_ne!(up(other).ok().as_ref(), Some(u), "{other}");
        }
    }
}
