//! PostgreSQL wire start on a `protocol: postgres` listener: pure parsing and encoding.
//!
//! A PostgreSQL client opens with one of a few fixed-shape messages, each an Int32 length
//! (including itself) and an Int32 code, all big-endian: `SSLRequest`, `GSSENCRequest`,
//! `CancelRequest` or a plaintext `StartupMessage`. A PostgreSQL 17+ client with
//! `sslnegotiation=direct` instead starts TLS at once, so its first byte is a TLS handshake
//! record (0x16). [`parse`] tells these apart from the bytes read so far (after any PROXY header),
//! deciding from as few bytes as possible: byte 0 decides a direct TLS start or most non-PostgreSQL
//! input, and 8 bytes always decide ([`DECIDING_LEN`]), so a caller never buffers more than that.
//! Answers are prefix-stable: once not [`Start::NeedMore`], more bytes never change them.
//!
//! What the proxy does with each start (issue 23, DESIGN.md "Listener protocols"):
//! `SSLRequest` → answer [`ACCEPT`], then the ClientHello follows and goes to
//! [`crate::client_hello`]; `GSSENCRequest` → answer [`REFUSE`], drop its 8 bytes and [`parse`]
//! again (at most once: the client then sends `SSLRequest` or starts TLS); direct TLS → the same
//! bytes go to the ClientHello parser; a plaintext `StartupMessage` or `CancelRequest` → an
//! [`error_response`] and close; anything else → close as not PostgreSQL.
//!
//! Toward the upstream the proxy sends its own [`SSL_REQUEST`] and reads the one-byte answer with
//! [`parse_ssl_response`].
//!
//! Formats: <https://www.postgresql.org/docs/current/protocol-message-formats.html>.

/// The whole `SSLRequest`: length 8, code 80877103 (1234 in the high 16 bits, 5679 in the low).
/// The proxy sends it to a PostgreSQL upstream; a client's is recognised by [`parse`].
pub const SSL_REQUEST: [u8; 8] = message(8, SSL_REQUEST_CODE);

/// The whole `GSSENCRequest`: length 8, code 80877104.
pub const GSSENC_REQUEST: [u8; 8] = message(8, GSSENC_REQUEST_CODE);

/// The server's answer to `SSLRequest` that lets TLS begin.
pub const ACCEPT: &[u8; 1] = b"S";

/// The server's answer refusing an `SSLRequest` or `GSSENCRequest` (the client may go on in
/// plain text or try the other encryption; the proxy sends it to `GSSENCRequest` only).
pub const REFUSE: &[u8; 1] = b"N";

/// Bytes that always decide [`parse`]: it never answers `NeedMore` for this many.
pub const DECIDING_LEN: usize = 8;

/// Longest `StartupMessage` accepted as one, as PostgreSQL caps it (`MAX_STARTUP_PACKET_LENGTH`):
/// a longer length field is refused as not PostgreSQL before its body is read.
pub const MAX_STARTUP_LEN: u32 = 10_000;

/// What [`error_response`] tells a plaintext client by default; libpq shows it after `FATAL:`.
pub const SSL_REQUIRED: &str =
    "SSL required: connect with sslmode=require or stronger; ch-edge-proxy routes PostgreSQL clients by TLS SNI";

/// SQLSTATE `invalid_authorization_specification`, as PostgreSQL sends when `pg_hba.conf`
/// requires SSL.
pub const SQLSTATE_INVALID_AUTHORIZATION: &str = "28000";

/// Messages longer than this are cut (at a character boundary) by [`error_response`].
pub const MAX_MESSAGE_LEN: usize = 1024;

const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;
const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// Protocol 3.x: the major version in the high 16 bits; PostgreSQL negotiates any minor down.
const PROTOCOL_MAJOR: u16 = 3;
/// A startup message holds at least length, version and the list's terminating 0.
const MIN_STARTUP_LEN: u32 = 9;
/// Length, code, process id and a secret key of 4 bytes (protocol 3.0) up to 256 (3.2).
const CANCEL_LEN: std::ops::RangeInclusive<u32> = 16..=12 + 256;
const TLS_HANDSHAKE: u8 = 0x16;

const fn message(len: u32, code: u32) -> [u8; 8] {
    let [a, b, c, d] = len.to_be_bytes();
    let [e, f, g, h] = code.to_be_bytes();
    [a, b, c, d, e, f, g, h]
}

/// What the first bytes of a connection on a `postgres` listener are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Fewer than [`DECIDING_LEN`] bytes, all consistent with some PostgreSQL start.
    NeedMore,
    /// `SSLRequest` ([`SSL_REQUEST`], 8 bytes): answer [`ACCEPT`]; the ClientHello follows.
    /// A client waits for the answer before sending more, so bytes after these 8 in the same read
    /// were sent early (PostgreSQL refuses them since CVE-2021-23214); the caller decides.
    SslRequest,
    /// `GSSENCRequest` ([`GSSENC_REQUEST`], 8 bytes): answer [`REFUSE`]; another start follows,
    /// parsed on its own. Once per connection: PostgreSQL refuses a second one with an error.
    GssEncRequest,
    /// A TLS handshake record at byte 0: a direct-SSL client (PostgreSQL 17+,
    /// `sslnegotiation=direct`). The same bytes go to [`crate::client_hello`].
    DirectTls,
    /// A plaintext `StartupMessage` (protocol 3.`minor`) of `len` bytes: refused with an
    /// [`error_response`]. Only its first 8 bytes are read.
    Startup { minor: u16, len: u32 },
    /// A plaintext `CancelRequest` of `len` bytes: refused with an [`error_response`].
    CancelRequest { len: u32 },
    /// No PostgreSQL start; a short reason for logs.
    NotPostgres(&'static str),
}

impl Start {
    /// The bytes of the start message to consume before the next step: 8 for the requests
    /// answered with one byte; 0 for a direct TLS start (its bytes are the ClientHello's).
    /// None for the starts that end the connection, and for `NeedMore`.
    pub fn consumed(self) -> Option<usize> {
        match self {
            Start::SslRequest | Start::GssEncRequest => Some(SSL_REQUEST.len()),
            Start::DirectTls => Some(0),
            _ => None,
        }
    }
}

/// One shape a start may have: its length range and the 4 bytes of its code, `None` where any
/// byte fits (a protocol version's minor number).
struct Shape {
    len: std::ops::RangeInclusive<u32>,
    code: [Option<u8>; 4],
    start: fn(u32, [u8; 4]) -> Start,
}

const fn exact(code: u32) -> [Option<u8>; 4] {
    let [a, b, c, d] = code.to_be_bytes();
    [Some(a), Some(b), Some(c), Some(d)]
}

const SHAPES: [Shape; 4] = [
    Shape {
        len: 8..=8,
        code: exact(SSL_REQUEST_CODE),
        start: |_, _| Start::SslRequest,
    },
    Shape {
        len: 8..=8,
        code: exact(GSSENC_REQUEST_CODE),
        start: |_, _| Start::GssEncRequest,
    },
    Shape {
        len: CANCEL_LEN,
        code: exact(CANCEL_REQUEST_CODE),
        start: |len, _| Start::CancelRequest { len },
    },
    Shape {
        len: MIN_STARTUP_LEN..=MAX_STARTUP_LEN,
        code: {
            let [a, b] = PROTOCOL_MAJOR.to_be_bytes();
            [Some(a), Some(b), None, None]
        },
        start: |len, [_, _, hi, lo]| Start::Startup {
            minor: u16::from_be_bytes([hi, lo]),
            len,
        },
    },
];

impl Shape {
    /// Whether some continuation of `known` (at most 8 bytes) can be this shape.
    fn admits(&self, known: &[u8]) -> bool {
        let (len_bytes, code_bytes) = known.split_at(known.len().min(4));
        // The length field's smallest and largest completions must reach into the range.
        let mut lo = [0u8; 4];
        let mut hi = [0xffu8; 4];
        lo.iter_mut()
            .zip(len_bytes)
            .for_each(|(slot, &b)| *slot = b);
        hi.iter_mut()
            .zip(len_bytes)
            .for_each(|(slot, &b)| *slot = b);
        let (lo, hi) = (u32::from_be_bytes(lo), u32::from_be_bytes(hi));
        if hi < *self.len.start() || lo > *self.len.end() {
            return false;
        }
        self.code
            .iter()
            .zip(code_bytes)
            .all(|(want, &got)| want.is_none_or(|w| w == got))
    }
}

/// Classifies the bytes received so far on a `postgres` listener (after any PROXY header).
/// Pure: no I/O, no allocation; looks at no more than the first [`DECIDING_LEN`] bytes.
pub fn parse(buf: &[u8]) -> Start {
    match buf.first() {
        None => return Start::NeedMore,
        Some(&TLS_HANDSHAKE) => return Start::DirectTls,
        Some(_) => {}
    }
    // Judge byte by byte, so a refusal's reason names the first byte no shape admits and stays
    // the same however the bytes arrive.
    let known = buf.get(..DECIDING_LEN).unwrap_or(buf);
    for end in 1..=known.len() {
        let prefix = known.get(..end).unwrap_or_default();
        if !SHAPES.iter().any(|shape| shape.admits(prefix)) {
            return Start::NotPostgres(refusal(end));
        }
    }
    let Some(&[a, b, c, d, e, f, g, h]) = known.first_chunk::<DECIDING_LEN>() else {
        return Start::NeedMore;
    };
    let len = u32::from_be_bytes([a, b, c, d]);
    let code = [e, f, g, h];
    SHAPES
        .iter()
        .find(|shape| shape.admits(known))
        .map_or(Start::NotPostgres(UNKNOWN_CODE), |shape| {
            (shape.start)(len, code)
        })
}

const UNKNOWN_CODE: &str = "unknown request code or protocol version";

/// Why no start fits once byte `end - 1` is known: the length field, or the code after it.
fn refusal(end: usize) -> &'static str {
    if end <= 4 {
        "length fits no PostgreSQL start"
    } else {
        UNKNOWN_CODE
    }
}

/// The upstream's answer to the proxy's [`SSL_REQUEST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslResponse {
    /// Nothing yet.
    NeedMore,
    /// `S` and nothing after it: start TLS (replay the client's ClientHello).
    Accepted,
    /// `N`: the upstream has TLS off.
    Refused,
    /// `E`: the upstream answered with an ErrorResponse (e.g. it could not start a backend).
    Error,
    /// `S` followed by more bytes before any TLS: data an attacker may have injected
    /// (PostgreSQL's clients refuse it since CVE-2021-23222).
    DataAfterAccept,
    /// Any other first byte: not a PostgreSQL server.
    NotPostgres(u8),
}

/// Reads the upstream's answer from everything received after sending [`SSL_REQUEST`]. A server
/// sends nothing after `S` until the client's TLS handshake, so `S` must be alone.
pub fn parse_ssl_response(buf: &[u8]) -> SslResponse {
    match buf {
        [] => SslResponse::NeedMore,
        [b'S'] => SslResponse::Accepted,
        [b'S', ..] => SslResponse::DataAfterAccept,
        [b'N', ..] => SslResponse::Refused,
        [b'E', ..] => SslResponse::Error,
        [other, ..] => SslResponse::NotPostgres(*other),
    }
}

/// A PostgreSQL `ErrorResponse` of severity FATAL, SQLSTATE 28000 and `message`, as a client
/// shows it before the server closes the connection.
pub fn error_response(message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_error_response(message, &mut out);
    out
}

/// [`error_response`] appended to `out`: message type `E`, an Int32 length counting itself and
/// the fields, the fields `S` and `V` = `FATAL`, `C` = `28000`, `M` = `message` (each a type byte
/// and a NUL-terminated string), and the final 0. NULs in `message` become U+FFFD (a NUL would end
/// the field early) and it is cut to [`MAX_MESSAGE_LEN`] bytes.
pub fn encode_error_response(message: &str, out: &mut Vec<u8>) {
    let message = cut(message, MAX_MESSAGE_LEN);
    let fields: [(u8, &str); 4] = [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', SQLSTATE_INVALID_AUTHORIZATION),
        (b'M', message),
    ];
    let start = out.len();
    out.push(b'E');
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    for (kind, text) in fields {
        out.push(kind);
        for (i, piece) in text.split('\0').enumerate() {
            if i > 0 {
                out.extend_from_slice("\u{fffd}".as_bytes());
            }
            out.extend_from_slice(piece.as_bytes());
        }
        out.push(0);
    }
    out.push(0);
    // Bounded by the cut message: at most ~3 KiB even if every byte were a NUL.
    let len = u32::try_from(out.len() - start - 1).unwrap_or(u32::MAX);
    if let Some(slot) = out.get_mut(len_at..len_at + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

/// The longest prefix of `text` of at most `max` bytes ending on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// What a listener expects at the start of each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerProtocol {
    /// A TLS ClientHello (today's behaviour).
    #[default]
    Tls,
    /// The PostgreSQL wire start ([`parse`]), then a ClientHello.
    Postgres,
}

crate::keywords!(ListenerProtocol {
    Tls => "tls",
    Postgres => "postgres",
});

/// How a PostgreSQL client reached its ClientHello, for metrics and the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiation {
    /// `SSLRequest`, answered `S`.
    SslRequest,
    /// TLS at once (`sslnegotiation=direct`).
    Direct,
    /// `GSSENCRequest` answered `N`, then `SSLRequest` or direct TLS.
    GssEncThenSsl,
}

crate::keywords!(Negotiation {
    SslRequest => "sslrequest",
    Direct => "direct",
    GssEncThenSsl => "gssenc_then_ssl",
});

impl Negotiation {
    /// The negotiation a start completes, `after_gssenc` telling whether a `GSSENCRequest` was
    /// refused before it on this connection; None for a start that leads to no ClientHello.
    pub fn of(start: Start, after_gssenc: bool) -> Option<Negotiation> {
        match (start, after_gssenc) {
            (Start::SslRequest | Start::DirectTls, true) => Some(Negotiation::GssEncThenSsl),
            (Start::SslRequest, false) => Some(Negotiation::SslRequest),
            (Start::DirectTls, false) => Some(Negotiation::Direct),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
