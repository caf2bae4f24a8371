//! Pure TLS ClientHello parser: bytes in, SNI out. No I/O.
