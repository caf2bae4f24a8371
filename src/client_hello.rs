//! Pure TLS ClientHello parser: bytes in, SNI out. No I/O, no allocation.
//!
//! The proxy calls [`parse`] after every read with everything received so far (after any PROXY
//! header) until the answer is not [`Peek::Incomplete`]. The answer depends only on a prefix of
//! the input: once `parse` answers anything but `Incomplete`, more bytes never change it, because
//! every check runs in stream order as soon as the bytes it needs are present.
//!
//! Each call works in two steps:
//! 1. `frame` walks the TLS record headers and the 4-byte handshake header to learn whether
//!    the whole ClientHello has arrived, refusing non-TLS and malformed framing as early as
//!    possible. Cost: one step per record in `buf` (~40 instructions), at most [`MAX_RECORDS`] +
//!    [`MAX_EMPTY_RECORDS`] = 2,080 steps, ~10 µs (`benches/client_hello.rs`,
//!    `worst_incomplete_call`). A real client sends 1–3 records, so its calls cost a few
//!    comparisons however the bytes trickle in.
//! 2. Only once the hello is complete, `parse_body` reads it through a `Reader` that steps
//!    across record boundaries in place (the SNI may straddle records; it is copied into
//!    [`ServerName`]). Cost: linear in the message plus its records, once per connection
//!    (~0.5 µs for a real hello).
//!
//! Worst case per connection: an attacker sending 2,048 1-byte records and then the rest of a
//! 16 KiB hello, all in 1-byte TCP segments, makes ~27k calls of up to 2,080 steps each: ~42 M
//! steps, on the order of 0.1–0.3 s of CPU, paid for with ~27k TCP segments inside the hello
//! deadline. The record cap is what bounds this (without it the walk per call would grow with the
//! buffer); lowering [`MAX_RECORDS`] cuts it proportionally.

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
    let framed = match frame(buf) {
        Ok(framed) => framed,
        Err(Stop::Incomplete) => return Peek::Incomplete,
        Err(Stop::NotTls) => return Peek::NotTls,
        Err(Stop::Malformed(why)) => return Peek::Malformed(why),
    };
    let Some(reader) = Reader::new(buf, framed.body_len) else {
        return Peek::Malformed(TRUNCATED);
    };
    match parse_body(reader) {
        Ok((sni, ech)) => Peek::Hello(ClientHello {
            sni,
            ech,
            len: framed.end,
        }),
        Err(why) => Peek::Malformed(why),
    }
}

/// Why [`frame`] stopped short of a complete message: the [`Peek`] answers other than `Hello`,
/// kept small so the record walk does not move a `Peek`-sized value around.
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

/// Walks record headers until the handshake message is complete; `Err` says why not. Checks run
/// in stream order, each as soon as its bytes are present, which is what makes answers stable as
/// the input grows.
fn frame(buf: &[u8]) -> Result<Framed, Stop> {
    let mut walk = Walk::default();
    // The first records, until the 4-byte handshake header (which may straddle them) is known.
    let mut handshake_header = [0u8; HANDSHAKE_HEADER_LEN];
    let (message_len, mut start, mut len) = loop {
        let (start, len) = walk.next_record(buf)?;
        let payload = buf
            .get(start..buf.len().min(start + len))
            .unwrap_or_default();
        for (slot, &b) in handshake_header.iter_mut().skip(walk.got).zip(payload) {
            *slot = b;
        }
        let known = (walk.got + payload.len()).min(HANDSHAKE_HEADER_LEN);
        if known >= 1 && handshake_header[0] != HANDSHAKE_CLIENT_HELLO {
            return Err(Stop::Malformed("not a client hello"));
        }
        if known == HANDSHAKE_HEADER_LEN {
            let [_, a, b, c] = handshake_header;
            let body_len = u32::from_be_bytes([0, a, b, c]) as usize;
            if body_len > MAX_HELLO_LEN {
                return Err(Stop::Malformed("client hello too large"));
            }
            break (HANDSHAKE_HEADER_LEN + body_len, start, len);
        }
        if payload.len() < len {
            return Err(Stop::Incomplete);
        }
        walk.advance(len);
    };
    // The record that completed the header, then the rest: only their lengths matter now. This
    // loop is what every call repeats, so it is kept to a few comparisons per record.
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

/// Where the record walk stands.
#[derive(Default)]
struct Walk {
    /// Start of the current record header.
    pos: usize,
    /// Message bytes in the records before `pos`.
    got: usize,
    records: usize,
    empty_records: usize,
}

impl Walk {
    /// Checks headers from `pos` on, steps over empty records, and returns the payload start and
    /// length of the next non-empty record (which may not have fully arrived).
    #[inline(always)] // the hot loop of every call; a call per record costs twice the work
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
                self.records += 1;
                return Ok((start, len));
            }
            self.empty_records += 1;
            if self.empty_records > MAX_EMPTY_RECORDS {
                return Err(Stop::Malformed("too many empty records"));
            }
            self.pos = start;
        }
    }

    /// Moves past the current record, whose payload is `len` bytes.
    fn advance(&mut self, len: usize) {
        self.got += len;
        self.pos += RECORD_HEADER_LEN + len;
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

/// Reads a handshake message that [`frame`] found complete, stepping across record headers in
/// place. `left` bounds this view: a sub-view made by [`Reader::take`] cannot read past its end.
#[derive(Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
    /// Unread rest of the current record's payload (may run past `left` in a sub-view).
    chunk: &'a [u8],
    /// Offset of the next record header in `buf`.
    next: usize,
    /// Bytes this view may still read.
    left: usize,
}

impl<'a> Reader<'a> {
    /// A view of the ClientHello body, positioned after the handshake header.
    fn new(buf: &'a [u8], body_len: usize) -> Option<Self> {
        let mut reader = Reader {
            buf,
            chunk: &[],
            next: 0,
            left: HANDSHAKE_HEADER_LEN + body_len,
        };
        reader.skip(HANDSHAKE_HEADER_LEN)?;
        Some(reader)
    }

    fn left(&self) -> usize {
        self.left
    }

    /// Makes `chunk` non-empty by moving to the next non-empty record. `frame` validated the
    /// headers; `get` still guards every access, so a mismatch is a `None`, never a panic.
    fn fill(&mut self) -> Option<()> {
        while self.chunk.is_empty() {
            let start = self.next.checked_add(RECORD_HEADER_LEN)?;
            let &[_, _, _, hi, lo] = self.buf.get(self.next..start)?.first_chunk::<5>()?;
            let end = start.checked_add(usize::from(u16::from_be_bytes([hi, lo])))?;
            self.chunk = self.buf.get(start..end)?;
            self.next = end;
        }
        Some(())
    }

    fn u8(&mut self) -> Option<u8> {
        self.left = self.left.checked_sub(1)?;
        self.fill()?;
        let (&b, rest) = self.chunk.split_first()?;
        self.chunk = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    fn skip(&mut self, mut n: usize) -> Option<()> {
        self.left = self.left.checked_sub(n)?;
        while n > 0 {
            self.fill()?;
            let k = n.min(self.chunk.len());
            self.chunk = self.chunk.get(k..)?;
            n -= k;
        }
        Some(())
    }

    /// Splits off a view of the next `n` bytes and moves past them.
    fn take(&mut self, n: usize) -> Option<Reader<'a>> {
        let sub = Reader { left: n, ..*self };
        self.skip(n)?;
        Some(sub)
    }

    fn copy_to(&mut self, mut out: &mut [u8]) -> Option<()> {
        self.left = self.left.checked_sub(out.len())?;
        while !out.is_empty() {
            self.fill()?;
            let k = out.len().min(self.chunk.len());
            let (dst, rest) = out.split_at_mut(k);
            dst.copy_from_slice(self.chunk.get(..k)?);
            self.chunk = self.chunk.get(k..)?;
            out = rest;
        }
        Some(())
    }
}

/// Parses the ClientHello body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2): SNI and ECH presence.
fn parse_body(mut r: Reader<'_>) -> Result<(Option<ServerName>, bool), &'static str> {
    let version = r.u16().ok_or(TRUNCATED)?;
    if version >> 8 != 3 {
        return Err("bad client version");
    }
    r.skip(32).ok_or(TRUNCATED)?; // random
    let session_id_len = r.u8().ok_or(TRUNCATED)?;
    if session_id_len > MAX_SESSION_ID_LEN {
        return Err("session id too long");
    }
    r.skip(session_id_len.into()).ok_or(TRUNCATED)?;
    let suites_len = r.u16().ok_or(TRUNCATED)?;
    if suites_len == 0 || suites_len % 2 != 0 {
        return Err("bad cipher suites");
    }
    r.skip(suites_len.into()).ok_or(TRUNCATED)?;
    let compression_len = r.u8().ok_or(TRUNCATED)?;
    if compression_len == 0 {
        return Err("no compression methods");
    }
    r.skip(compression_len.into()).ok_or(TRUNCATED)?;
    if r.left() == 0 {
        return Ok((None, false)); // pre-extension hello (SSLv3 / early TLS)
    }
    let extensions_len = usize::from(r.u16().ok_or(TRUNCATED)?);
    if extensions_len < r.left() {
        return Err("data after extensions");
    }
    if extensions_len > r.left() {
        return Err("truncated extensions");
    }
    let (mut sni, mut seen_sni, mut ech) = (None, false, false);
    while r.left() > 0 {
        let ext_type = r.u16().ok_or("truncated extension")?;
        let ext_len = r.u16().ok_or("truncated extension")?;
        let body = r.take(ext_len.into()).ok_or("truncated extension")?;
        match ext_type {
            EXT_SERVER_NAME if seen_sni => return Err("duplicate server_name extension"),
            EXT_SERVER_NAME => {
                seen_sni = true;
                sni = parse_server_name(body)?;
            }
            EXT_ECH if ech => return Err("duplicate encrypted_client_hello extension"),
            EXT_ECH => ech = true,
            _ => {}
        }
    }
    Ok((sni, ech))
}

/// RFC 6066 §3: the first host_name entry of the server_name list; other name types are skipped.
fn parse_server_name(mut r: Reader<'_>) -> Result<Option<ServerName>, &'static str> {
    const BAD: &str = "bad server_name extension";
    let list_len = usize::from(r.u16().ok_or(BAD)?);
    if list_len != r.left() {
        return Err(BAD);
    }
    if list_len == 0 {
        return Err("empty server_name list");
    }
    let mut found = None;
    while r.left() > 0 {
        let name_type = r.u8().ok_or(BAD)?;
        let len = usize::from(r.u16().ok_or(BAD)?);
        if name_type != NAME_TYPE_HOST_NAME || found.is_some() {
            r.skip(len).ok_or(BAD)?;
            continue;
        }
        if len == 0 {
            return Err("empty server name");
        }
        if len > ServerName::MAX_LEN {
            return Err("server name too long");
        }
        let mut name = ServerName {
            bytes: [0; ServerName::MAX_LEN],
            len: 0,
        };
        r.copy_to(name.bytes.get_mut(..len).ok_or(BAD)?)
            .ok_or(BAD)?;
        name.len = u8::try_from(len).map_err(|_| BAD)?;
        found = Some(name);
    }
    Ok(found)
}

#[cfg(test)]
mod tests;
