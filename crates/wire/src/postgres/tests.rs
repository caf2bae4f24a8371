use super::*;
use crate::client_hello::{self, Peek};
use proptest::prelude::*;

macro_rules! capture {
    ($name:literal) => {
        include_bytes!(concat!("../../tests/fixtures/postgres/", $name, ".bin")).as_slice()
    };
}

/// Real first flights, captured by tests/fixtures/postgres/capture.py.
const PSQL_SSLREQUEST: &[u8] = capture!("psql_sslrequest");
const PSQL_PLAINTEXT: &[u8] = capture!("psql_plaintext");
const PSYCOPG_DIRECT: &[u8] = capture!("psycopg_direct");
const PSYCOPG_PLAINTEXT_3_2: &[u8] = capture!("psycopg_plaintext_3_2");

const CLIENT_HELLO: &[u8] = include_bytes!("../../tests/fixtures/client_hello/openssl_sni.bin");

// ---- builders, byte-exact from the protocol's message formats ----

/// StartupMessage: Int32 length, Int32 version (major << 16 | minor), name/value C strings, 0.
fn startup(major: u16, minor: u16, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(major.to_be_bytes());
    body.extend(minor.to_be_bytes());
    for (name, value) in params {
        for s in [name, value] {
            body.extend(s.as_bytes());
            body.push(0);
        }
    }
    body.push(0);
    framed(&body)
}

/// CancelRequest: Int32 length, Int32 80877102, Int32 process id, the secret key (4 bytes in
/// protocol 3.0, up to 256 in 3.2).
fn cancel(pid: u32, key: &[u8]) -> Vec<u8> {
    let mut body = 80_877_102u32.to_be_bytes().to_vec();
    body.extend(pid.to_be_bytes());
    body.extend(key);
    framed(&body)
}

/// A body behind its Int32 length, which counts itself.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len() + 4)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    out.extend(body);
    out
}

fn libpq_params() -> Vec<(&'static str, &'static str)> {
    vec![
        ("user", "demo"),
        ("database", "analytics"),
        ("application_name", "capture"),
    ]
}

/// Checks every prefix of `input` and returns (answer, bytes that decided it): the answer is
/// `NeedMore` before the deciding byte and the same from there on, which is never past byte 8.
fn decide(input: &[u8]) -> (Start, usize) {
    let answer = parse(input);
    assert_ne!(answer, Start::NeedMore, "{input:02x?}");
    let at = (0..=input.len())
        .find(|&k| parse(&input[..k]) != Start::NeedMore)
        .unwrap();
    assert!(at <= DECIDING_LEN, "decided only at byte {at}");
    for k in 0..=input.len() {
        let expected = if k < at { Start::NeedMore } else { answer };
        assert_eq!(parse(&input[..k]), expected, "prefix {k} of {input:02x?}");
    }
    (answer, at)
}

// ---- the client's start ----

#[test]
fn request_bytes_are_the_documented_ones() {
    // Int32(8), Int32(80877103): 1234 and 5679 in the high and low 16 bits.
    assert_eq!(SSL_REQUEST, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    assert_eq!(
        u32::from_be_bytes([0x04, 0xd2, 0x16, 0x2f]),
        1234 << 16 | 5679
    );
    // Int32(8), Int32(80877104): 1234 and 5680.
    assert_eq!(GSSENC_REQUEST, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
    assert_eq!((ACCEPT, REFUSE), (b"S", b"N"));
}

#[test]
fn every_prefix_of_each_start() {
    let cases: Vec<(&str, Vec<u8>, Start, usize)> = vec![
        ("ssl request", SSL_REQUEST.to_vec(), Start::SslRequest, 8),
        (
            "gssenc request",
            GSSENC_REQUEST.to_vec(),
            Start::GssEncRequest,
            8,
        ),
        (
            "cancel 3.0",
            cancel(4242, &[1, 2, 3, 4]),
            Start::CancelRequest { len: 16 },
            8,
        ),
        (
            "cancel 3.2, 32-byte key",
            cancel(4242, &[7; 32]),
            Start::CancelRequest { len: 44 },
            8,
        ),
        (
            "cancel 3.2, longest key",
            cancel(4242, &[7; 256]),
            Start::CancelRequest { len: 268 },
            8,
        ),
        (
            "startup 3.0",
            startup(3, 0, &libpq_params()),
            Start::Startup { minor: 0, len: 63 },
            8,
        ),
        (
            "startup 3.2",
            startup(3, 2, &libpq_params()),
            Start::Startup { minor: 2, len: 63 },
            8,
        ),
        (
            "startup without parameters",
            startup(3, 0, &[]),
            Start::Startup { minor: 0, len: 9 },
            8,
        ),
        ("direct tls", CLIENT_HELLO.to_vec(), Start::DirectTls, 1),
    ];
    for (name, input, expected, at) in cases {
        assert_eq!(decide(&input), (expected, at), "{name}");
    }
}

#[test]
fn real_clients() {
    // psql 15: SSLRequest, then (after our S) its ClientHello with the host as SNI.
    assert_eq!(decide(PSQL_SSLREQUEST), (Start::SslRequest, 8));
    let rest = &PSQL_SSLREQUEST[Start::SslRequest.consumed().unwrap()..];
    let Peek::Hello(hello) = client_hello::parse(rest) else {
        panic!("no hello after the SSLRequest");
    };
    assert_eq!(hello.sni.unwrap().as_str(), Some("pg.ch.example.com"));
    assert_eq!(hello.len, rest.len());

    // libpq 18 direct SSL: TLS at byte 0, the same bytes are the ClientHello.
    assert_eq!(decide(PSYCOPG_DIRECT), (Start::DirectTls, 1));
    assert_eq!(Start::DirectTls.consumed(), Some(0));
    let Peek::Hello(hello) = client_hello::parse(PSYCOPG_DIRECT) else {
        panic!("direct start is no hello");
    };
    assert_eq!(hello.sni.unwrap().as_str(), Some("pg.ch.example.com"));
    assert!(PSYCOPG_DIRECT.windows(10).any(|w| w == b"postgresql"));

    // Plain text: the startup messages, byte for byte what the builder makes.
    let expected = [(PSQL_PLAINTEXT, 0), (PSYCOPG_PLAINTEXT_3_2, 2)];
    for (input, minor) in expected {
        assert_eq!(input, startup(3, minor, &libpq_params()));
        let len = u32::try_from(input.len()).unwrap();
        assert_eq!(decide(input), (Start::Startup { minor, len }, 8));
    }
}

#[test]
fn bytes_after_the_start_do_not_change_it() {
    let mut after_ssl = SSL_REQUEST.to_vec();
    after_ssl.extend(CLIENT_HELLO);
    assert_eq!(parse(&after_ssl), Start::SslRequest);
    let mut gss_then_ssl = GSSENC_REQUEST.to_vec();
    gss_then_ssl.extend(SSL_REQUEST);
    assert_eq!(parse(&gss_then_ssl), Start::GssEncRequest);
    // What follows a refused GSSENCRequest is parsed on its own.
    let rest = &gss_then_ssl[Start::GssEncRequest.consumed().unwrap()..];
    assert_eq!(parse(rest), Start::SslRequest);
}

#[test]
fn refused_as_early_as_the_bytes_allow() {
    let cases: &[(&str, &[u8], &str, usize)] = &[
        ("http", b"GET / HTTP/1.1\r\n", "length", 1),
        ("proxy v1 header", b"PROXY TCP4 1.2.3.4", "length", 1),
        ("proxy v2 header", b"\r\n\r\n\0\r\nQUIT\n", "length", 1),
        ("tls alert record", &[0x15, 3, 3, 0, 2], "length", 1),
        (
            "length over 10,000",
            &[0, 0, 0x27, 0x11, 0, 3, 0, 0],
            "length",
            4,
        ),
        ("length in the MiB", &[0, 1, 0, 0], "length", 2),
        (
            "length 7",
            &[0, 0, 0, 7, 0x04, 0xd2, 0x16, 0x2f],
            "length",
            4,
        ),
        ("length 0", &[0, 0, 0, 0], "length", 4),
        ("protocol 2.0", &[0, 0, 0, 9, 0, 2, 0, 0], "code", 6),
        ("protocol 4.0", &[0, 0, 0, 9, 0, 4, 0, 0], "code", 6),
        ("startup of length 8", &[0, 0, 0, 8, 0, 3, 0, 0], "code", 5),
        (
            "ssl request of length 9",
            &[0, 0, 0, 9, 0x04, 0xd2, 0x16, 0x2f],
            "code",
            5,
        ),
        (
            "cancel request of length 8",
            &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2e],
            "code",
            8,
        ),
        (
            "cancel request past 256-byte key",
            &[0, 0, 1, 13, 0x04, 0xd2, 0x16, 0x2e],
            "code",
            5,
        ),
        (
            "neighbouring request code",
            &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x31],
            "code",
            8,
        ),
    ];
    for &(name, input, reason, at) in cases {
        let (answer, decided) = decide(input);
        let Start::NotPostgres(why) = answer else {
            panic!("{name}: {answer:?}");
        };
        assert!(why.contains(reason), "{name}: {why}");
        assert_eq!(decided, at, "{name}");
    }
    // The largest startup message is accepted, one byte more is not.
    let longest = [0, 0, 0x27, 0x10, 0, 3, 0, 0];
    assert_eq!(
        parse(&longest),
        Start::Startup {
            minor: 0,
            len: 10_000
        }
    );
    assert_eq!(MAX_STARTUP_LEN, 10_000);
}

#[test]
fn consumed_only_for_starts_that_go_on() {
    assert_eq!(Start::SslRequest.consumed(), Some(8));
    assert_eq!(Start::GssEncRequest.consumed(), Some(8));
    assert_eq!(Start::DirectTls.consumed(), Some(0));
    for start in [
        Start::NeedMore,
        Start::Startup { minor: 0, len: 9 },
        Start::CancelRequest { len: 16 },
        Start::NotPostgres("x"),
    ] {
        assert_eq!(start.consumed(), None, "{start:?}");
    }
}

// ---- the upstream's answer ----

#[test]
fn upstream_answer() {
    assert_eq!(parse_ssl_response(b""), SslResponse::NeedMore);
    assert_eq!(parse_ssl_response(b"S"), SslResponse::Accepted);
    assert_eq!(parse_ssl_response(b"N"), SslResponse::Refused);
    assert_eq!(parse_ssl_response(b"NE"), SslResponse::Refused);
    let error = error_response("sorry, too many clients already");
    assert_eq!(parse_ssl_response(&error), SslResponse::Error);
    assert_eq!(
        parse_ssl_response(b"S\x16\x03"),
        SslResponse::DataAfterAccept
    );
    assert_eq!(
        parse_ssl_response(b"HTTP/1.1"),
        SslResponse::NotPostgres(b'H')
    );
    // A TLS server answering our request with an alert is no PostgreSQL server.
    assert_eq!(
        parse_ssl_response(&[0x15, 3, 3, 0, 2, 2, 50]),
        SslResponse::NotPostgres(0x15)
    );
}

// ---- ErrorResponse ----

/// Splits an ErrorResponse into its fields, checking the framing on the way.
fn fields(msg: &[u8]) -> Vec<(u8, String)> {
    let (&kind, rest) = msg.split_first().unwrap();
    assert_eq!(kind, b'E');
    let (len, mut body) = rest.split_first_chunk::<4>().unwrap();
    assert_eq!(
        u32::from_be_bytes(*len) as usize,
        msg.len() - 1,
        "length counts itself"
    );
    let mut out = Vec::new();
    loop {
        let (&field, rest) = body.split_first().unwrap();
        if field == 0 {
            assert!(rest.is_empty(), "bytes after the final 0");
            return out;
        }
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .expect("unterminated field");
        out.push((field, String::from_utf8(rest[..end].to_vec()).unwrap()));
        body = &rest[end + 1..];
    }
}

#[test]
fn error_response_field_by_field() {
    let msg = error_response(SSL_REQUIRED);
    assert_eq!(
        &msg[..5],
        &[b'E', 0, 0, 0, u8::try_from(msg.len() - 1).unwrap()]
    );
    assert_eq!(
        fields(&msg),
        [
            (b'S', "FATAL".to_owned()),
            (b'V', "FATAL".to_owned()),
            (b'C', "28000".to_owned()),
            (b'M', SSL_REQUIRED.to_owned()),
        ]
    );
    // Byte-exact for a short message.
    assert_eq!(
        error_response("no"),
        b"E\0\0\0\x1eSFATAL\0VFATAL\0C28000\0Mno\0\0".to_vec()
    );
    assert!(SSL_REQUIRED.contains("sslmode=require"));
}

#[test]
fn error_response_appends_and_sanitizes() {
    let mut out = b"before".to_vec();
    encode_error_response("a\0b", &mut out);
    assert_eq!(&out[..6], b"before");
    assert_eq!(fields(&out[6..])[3], (b'M', "a\u{fffd}b".to_owned()));

    // Cut at MAX_MESSAGE_LEN on a character boundary ('é' is 2 bytes: 1023 is mid-character).
    let long = format!("{}é{}", "x".repeat(MAX_MESSAGE_LEN - 1), "y".repeat(5000));
    let message = &fields(&error_response(&long))[3].1;
    assert_eq!(message.len(), MAX_MESSAGE_LEN - 1);
    assert!(message.bytes().all(|b| b == b'x'));
    assert_eq!(fields(&error_response(""))[3], (b'M', String::new()));
}

// ---- keywords ----

#[test]
fn keywords_round_trip() {
    assert_eq!(ListenerProtocol::default(), ListenerProtocol::Tls);
    assert_eq!(ListenerProtocol::KEYWORDS, ["tls", "postgres"]);
    assert_eq!("Postgres".parse(), Ok(ListenerProtocol::Postgres));
    assert!("postgresql".parse::<ListenerProtocol>().is_err());
    assert_eq!(
        Negotiation::KEYWORDS,
        ["sslrequest", "direct", "gssenc_then_ssl"]
    );
    for n in [
        Negotiation::SslRequest,
        Negotiation::Direct,
        Negotiation::GssEncThenSsl,
    ] {
        assert_eq!(n.to_string().parse(), Ok(n));
    }
}

#[test]
fn negotiation_of_each_start() {
    use Negotiation::*;
    assert_eq!(Negotiation::of(Start::SslRequest, false), Some(SslRequest));
    assert_eq!(Negotiation::of(Start::DirectTls, false), Some(Direct));
    assert_eq!(
        Negotiation::of(Start::SslRequest, true),
        Some(GssEncThenSsl)
    );
    assert_eq!(Negotiation::of(Start::DirectTls, true), Some(GssEncThenSsl));
    for after in [false, true] {
        for start in [
            Start::NeedMore,
            Start::GssEncRequest,
            Start::Startup { minor: 0, len: 9 },
            Start::CancelRequest { len: 16 },
            Start::NotPostgres("x"),
        ] {
            assert_eq!(Negotiation::of(start, after), None, "{start:?}");
        }
    }
}

// ---- properties ----

/// Inputs near the real ones: a real start with a few bytes changed, or random bytes.
fn arb_input() -> impl Strategy<Value = Vec<u8>> {
    let seeds = vec![
        SSL_REQUEST.to_vec(),
        GSSENC_REQUEST.to_vec(),
        cancel(1, &[9; 4]),
        startup(3, 0, &libpq_params()),
        PSQL_SSLREQUEST.to_vec(),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (
            proptest::sample::select(seeds),
            proptest::collection::vec((0usize..16, any::<u8>()), 0..3)
        )
            .prop_map(|(mut input, edits)| {
                for (at, b) in edits {
                    if let Some(slot) = input.get_mut(at) {
                        *slot = b;
                    }
                }
                input
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_any_split(input in arb_input(), split in any::<prop::sample::Index>()) {
        let answer = parse(&input);
        if answer == Start::NeedMore {
            prop_assert!(input.len() < DECIDING_LEN);
        }
        // A prefix is undecided or already has the whole input's answer.
        let early = parse(&input[..split.index(input.len() + 1)]);
        prop_assert!(early == Start::NeedMore || early == answer, "{:?} then {:?}", early, answer);
        // The answer depends on the first 8 bytes only.
        prop_assert_eq!(parse(&input[..input.len().min(DECIDING_LEN)]), answer);
        match answer {
            Start::DirectTls => prop_assert_eq!(input[0], 0x16),
            Start::SslRequest => prop_assert_eq!(&input[..8], &SSL_REQUEST),
            Start::GssEncRequest => prop_assert_eq!(&input[..8], &GSSENC_REQUEST),
            Start::Startup { len, .. } => prop_assert!((9..=MAX_STARTUP_LEN).contains(&len)),
            Start::CancelRequest { len } => prop_assert!((16..=268).contains(&len)),
            Start::NotPostgres(why) => prop_assert!(!why.is_empty()),
            Start::NeedMore => {}
        }
    }

    #[test]
    fn error_response_of_any_message(message in ".{0,40}", nul in any::<bool>()) {
        let message = if nul { format!("{message}\0{message}") } else { message };
        let f = fields(&error_response(&message));
        prop_assert_eq!(f.len(), 4);
        prop_assert_eq!(&f[3].1, &message.replace('\0', "\u{fffd}"));
    }
}
