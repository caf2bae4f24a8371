//! The second step of [`super::parse`]: reading a ClientHello that the record walk found
//! complete, stepping across record headers in place.

use super::{
    ServerName, EXT_ECH, EXT_SERVER_NAME, HANDSHAKE_HEADER_LEN, MAX_SESSION_ID_LEN,
    NAME_TYPE_HOST_NAME, RECORD_HEADER_LEN, TRUNCATED,
};

/// Reads a handshake message that the record walk found complete, stepping across record headers in
/// place. `left` bounds this view: a sub-view made by [`Reader::take`] cannot read past its end.
#[derive(Clone, Copy)]
pub(super) struct Reader<'a> {
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
    pub(super) fn new(buf: &'a [u8], body_len: usize) -> Option<Self> {
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
pub(super) fn parse_body(mut r: Reader<'_>) -> Result<(Option<ServerName>, bool), &'static str> {
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
