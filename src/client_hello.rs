//! Pure TLS ClientHello parser: bytes in, SNI out. No I/O, no allocation.
//!
//! The proxy calls [`parse`] after every read with everything received so far (after any PROXY
//! header) until the answer is not [`Peek::Incomplete`]. The answer depends only on a prefix of
//! the input: once `parse` answers anything but `Incomplete`, more bytes never change it, because
//! every check runs in stream order as soon as the bytes it needs are present.
//!
//! Each call works in two steps:
//! 1. [`frame`] walks the TLS record headers and the 4-byte handshake header to learn whether
//!    the whole ClientHello has arrived, refusing non-TLS and malformed framing as early as
//!    possible. Cost: one step per record in `buf`. Records carry at least one byte except for at
//!    most [`MAX_EMPTY_RECORDS`] empty ones, and a hello must complete within [`MAX_BUFFER`]
//!    bytes, so a call walks at most `MAX_BUFFER / 6 + MAX_EMPTY_RECORDS` ≈ 5,500 headers (a few
//!    µs). That worst case needs an attacker sending 1-byte records; a real client sends 1–3
//!    records, so each call is a few comparisons however the bytes trickle in.
//! 2. Only once the hello is complete, [`parse_body`] reads it through a [`Reader`] that steps
//!    across record boundaries in place (the SNI may straddle records; it is copied into
//!    [`ServerName`]). Cost: linear in the message plus its records, once per connection.

use std::fmt;

/// Handshake messages larger than this are refused (post-quantum hellos are ~1.7 KiB; Envoy/nginx/sozu cap at 16 KiB).
pub const MAX_HELLO_LEN: usize = 16 * 1024;

/// The caller never needs to buffer more than this: `parse` never answers `Incomplete` for a
/// buffer this long.
///
/// Twice [`MAX_HELLO_LEN`], so half of it is room for 5-byte record headers: a hello of the
/// largest size still fits when split into records of at least 6 bytes each, and any hello up to
/// 5 KiB (every real one, post-quantum included) fits even split into 1-byte records. A hello
/// spread thinner than that is padding an attacker pays for, and is refused as
/// `Malformed("client hello split into too many records")` once it cannot complete within this
/// many bytes, so preread memory per connection is bounded by this constant.
pub const MAX_BUFFER: usize = 2 * MAX_HELLO_LEN;

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
        Err(answer) => return answer,
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

/// A complete handshake message framed in records from offset 0 of the input.
struct Framed {
    /// Length of the ClientHello body (after the 4-byte handshake header).
    body_len: usize,
    /// End of the record that completed the message.
    end: usize,
}

/// Walks record headers until the handshake message is complete; `Err` carries the answer when it
/// is not (Incomplete, NotTls or Malformed). Checks run in stream order, each as soon as its bytes
/// are present, which is what makes answers stable as the input grows.
#[allow(clippy::result_large_err)] // the Err is never Hello; it is returned straight from `parse`
fn frame(buf: &[u8]) -> Result<Framed, Peek> {
    let mut pos = 0; // start of the current record header
    let mut handshake_header = [0u8; HANDSHAKE_HEADER_LEN];
    let mut got = 0; // message bytes in the records before `pos`
    let mut empty_records = 0;
    loop {
        // No record starting here could end within MAX_BUFFER, and the hello is not complete yet.
        if pos + RECORD_HEADER_LEN > MAX_BUFFER {
            return Err(Peek::Malformed(TOO_MANY_RECORDS));
        }
        let first = pos == 0;
        let header = buf.get(pos..).unwrap_or_default();
        // Content type, then version, judged from as few bytes as are present. The first record
        // decides whether this is TLS at all; later ones can only be malformed TLS.
        if header.first().is_some_and(|&t| t != CONTENT_HANDSHAKE) {
            return Err(if first {
                Peek::NotTls
            } else {
                Peek::Malformed("non-handshake record before client hello complete")
            });
        }
        let bad_major = header.get(1).is_some_and(|&major| major != 3);
        let bad_minor = header.get(2).is_some_and(|&minor| minor > 4);
        if bad_major || bad_minor {
            return Err(if first {
                Peek::NotTls
            } else {
                Peek::Malformed("bad record version")
            });
        }
        let Some(&[_, _, _, len_hi, len_lo]) = header.first_chunk::<RECORD_HEADER_LEN>() else {
            return Err(Peek::Incomplete);
        };
        let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        if len > MAX_RECORD_LEN {
            return Err(Peek::Malformed("record too large"));
        }
        let start = pos + RECORD_HEADER_LEN;
        let end = start + len;
        if end > MAX_BUFFER {
            return Err(Peek::Malformed(TOO_MANY_RECORDS));
        }
        if len == 0 {
            empty_records += 1;
            if empty_records > MAX_EMPTY_RECORDS {
                return Err(Peek::Malformed("too many empty records"));
            }
            pos = end;
            continue;
        }
        let payload = buf.get(start..end.min(buf.len())).unwrap_or_default();
        // Gather the handshake header, which may itself straddle records.
        for (i, &b) in payload.iter().enumerate() {
            match handshake_header.get_mut(got + i) {
                Some(slot) => *slot = b,
                None => break,
            }
        }
        let known = (got + payload.len()).min(HANDSHAKE_HEADER_LEN);
        if known >= 1 && handshake_header[0] != HANDSHAKE_CLIENT_HELLO {
            return Err(Peek::Malformed("not a client hello"));
        }
        let mut total = None; // whole message length, header included
        if known == HANDSHAKE_HEADER_LEN {
            let [_, a, b, c] = handshake_header;
            let body_len = u32::from_be_bytes([0, a, b, c]) as usize;
            if body_len > MAX_HELLO_LEN {
                return Err(Peek::Malformed("client hello too large"));
            }
            let message_len = HANDSHAKE_HEADER_LEN + body_len;
            // The ClientHello must end on a record boundary (RFC 8446 §5.1); nothing else may
            // follow it in the client's first flight.
            if got + len > message_len {
                return Err(Peek::Malformed("record continues past client hello"));
            }
            total = Some(message_len);
        }
        if payload.len() < len {
            return Err(Peek::Incomplete);
        }
        got += len;
        pos = end;
        if let Some(message_len) = total.filter(|&t| t == got) {
            return Ok(Framed {
                body_len: message_len - HANDSHAKE_HEADER_LEN,
                end,
            });
        }
    }
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
