//! PROXY protocol header sent to us (by the NLB): pure parsing and trust policy.
//!
//! The wire formats are parsed by `ppp`. This module adds what a connection loop needs on top:
//! an exact Incomplete / Absent / Invalid answer for every prefix of the input (so the caller
//! knows whether to read more), a size cap, strict TLV checks, IPv4-mapped normalisation and the
//! trust policy. The `ppp` quirks worked around here are listed in `tests.rs` (`ppp_quirk_*`).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use ppp::{v1, v2, PartialResult};

/// Largest header we accept. v1 is at most 107 bytes by spec; v2 from an AWS NLB carries a few small TLVs.
///
/// 16 fixed bytes + 2048 bytes of addresses and TLVs. An AWS NLB header is about 16 + 36 + 60
/// bytes (addresses, VPC endpoint id, CRC32C, padding); 2 KiB leaves room for the SSL/authority
/// TLVs other proxies add while staying far below the 64 KiB the length field allows, and below
/// the ClientHello buffer the caller holds anyway. A larger header is refused as soon as its
/// length field is read, so a peer cannot make us buffer more than this.
pub const MAX_HEADER_LEN: usize = 16 + 2048;

/// v1 limit from the spec: "PROXY UNKNOWN" + two full IPv6 + two ports + CRLF.
const V1_MAX_LEN: usize = 107;
/// `ppp::v1::PROTOCOL_PREFIX` plus its separator: what makes a v1 header unmistakable.
const V1_SIGNATURE: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = v2::PROTOCOL_PREFIX;
/// v2 signature, version/command, family/protocol and the 2-byte length.
const V2_FIXED_LEN: usize = 16;

/// AWS-specific TLV type (the VPC endpoint id is its subtype 0x01); forwarded upstream in v2.
pub const PP2_TYPE_AWS: u8 = 0xEA;
const PP2_SUBTYPE_AWS_VPCE_ID: u8 = 0x01;

/// Whether a listener reads a PROXY header from its peer (the NLB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyInMode {
    /// No header is read: a header then fails as "not TLS".
    #[default]
    Off,
    /// A header from a trusted peer is used; none means the peer is the client.
    Optional,
    /// Only trusted peers, and each must send a header.
    Required,
}

crate::keywords!(ProxyInMode {
    Off => "off",
    Optional => "optional",
    Required => "required",
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Bytes the header occupies at the start of the input.
    pub len: usize,
    /// 1 or 2.
    pub version: u8,
    /// Source/destination from the header; None for v2 LOCAL, v1 UNKNOWN, or v2 AF_UNSPEC/AF_UNIX.
    /// IPv4-mapped IPv6 addresses are normalised to IPv4.
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
    /// v2 LOCAL command (NLB health check).
    pub local: bool,
    /// All v2 TLVs in order, duplicates kept (type, value).
    pub tlvs: Vec<(u8, Vec<u8>)>,
}

impl ProxyHeader {
    /// AWS VPC endpoint id: TLV 0xEA with subtype 0x01, ASCII (e.g. "vpce-08d2bf15fac5001c9").
    pub fn aws_vpce_id(&self) -> Option<&str> {
        self.tlvs
            .iter()
            .find_map(|(kind, value)| match value.split_first() {
                Some((&PP2_SUBTYPE_AWS_VPCE_ID, id)) if *kind == PP2_TYPE_AWS && id.is_ascii() => {
                    std::str::from_utf8(id).ok()
                }
                _ => None,
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes needed (buffer is a prefix of a possible header).
    Incomplete,
    /// The input does not start with a PROXY signature ("PROXY " for v1, the 12-byte v2 signature).
    Absent,
    /// Starts like a PROXY header but is invalid, or exceeds MAX_HEADER_LEN; short reason.
    Invalid(&'static str),
    Header(ProxyHeader),
}

/// Which signature the buffer starts with, decided from as few bytes as possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signature {
    /// A proper prefix of one of the signatures (including the empty buffer).
    Prefix,
    Absent,
    V1,
    V2,
}

fn signature(buf: &[u8]) -> Signature {
    // The signatures differ in their first byte, so at most one of them can match.
    for (sig, kind) in [(V1_SIGNATURE, Signature::V1), (V2_SIGNATURE, Signature::V2)] {
        if buf.starts_with(sig) {
            return kind;
        }
        if sig.starts_with(buf) {
            return Signature::Prefix;
        }
    }
    Signature::Absent
}

/// Pure parse of the first bytes of a connection. Decide `Absent` from as few bytes as possible
/// (a TLS record starts with 0x16, so usually byte 0 decides).
pub fn parse(buf: &[u8]) -> Parsed {
    match signature(buf) {
        Signature::Prefix => Parsed::Incomplete,
        Signature::Absent => Parsed::Absent,
        Signature::V1 => parse_v1(buf),
        Signature::V2 => parse_v2(buf),
    }
}

/// `buf` starts with "PROXY ".
fn parse_v1(buf: &[u8]) -> Parsed {
    // Never hand ppp more than a header can span: it scans its whole input for the CR.
    let window = buf.get(..V1_MAX_LEN).unwrap_or(buf);
    let cr = window.iter().position(|&b| b == b'\r');
    let (text, _) = window.split_at(cr.unwrap_or(window.len()));
    // v1 is printable US-ASCII up to its CRLF; a TLS record, NUL or bare LF can never become valid.
    if !text.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Parsed::Invalid("v1 header is not printable ASCII");
    }
    let Some(cr) = cr else {
        // The CR can be at index 105 at the latest (105 + CRLF = 107 bytes).
        if buf.len() >= V1_MAX_LEN - 1 {
            return Parsed::Invalid("v1 header too long");
        }
        return v1_prefix(buf);
    };
    let end = cr + 2;
    if end > V1_MAX_LEN {
        return Parsed::Invalid("v1 header too long");
    }
    match buf.get(..end) {
        Some(line) => v1_line(line),
        None => {
            // The CR is the last byte so far and only LF may follow it: judge the completed line
            // now, so that e.g. "PROXY FOO\r" is refused without waiting.
            // Here buf.len() == cr + 1 < end <= V1_MAX_LEN.
            let mut line = [b'\n'; V1_MAX_LEN];
            match line.get_mut(..buf.len()) {
                Some(head) => head.copy_from_slice(buf),
                None => return Parsed::Invalid("v1 header too long"),
            }
            match line.get(..end).map(v1_line) {
                Some(Parsed::Header(_)) => Parsed::Incomplete,
                Some(other) => other,
                None => Parsed::Invalid("v1 header too long"),
            }
        }
    }
}

/// A v1 buffer without CR, shorter than the longest header: is it still a possible prefix?
fn v1_prefix(buf: &[u8]) -> Parsed {
    match v1::Header::try_from(buf) {
        // ppp accepts a bare LF as the line end (quirk); we already refused any LF above.
        Ok(_) => Parsed::Invalid("v1 header without CRLF"),
        // ppp classifies its own errors: missing parts / missing newline mean "read more".
        Err(e) if e.is_incomplete() => Parsed::Incomplete,
        // Quirk: ppp parses the destination port before it sees the CRLF, so a buffer ending in
        // "… 56324 " (the port not yet arrived) is reported as an invalid, empty port.
        Err(v1::BinaryParseError::Parse(v1::ParseError::InvalidDestinationPort(Some(e))))
            if *e.kind() == std::num::IntErrorKind::Empty && buf.ends_with(b" ") =>
        {
            Parsed::Incomplete
        }
        Err(_) => Parsed::Invalid("malformed v1 header"),
    }
}

/// A complete v1 line: everything up to and including the first CR and the byte after it.
fn v1_line(line: &[u8]) -> Parsed {
    let header = match v1::Header::try_from(line) {
        Ok(header) => header,
        // Quirk: ppp rejects UNKNOWN followed by more than four words; the spec says the receiver
        // ignores everything after UNKNOWN up to the CRLF.
        Err(_) if is_v1_unknown(line) => return Parsed::Header(v1_header(line.len(), None)),
        Err(_) => return Parsed::Invalid("malformed v1 header"),
    };
    let (source, destination) = match header.addresses {
        v1::Addresses::Unknown => return Parsed::Header(v1_header(line.len(), None)),
        v1::Addresses::Tcp4(a) => (
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        ),
        v1::Addresses::Tcp6(a) => (
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        ),
    };
    // Quirk: ports go through u16::from_str, which accepts a leading '+'; the spec does not.
    if line.contains(&b'+') {
        return Parsed::Invalid("malformed v1 header");
    }
    Parsed::Header(v1_header(
        line.len(),
        Some((canonical(source), canonical(destination))),
    ))
}

fn is_v1_unknown(line: &[u8]) -> bool {
    match line.strip_prefix(b"PROXY UNKNOWN") {
        Some(rest) => rest == b"\r\n" || (rest.starts_with(b" ") && rest.ends_with(b"\r\n")),
        None => false,
    }
}

fn v1_header(len: usize, addresses: Option<(SocketAddr, SocketAddr)>) -> ProxyHeader {
    ProxyHeader {
        len,
        version: 1,
        source: addresses.map(|a| a.0),
        destination: addresses.map(|a| a.1),
        local: false,
        tlvs: Vec::new(),
    }
}

/// `buf` starts with the 12-byte v2 signature.
fn parse_v2(buf: &[u8]) -> Parsed {
    use v2::ParseError as E;
    let header = match v2::Header::try_from(buf) {
        Ok(header) => header,
        // Decided from the length field alone, before any of the body is buffered.
        Err(E::Partial(_, length)) if V2_FIXED_LEN + length > MAX_HEADER_LEN => {
            return Parsed::Invalid("v2 header too long")
        }
        Err(e) if e.is_incomplete() => return Parsed::Incomplete,
        Err(E::Version(_)) => return Parsed::Invalid("v2 bad version"),
        Err(E::Command(_)) => return Parsed::Invalid("v2 bad command"),
        Err(E::AddressFamily(_)) => return Parsed::Invalid("v2 bad address family"),
        Err(E::Protocol(_)) => return Parsed::Invalid("v2 bad transport protocol"),
        Err(_) => return Parsed::Invalid("malformed v2 header"),
    };
    let len = header.len();
    if len > MAX_HEADER_LEN {
        return Parsed::Invalid("v2 header too long");
    }
    // Quirk: for AF_UNSPEC ppp counts the whole body as address bytes, hiding the TLVs.
    let tlv_bytes = match header.address_family() {
        v2::AddressFamily::Unspecified => header.address_bytes(),
        _ => header.tlv_bytes(),
    };
    let tlvs =
        v2::TypeLengthValues::from(tlv_bytes).map(|tlv| tlv.map(|t| (t.kind, t.value.to_vec())));
    if header.command == v2::Command::Local {
        // The spec has the receiver discard a LOCAL block, so a health check never fails on its
        // contents; keep whatever TLVs are well formed.
        return Parsed::Header(ProxyHeader {
            len,
            version: 2,
            source: None,
            destination: None,
            local: true,
            tlvs: tlvs.map_while(Result::ok).collect(),
        });
    }
    let Ok(tlvs) = tlvs.collect::<Result<Vec<_>, _>>() else {
        return Parsed::Invalid("malformed v2 TLV");
    };
    let addresses = match (header.protocol, header.addresses) {
        // We only listen on TCP: a datagram header cannot describe this connection.
        (v2::Protocol::Datagram, _) => return Parsed::Invalid("v2 datagram header"),
        (v2::Protocol::Stream, v2::Addresses::IPv4(a)) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        (v2::Protocol::Stream, v2::Addresses::IPv6(a)) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        // AF_UNSPEC, AF_UNIX or an unspecified transport: no usable address, the caller keeps
        // the socket peer (as the spec allows).
        _ => None,
    };
    Parsed::Header(ProxyHeader {
        len,
        version: 2,
        source: addresses.map(|a| canonical(a.0)),
        destination: addresses.map(|a| canonical(a.1)),
        local: false,
        tlvs,
    })
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4 peers) becomes plain
/// IPv4: the one form client addresses take in headers, allowlists and logs.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// What the connection does next, from the listener's policy, whether the socket peer is trusted, and the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Incomplete,
    /// No header: the client is the socket peer; TLS starts at byte 0.
    NoHeader,
    /// Use this header (its `len` bytes are consumed). Caller closes quietly when `header.local` (health check),
    /// and uses the socket peer when `header.source` is None (v1 UNKNOWN).
    Header(ProxyHeader),
    /// Close the connection; the reason becomes the log/metric outcome.
    Refuse(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A PROXY signature from a peer outside `trusted`: the sign of a load balancer that
    /// preserves client addresses, or of `trusted` not covering it.
    UntrustedPeer,
    /// Mode `required`, a peer outside `trusted` and no header: a direct connection that
    /// bypassed the load balancer.
    UntrustedDirect,
    /// Required but absent.
    Missing,
    Invalid(&'static str),
}

/// Policy: Off → always NoHeader without looking (a header then fails as non-TLS later).
/// Required → untrusted peer: refused as soon as the first bytes say whether a header was sent
///            (UntrustedPeer if so, UntrustedDirect if not: telling them apart is what makes a
///            misconfigured load balancer visible); trusted: header must be present.
/// Optional → header present: trusted peer uses it, untrusted peer is refused (else anyone could forge their address past an allowlist);
///            absent → NoHeader.
pub fn decide(mode: ProxyInMode, peer_trusted: bool, buf: &[u8]) -> Decision {
    match (mode, peer_trusted) {
        (ProxyInMode::Off, _) => Decision::NoHeader,
        // An untrusted peer is refused once the signature is complete, valid header or not,
        // so there is no point buffering the rest of it.
        (ProxyInMode::Optional | ProxyInMode::Required, false) => match signature(buf) {
            Signature::Prefix => Decision::Incomplete,
            Signature::Absent if mode == ProxyInMode::Required => {
                Decision::Refuse(Refusal::UntrustedDirect)
            }
            Signature::Absent => Decision::NoHeader,
            Signature::V1 | Signature::V2 => Decision::Refuse(Refusal::UntrustedPeer),
        },
        (ProxyInMode::Required | ProxyInMode::Optional, true) => match parse(buf) {
            Parsed::Incomplete => Decision::Incomplete,
            Parsed::Absent if mode == ProxyInMode::Required => Decision::Refuse(Refusal::Missing),
            Parsed::Absent => Decision::NoHeader,
            Parsed::Invalid(reason) => Decision::Refuse(Refusal::Invalid(reason)),
            Parsed::Header(header) => Decision::Header(header),
        },
    }
}

/// A listener's PROXY-in policy: its mode and the peers (load balancers) allowed to send a
/// header. `trusted` is empty only when `mode` is `Off`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub mode: ProxyInMode,
    pub trusted: Vec<IpNet>,
}

impl Policy {
    /// Whether `peer` may send us a header.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        is_trusted(&self.trusted, peer)
    }
}

/// Whether `peer` may send us a header. IPv4-mapped IPv6 peers (dual-stack sockets) match IPv4 ranges.
pub fn is_trusted(trusted: &[IpNet], peer: IpAddr) -> bool {
    let canonical = peer.to_canonical();
    trusted
        .iter()
        .any(|net| net.contains(&canonical) || net.contains(&peer))
}

#[cfg(test)]
mod tests;
