use super::*;
use crate::proxy_in::{parse, Parsed, ProxyHeader};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn encoded(version: ProxyVersion, src: &str, dst: &str, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(version, sa(src), sa(dst), tlvs, &mut out);
    out
}

#[test]
fn v1_is_byte_exact() {
    let tlvs: &[(u8, &[u8])] = &[(0x02, b"ignored.example.com")];
    assert_eq!(
        encoded(ProxyVersion::V1, "192.0.2.1:56324", "10.0.0.5:9440", tlvs),
        b"PROXY TCP4 192.0.2.1 10.0.0.5 56324 9440\r\n"
    );
    assert_eq!(
        encoded(
            ProxyVersion::V1,
            "[2001:db8::1]:1",
            "[2001:DB8:0:0:0:0:0:FF]:8443",
            &[]
        ),
        b"PROXY TCP6 2001:db8::1 2001:db8::ff 1 8443\r\n"
    );
    assert_eq!(
        encoded(
            ProxyVersion::V1,
            "[::ffff:192.0.2.1]:0",
            "[::ffff:10.0.0.5]:65535",
            &[]
        ),
        b"PROXY TCP4 192.0.2.1 10.0.0.5 0 65535\r\n",
        "mapped addresses are written as IPv4"
    );
    assert_eq!(
        encoded(ProxyVersion::V1, "192.0.2.1:5", "[2001:db8::1]:9440", &[]),
        b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::1 5 9440\r\n",
        "mixed families are written as TCP6"
    );
}

#[test]
fn v2_layout() {
    let tlvs: &[(u8, &[u8])] = &[(0x02, b"a.example"), (0xEA, b"\x01vpce-1")];
    let out = encoded(ProxyVersion::V2, "192.0.2.1:56324", "10.0.0.5:9440", tlvs);
    let mut expected = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    expected.extend([0x21, 0x11, 0x00, 12 + 12 + 10]); // PROXY, TCP over IPv4, body length
    expected.extend([192, 0, 2, 1, 10, 0, 0, 5, 0xdc, 0x04, 0x24, 0xe0]);
    expected.extend([0x02, 0x00, 0x09]);
    expected.extend(b"a.example");
    expected.extend([0xEA, 0x00, 0x07]);
    expected.extend(b"\x01vpce-1");
    assert_eq!(out, expected);

    let mixed = encoded(ProxyVersion::V2, "[2001:db8::1]:1", "10.0.0.5:2", &[]);
    assert_eq!(&mixed[12..16], &[0x21, 0x21, 0x00, 36], "TCP over IPv6");
    assert_eq!(
        &mixed[32..48],
        &Ipv4Addr::new(10, 0, 0, 5).to_ipv6_mapped().octets()
    );
}

#[test]
fn off_writes_nothing_and_output_is_appended() {
    let mut out = b"keep".to_vec();
    encode(
        ProxyVersion::Off,
        sa("1.2.3.4:1"),
        sa("5.6.7.8:2"),
        &[],
        &mut out,
    );
    assert_eq!(out, b"keep");
    encode(
        ProxyVersion::V1,
        sa("1.2.3.4:1"),
        sa("5.6.7.8:2"),
        &[],
        &mut out,
    );
    assert_eq!(out, b"keepPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    let v2_alone = encoded(ProxyVersion::V2, "1.2.3.4:1", "5.6.7.8:2", &[]);
    encode(
        ProxyVersion::V2,
        sa("1.2.3.4:1"),
        sa("5.6.7.8:2"),
        &[],
        &mut out,
    );
    assert_eq!(
        out[b"keepPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".len()..],
        v2_alone[..]
    );
}

#[test]
fn v2_tlvs_beyond_the_length_field_are_dropped() {
    let big = vec![0u8; 40_000];
    let tlvs: &[(u8, &[u8])] = &[(0x04, &big), (0x04, &big), (0x02, b"kept")];
    let out = encoded(ProxyVersion::V2, "1.2.3.4:1", "5.6.7.8:2", tlvs);
    // First 40 000-byte TLV fits, the second would overflow 65535, the small one after still fits.
    assert_eq!(out.len(), 16 + 12 + 3 + 40_000 + 3 + 4);
    assert_eq!(
        &out[14..16],
        &u16::try_from(12 + 3 + 40_000 + 3 + 4)
            .unwrap()
            .to_be_bytes()
    );
    assert_eq!(&out[out.len() - 7..], b"\x02\x00\x04kept");
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        // IPv4-mapped IPv6, so normalisation is exercised often.
        any::<[u8; 4]>().prop_map(|o| IpAddr::V6(Ipv4Addr::from(o).to_ipv6_mapped())),
    ]
}

fn any_addr() -> impl Strategy<Value = SocketAddr> {
    (any_ip(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

fn any_tlvs() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    // Few and small types so duplicates are common; 8 × (3 + 64) + 36 stays under MAX_HEADER_LEN.
    let tlv = (0u8..6, proptest::collection::vec(any::<u8>(), 0..64));
    proptest::collection::vec(tlv, 0..8)
}

proptest! {
    #[test]
    fn round_trip_through_parse(
        src in any_addr(),
        dst in any_addr(),
        tlvs in any_tlvs(),
        v2 in any::<bool>(),
    ) {
        let borrowed: Vec<(u8, &[u8])> = tlvs.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let version = if v2 { ProxyVersion::V2 } else { ProxyVersion::V1 };
        let mut out = Vec::new();
        encode(version, src, dst, &borrowed, &mut out);
        let expected = ProxyHeader {
            len: out.len(),
            version: if v2 { 2 } else { 1 },
            source: Some(canonical(src)),
            destination: Some(canonical(dst)),
            local: false,
            tlvs: if v2 { tlvs } else { vec![] },
        };
        // Every proper prefix must be Incomplete, trailing bytes must not matter.
        for i in 0..out.len() {
            prop_assert_eq!(parse(&out[..i]), Parsed::Incomplete, "prefix {}", i);
        }
        out.extend([0x16, 0x03, 0x01, b'\r', b'\n']);
        prop_assert_eq!(parse(&out), Parsed::Header(expected));
    }
}
