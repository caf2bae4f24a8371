use super::ProxyInMode::{Off, Optional, Required};
use super::*;
use proptest::prelude::*;
use std::net::Ipv6Addr;

/// Start of a TLS ClientHello record, as follows a header on the wire.
const TLS: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x0d, 0x0a,
];

const VPCE: &[u8] = b"vpce-08d2bf15fac5001c9";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn v2_sig(ver_cmd: u8, fam_proto: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend([ver_cmd, fam_proto]);
    h.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
    h.extend(body);
    h
}

fn v2_proxy(src: &str, dst: &str, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        (sa(src), sa(dst)),
    )
    .write_payloads(tlvs)
    .unwrap()
    .build()
    .unwrap()
}

fn aws_tlvs() -> Vec<(u8, Vec<u8>)> {
    let mut vpce = vec![0x01];
    vpce.extend(VPCE);
    vec![
        (0x03, vec![0x5b, 0x1e, 0x77, 0x0a]), // CRC32C
        (0xEA, vpce),
        (0x04, vec![0; 7]), // NOOP padding
    ]
}

fn header(len: usize, version: u8, addrs: Option<(&str, &str)>) -> ProxyHeader {
    ProxyHeader {
        len,
        version,
        source: addrs.map(|a| sa(a.0)),
        destination: addrs.map(|a| sa(a.1)),
        local: false,
        tlvs: vec![],
    }
}

/// (name, header bytes, expected header) for real headers.
fn fixtures() -> Vec<(&'static str, Vec<u8>, ProxyHeader)> {
    let mut out = vec![];
    let mut v1 = |name, text: &str, addrs| {
        out.push((name, text.as_bytes().to_vec(), header(text.len(), 1, addrs)));
    };
    v1(
        "v1 tcp4",
        "PROXY TCP4 192.0.2.1 10.0.0.5 56324 9440\r\n",
        Some(("192.0.2.1:56324", "10.0.0.5:9440")),
    );
    v1(
        "v1 tcp6",
        "PROXY TCP6 2001:db8::1 2001:db8::ff 65535 8443\r\n",
        Some(("[2001:db8::1]:65535", "[2001:db8::ff]:8443")),
    );
    v1("v1 unknown", "PROXY UNKNOWN\r\n", None);
    // The spec's worst case: exactly 107 bytes.
    let worst = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(worst.len(), 107);
    v1("v1 unknown worst case", worst, None);

    let v4 = v2_proxy("192.0.2.1:56324", "10.0.0.5:9440", &[]);
    out.push((
        "v2 ipv4",
        v4.clone(),
        header(28, 2, Some(("192.0.2.1:56324", "10.0.0.5:9440"))),
    ));
    let v6 = v2_proxy("[2001:db8::1]:1", "[2001:db8::2]:9440", &[]);
    out.push((
        "v2 ipv6",
        v6,
        header(52, 2, Some(("[2001:db8::1]:1", "[2001:db8::2]:9440"))),
    ));
    let local = v2_sig(0x20, 0x00, &[]);
    out.push((
        "v2 local",
        local,
        ProxyHeader {
            local: true,
            ..header(16, 2, None)
        },
    ));

    let tlvs = aws_tlvs();
    let borrowed: Vec<(u8, &[u8])> = tlvs.iter().map(|(t, v)| (*t, v.as_slice())).collect();
    let aws = v2_proxy("198.51.100.7:40000", "10.1.2.3:9440", &borrowed);
    let mut expected = header(aws.len(), 2, Some(("198.51.100.7:40000", "10.1.2.3:9440")));
    expected.tlvs = tlvs;
    out.push(("v2 aws nlb", aws, expected));
    out
}

#[test]
fn every_proper_prefix_is_incomplete_and_full_header_parses() {
    for (name, bytes, expected) in fixtures() {
        assert_eq!(expected.len, bytes.len(), "{name}");
        for i in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..i]),
                Parsed::Incomplete,
                "{name}: prefix of {i} bytes"
            );
        }
        assert_eq!(parse(&bytes), Parsed::Header(expected.clone()), "{name}");
        let mut with_tls = bytes.clone();
        with_tls.extend(TLS);
        assert_eq!(
            parse(&with_tls),
            Parsed::Header(expected.clone()),
            "{name} + TLS"
        );
        with_tls.extend([0xAA; 4000]);
        assert_eq!(
            parse(&with_tls),
            Parsed::Header(expected),
            "{name} + TLS + 4000 bytes"
        );
    }
}

#[test]
fn aws_vpce_id_is_read_from_tlv_0xea() {
    let (_, _, aws) = fixtures()
        .into_iter()
        .find(|f| f.0 == "v2 aws nlb")
        .unwrap();
    assert_eq!(aws.aws_vpce_id(), Some("vpce-08d2bf15fac5001c9"));
    // Other AWS subtypes and non-ASCII ids are not the VPC endpoint id.
    let mut other = header(16, 2, None);
    other.tlvs = vec![
        (0xEA, b"\x02vpce-x".to_vec()),
        (0xEA, b"\x01\xffbad".to_vec()),
    ];
    assert_eq!(other.aws_vpce_id(), None);
    other.tlvs.push((0xEA, b"\x01vpce-2".to_vec()));
    assert_eq!(other.aws_vpce_id(), Some("vpce-2"));
}

#[test]
fn non_proxy_input_is_absent_from_the_first_distinguishing_byte() {
    assert_eq!(parse(&TLS[..1]), Parsed::Absent);
    assert_eq!(parse(TLS), Parsed::Absent);
    assert_eq!(parse(b"G"), Parsed::Absent);
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Absent);
    assert_eq!(parse(b"PO"), Parsed::Absent);
    assert_eq!(parse(b"PROXYTCP4"), Parsed::Absent);
    assert_eq!(parse(b"\r\n\r\n\x01"), Parsed::Absent);
    assert_eq!(parse(b""), Parsed::Incomplete);
    assert_eq!(parse(b"PROXY"), Parsed::Incomplete);
    assert_eq!(parse(b"\r\n\r\n\0\r\nQUIT"), Parsed::Incomplete);
}

fn is_invalid(p: Parsed) -> bool {
    matches!(p, Parsed::Invalid(_))
}

#[test]
fn invalid_v1_headers() {
    for bad in [
        &b"PROXY garbage\r\n"[..],
        b"PROXY garbage", // decided before any CR: no protocol starts with "garbage"
        b"PROXY \x16\x03\x01",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", // bare LF
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 02\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4\r\n",
        b"PROXY FOO\r", // CR last: only LF could follow, and that cannot fix it
        b"PROXY UNKNOWN\r\r\n",
    ] {
        assert!(is_invalid(parse(bad)), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn v1_length_limit_is_107_bytes() {
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(105, b'a');
    assert_eq!(
        parse(&long),
        Parsed::Incomplete,
        "a CR may still come at index 105"
    );
    long.push(b'a');
    assert!(is_invalid(parse(&long)), "106 bytes without CR cannot fit");
    long.extend([b'a'; 200]);
    assert!(is_invalid(parse(&long)));
    let mut too_long = b"PROXY UNKNOWN ".to_vec();
    too_long.resize(106, b'a');
    too_long.extend(b"\r\n");
    assert!(is_invalid(parse(&too_long)), "108-byte line");
    assert!(is_invalid(parse(&too_long[..107])), "CR at index 106");
}

#[test]
fn invalid_v2_headers() {
    let ipv4_body = [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2];
    let bad_version = v2_sig(0x11, 0x11, &ipv4_body);
    let bad_command = v2_sig(0x23, 0x11, &ipv4_body);
    let bad_family = v2_sig(0x21, 0x41, &ipv4_body);
    let short_body = v2_sig(0x21, 0x11, &ipv4_body[..8]);
    let datagram = v2_sig(0x21, 0x12, &ipv4_body);
    let mut leftover = ipv4_body.to_vec();
    leftover.extend([0x04, 0x00]); // 2 bytes: too short for a TLV
    let leftover = v2_sig(0x21, 0x11, &leftover);
    let mut overrun = ipv4_body.to_vec();
    overrun.extend([0x04, 0x00, 0x09, 0, 0]); // TLV claims 9 bytes, has 2
    let overrun = v2_sig(0x21, 0x11, &overrun);
    for (name, bad) in [
        ("version", bad_version),
        ("command", bad_command),
        ("family", bad_family),
        ("short address block", short_body),
        ("datagram", datagram),
        ("tlv leftover", leftover),
        ("tlv overrun", overrun),
    ] {
        assert!(is_invalid(parse(&bad)), "{name}");
    }
}

#[test]
fn v2_over_max_len_is_refused_from_the_length_field() {
    let mut at_limit = V2_SIGNATURE.to_vec();
    at_limit.extend([0x21, 0x11]);
    at_limit.extend(u16::try_from(MAX_HEADER_LEN - 16).unwrap().to_be_bytes());
    assert_eq!(parse(&at_limit), Parsed::Incomplete);
    // Filling it: 12 address bytes and one NOOP TLV up to exactly MAX_HEADER_LEN.
    at_limit.extend([1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
    let pad = MAX_HEADER_LEN - at_limit.len() - 3;
    at_limit.extend([0x04]);
    at_limit.extend(u16::try_from(pad).unwrap().to_be_bytes());
    at_limit.extend(vec![0; pad]);
    assert_eq!(at_limit.len(), MAX_HEADER_LEN);
    assert!(matches!(parse(&at_limit), Parsed::Header(h) if h.len == MAX_HEADER_LEN));

    for length in [MAX_HEADER_LEN - 16 + 1, usize::from(u16::MAX)] {
        let mut over = V2_SIGNATURE.to_vec();
        over.extend([0x21, 0x11]);
        over.extend(u16::try_from(length).unwrap().to_be_bytes());
        assert_eq!(over.len(), 16);
        assert_eq!(
            parse(&over),
            Parsed::Invalid("v2 header too long"),
            "{length}"
        );
    }
}

#[test]
fn v2_without_usable_addresses() {
    // PROXY over AF_UNSPEC: no address, TLVs still read.
    let unspec = v2_sig(0x21, 0x00, &[0x02, 0x00, 0x03, b'a', b'.', b'b']);
    let expected = ProxyHeader {
        tlvs: vec![(0x02, b"a.b".to_vec())],
        ..header(22, 2, None)
    };
    assert_eq!(parse(&unspec), Parsed::Header(expected));
    // AF_UNIX stream: 216 address bytes, no IP address.
    let unix = v2_sig(0x21, 0x31, &[b'/'; 216]);
    assert_eq!(parse(&unix), Parsed::Header(header(232, 2, None)));
    // LOCAL with an IPv4 block and a trailing malformed TLV is still a health check.
    let local = v2_sig(
        0x20,
        0x11,
        &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x04, 0x00],
    );
    let expected = ProxyHeader {
        local: true,
        ..header(30, 2, None)
    };
    assert_eq!(parse(&local), Parsed::Header(expected));
}

#[test]
fn ipv4_mapped_addresses_are_normalised() {
    // traefik#11988: a TCP6 header carrying IPv4-mapped addresses must be accepted.
    let v1 = b"PROXY TCP6 ::ffff:1.2.3.4 ::ffff:10.0.0.1 1000 9440\r\n";
    assert_eq!(
        parse(v1),
        Parsed::Header(header(v1.len(), 1, Some(("1.2.3.4:1000", "10.0.0.1:9440"))))
    );
    let v2 = v2_proxy("[::ffff:203.0.113.9]:5", "[2001:db8::1]:9440", &[]);
    assert_eq!(
        parse(&v2),
        Parsed::Header(header(52, 2, Some(("203.0.113.9:5", "[2001:db8::1]:9440"))))
    );
}

#[test]
fn trust_check_normalises_mapped_peers() {
    let nets: Vec<IpNet> = vec![
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    let mapped = IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a01, 0x0203)); // ::ffff:10.1.2.3
    assert!(is_trusted(&nets, mapped));
    assert!(is_trusted(&nets, "10.9.9.9".parse().unwrap()));
    assert!(is_trusted(&nets, "2001:db8::7".parse().unwrap()));
    assert!(!is_trusted(&nets, "11.0.0.1".parse().unwrap()));
    assert!(!is_trusted(&nets, "::ffff:11.0.0.1".parse().unwrap()));
    assert!(!is_trusted(&[], "10.0.0.1".parse().unwrap()));
    // A range written in mapped form still matches a plain IPv4 peer and a mapped one.
    let mapped_net: Vec<IpNet> = vec!["::ffff:10.0.0.0/104".parse().unwrap()];
    assert!(is_trusted(&mapped_net, mapped));
}

#[test]
fn decide_table() {
    let v1 = b"PROXY TCP4 192.0.2.1 10.0.0.5 56324 9440\r\n\x16\x03\x01";
    let v1_header = Decision::Header(header(42, 1, Some(("192.0.2.1:56324", "10.0.0.5:9440"))));
    let v2 = [
        v2_proxy("192.0.2.1:56324", "10.0.0.5:9440", &[]),
        TLS.to_vec(),
    ]
    .concat();
    let v2_header = Decision::Header(header(28, 2, Some(("192.0.2.1:56324", "10.0.0.5:9440"))));
    const UNTRUSTED: Decision = Decision::Refuse(Refusal::UntrustedPeer);
    const DIRECT: Decision = Decision::Refuse(Refusal::UntrustedDirect);
    const INVALID: Decision = Decision::Refuse(Refusal::Invalid("malformed v1 header"));
    use Decision::{Incomplete, NoHeader};
    #[rustfmt::skip]
    let table: Vec<(ProxyInMode, bool, &str, &[u8], Decision)> = vec![
        (Off, true, "v1", v1, NoHeader),
        (Off, true, "v2", &v2, NoHeader),
        (Off, true, "tls", TLS, NoHeader),
        (Off, true, "partial", b"PROXY TCP4 1.", NoHeader),
        (Off, true, "empty", b"", NoHeader),
        (Off, false, "v1", v1, NoHeader),
        (Off, false, "tls", TLS, NoHeader),
        (Off, false, "partial", b"PROXY TCP4 1.", NoHeader),
        (Off, false, "empty", b"", NoHeader),
        (Optional, true, "v1", v1, v1_header.clone()),
        (Optional, true, "v2", &v2, v2_header.clone()),
        (Optional, true, "tls", TLS, NoHeader),
        (Optional, true, "signature prefix", b"PROX", Incomplete),
        (Optional, true, "partial", b"PROXY TCP4 1.", Incomplete),
        (Optional, true, "invalid", b"PROXY nope\r\n", INVALID),
        (Optional, true, "empty", b"", Incomplete),
        (Optional, false, "v1", v1, UNTRUSTED),
        (Optional, false, "v2", &v2, UNTRUSTED),
        (Optional, false, "tls", TLS, NoHeader),
        (Optional, false, "signature prefix", b"PROX", Incomplete),
        (Optional, false, "partial", b"PROXY TCP4 1.", UNTRUSTED),
        (Optional, false, "partial v2", &v2[..13], UNTRUSTED),
        (Optional, false, "invalid", b"PROXY nope\r\n", UNTRUSTED),
        (Optional, false, "empty", b"", Incomplete),
        (Required, true, "v1", v1, v1_header),
        (Required, true, "v2", &v2, v2_header),
        (Required, true, "tls", TLS, Decision::Refuse(Refusal::Missing)),
        (Required, true, "signature prefix", b"PROX", Incomplete),
        (Required, true, "partial", b"PROXY TCP4 1.", Incomplete),
        (Required, true, "invalid", b"PROXY nope\r\n", INVALID),
        (Required, true, "empty", b"", Incomplete),
        (Required, false, "v1", v1, UNTRUSTED),
        (Required, false, "v2", &v2, UNTRUSTED),
        (Required, false, "tls", TLS, DIRECT),
        (Required, false, "signature prefix", b"PROX", Incomplete),
        (Required, false, "partial", b"PROXY TCP4 1.", UNTRUSTED),
        (Required, false, "partial v2", &v2[..13], UNTRUSTED),
        (Required, false, "empty", b"", Incomplete),
    ];
    for (mode, trusted, name, buf, expected) in table {
        assert_eq!(
            decide(mode, trusted, buf),
            expected,
            "{mode:?} trusted={trusted} {name}"
        );
    }
}

// ---- ppp quirks: each asserts ppp's behaviour (so an upgrade that changes it is noticed) and ours.

fn ppp_v1(input: &[u8]) -> Result<v1::Header<'_>, v1::BinaryParseError> {
    v1::Header::try_from(input)
}

#[test]
fn ppp_quirk_v1_truncated_addresses_are_missing_not_partial() {
    // ppp reports "missing destination address" rather than Partial; its PartialResult still
    // counts that as incomplete, which is what we rely on.
    let partial = b"PROXY TCP4 1.2";
    assert_eq!(
        ppp_v1(partial),
        Err(v1::BinaryParseError::Parse(
            v1::ParseError::MissingDestinationAddress
        ))
    );
    assert_eq!(parse(partial), Parsed::Incomplete);
}

#[test]
fn ppp_quirk_v1_trailing_space_before_destination_port() {
    let partial = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 ";
    assert!(matches!(
        ppp_v1(partial),
        Err(v1::BinaryParseError::Parse(
            v1::ParseError::InvalidDestinationPort(Some(_))
        ))
    ));
    assert_eq!(parse(partial), Parsed::Incomplete);
}

#[test]
fn ppp_quirk_v1_bare_lf_accepted() {
    let bare_lf = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \n";
    assert!(ppp_v1(bare_lf).is_ok());
    assert!(is_invalid(parse(bare_lf)));
}

#[test]
fn ppp_quirk_v1_plus_sign_port_accepted() {
    let plus = b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n";
    assert!(ppp_v1(plus).is_ok());
    assert!(is_invalid(parse(plus)));
}

#[test]
fn ppp_quirk_v1_unknown_with_many_words_rejected() {
    let unknown = b"PROXY UNKNOWN a b c d e f\r\n";
    assert!(ppp_v1(unknown).is_err());
    assert_eq!(
        parse(unknown),
        Parsed::Header(header(unknown.len(), 1, None))
    );
}

#[test]
fn ppp_quirk_v1_cr_not_followed_by_lf_reported_incomplete() {
    let bad = b"PROXY UNKNOWN\rX";
    assert_eq!(
        ppp_v1(bad),
        Err(v1::BinaryParseError::Parse(v1::ParseError::MissingNewLine))
    );
    assert!(is_invalid(parse(bad)));
}

#[test]
fn ppp_quirk_v2_unspec_hides_tlvs() {
    let unspec = v2_sig(0x21, 0x00, &[0x02, 0x00, 0x01, b'x']);
    let h = v2::Header::try_from(unspec.as_slice()).unwrap();
    assert_eq!(h.tlvs().count(), 0);
    assert!(matches!(parse(&unspec), Parsed::Header(h) if h.tlvs == vec![(0x02, b"x".to_vec())]));
}

// ---- properties

/// Inputs that get past the signature check often enough to reach the interesting states.
fn near_header() -> impl Strategy<Value = Vec<u8>> {
    let v1_chars = proptest::sample::select(b"TCP46UNKOW0123456789abcdef.: +\r\n".to_vec());
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(v1_chars, 0..120)
            .prop_map(|tail| [b"PROXY ".as_slice(), &tail].concat()),
        proptest::collection::vec(any::<u8>(), 0..80)
            .prop_map(|tail| [V2_SIGNATURE, &tail].concat()),
        (proptest::collection::vec(any::<u8>(), 0..40), any::<u16>()).prop_map(|(tail, len)| {
            [V2_SIGNATURE, &[0x21, 0x11], &len.to_be_bytes(), &tail].concat()
        }),
    ]
}

fn same_kind(a: &Parsed, b: &Parsed) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(buf in near_header()) {
        let parsed = parse(&buf);
        if let Parsed::Header(h) = &parsed {
            prop_assert!(h.len <= buf.len() && h.len <= MAX_HEADER_LEN);
        }
        for mode in [Off, Optional, Required] {
            for trusted in [false, true] {
                let _ = decide(mode, trusted, &buf);
            }
        }
    }

    /// Every answer except Incomplete is final: more bytes never change it.
    #[test]
    fn answers_other_than_incomplete_are_final(buf in near_header(), extra in proptest::collection::vec(any::<u8>(), 1..32)) {
        let before = parse(&buf);
        let after = parse(&[buf.as_slice(), &extra].concat());
        match before {
            Parsed::Incomplete => {}
            Parsed::Header(_) => prop_assert_eq!(after, before),
            _ => prop_assert!(same_kind(&before, &after), "{:?} then {:?}", before, after),
        }
    }

    /// The caller never buffers more than MAX_HEADER_LEN bytes waiting for an answer.
    #[test]
    fn max_header_len_bytes_always_decide(buf in near_header(), filler in any::<u8>()) {
        let mut long = buf;
        long.resize(MAX_HEADER_LEN, filler);
        prop_assert_ne!(parse(&long), Parsed::Incomplete);
    }
}
