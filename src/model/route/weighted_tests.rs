//! Weighted balancing, as deterministic counts: each table row is weights in, the choices (or
//! their counts) out.

use super::super::weighted::{reduce, MAX_SMOOTH, STEP_BUDGET};
use super::tests::Fake;
use super::{choose, Balance, Choose, Tag};

fn rr(r: usize) -> Choose<'static> {
    Choose::Balance(Balance::RoundRobin, r)
}

fn counts(n: usize, picks: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let mut c = vec![0; n];
    for i in picks {
        c[i] += 1;
    }
    c
}

#[test]
fn round_robin_is_nginx_smooth_sequence() {
    for (weights, sequence) in [
        // nginx's own example (ngx_http_upstream_round_robin.c): a a b a c a a.
        (&[5, 1, 1][..], &[0, 0, 1, 0, 2, 0, 0][..]),
        (&[3, 1], &[0, 0, 1, 0]),
        (&[2, 1, 1], &[0, 1, 2, 0]),
        // Scaled by a common factor: the same sequence.
        (&[80, 20], &[0, 0, 1, 0, 0]),
        (&[4, 1], &[0, 0, 1, 0, 0]),
        // Weight 0: never in the sequence.
        (&[1, 0, 2], &[2, 0, 2]),
        // Equal weights: a plain rotation.
        (&[7, 7, 7], &[0, 1, 2]),
    ] {
        let pool = Fake::weighted(weights);
        let got: Vec<usize> = (0..sequence.len() * 2)
            .map(|r| choose(&pool, rr(r)).unwrap())
            .collect();
        let twice: Vec<usize> = sequence.iter().chain(sequence).copied().collect();
        assert_eq!(got, twice, "{weights:?}");
    }
}

#[test]
fn every_balance_spreads_in_proportion_to_weights() {
    for (weights, n, expected) in [
        (&[3, 1][..], 400, &[300, 100][..]),
        (&[1, 2, 3, 4], 1000, &[100, 200, 300, 400]),
        (&[5, 0, 5], 100, &[50, 0, 50]),
        (&[1, 2047], 2048 * 2, &[2, 4094]),
    ] {
        let pool = Fake::weighted(weights);
        // Round robin: exact over whole periods.
        let got = counts(weights.len(), (0..n).map(|r| choose(&pool, rr(r)).unwrap()));
        assert_eq!(got, expected, "round_robin {weights:?}");
    }
    // least_conn with connections held open: (open + 1) / weight fills in proportion.
    for (weights, n, expected) in [
        (&[3, 1][..], 8, &[6, 2][..]),
        (&[1, 2, 3, 4], 20, &[2, 4, 6, 8]),
        (&[2, 0, 1], 9, &[6, 0, 3]),
    ] {
        let mut pool = Fake::weighted(weights);
        for r in 0..n {
            let i = choose(&pool, Choose::Balance(Balance::LeastConn, r)).unwrap();
            if let Some(s) = pool.seen[i].as_mut() {
                s.open += 1;
            }
        }
        let open: Vec<usize> = pool.seen.iter().map(|s| s.unwrap().open as usize).collect();
        assert_eq!(open, expected, "least_conn {weights:?}");
    }
    // Sticky: 20000 tags; each address's share within 2% of its weight's.
    for weights in [&[3, 1][..], &[1, 2, 3, 4], &[1, 0, 1]] {
        let pool = Fake::weighted(weights);
        let n = 20_000;
        let got = counts(
            weights.len(),
            (0..n).map(|t| {
                let tag = Tag::new(&format!("t{t}")).unwrap();
                choose(&pool, Choose::Sticky(&tag)).unwrap()
            }),
        );
        let sum: u32 = weights.iter().sum();
        for (i, (&c, &w)) in got.iter().zip(weights).enumerate() {
            let want = n as f64 * f64::from(w) / f64::from(sum);
            assert!(
                (c as f64 - want).abs() <= n as f64 * 0.02,
                "sticky {weights:?}: address {i} took {c}, expected about {want}"
            );
        }
    }
}

#[test]
fn least_conn_weighs_open_connections() {
    let lc = |r| Choose::Balance(Balance::LeastConn, r);
    for (weights, open, expected) in [
        // 4 open on weight 4 is as loaded as 1 on weight 1: (4+1)/4 < (1+1)/1.
        (&[4, 1][..], &[4, 1][..], 0),
        (&[4, 1], &[8, 1], 1),
        (&[1, 1], &[3, 2], 1),
    ] {
        let mut pool = Fake::weighted(weights);
        for (s, &o) in pool.seen.iter_mut().zip(open) {
            s.as_mut().unwrap().open = o;
        }
        assert_eq!(choose(&pool, lc(0)), Some(expected), "{weights:?} {open:?}");
    }
}

#[test]
fn equal_weights_choose_as_unweighted() {
    // Sticky with equal weights keeps the unweighted (golden) choice of every tag.
    let plain = Fake::weighted(&[1, 1, 1, 1]);
    let heavy = Fake::weighted(&[9, 9, 9, 9]);
    for t in 0..500 {
        let tag = Tag::new(&format!("s{t}")).unwrap();
        assert_eq!(
            choose(&plain, Choose::Sticky(&tag)),
            choose(&heavy, Choose::Sticky(&tag))
        );
    }
}

#[test]
fn a_weight_change_moves_tags_only_to_or_from_that_address() {
    let before = Fake::weighted(&[1, 1, 1, 1]);
    let after = Fake::weighted(&[1, 3, 1, 1]);
    let mut gained = 0;
    for t in 0..2000 {
        let tag = Tag::new(&format!("m{t}")).unwrap();
        let (b, a) = (
            choose(&before, Choose::Sticky(&tag)).unwrap(),
            choose(&after, Choose::Sticky(&tag)).unwrap(),
        );
        if a != b {
            assert_eq!(
                a, 1,
                "tag {t} moved from {b} to {a}, not to the heavier address"
            );
            gained += 1;
        }
    }
    // From 1/4 to 1/2 of the tags: about 500 move.
    assert!((400..=600).contains(&gained), "{gained}");
}

#[test]
fn weight_zero_is_never_chosen_even_when_nothing_else_is_left() {
    for how in [
        Choose::Balance(Balance::LeastConn, 0),
        Choose::Balance(Balance::RoundRobin, 0),
        Choose::Balance(Balance::RoundRobin, 1),
    ] {
        let pool = Fake::weighted(&[0, 2, 1]).eject(1).eject(2);
        // All weighted ones ejected: they are candidates again, the 0 still not.
        assert_ne!(choose(&pool, how), Some(0), "{how:?}");
        let rest = Fake::weighted(&[0, 2, 1]).tried(1).tried(2);
        assert_eq!(choose(&rest, how), None, "{how:?}");
        assert_eq!(choose(&Fake::weighted(&[0, 0]), how), None, "{how:?}");
    }
    let tag = Tag::new("x").unwrap();
    assert_eq!(choose(&Fake::weighted(&[0, 0]), Choose::Sticky(&tag)), None);
    assert_eq!(
        choose(&Fake::weighted(&[0, 5]).tried(1), Choose::Sticky(&tag)),
        None
    );
}

#[test]
fn round_robin_skips_ejected_and_tried_in_sequence_order() {
    // a a b a c a a with a ejected: b and c take turns.
    let pool = Fake::weighted(&[5, 1, 1]).eject(0);
    let got: Vec<usize> = (0..7).map(|r| choose(&pool, rr(r)).unwrap()).collect();
    assert_eq!(got, [1, 1, 1, 2, 2, 1, 1]);
    let tried = Fake::weighted(&[5, 1, 1]).tried(0).tried(1);
    assert!((0..7).all(|r| choose(&tried, rr(r)) == Some(2)));
}

#[test]
fn weights_reduce_and_scale_within_the_budget() {
    for (weights, cap, reduced) in [
        (&[80u32, 20][..], 100, &[4u32, 1][..]),
        (&[6, 9, 0], 100, &[2, 3, 0]),
        (&[1, 999], 100, &[1, 99]),
        // Two addresses: a period of at most 2048 (1:1000000 is taken as 1:2047).
        (&[1, 1_000_000], STEP_BUDGET / 2, &[1, 2047]),
        (&[0, 0], 100, &[0, 0]),
    ] {
        let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x)).collect();
        let total = reduce(&mut w, cap);
        let want: Vec<u64> = reduced.iter().map(|&x| u64::from(x)).collect();
        assert_eq!((w, total), (want.clone(), want.iter().sum()), "{weights:?}");
    }
}

#[test]
fn more_addresses_than_the_smooth_limit_still_follow_weights() {
    let mut weights = vec![1u32; MAX_SMOOTH + 8];
    weights[0] = 9;
    weights[5] = 0;
    let pool = Fake::weighted(&weights);
    let total: usize = weights.iter().map(|&w| w as usize).sum();
    let got = counts(
        weights.len(),
        (0..total * 3).map(|r| choose(&pool, rr(r)).unwrap()),
    );
    let want: Vec<usize> = weights.iter().map(|&w| w as usize * 3).collect();
    assert_eq!(got, want);
}

/// Invalid backendRefs' share of connections, refused: (served weight, placeholders' weights)
/// in, one period of decisions out (`S`: served, a digit: refused for that placeholder), and
/// the served connections numbered 0, 1, 2, … so the served upstreams' balancing goes on as if
/// nothing were refused.
#[test]
fn refusals_take_their_weight_and_leave_the_served_rotation_whole() {
    use super::super::weighted::refusal_share;
    let rows: [(u64, &[u64], &str); 6] = [
        (1, &[], "SSSS"),
        (1, &[0], "SSSS"),
        (1, &[1], "S0S0"),
        (3, &[1], "SS0SSS0S"),
        (1, &[1, 2], "1S011S01"),
        // Nothing served: every connection refused.
        (0, &[1], "0000"),
    ];
    for (served, refused, want) in rows {
        let mut next_served = 0;
        let got: String = (0..want.len())
            .map(
                |rotation| match refusal_share(served, refused.len(), &|i| refused[i], rotation) {
                    Ok(k) => {
                        assert_eq!(k, next_served, "{served} {refused:?} at {rotation}");
                        next_served += 1;
                        'S'
                    }
                    Err(i) => char::from(b'0' + i as u8),
                },
            )
            .collect();
        assert_eq!(got, want, "{served} {refused:?}");
    }
    // Big weights stay in proportion (scaled to the step budget): 1 in 4 refused.
    let refused = (0..4000)
        .filter(|&r| refusal_share(999_999, 1, &|_| 333_333, r).is_err())
        .count();
    assert!((990..=1010).contains(&refused), "{refused}");
}
