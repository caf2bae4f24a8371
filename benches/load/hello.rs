//! The ClientHello the load tools send (`examples/loadgen.rs`, `benches/load.rs`), shared by
//! `#[path]` so both send the same bytes.

fn put_u16(v: &mut Vec<u8>, x: usize) {
    v.extend_from_slice(&u16::try_from(x).unwrap_or(u16::MAX).to_be_bytes());
}

/// A minimal but well-formed TLS 1.3 ClientHello in one record (174 bytes for
/// these names; OpenSSL answers it with a ServerHello).
/// `mode` goes into `random[0]` so the backend knows what the client expects.
pub fn client_hello(sni: &str, mode: u8) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut ext = Vec::with_capacity(64 + name.len());
    // server_name: list of one host_name entry.
    put_u16(&mut ext, 0x0000);
    put_u16(&mut ext, name.len() + 5);
    put_u16(&mut ext, name.len() + 3);
    ext.push(0);
    put_u16(&mut ext, name.len());
    ext.extend_from_slice(name);
    // supported_groups: x25519, secp256r1.
    for x in [0x000a, 4 + 2, 4, 0x001d, 0x0017] {
        put_u16(&mut ext, x);
    }
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256.
    for x in [0x000d, 4 + 2, 4, 0x0403, 0x0804] {
        put_u16(&mut ext, x);
    }
    // key_share: one x25519 share (any 32 bytes parse; nothing is negotiated).
    for x in [0x0033, 2 + 4 + 32, 4 + 32, 0x001d, 32] {
        put_u16(&mut ext, x);
    }
    ext.extend((0u8..32).map(|b| b.wrapping_mul(91).wrapping_add(9)));
    // supported_versions: TLS 1.3, TLS 1.2.
    put_u16(&mut ext, 0x002b);
    put_u16(&mut ext, 5);
    ext.push(4);
    put_u16(&mut ext, 0x0304);
    put_u16(&mut ext, 0x0303);

    let mut body = Vec::with_capacity(64 + ext.len());
    put_u16(&mut body, 0x0303); // legacy_version TLS 1.2
    body.push(mode);
    body.extend((1u8..32).map(|b| b.wrapping_mul(37)));
    body.push(0); // empty legacy_session_id
    for x in [8, 0x1301, 0x1302, 0xc02b, 0xc02f] {
        put_u16(&mut body, x);
    }
    body.extend_from_slice(&[1, 0]); // compression: null only
    put_u16(&mut body, ext.len());
    body.extend_from_slice(&ext);

    let mut rec = Vec::with_capacity(9 + body.len());
    rec.extend_from_slice(&[0x16, 0x03, 0x01]);
    put_u16(&mut rec, body.len() + 4);
    rec.push(1); // handshake type client_hello
    rec.extend_from_slice(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes()[1..]);
    rec.extend_from_slice(&body);
    rec
}
