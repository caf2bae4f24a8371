//! PROXY-out assembly: the header the upstream is sent (if the route wants one) and, for
//! passthrough, the client's first bytes after it, as one write.

use std::net::SocketAddr;

use ch_edge_wire::proxy_in::{canonical, ProxyHeader, PP2_TYPE_AWS};
use ch_edge_wire::proxy_out::{self, ProxyVersion, PP2_TYPE_AUTHORITY};
use tokio::net::TcpStream;

use crate::runtime::addrs::{ClientAddr, LocalAddr, PeerAddr};
use crate::runtime::pipeline::preamble::Preamble;

/// The address the client connected to, as the header out says it: the PROXY header's, else
/// ours (unused, and not looked up, without a header out).
pub fn destination(
    header: Option<&ProxyHeader>,
    version: ProxyVersion,
    stream: &TcpStream,
    bound: &SocketAddr,
    peer: PeerAddr,
) -> LocalAddr {
    let destination = match header.and_then(|h| h.destination) {
        Some(d) => d,
        None if version == ProxyVersion::Off => peer.0, // unused
        None => local_addr(stream, bound),
    };
    LocalAddr(canonical(destination))
}

/// The PROXY header for the upstream (if the route wants one) followed by
/// the buffered TLS bytes, as one write.
pub fn first_bytes(
    preamble: &Preamble,
    version: ProxyVersion,
    client: ClientAddr,
    destination: LocalAddr,
) -> Vec<u8> {
    let tls = preamble.tls_bytes();
    // Room for the longest header we write (v2 over IPv6 with a 255-byte SNI and the VPC
    // endpoint's TLV), so that neither it nor the hello reallocates.
    let mut out = Vec::with_capacity(tls.len() + 512);
    header(preamble, version, client, destination, &mut out);
    out.extend_from_slice(tls);
    out
}

/// The PROXY header for the upstream, if the route wants one: v2 carries the SNI and the
/// client's AWS VPC endpoint.
pub fn header(
    preamble: &Preamble,
    version: ProxyVersion,
    client: ClientAddr,
    destination: LocalAddr,
    out: &mut Vec<u8>,
) {
    let mut tlvs: Vec<(u8, &[u8])> = Vec::new();
    if version == ProxyVersion::V2 {
        if let Some(sni) = &preamble.hello.sni {
            tlvs.push((PP2_TYPE_AUTHORITY, sni.as_bytes()));
        }
        if let Some(h) = &preamble.header {
            tlvs.extend(
                h.tlvs
                    .iter()
                    .filter(|(kind, _)| *kind == PP2_TYPE_AWS)
                    .map(|(kind, value)| (*kind, value.as_slice())),
            );
        }
    }
    proxy_out::encode(version, client.0, destination.0, &tlvs, out);
}

/// The address the client connected to: the listener's own address unless
/// it is a wildcard bind (which saves a getsockname per connection).
fn local_addr(stream: &TcpStream, listener: &SocketAddr) -> SocketAddr {
    if listener.ip().is_unspecified() {
        stream.local_addr().unwrap_or(*listener)
    } else {
        *listener
    }
}
