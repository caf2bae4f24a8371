//! Pure TLS ClientHello parser: bytes in, SNI out. No I/O, no allocation.
//!
//! The proxy keeps a [`Parser`] per connection and calls it after every read with everything
//! received so far (after any PROXY header) until the answer is not [`Peek::Incomplete`]. The
//! answer depends only on a prefix of the input: once it is anything but `Incomplete`, more bytes
//! never change it, because every check runs in stream order as soon as the bytes it needs are
//! present. [`parse`] is the same on a whole buffer at once.
//!
//! Each call works in two steps:
//! 1. The record walk (`Framer`) follows the TLS record headers and the 4-byte handshake header
//!    to learn whether the whole ClientHello has arrived, refusing non-TLS and malformed framing
//!    as early as possible. It resumes where the previous call stopped, so over a connection it
//!    visits each record once: at most [`MAX_RECORDS`] + [`MAX_EMPTY_RECORDS`] = 2,080 steps of
//!    ~40 instructions, however the bytes trickle in.
//! 2. Only once the hello is complete, `body::parse_body` reads it through a `Reader` that steps
//!    across record boundaries in place (the SNI may straddle records; it is copied into
//!    [`ServerName`]). Cost: linear in the message plus its records, once per connection
//!    (~0.5 µs for a real hello).
//!
//! Worst case per connection: an attacker sending 2,048 1-byte records and then the rest of a
//! 16 KiB hello, all in 1-byte TCP segments, costs ~27k calls of a few comparisons each plus one
//! walk of 2,080 records (`benches/client_hello.rs`, `worst_connection`); the syscalls of the
//! ~27k reads cost more than the parsing. A stateless re-parse per read would walk up to 2,080
//! records on each of those calls (~0.1–0.3 s of CPU).

use std::fmt;

/// Handshake messages larger than this are refused (post-quantum hellos are ~1.7 KiB; Envoy/nginx/sozu cap at 16 KiB).
pub const MAX_HELLO_LEN: usize = 16 * 1024;

/// The caller never needs to buffer more than this: `parse` never answers `Incomplete` for a
/// buffer this long.
///
/// The longest input that can still be an incomplete hello within the limits: the largest
/// message (4-byte header + [`MAX_HELLO_LEN`]) plus a 5-byte header for each record allowed
/// ([`MAX_RECORDS`] + [`MAX_EMPTY_RECORDS`]) = 26,788 bytes. Past it the answer is `Hello` or
/// `Malformed`, so preread memory per connection is bounded by this constant.
pub const MAX_BUFFER: usize =
    HANDSHAKE_HEADER_LEN + MAX_HELLO_LEN + RECORD_HEADER_LEN * (MAX_RECORDS + MAX_EMPTY_RECORDS);

/// Most non-empty records one ClientHello may span. Real clients use 1–3; DPI-evasion tools split
/// into a handful to a few hundred. 2,048 lets any hello up to 2 KiB (post-quantum ones included)
/// arrive even as 1-byte records and the largest one in records of ≥ 9 bytes, while bounding the
/// record walk each call repeats. A hello needing more is `Malformed("client hello split into too
/// many records")`.
pub const MAX_RECORDS: usize = 2048;

/// Empty handshake records are legal but carry no progress; allow as many as OpenSSL does
/// (`MAX_EMPTY_RECORDS` in its record layer) so they cannot stretch the record walk.
pub const MAX_EMPTY_RECORDS: usize = 32;

const RECORD_HEADER_LEN: usize = 5;
/// RFC 8446 §5.1: TLSPlaintext.length MUST NOT exceed 2^14.
const MAX_RECORD_LEN: usize = 1 << 14;
const HANDSHAKE_HEADER_LEN: usize = 4;
const CONTENT_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ECH: u16 = 0xfe0d;
const NAME_TYPE_HOST_NAME: u8 = 0;
const MAX_SESSION_ID_LEN: u8 = 32;

const TRUNCATED: &str = "truncated client hello";
const TOO_MANY_RECORDS: &str = "client hello split into too many records";

// Hello holds the name inline (~270 bytes) by design: boxing it would allocate per connection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// Nothing wrong so far; more bytes needed.
    Incomplete,
    /// The first bytes are not a TLS handshake record (plain text, HTTP, a PROXY header...).
    NotTls,
    /// TLS-looking but malformed or over the limits; the &'static str is a short reason for logs.
    Malformed(&'static str),
    /// A complete ClientHello.
    Hello(ClientHello),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// host_name from the server_name extension; None when the extension is absent.
    pub sni: Option<ServerName>,
    /// The encrypted_client_hello extension (0xfe0d) is present (we route on the outer SNI).
    pub ech: bool,
    /// Bytes of the input up to the end of the TLS record that completed the ClientHello.
    pub len: usize,
}

/// A host name held inline (no heap allocation): at most 255 bytes.
///
/// The bytes are exactly what the client sent (no case folding, no UTF-8 or DNS syntax check);
/// matching rules belong to the router.
#[derive(Clone, Copy)]
pub struct ServerName {
    bytes: [u8; ServerName::MAX_LEN],
    len: u8,
}

impl ServerName {
    /// RFC 6066 caps a host_name at 2^16-1 bytes, DNS at 255; longer names are refused.
    pub const MAX_LEN: usize = 255;

    /// A name of 1..=255 bytes; None otherwise.
    pub fn new(name: &[u8]) -> Option<ServerName> {
        let len = u8::try_from(name.len()).ok().filter(|&l| l > 0)?;
        let mut bytes = [0; ServerName::MAX_LEN];
        bytes.get_mut(..name.len())?.copy_from_slice(name);
        Some(ServerName { bytes, len })
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// The name as text; None if it is not UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }
}

impl PartialEq for ServerName {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ServerName {}

impl std::hash::Hash for ServerName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

/// Lossy text for logs: invalid UTF-8 and control characters show as U+FFFD, so a hostile name
/// can neither break the output encoding nor forge log lines.
impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.as_bytes().utf8_chunks() {
            for c in chunk.valid().chars() {
                fmt::Write::write_char(f, if c.is_control() { '\u{fffd}' } else { c })?;
            }
            if !chunk.invalid().is_empty() {
                fmt::Write::write_char(f, '\u{fffd}')?;
            }
        }
        Ok(())
    }
}

/// A quoted, escaped string; bytes that are not UTF-8 show as `\xNN`.
impl fmt::Debug for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Write::write_char(f, '"')?;
        for chunk in self.as_bytes().utf8_chunks() {
            write!(f, "{}", chunk.valid().escape_debug())?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        fmt::Write::write_char(f, '"')
    }
}

/// Parses the bytes received so far (after any PROXY header). Pure: no I/O, no allocation.
pub fn parse(buf: &[u8]) -> Peek {
    Parser::default().parse(buf)
}

/// [`parse`] for a caller that re-parses a growing buffer: it remembers how far the record walk
/// got, so each call costs only the records that arrived since the previous one, and a hello
/// trickled in 1-byte records costs linear work instead of quadratic. Its answers are exactly
/// those of [`parse`] on the same bytes.
#[derive(Debug, Default)]
pub struct Parser {
    framer: Framer,
}

impl Parser {
    /// Parses `buf`, which must extend the previous call's input (the same bytes, then more).
    pub fn parse(&mut self, buf: &[u8]) -> Peek {
        let framed = match self.framer.frame(buf) {
            Ok(framed) => framed,
            Err(Stop::Incomplete) => return Peek::Incomplete,
            Err(Stop::NotTls) => return Peek::NotTls,
            Err(Stop::Malformed(why)) => return Peek::Malformed(why),
        };
        let Some(reader) = body::Reader::new(buf, framed.body_len) else {
            return Peek::Malformed(TRUNCATED);
        };
        match body::parse_body(reader) {
            Ok((sni, ech)) => Peek::Hello(ClientHello {
                sni,
                ech,
                len: framed.end,
            }),
            Err(why) => Peek::Malformed(why),
        }
    }
}

/// Why [`Framer::frame`] stopped short of a complete message: the [`Peek`] answers other than
/// `Hello`, kept small so the record walk does not move a `Peek`-sized value around.
enum Stop {
    Incomplete,
    NotTls,
    Malformed(&'static str),
}

/// A complete handshake message framed in records from offset 0 of the input.
struct Framed {
    /// Length of the ClientHello body (after the 4-byte handshake header).
    body_len: usize,
    /// End of the record that completed the message.
    end: usize,
}

/// The record walk, kept between calls. Everything in it was decided by bytes already seen, and
/// every step is repeatable on the same bytes, so resuming gives the answer a fresh walk would.
#[derive(Debug, Default)]
struct Framer {
    walk: Walk,
    /// The 4-byte handshake header, filled as its bytes arrive (it may straddle records).
    handshake_header: [u8; HANDSHAKE_HEADER_LEN],
    /// Header plus body length, once the handshake header is known.
    message_len: Option<usize>,
}

impl Framer {
    /// Walks record headers until the handshake message is complete; `Err` says why not. Checks
    /// run in stream order, each as soon as its bytes are present, which is what makes answers
    /// stable as the input grows. The walk only moves past records that have fully arrived.
    fn frame(&mut self, buf: &[u8]) -> Result<Framed, Stop> {
        let walk = &mut self.walk;
        let (message_len, mut start, mut len) = match self.message_len {
            Some(message_len) => {
                let (start, len) = walk.next_record(buf)?;
                (message_len, start, len)
            }
            // The first records, until the handshake header is known.
            None => loop {
                let (start, len) = walk.next_record(buf)?;
                let payload = buf
                    .get(start..buf.len().min(start + len))
                    .unwrap_or_default();
                let header = &mut self.handshake_header;
                for (slot, &b) in header.iter_mut().skip(walk.got).zip(payload) {
                    *slot = b;
                }
                let known = (walk.got + payload.len()).min(HANDSHAKE_HEADER_LEN);
                if known >= 1 && header[0] != HANDSHAKE_CLIENT_HELLO {
                    return Err(Stop::Malformed("not a client hello"));
                }
                if known == HANDSHAKE_HEADER_LEN {
                    let [_, a, b, c] = *header;
                    let body_len = u32::from_be_bytes([0, a, b, c]) as usize;
                    if body_len > MAX_HELLO_LEN {
                        return Err(Stop::Malformed("client hello too large"));
                    }
                    let message_len = HANDSHAKE_HEADER_LEN + body_len;
                    self.message_len = Some(message_len);
                    break (message_len, start, len);
                }
                if payload.len() < len {
                    return Err(Stop::Incomplete);
                }
                walk.advance(len);
            },
        };
        // The record that completed the header, then the rest: only their lengths matter now.
        loop {
            // The ClientHello must end on a record boundary (RFC 8446 §5.1); nothing else may
            // follow it in the client's first flight.
            if walk.got + len > message_len {
                return Err(Stop::Malformed("record continues past client hello"));
            }
            if buf.len() < start + len {
                return Err(Stop::Incomplete);
            }
            walk.advance(len);
            if walk.got == message_len {
                return Ok(Framed {
                    body_len: message_len - HANDSHAKE_HEADER_LEN,
                    end: walk.pos,
                });
            }
            (start, len) = walk.next_record(buf)?;
        }
    }
}

/// Where the record walk stands.
#[derive(Debug, Default)]
struct Walk {
    /// Start of the current record header.
    pos: usize,
    /// Message bytes in the records before `pos`.
    got: usize,
    /// Non-empty records before `pos`.
    records: usize,
    empty_records: usize,
}

impl Walk {
    /// Checks headers from `pos` on, steps over empty records, and returns the payload start and
    /// length of the next non-empty record (which may not have fully arrived). Calling it again
    /// on the same or a longer input returns the same record: it moves only past empty ones.
    #[inline(always)] // the hot loop; a call per record costs twice the work
    fn next_record(&mut self, buf: &[u8]) -> Result<(usize, usize), Stop> {
        loop {
            // The hello is not complete and may use no more records.
            if self.records == MAX_RECORDS {
                return Err(Stop::Malformed(TOO_MANY_RECORDS));
            }
            let rest = buf.get(self.pos..).unwrap_or_default();
            let Some(&[CONTENT_HANDSHAKE, 3, 0..=4, hi, lo]) = rest.first_chunk() else {
                return Err(refuse_header(rest, self.pos == 0));
            };
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            if len > MAX_RECORD_LEN {
                return Err(Stop::Malformed("record too large"));
            }
            let start = self.pos + RECORD_HEADER_LEN;
            if len > 0 {
                return Ok((start, len));
            }
            self.empty_records += 1;
            if self.empty_records > MAX_EMPTY_RECORDS {
                return Err(Stop::Malformed("too many empty records"));
            }
            self.pos = start;
        }
    }

    /// Moves past the current record, whose payload is `len` bytes and has fully arrived.
    fn advance(&mut self, len: usize) {
        self.got += len;
        self.pos += RECORD_HEADER_LEN + len;
        self.records += 1;
    }
}

/// Why `rest` does not start with a whole handshake record header of TLS version 3.0–3.4, judged
/// from as few bytes as are present: content type, then version, else Incomplete. The first
/// record decides whether this is TLS at all; later ones can only be malformed TLS.
fn refuse_header(rest: &[u8], first: bool) -> Stop {
    let refuse = |why| {
        if first {
            Stop::NotTls
        } else {
            Stop::Malformed(why)
        }
    };
    if rest.first().is_some_and(|&t| t != CONTENT_HANDSHAKE) {
        return refuse("non-handshake record before client hello complete");
    }
    let bad_major = rest.get(1).is_some_and(|&major| major != 3);
    let bad_minor = rest.get(2).is_some_and(|&minor| minor > 4);
    if bad_major || bad_minor {
        return refuse("bad record version");
    }
    Stop::Incomplete
}

mod body;

#[cfg(test)]
mod tests;
