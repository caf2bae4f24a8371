//! Weights in balancing, where they are not equal (equal weights take the plain paths in
//! [`super::balance`]): smooth weighted round robin (nginx's) and weighted rendezvous hashing.
//!
//! Round robin keeps no state beyond the route's per-connection counter: the counter's
//! position in nginx's sequence is found by running the algorithm from the start of its period
//! on the stack. The period is the sum of the weights after dividing by their greatest common
//! divisor; where that stays large, the weights are scaled down to bound the work per
//! connection ([`STEP_BUDGET`]), each non-zero weight staying at least 1.

/// Most addresses whose smooth sequence is computed (on the stack); a route with more unequal
/// weights takes them in blocks (still in proportion, not interleaved).
pub const MAX_SMOOTH: usize = 32;

/// Most (period × addresses) steps run per choice.
pub const STEP_BUDGET: u64 = 4096;

/// Of `n` addresses weighing `weight(i)`, the one smooth weighted round robin gives connection
/// number `rotation`, or the next in the sequence that is `eligible`; `None` when no eligible
/// address has a weight.
pub(super) fn round_robin(
    n: usize,
    weight: &dyn Fn(usize) -> u32,
    rotation: usize,
    eligible: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    let mut weights = [0u64; MAX_SMOOTH];
    let Some(w) = weights.get_mut(..n) else {
        return blocks(n, weight, rotation, eligible);
    };
    for (i, w) in w.iter_mut().enumerate() {
        *w = u64::from(weight(i));
    }
    let total = reduce(w, (STEP_BUDGET / n.max(1) as u64).max(n as u64));
    if total == 0 {
        return None;
    }
    let mut current = [0i64; MAX_SMOOTH];
    let current = current.get_mut(..n)?;
    let start = rotation as u64 % total;
    // One period past the start is every address with a weight once at least.
    for step in 0..start + total {
        let best = swrr_step(current, w, total);
        if step >= start && eligible(best) {
            return Some(best);
        }
    }
    None
}

/// Where connection number `rotation` of a route goes when some of its upstreams are refusal
/// placeholders (invalid backendRefs): the served upstreams weigh `served` together, the
/// placeholders `refused(i)` (`i < n`). Smooth weighted round robin between them, so the shares
/// are exact over each period whatever the balance: `Err(i)`, refused for placeholder `i`; or
/// `Ok(k)`, served as the k-th served connection, the rotation the served upstreams' own
/// balancing goes on with (consecutive, so the refusals do not skew its ties or its order).
/// No placeholder weighs anything: `Ok(rotation)`.
pub fn refusal_share(
    served: u64,
    n: usize,
    refused: &dyn Fn(usize) -> u64,
    rotation: usize,
) -> Result<usize, usize> {
    // More placeholders than fit: the last ones share the last slot.
    let n = n.min(MAX_SMOOTH - 1);
    let mut weights = [0u64; MAX_SMOOTH];
    let w = weights.get_mut(..=n).unwrap_or_default();
    for (i, x) in w.iter_mut().enumerate() {
        *x = match i {
            0 => served,
            _ => refused(i - 1),
        };
    }
    if w.iter().skip(1).all(|&x| x == 0) {
        return Ok(rotation);
    }
    let total = reduce(w, (STEP_BUDGET / (n as u64 + 1)).max(n as u64 + 1));
    let mut current = [0i64; MAX_SMOOTH];
    let current = current.get_mut(..=n).unwrap_or_default();
    let (full, start) = (rotation as u64 / total, rotation as u64 % total);
    let mut served_before = 0u64;
    for step in 0..=start {
        let best = swrr_step(current, w, total);
        if step == start {
            return match best {
                0 => Ok(full
                    .wrapping_mul(w.first().copied().unwrap_or(0))
                    .wrapping_add(served_before) as usize),
                i => Err((i - 1).min(n - 1)),
            };
        }
        if best == 0 {
            served_before += 1;
        }
    }
    Ok(rotation)
}

/// One step of nginx's smooth weighted round robin (ngx_http_upstream_get_peer): every
/// address gains its weight, the highest (the first of equals) is chosen and loses the total.
fn swrr_step(current: &mut [i64], weights: &[u64], total: u64) -> usize {
    let mut best = 0;
    let mut best_value = i64::MIN;
    for (i, (c, &w)) in current.iter_mut().zip(weights).enumerate() {
        *c += w as i64;
        if *c > best_value {
            best = i;
            best_value = *c;
        }
    }
    if let Some(c) = current.get_mut(best) {
        *c -= total as i64;
    }
    best
}

/// Divides `w` by the weights' greatest common divisor and, if their sum still exceeds
/// `cap`, scales them to about `cap` (a non-zero weight stays ≥ 1). Returns the sum.
pub(super) fn reduce(w: &mut [u64], cap: u64) -> u64 {
    let g = w.iter().fold(0, |g, &x| gcd(g, x));
    if g == 0 {
        return 0;
    }
    for x in w.iter_mut() {
        *x /= g;
    }
    let total: u64 = w.iter().sum();
    if total <= cap {
        return total;
    }
    for x in w.iter_mut() {
        if *x > 0 {
            *x = (*x * cap / total).max(1);
        }
    }
    w.iter().sum()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// More addresses than [`MAX_SMOOTH`]: the rotation's place in the weights laid end to end,
/// then the next eligible address.
fn blocks(
    n: usize,
    weight: &dyn Fn(usize) -> u32,
    rotation: usize,
    eligible: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    let total: u64 = (0..n).map(|i| u64::from(weight(i))).sum();
    if total == 0 {
        return None;
    }
    let mut at = rotation as u64 % total;
    let mut first = 0;
    for i in 0..n {
        let w = u64::from(weight(i));
        if at < w {
            first = i;
            break;
        }
        at -= w;
    }
    (first..n)
        .chain(0..first)
        .find(|&i| weight(i) > 0 && eligible(i))
}

/// The weighted rendezvous key of an address whose plain score is `score`: `weight / -ln(u)`
/// with `u` the score as a number in (0, 1) (Schindelhauer and Schomaker's weighted
/// distributed hash tables). A tag goes to the highest key, so each address takes its
/// weight's share of tags, and changing one address's weight moves tags only to or from it.
pub(super) fn rendezvous(score: u64, weight: u32) -> f64 {
    // 53 bits: exactly representable; +0.5 keeps u off 0 and 1.
    let u = ((score >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -u.ln()
}
