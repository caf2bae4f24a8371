use super::*;
use proptest::prelude::*;
use std::sync::Arc;

macro_rules! fixture {
    ($name:literal, $sni:expr, $ech:expr) => {
        Fixture {
            name: $name,
            input: include_bytes!(concat!("../../tests/fixtures/client_hello/", $name, ".bin")),
            sni: $sni,
            ech: $ech,
        }
    };
}

struct Fixture {
    name: &'static str,
    input: &'static [u8],
    sni: Option<&'static str>,
    ech: bool,
}

/// Real hellos captured by tests/fixtures/client_hello/capture.py, with what each client sent.
const FIXTURES: &[Fixture] = &[
    fixture!("curl_sni", Some("demo-cluster.ch.example.com"), false),
    fixture!("openssl_sni", Some("demo.ch.example.com"), false),
    fixture!(
        "openssl_tls12",
        Some("demo-replicated.ch.example.com"),
        false
    ),
    fixture!("openssl_nosni", None, false),
    fixture!(
        "python_sni",
        Some("chi-demo-cluster-0-0.ch.example.com"),
        false
    ),
    fixture!("python_nosni", None, false),
    fixture!("rustls_pq", Some("pq.ch.example.com"), true),
];

/// What a client sends next (ChangeCipherSpec, then application data): must not change the answer.
const NEXT_RECORDS: &[u8] = &[0x14, 3, 3, 0, 1, 1, 0x17, 3, 3, 0, 2, 0xaa, 0xbb];

// ---- builders ----

fn record(version: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x16];
    out.extend(version.to_be_bytes());
    out.extend(u16::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend(payload);
    out
}

/// Frames a handshake message into records whose sizes come from `sizes` (0 = empty record).
fn reframe(msg: &[u8], mut sizes: impl FnMut() -> usize) -> Vec<u8> {
    let (mut out, mut rest) = (Vec::new(), msg);
    while !rest.is_empty() {
        let (frag, tail) = rest.split_at(sizes().min(rest.len()));
        out.extend(record(0x0301, frag));
        rest = tail;
    }
    out
}

fn in_records_of(msg: &[u8], size: usize) -> Vec<u8> {
    reframe(msg, || size)
}

/// The handshake message carried by a well-formed record sequence.
fn message_of(mut input: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    while let Some((header, rest)) = input.split_first_chunk::<5>() {
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        msg.extend(&rest[..len]);
        input = &rest[len..];
    }
    msg
}

/// The payload length of each record in a well-formed record sequence.
fn sizes_of(mut input: &[u8]) -> Vec<usize> {
    let mut sizes = Vec::new();
    while let Some((header, rest)) = input.split_first_chunk::<5>() {
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        sizes.push(len);
        input = &rest[len..];
    }
    sizes
}

fn sni_ext(entries: &[(u8, &[u8])]) -> (u16, Vec<u8>) {
    let mut list = Vec::new();
    for (name_type, name) in entries {
        list.push(*name_type);
        list.extend(u16::try_from(name.len()).unwrap().to_be_bytes());
        list.extend(*name);
    }
    let mut body = u16::try_from(list.len()).unwrap().to_be_bytes().to_vec();
    body.extend(list);
    (0, body)
}

#[derive(Clone, Debug)]
struct Spec {
    version: u16,
    session_id: Vec<u8>,
    suites: Vec<u16>,
    compression: Vec<u8>,
    /// None: no extensions block at all.
    extensions: Option<Vec<(u16, Vec<u8>)>>,
}

impl Spec {
    fn with(extensions: Vec<(u16, Vec<u8>)>) -> Spec {
        Spec {
            version: 0x0303,
            session_id: vec![7; 32],
            suites: vec![0x1301, 0x1302, 0xc02f],
            compression: vec![0],
            extensions: Some(extensions),
        }
    }

    fn body(&self) -> Vec<u8> {
        let mut b = self.version.to_be_bytes().to_vec();
        b.extend([0x42; 32]);
        b.push(self.session_id.len() as u8);
        b.extend(&self.session_id);
        b.extend(((self.suites.len() * 2) as u16).to_be_bytes());
        self.suites.iter().for_each(|s| b.extend(s.to_be_bytes()));
        b.push(self.compression.len() as u8);
        b.extend(&self.compression);
        if let Some(exts) = &self.extensions {
            let mut block = Vec::new();
            for (ty, body) in exts {
                block.extend(ty.to_be_bytes());
                block.extend((body.len() as u16).to_be_bytes());
                block.extend(body);
            }
            b.extend((block.len() as u16).to_be_bytes());
            b.extend(block);
        }
        b
    }

    /// The handshake message: type 1, 24-bit length, body.
    fn message(&self) -> Vec<u8> {
        message_with_body(&self.body())
    }

    fn input(&self) -> Vec<u8> {
        in_records_of(&self.message(), MAX_RECORD_LEN)
    }
}

fn message_with_body(body: &[u8]) -> Vec<u8> {
    let mut m = vec![1];
    m.extend(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend(body);
    m
}

fn with_sni(name: &[u8]) -> Spec {
    Spec::with(vec![
        (0x0a0a, vec![]),
        sni_ext(&[(0, name)]),
        (0x002b, vec![2, 3, 4]),
    ])
}

fn hello(input: &[u8]) -> ClientHello {
    match parse(input) {
        Peek::Hello(h) => h,
        other => panic!("expected a hello, got {other:?}"),
    }
}

fn sni_str(h: &ClientHello) -> Option<&str> {
    h.sni.as_ref().map(|n| n.as_str().unwrap())
}

/// The properties every answer must have, whatever the input: a Hello lies within the input and
/// is reproduced by its own `len` bytes; Incomplete only below MAX_BUFFER; and an answer given for
/// a prefix is the answer for the whole (the answer never changes as bytes arrive).
fn check_invariants(input: &[u8], prefix_step: usize) -> Peek {
    let answer = parse(input);
    match &answer {
        Peek::Hello(h) => {
            assert!(h.len <= input.len());
            assert_eq!(parse(&input[..h.len]), answer);
        }
        Peek::Incomplete => assert!(input.len() < MAX_BUFFER),
        Peek::NotTls => assert!(input[0] != 0x16 || input[1] != 3 || input[2] > 4),
        Peek::Malformed(_) => {}
    }
    for k in (0..input.len()).step_by(prefix_step.max(1)) {
        let early = parse(&input[..k]);
        assert!(
            early == Peek::Incomplete || early == answer,
            "prefix {k}: {early:?} vs {answer:?}"
        );
    }
    assert_eq!(
        incremental(input, std::iter::repeat(prefix_step.max(1))),
        answer
    );
    answer
}

/// Feeds `input` to one [`Parser`] as a connection would, in reads of the given sizes, checking
/// each answer against a fresh [`parse`] of the same bytes; returns the final answer.
fn incremental(input: &[u8], reads: impl IntoIterator<Item = usize>) -> Peek {
    let mut parser = Parser::default();
    let mut end = 0;
    let mut reads = reads.into_iter();
    loop {
        let answer = parser.parse(&input[..end]);
        assert_eq!(answer, parse(&input[..end]), "after {end} bytes");
        if answer != Peek::Incomplete || end == input.len() {
            return answer;
        }
        end = (end + reads.next().unwrap_or(usize::MAX).max(1)).min(input.len());
    }
}

// ---- real clients ----

#[test]
fn fixtures_parse_and_every_prefix_is_incomplete() {
    for &Fixture {
        name,
        input,
        sni,
        ech,
    } in FIXTURES
    {
        for k in 0..input.len() {
            assert_eq!(parse(&input[..k]), Peek::Incomplete, "{name}: prefix {k}");
        }
        let h = hello(input);
        assert_eq!(
            (sni_str(&h), h.ech, h.len),
            (sni, ech, input.len()),
            "{name}"
        );
        let mut more = input.to_vec();
        more.extend(NEXT_RECORDS);
        assert_eq!(parse(&more), Peek::Hello(h), "{name} + next records");
    }
}

#[test]
fn pq_fixture_carries_an_mlkem_key_share() {
    let input = FIXTURES
        .iter()
        .find(|f| f.name == "rustls_pq")
        .unwrap()
        .input;
    assert!(input.len() >= 1536, "{} bytes", input.len());
    // X25519MLKEM768 (0x11ec) key_share entry of 1216 bytes, then GREASE ECH.
    assert!(input.windows(4).any(|w| w == [0x11, 0xec, 0x04, 0xc0]));
    assert!(hello(input).ech);
}

#[test]
fn fixtures_reframed_into_one_byte_records() {
    for &Fixture {
        name,
        input,
        sni,
        ech,
    } in FIXTURES
    {
        let split = in_records_of(&message_of(input), 1);
        let h = hello(&split);
        assert_eq!(
            (sni_str(&h), h.ech, h.len),
            (sni, ech, split.len()),
            "{name}"
        );
        for k in (0..split.len()).step_by(7) {
            assert_eq!(parse(&split[..k]), Peek::Incomplete, "{name}: prefix {k}");
        }
        // Byte by byte through one parser: each record is walked once, not once per read.
        assert_eq!(incremental(&split, std::iter::repeat(1)), Peek::Hello(h));
    }
}

#[test]
fn sni_straddling_record_boundaries() {
    for Fixture {
        name, input, sni, ..
    } in FIXTURES
    {
        let Some(sni) = *sni else { continue };
        let msg = message_of(input);
        let at = msg
            .windows(sni.len())
            .position(|w| w == sni.as_bytes())
            .unwrap();
        // Every cut through the name (and its 2-byte length), then a 3-way split around it.
        for cut in at - 2..=at + sni.len() {
            let mut split = record(0x0303, &msg[..cut]);
            split.extend(record(0x0303, &msg[cut..]));
            assert_eq!(sni_str(&hello(&split)), Some(sni), "{name}: cut at {cut}");
        }
        let (a, b) = (at + 1, at + sni.len() - 1);
        let mut split = record(0x0301, &msg[..a]);
        split.extend(record(0x0301, &msg[a..b]));
        split.extend(record(0x0301, &msg[b..]));
        assert_eq!(sni_str(&hello(&split)), Some(sni), "{name}: 3-way");
    }
}

#[test]
fn handshake_header_straddling_records_and_empty_records() {
    let msg = with_sni(b"a.example").message();
    let mut input = Vec::new();
    for _ in 0..MAX_EMPTY_RECORDS / 2 {
        input.extend(record(0x0303, &[]));
    }
    input.extend(record(0x0303, &msg[..1]));
    for _ in 0..MAX_EMPTY_RECORDS / 2 {
        input.extend(record(0x0303, &[]));
    }
    input.extend(record(0x0303, &msg[1..3]));
    input.extend(record(0x0303, &msg[3..]));
    assert_eq!(sni_str(&hello(&input)), Some("a.example"));
    // One more empty record than allowed.
    let mut input = record(0x0303, &[]);
    input.extend(record(0x0303, &msg[..1]));
    for _ in 0..MAX_EMPTY_RECORDS {
        input.extend(record(0x0303, &[]));
    }
    assert_eq!(parse(&input[..input.len() - 1]), Peek::Incomplete);
    assert_eq!(parse(&input), Peek::Malformed("too many empty records"));
}

/// rustls builds real hellos in-process, for any DNS name.
fn rustls_hello(name: &str, enable_sni: bool) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.enable_sni = enable_sni;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

#[test]
fn rustls_hellos_with_and_without_sni() {
    let h = hello(&rustls_hello("chi-demo-cluster-0-0.ch.example.com", true));
    assert_eq!(sni_str(&h), Some("chi-demo-cluster-0-0.ch.example.com"));
    assert_eq!(hello(&rustls_hello("demo.ch.example.com", false)).sni, None);
    // rustls (like Go and CPython) sends no SNI for an IP address.
    assert_eq!(hello(&rustls_hello("10.0.0.5", true)).sni, None);
}

// ---- limits ----

/// A body of exactly `body_len` bytes, with the SNI and a padding extension (RFC 7685) filling.
fn padded(name: &[u8], body_len: usize) -> Vec<u8> {
    let mut spec = with_sni(name);
    let base = spec.body().len() + 4;
    spec.extensions
        .as_mut()
        .unwrap()
        .push((0x0015, vec![0; body_len - base]));
    let msg = spec.message();
    assert_eq!(msg.len(), 4 + body_len);
    msg
}

#[test]
fn largest_hello_spans_two_records() {
    let input = in_records_of(&padded(b"big.example", MAX_HELLO_LEN), MAX_RECORD_LEN);
    assert_eq!(input.len(), MAX_HELLO_LEN + 4 + 2 * 5);
    assert_eq!(sni_str(&hello(&input)), Some("big.example"));
}

#[test]
fn oversized_hello_refused_from_its_header() {
    let input = in_records_of(&padded(b"big.example", MAX_HELLO_LEN + 1), MAX_RECORD_LEN);
    assert_eq!(parse(&input[..8]), Peek::Incomplete);
    assert_eq!(
        parse(&input[..9]),
        Peek::Malformed("client hello too large")
    );
    // Header split 1 + 3 over two records: decided as soon as the 4th byte arrives.
    let mut split = record(0x0303, &[1]);
    split.extend(record(0x0303, &[0xff, 0xff, 0xff, 0]));
    assert_eq!(parse(&split[..13]), Peek::Incomplete);
    assert_eq!(
        parse(&split[..14]),
        Peek::Malformed("client hello too large")
    );
}

#[test]
fn two_kib_hello_fits_in_one_byte_records() {
    let input = in_records_of(&padded(b"thin.example", MAX_RECORDS - 4), 1);
    assert_eq!(sni_str(&hello(&input)), Some("thin.example"));
    // One byte more needs one record more than allowed: refused where that record would start.
    let input = in_records_of(&padded(b"thin.example", MAX_RECORDS - 3), 1);
    let refused_at = 6 * MAX_RECORDS;
    assert_eq!(parse(&input[..refused_at - 1]), Peek::Incomplete);
    assert_eq!(
        parse(&input[..refused_at]),
        Peek::Malformed(TOO_MANY_RECORDS)
    );
}

#[test]
fn max_buffer_is_the_longest_incomplete_input() {
    // Every record the limits allow: 32 empty ones, 2047 1-byte ones, then the rest of the
    // largest message in one record. It completes exactly at MAX_BUFFER.
    let msg = padded(b"x", MAX_HELLO_LEN);
    let mut input = Vec::new();
    for _ in 0..MAX_EMPTY_RECORDS {
        input.extend(record(0x0303, &[]));
    }
    input.extend(in_records_of(&msg[..MAX_RECORDS - 1], 1));
    input.extend(record(0x0303, &msg[MAX_RECORDS - 1..]));
    assert_eq!(input.len(), MAX_BUFFER);
    assert_eq!(parse(&input[..MAX_BUFFER - 1]), Peek::Incomplete);
    assert_eq!(sni_str(&hello(&input)), Some("x"));
    // One more 1-byte record and the hello is refused before its last record.
    let mut input = in_records_of(&msg[..MAX_RECORDS], 1);
    let at = input.len();
    input.extend(record(0x0303, &msg[MAX_RECORDS..]));
    assert_eq!(parse(&input[..at - 1]), Peek::Incomplete);
    assert_eq!(parse(&input[..at]), Peek::Malformed(TOO_MANY_RECORDS));
}

// ---- refusals ----

#[test]
fn not_tls_from_the_first_bytes() {
    let sslv2 = [
        0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
    ];
    for input in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n",
        b"\r\n\r\n\0\r\nQUIT\n", // PROXY v2 signature
        &sslv2,
        &[0x17, 3, 3, 0, 1, 0],
        &[0x16, 2],
        &[0x16, 3, 5],
        &[0x16, 0x30],
    ] {
        let decided_at = if input[0] == 0x16 { input.len() } else { 1 };
        assert_eq!(
            parse(&input[..decided_at - 1]),
            Peek::Incomplete,
            "{input:?}"
        );
        assert_eq!(parse(&input[..decided_at]), Peek::NotTls, "{input:?}");
        assert_eq!(parse(input), Peek::NotTls, "{input:?}");
    }
    for ok in [
        &[][..],
        &[0x16],
        &[0x16, 3],
        &[0x16, 3, 0],
        &[0x16, 3, 4, 0],
    ] {
        assert_eq!(parse(ok), Peek::Incomplete, "{ok:?}");
    }
}

#[test]
fn record_level_refusals() {
    let msg = with_sni(b"a.example").message();
    let (head, tail) = msg.split_at(10);
    let first = record(0x0303, head);
    let case = |second: &[u8]| parse(&[&first[..], second].concat());
    assert_eq!(
        case(&[0x15, 3, 3, 0, 2, 2, 40]),
        Peek::Malformed("non-handshake record before client hello complete")
    );
    assert_eq!(case(&[0x16, 2, 0]), Peek::Malformed("bad record version"));
    assert_eq!(case(&[0x16, 3, 5]), Peek::Malformed("bad record version"));
    assert_eq!(
        case(&[0x16, 3, 3, 0x40, 1]),
        Peek::Malformed("record too large")
    );
    // The hello must end on a record boundary.
    let mut long_tail = tail.to_vec();
    long_tail.push(0);
    assert_eq!(
        case(&record(0x0303, &long_tail)[..6]),
        Peek::Malformed("record continues past client hello")
    );
    let mut server_hello = msg.clone();
    server_hello[0] = 2;
    assert_eq!(
        parse(&record(0x0303, &server_hello)[..6]),
        Peek::Malformed("not a client hello")
    );
    // Every record version from SSL 3.0 to TLS 1.3 is accepted.
    for v in 0x0300..=0x0304 {
        assert!(matches!(parse(&record(v, &msg)), Peek::Hello(_)), "{v:#x}");
    }
}

#[test]
fn body_refusals() {
    let base = || with_sni(b"a.example");
    let mut cases: Vec<(Spec, &str)> = Vec::new();
    let mut s = base();
    s.version = 0x0200;
    cases.push((s, "bad client version"));
    let mut s = base();
    s.session_id = vec![0; 33];
    cases.push((s, "session id too long"));
    let mut s = base();
    s.suites.clear();
    cases.push((s, "bad cipher suites"));
    let mut s = base();
    s.compression.clear();
    cases.push((s, "no compression methods"));
    for (exts, why) in [
        (
            vec![sni_ext(&[(0, b"a")]), sni_ext(&[(0, b"b")])],
            "duplicate server_name extension",
        ),
        (
            vec![(0xfe0d, vec![0]), (0xfe0d, vec![0])],
            "duplicate encrypted_client_hello extension",
        ),
        (vec![sni_ext(&[(0, b"")])], "empty server name"),
        (vec![sni_ext(&[(0, &[b'a'; 256])])], "server name too long"),
        (vec![sni_ext(&[])], "empty server_name list"),
        (vec![(0, vec![])], "bad server_name extension"),
        (
            vec![(0, vec![0, 9, 0, 0, 1, b'a'])],
            "bad server_name extension",
        ),
        (
            vec![(0, vec![0, 4, 0, 0, 5, b'a'])],
            "bad server_name extension",
        ),
    ] {
        cases.push((Spec::with(exts), why));
    }
    for (spec, why) in cases {
        assert_eq!(parse(&spec.input()), Peek::Malformed(why), "{spec:?}");
    }
    // Byte-level damage after the compression methods.
    let body = base().body();
    let ext_at = 2 + 32 + 1 + 32 + 2 + 6 + 1 + 1;
    let mut trailing = body.clone();
    trailing.push(0);
    let mut ext_overrun = body.clone();
    let last_ext_len = ext_overrun.len() - 4; // supported_versions: 00 2b 00 03 | 02 03 04
    ext_overrun[last_ext_len] += 1;
    let mut short = body.clone();
    short[ext_at + 1] += 1;
    let mut long = body.clone();
    long[ext_at + 1] -= 1;
    let cut_ext = body[..body.len() - 1].to_vec();
    for (body, why) in [
        (trailing, "data after extensions"),
        (ext_overrun, "truncated extension"),
        (short, "truncated extensions"),
        (long, "data after extensions"),
        (cut_ext, "truncated extensions"),
        (body[..20].to_vec(), TRUNCATED),
    ] {
        let input = record(0x0303, &message_with_body(&body));
        assert_eq!(parse(&input), Peek::Malformed(why));
    }
}

#[test]
fn server_name_list_and_ech_variants() {
    let name255 = [b'n'; 255];
    type Case<'a> = (Option<Vec<(u16, Vec<u8>)>>, Option<&'a [u8]>, bool);
    let cases: Vec<Case> = vec![
        (None, None, false),
        (Some(vec![]), None, false),
        (
            Some(vec![sni_ext(&[(0, &name255)])]),
            Some(&name255[..]),
            false,
        ),
        (
            Some(vec![sni_ext(&[(7, b"other"), (0, b"b.example")])]),
            Some(b"b.example"),
            false,
        ),
        (
            Some(vec![sni_ext(&[(0, b"first"), (0, b"second")])]),
            Some(b"first"),
            false,
        ),
        (Some(vec![sni_ext(&[(7, b"other")])]), None, false),
        (
            Some(vec![
                (0xfe0d, vec![0; 90]),
                sni_ext(&[(0, b"public.example")]),
            ]),
            Some(b"public.example"),
            true,
        ),
        (Some(vec![(0xfe0d, vec![])]), None, true),
    ];
    for (exts, sni, ech) in cases {
        let mut spec = Spec::with(vec![]);
        spec.extensions = exts;
        let input = spec.input();
        let h = hello(&input);
        assert_eq!(
            (h.sni.as_ref().map(ServerName::as_bytes), h.ech, h.len),
            (sni, ech, input.len())
        );
    }
}

#[test]
fn server_name_text_forms() {
    let n = ServerName::new(b"Demo.ch.example.com").unwrap();
    assert_eq!(
        (n.as_str(), n.to_string()),
        (
            Some("Demo.ch.example.com"),
            "Demo.ch.example.com".to_owned()
        )
    );
    assert_eq!(format!("{n:?}"), "\"Demo.ch.example.com\"");
    let odd = ServerName::new(b"a\nb\xffc").unwrap();
    assert_eq!(odd.as_str(), None);
    assert_eq!(odd.to_string(), "a\u{fffd}b\u{fffd}c");
    assert_eq!(format!("{odd:?}"), "\"a\\nb\\xffc\"");
    assert!(ServerName::new(b"").is_none() && ServerName::new(&[b'a'; 256]).is_none());
    assert_eq!(ServerName::new(&[b'a'; 255]).unwrap().as_bytes().len(), 255);
}

// ---- generated inputs ----

prop_compose! {
    /// A valid hello with extensions in random order, GREASE, optional SNI and ECH.
    fn arb_hello()(
        sni in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=255)),
        junk_name_first in any::<bool>(),
        ech in any::<bool>(),
        grease in proptest::collection::vec((0u16..16, proptest::collection::vec(any::<u8>(), 0..4)), 0..4),
        others in proptest::collection::vec(
            (prop_oneof![Just(0x000au16), Just(0x000d), Just(0x002b), Just(0x0033), 0x0100u16..0xfe00],
             proptest::collection::vec(any::<u8>(), 0..64)), 0..8),
        session_id in proptest::collection::vec(any::<u8>(), 0..=32),
        suites in proptest::collection::vec(any::<u16>(), 1..40),
        version in 0x0300u16..=0x0304,
        shuffle_seed in any::<u64>(),
    ) -> (Spec, Option<Vec<u8>>, bool) {
        let mut exts: Vec<(u16, Vec<u8>)> = others;
        exts.extend(grease.into_iter().map(|(g, body)| (0x0a0a + 0x1010 * g, body)));
        if let Some(name) = &sni {
            let mut entries: Vec<(u8, &[u8])> = vec![(0, name)];
            if junk_name_first {
                entries.insert(0, (9, b"not-a-host"));
            }
            exts.push(sni_ext(&entries));
        }
        if ech {
            exts.push((0xfe0d, vec![0; 32]));
        }
        // Deterministic shuffle from the seed (Fisher-Yates with an LCG).
        let mut x = shuffle_seed;
        for i in (1..exts.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            exts.swap(i, (x >> 33) as usize % (i + 1));
        }
        let spec = Spec { version, session_id, suites, compression: vec![0], extensions: Some(exts) };
        (spec, sni, ech)
    }
}

/// Frames `msg` into records of the given sizes (cycled; 0 = an empty record, at most 32 of them).
fn framed(msg: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut i = 0;
    let mut empties = 0;
    reframe(msg, || {
        let s = sizes[i % sizes.len()];
        i += 1;
        if s > 0 {
            s
        } else if empties < MAX_EMPTY_RECORDS {
            empties += 1;
            0
        } else {
            1
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_hellos_in_random_records(
        (spec, sni, ech) in arb_hello(),
        sizes in proptest::collection::vec(0usize..300, 1..16),
    ) {
        let input = framed(&spec.message(), &sizes);
        let expected = Peek::Hello(ClientHello {
            sni: sni.as_deref().map(|n| ServerName::new(n).unwrap()),
            ech,
            len: input.len(),
        });
        prop_assert_eq!(check_invariants(&input, 1), expected.clone());
        let mut more = input.clone();
        more.extend(NEXT_RECORDS);
        prop_assert_eq!(parse(&more), expected);
    }

    #[test]
    fn fixtures_in_random_records(sizes in proptest::collection::vec(0usize..200, 1..16)) {
        for &Fixture { name, input, sni, ech } in FIXTURES {
            let split = framed(&message_of(input), &sizes);
            let h = hello(&split);
            prop_assert_eq!((sni_str(&h), h.ech, h.len), (sni, ech, split.len()), "{}", name);
        }
    }

    #[test]
    fn rustls_hellos_for_any_dns_name(name in "[a-z0-9]{1,20}(\\.[a-z0-9-]{1,20}){0,4}\\.[a-z]{2,6}") {
        prop_assume!(rustls::pki_types::ServerName::try_from(name.as_str()).is_ok());
        let h = hello(&rustls_hello(&name, true));
        prop_assert_eq!(sni_str(&h), Some(name.as_str()));
    }

    #[test]
    fn incremental_parser_agrees_with_parse_for_any_reads(
        (spec, _, _) in arb_hello(),
        sizes in proptest::collection::vec(0usize..40, 1..12),
        reads in proptest::collection::vec(1usize..64, 1..64),
        cut in any::<prop::sample::Index>(),
    ) {
        let input = framed(&spec.message(), &sizes);
        let whole = parse(&input);
        prop_assert_eq!(incremental(&input, reads.iter().copied().cycle()), whole);
        // Truncated anywhere: still the stateless answer.
        let cut = &input[..cut.index(input.len() + 1)];
        prop_assert_eq!(incremental(cut, reads.iter().copied().cycle()), parse(cut));
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_invariants(&input, 1);
    }

    #[test]
    fn tls_looking_bytes_never_panic(
        version in 0u8..=5,
        len in 0u16..300,
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut input = vec![0x16, 3, version];
        input.extend(len.to_be_bytes());
        input.push(1);
        input.extend(rest);
        check_invariants(&input, 1);
    }

    #[test]
    fn mutated_hellos_never_panic(
        (spec, _, _) in arb_hello(),
        sizes in proptest::collection::vec(0usize..100, 1..8),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..6),
    ) {
        let mut input = framed(&spec.message(), &sizes);
        for (at, op, byte) in edits {
            if input.is_empty() {
                break;
            }
            let i = at.index(input.len());
            match op {
                0 => input[i] ^= byte | 1,
                1 => input.insert(i, byte),
                2 => { input.remove(i); }
                _ => input.truncate(i),
            }
        }
        check_invariants(&input, 3);
    }

    #[test]
    fn large_thinly_split_hellos_are_decided_by_max_buffer(
        body_len in 1000usize..=MAX_HELLO_LEN,
        sizes in proptest::collection::vec(0usize..12, 1..8),
    ) {
        let input = framed(&padded(b"thin.example", body_len), &sizes);
        if input.len() >= MAX_BUFFER {
            prop_assert_ne!(parse(&input[..MAX_BUFFER]), Peek::Incomplete);
        }
        let records = sizes_of(&input).iter().filter(|&&len| len > 0).count();
        if records > MAX_RECORDS {
            prop_assert_eq!(parse(&input), Peek::Malformed(TOO_MANY_RECORDS));
        } else {
            let h = hello(&input);
            prop_assert_eq!(sni_str(&h), Some("thin.example"));
        }
    }
}
