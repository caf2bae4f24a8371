//! The pieces of a JSON access-log line, written straight into the line's buffer: this runs once
//! per connection, and `core::fmt` (padding, width and `Display` dispatch for every integer and
//! address, a date computed from scratch) cost more than the rest of the line's work. The output
//! is byte for byte what `write!` with `Display` gives (tested below).

use std::cell::Cell;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// An integer in decimal.
pub fn int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A JSON string: quoted, escaped by serde_json when it holds anything that needs escaping.
pub fn string(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// Whether `s` holds a control character, `"` or `\\`: eight bytes at a time (the usual
/// names and keywords have none).
fn needs_escape(s: &[u8]) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `w` is zero (exactly: no false positive once bytes >= 0x80 are masked out).
    let has_zero = |w: u64| (w.wrapping_sub(LOW) & !w & HIGH) != 0;
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        let w = u64::from_le_bytes(b);
        // Bytes >= 0x80 (UTF-8) never need escaping: clear them from every test.
        let ascii = !w & HIGH;
        let below_space = w.wrapping_sub(LOW * 0x20) & ascii;
        if below_space != 0
            || has_zero(w ^ (LOW * u64::from(b'"')))
            || has_zero(w ^ (LOW * u64::from(b'\\')))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// A socket address as `Display` writes it; IPv4 without `core::fmt`.
pub fn addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            // "255.255.255.255:65535" at most: built on the stack, appended once.
            let mut buf = [0u8; 21];
            let mut at = 0;
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    buf[at] = b'.';
                    at += 1;
                }
                if octet >= 100 {
                    buf[at] = b'0' + octet / 100;
                    at += 1;
                }
                if octet >= 10 {
                    buf[at] = b'0' + octet / 10 % 10;
                    at += 1;
                }
                buf[at] = b'0' + octet % 10;
                at += 1;
            }
            buf[at] = b':';
            at += 1;
            let mut port = itoa::Buffer::new();
            let port = port.format(v4.port()).as_bytes();
            buf[at..at + port.len()].copy_from_slice(port);
            out.extend_from_slice(&buf[..at + port.len()]);
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{a}");
        }
    }
}

thread_local! {
    /// The second of the last timestamp written, and its `YYYY-MM-DDTHH:MM:SS` (the date is
    /// computed once a second per thread, not per line).
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// `t` in RFC 3339 with microseconds, UTC, as `humantime::format_rfc3339_micros` writes it.
pub fn timestamp(out: &mut Vec<u8>, t: SystemTime) {
    let Ok(since) = t.duration_since(UNIX_EPOCH) else {
        let _ = write!(out, "{}", humantime::format_rfc3339_micros(t));
        return;
    };
    let secs = since.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != secs {
        let whole = UNIX_EPOCH + std::time::Duration::from_secs(secs);
        let text = humantime::format_rfc3339_seconds(whole).to_string();
        match text.as_bytes().get(..19) {
            Some(p) => prefix.copy_from_slice(p),
            None => {
                let _ = write!(out, "{}", humantime::format_rfc3339_micros(t));
                return;
            }
        }
        SECOND.set((secs, prefix));
    }
    out.extend_from_slice(&prefix);
    let micros = since.subsec_micros();
    let mut digits = *b".000000Z";
    let mut buf = itoa::Buffer::new();
    let text = buf.format(micros).as_bytes();
    // Below a million: at most six digits, right-aligned after the point.
    if let Some(slot) = digits.get_mut(7 - text.len().min(6)..7) {
        slot.copy_from_slice(text.get(..slot.len()).unwrap_or_default());
    }
    out.extend_from_slice(&digits);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};
    use std::time::Duration;

    fn with(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn addresses_as_display_writes_them() {
        let cases: Vec<SocketAddr> = vec![
            (Ipv4Addr::new(0, 0, 0, 0), 0).into(),
            (Ipv4Addr::new(127, 0, 0, 1), 9440).into(),
            (Ipv4Addr::new(255, 255, 255, 255), 65535).into(),
            (Ipv4Addr::new(10, 20, 3, 100), 8).into(),
            (Ipv4Addr::new(1, 99, 100, 109), 10).into(),
            (Ipv4Addr::new(200, 9, 90, 250), 65534).into(),
            (Ipv6Addr::LOCALHOST, 443).into(),
            "[2001:db8::1:0:0:1]:9440".parse().unwrap(),
            "[::ffff:192.0.2.1]:1".parse().unwrap(),
            SocketAddrV6::new(Ipv6Addr::LOCALHOST, 5, 0, 3).into(),
        ];
        for a in cases {
            assert_eq!(with(|o| addr(o, a)), a.to_string());
        }
        for o in 0..=255u8 {
            let a: SocketAddr = (Ipv4Addr::new(o, 255 - o, o / 3, o), u16::from(o) * 257).into();
            assert_eq!(with(|out| addr(out, a)), a.to_string());
        }
    }

    #[test]
    fn strings_as_serde_json_writes_them() {
        for s in [
            "",
            "a",
            "chi-demo.ch.example.com",
            "q\"uote",
            "back\\slash",
            "nl\n",
            "\u{1}",
            "é ü 日本",
        ] {
            assert_eq!(
                with(|o| string(o, s)),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn escapes_found_at_every_position() {
        let plain = "abcdefghijklmnopqrstuvwxyz0123456789.-_é日";
        assert!(!needs_escape(plain.as_bytes()));
        for bad in [b'"', b'\\', 0, 0x1f, b'\n'] {
            for at in 0..plain.len() {
                let mut v = plain.as_bytes().to_vec();
                v.insert(at, bad);
                assert!(needs_escape(&v), "{bad} at {at}");
            }
        }
        // Every single byte, alone and after seven plain ones.
        for b in 0..=255u8 {
            let want = b < 0x20 || b == b'"' || b == b'\\';
            assert_eq!(needs_escape(&[b]), want, "{b}");
            let mut v = b"abcdefg".to_vec();
            v.push(b);
            assert_eq!(needs_escape(&v), want, "{b} in a word");
        }
    }

    #[test]
    fn integers() {
        for v in [0u64, 7, 10, 99, 1234567890, u64::MAX] {
            assert_eq!(with(|o| int(o, v)), v.to_string());
        }
    }

    #[test]
    fn timestamps_as_humantime_writes_them() {
        // Seconds apart and within one second, so the cached date is reused and replaced.
        let base = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let mut times = vec![UNIX_EPOCH, base];
        for i in 0..2_000u64 {
            times.push(base + Duration::from_micros(i * 997_331));
            times.push(base + Duration::from_nanos(i * 1_000_003));
        }
        times.push(UNIX_EPOCH + Duration::from_secs(253_402_300_799)); // 9999-12-31T23:59:59
        for t in times {
            let want = humantime::format_rfc3339_micros(t).to_string();
            assert_eq!(with(|o| timestamp(o, t)), want);
        }
    }
}
