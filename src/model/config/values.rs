//! Value parsers shared by the sections of the main file and by route files (addresses,
//! CIDRs, paths relative to their file): a leaf that `validate`, `admin` and `routes` all use,
//! so none of them imports another for a helper.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;

use super::error::Problems;
use super::raw::S;
use crate::model::allow::parse_net;

pub(crate) fn binds_same(x: SocketAddr, y: SocketAddr) -> bool {
    let same_family = x.is_ipv4() == y.is_ipv4();
    let overlap =
        x.ip() == y.ip() || (same_family && (x.ip().is_unspecified() || y.ip().is_unspecified()));
    x.port() == y.port() && x.port() != 0 && overlap
}

pub(crate) fn socket_addr(
    raw: &S<String>,
    file: &str,
    what: &str,
    errs: &mut Problems,
) -> Option<SocketAddr> {
    match raw.value.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.add(
                file,
                Some(&raw.referenced),
                what,
                format!("invalid address {:?} (expected ip:port, e.g. \"0.0.0.0:9440\" or \"[::]:9440\")", raw.value),
            );
            None
        }
    }
}

pub(crate) fn cidrs<'a>(
    raw: impl ExactSizeIterator<Item = (&'a str, u64)>,
    file: &str,
    what: &str,
    errs: &mut Problems,
) -> Vec<IpNet> {
    let mut out = Vec::with_capacity(raw.len());
    for (s, line) in raw {
        match parse_net(s) {
            Some(net) => out.push(net),
            None => errs.add_line(file, line, what, format!("invalid CIDR {s:?}")),
        }
    }
    out
}

/// `path` as written in `file`: relative paths are relative to that file's directory.
pub(crate) fn relative_to(file: &str, path: &str) -> Arc<Path> {
    let base = Path::new(file).parent().unwrap_or(Path::new(""));
    base.join(path).into()
}
