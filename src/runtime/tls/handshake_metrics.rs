//! The handshake metrics' handles, resolved once when TLS is first configured and shared by
//! every later [`super::Tls`] (a reload's too), so a handshake touches no metrics registry.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use super::failure::{Failure, Side};
use crate::runtime::meters;

/// `ch_edge_proxy_tls_handshakes_total` per side and result (exported at 0 from the start),
/// the time of successful ones per side, and the handshakes holding a slot.
#[derive(Debug)]
pub struct Meters {
    /// Per side (client, upstream): `ok`, then one per [`Failure::KEYWORDS`].
    results: [Vec<Counter>; 2],
    seconds: [Histogram; 2],
    pub in_flight: Gauge,
}

impl Meters {
    pub fn new() -> Meters {
        let results = |side: Side| {
            std::iter::once("ok")
                .chain(Failure::KEYWORDS.iter().copied())
                .map(|result| {
                    metrics::counter!(meters::TLS_HANDSHAKES, "side" => side.keyword(), "result" => result)
                })
                .collect()
        };
        let seconds = |side: Side| metrics::histogram!(meters::TLS_HANDSHAKE_SECONDS, "side" => side.keyword());
        Meters {
            results: [results(Side::Client), results(Side::Upstream)],
            seconds: [seconds(Side::Client), seconds(Side::Upstream)],
            in_flight: metrics::gauge!(meters::TLS_HANDSHAKES_IN_FLIGHT),
        }
    }

    /// One handshake's result, and its duration if it succeeded.
    pub fn counted(&self, side: Side, result: Result<(), Failure>, took: Duration) {
        let i = side as usize;
        let at = match result {
            Ok(()) => {
                self.seconds[i].record(took.as_secs_f64());
                0
            }
            Err(f) => {
                1 + Failure::KEYWORDS
                    .iter()
                    .position(|k| *k == f.keyword())
                    .unwrap_or(0)
            }
        };
        if let Some(counter) = self.results[i].get(at) {
            counter.increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_has_its_handle() {
        let m = Meters::new();
        for side in [Side::Client, Side::Upstream] {
            assert_eq!(m.results[side as usize].len(), 1 + Failure::KEYWORDS.len());
        }
        assert_eq!(Side::Client as usize, 0);
        assert_eq!(Side::Upstream as usize, 1);
    }
}
