//! PROXY protocol header we send to upstreams.
//!
//! Encoding is `ppp`'s (`v1::Addresses` Display, `v2::Builder`); this module picks one address
//! family for both ends and keeps v2 within its 64 KiB length field.

use std::io::Write as _;
use std::net::{SocketAddr, SocketAddrV6};

use ppp::{v1, v2};

use crate::proxy_in::canonical;

/// Type + 2-byte length in front of every v2 TLV value.
const TLV_HEADER_LEN: usize = 3;

/// v2 TLV type carrying the host name the client asked for (we send the SNI).
pub const PP2_TYPE_AUTHORITY: u8 = 0x02;

/// The PROXY header sent to an upstream. ClickHouse reads v1 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyVersion {
    #[default]
    Off,
    V1,
    V2,
}

crate::keywords!(ProxyVersion {
    Off => "off",
    V1 => "v1",
    V2 => "v2",
});

/// Appends a PROXY header for `version` to `out` (nothing for Off). `source` = real client, `destination` = the address the client connected to.
/// IPv4-mapped IPv6 addresses are normalised; mixed families are written as TCP6 with IPv4 mapped (v1 needs one family).
/// v2 uses command PROXY, STREAM, and carries `tlvs` (e.g. the client's AWS VPCE TLV and an authority TLV 0x02 = SNI); v1 ignores tlvs.
///
/// TLVs that would push the v2 body past 65535 bytes are left out (never the case for the small
/// TLVs we forward); the header itself is always written.
pub fn encode(
    version: ProxyVersion,
    source: SocketAddr,
    destination: SocketAddr,
    tlvs: &[(u8, &[u8])],
    out: &mut Vec<u8>,
) {
    let (source, destination) = one_family(source, destination);
    match version {
        ProxyVersion::Off => {}
        ProxyVersion::V1 => {
            // Display gives the exact spec line, e.g. "PROXY TCP4 192.0.2.1 10.0.0.5 56324 9440\r\n".
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{}", v1::Addresses::from((source, destination)));
        }
        ProxyVersion::V2 => encode_v2(v2::Addresses::from((source, destination)), tlvs, out),
    }
}

fn encode_v2(addresses: v2::Addresses, tlvs: &[(u8, &[u8])], out: &mut Vec<u8>) {
    let budget = usize::from(u16::MAX) - addresses.len();
    let total: usize = tlvs.iter().map(|(_, v)| TLV_HEADER_LEN + v.len()).sum();
    let built = if total <= budget {
        build_v2(addresses, tlvs, total)
    } else {
        let mut used = 0;
        let kept: Vec<(u8, &[u8])> = tlvs
            .iter()
            .filter(|(_, v)| {
                let fits = used + TLV_HEADER_LEN + v.len() <= budget;
                if fits {
                    used += TLV_HEADER_LEN + v.len();
                }
                fits
            })
            .copied()
            .collect();
        build_v2(addresses, &kept, used)
    };
    match built {
        // The caller's buffer is empty with no room reserved: take ppp's allocation as is.
        Some(bytes) if out.is_empty() && out.capacity() < bytes.len() => *out = bytes,
        Some(bytes) => out.extend_from_slice(&bytes),
        // Unreachable: the body was kept within the length field, the only error ppp reports.
        None => {}
    }
}

fn build_v2(addresses: v2::Addresses, tlvs: &[(u8, &[u8])], tlv_len: usize) -> Option<Vec<u8>> {
    v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        addresses,
    )
    .reserve_capacity(tlv_len)
    .write_payloads(tlvs)
    .and_then(v2::Builder::build)
    .ok()
}

/// Normalise IPv4-mapped addresses, then map IPv4 into IPv6 if the two ends still differ.
fn one_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (source, destination) = (canonical(source), canonical(destination));
    if source.is_ipv4() == destination.is_ipv4() {
        (source, destination)
    } else {
        (as_v6(source), as_v6(destination))
    }
}

fn as_v6(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        v6 => v6,
    }
}

#[cfg(test)]
mod tests;
