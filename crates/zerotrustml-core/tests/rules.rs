//! The rules against hand-computed cases and naive references.

mod common;

use common::*;
use zerotrustml_core::order::{batcher, network_after_blocks, network_for, BLOCK};
use zerotrustml_core::*;

fn rows<'a>(x: &'a [f32], n: usize, d: usize) -> Rows<'a, f32> {
    Rows::from_flat(x, n, d).unwrap()
}

/// Runs a comparator network on a slice, as the kernels do on lanes.
fn apply<T: PartialOrd>(net: &[(u32, u32)], v: &mut [T]) {
    for &(a, b) in net {
        let (a, b) = (a as usize, b as usize);
        if v[a] > v[b] {
            v.swap(a, b);
        }
    }
}

#[test]
fn batcher_sorts_every_zero_one_input() {
    // 0-1 principle: a comparator network sorts everything iff it sorts 0/1.
    for n in 1..=14usize {
        let net = batcher(n);
        for bits in 0u32..(1 << n) {
            let mut v: Vec<u8> = (0..n).map(|i| ((bits >> i) & 1) as u8).collect();
            apply(&net, &mut v);
            assert!(v.windows(2).all(|w| w[0] <= w[1]), "n={n} bits={bits:b}");
        }
    }
}

#[test]
fn pruned_networks_place_the_needed_positions() {
    let mut r = zerotrustml_core::rng::SplitMix64::new(7);
    for n in [3usize, 15, 33, 64, 100, 131] {
        for (lo, hi) in [(n / 2, n / 2 + 1), ((n - 1) / 2, n / 2 + 1), (n / 10, n - n / 10), (0, n)] {
            let net = network_for(n, lo, hi);
            assert!(net.len() <= batcher(n).len());
            for _ in 0..20 {
                let mut v: Vec<u64> = (0..n).map(|_| r.below(8)).collect();
                let mut sorted = v.clone();
                sorted.sort();
                apply(&net, &mut v);
                assert_eq!(&v[lo..hi], &sorted[lo..hi], "n={n} lo={lo} hi={hi}");
            }
        }
    }
}

#[test]
fn networks_after_sorted_blocks_place_the_needed_positions() {
    let mut r = zerotrustml_core::rng::SplitMix64::new(11);
    for n in [2usize, 15, 16, 17, 31, 32, 33, 50, 64, 100, 129] {
        for (lo, hi) in [((n - 1) / 2, n / 2 + 1), (n / 10, n - n / 10), (0, n)] {
            let net = network_after_blocks(n, lo, hi);
            assert!(net.len() < network_for(n, lo, hi).len() || n <= BLOCK || lo == hi);
            for _ in 0..20 {
                let mut v: Vec<u64> = (0..n).map(|_| r.below(1000)).collect();
                let mut sorted = v.clone();
                sorted.sort();
                v.chunks_mut(BLOCK).for_each(|b| b.sort());
                apply(&net, &mut v);
                assert_eq!(&v[lo..hi], &sorted[lo..hi], "n={n} lo={lo} hi={hi}");
            }
        }
    }
}

#[test]
fn hand_computed_small_cases() {
    // Three points on a line and one outlier, d = 1.
    let x = [0.0f32, 1.0, 2.0, 100.0, 3.0];
    let r = rows(&x, 5, 1);
    assert_eq!(mean(&r, None).unwrap().vector, vec![21.2]);
    assert_eq!(mean(&r, Some(&[1.0, 1.0, 1.0, 0.0, 1.0])).unwrap().vector, vec![1.5]);
    assert_eq!(median(&r).unwrap().vector, vec![2.0]);
    // Sorted 0 1 2 3 100; trim one per side: (1 + 2 + 3) / 3.
    assert_eq!(trimmed_mean(&r, 1).unwrap().vector, vec![2.0]);
    // Krum f=1, k = n-f-2 = 2: scores 0:1+4=5, 1:1+1=2, 2:1+1=2, 3:97^2+98^2, 4:1+4=5.
    let k = krum(&r, 1, KrumVariant::Standard).unwrap();
    assert_eq!(k.selected, vec![1]);
    assert_eq!(k.vector, vec![1.0]);
    assert_eq!(k.scores, vec![5.0, 2.0, 2.0, 97.0 * 97.0 + 98.0 * 98.0, 5.0]);
    // ByzFL counts k = n-f-1 = 3: 1 -> 1+1+4 = 6, 2 -> 1+1+4 = 6, 0 -> 1+4+9 = 14.
    let kb = krum(&r, 1, KrumVariant::ByzFl).unwrap();
    assert_eq!(kb.selected, vec![1]);
    assert_eq!(kb.scores[0], 14.0);
    // Multi-Krum m=3: indices 1, 2 (score 2), then 0 (score 5, lower index than 4).
    let mk = multi_krum(&r, 1, 3, KrumVariant::Standard).unwrap();
    assert_eq!(mk.selected, vec![1, 2, 0]);
    assert_eq!(mk.vector, vec![1.0]);
    // Even n: mean of the two middle values.
    let x4 = [4.0f32, 1.0, 3.0, 2.0];
    assert_eq!(median(&rows(&x4, 4, 1)).unwrap().vector, vec![2.5]);
}

#[test]
fn bulyan_hand_case() {
    // n = 7, f = 1: theta = 5, beta = 3. Six points cluster, one outlier.
    let x = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0, 1000.0];
    let a = bulyan(&rows(&x, 7, 1), 1).unwrap();
    // The outlier is never selected; of the 5 selected the 3 closest to the
    // median are averaged.
    assert!(!a.selected.contains(&6));
    assert_eq!(a.selected.len(), 5);
    let mut sel: Vec<f32> = a.selected.iter().map(|&i| x[i]).collect();
    sel.sort_by(|p, q| p.total_cmp(q));
    let med = sel[2];
    let mut by_dist = sel.clone();
    by_dist.sort_by(|p, q| (p - med).abs().total_cmp(&(q - med).abs()).then(p.total_cmp(q)));
    let want = by_dist[..3].iter().sum::<f32>() / 3.0;
    assert!((a.vector[0] - want).abs() < 1e-6, "{:?} vs {want}", a.vector);
}

#[test]
fn median_and_trimmed_mean_match_sorting() {
    for (n, d) in [(1usize, 5usize), (2, 17), (7, 33), (10, 1000), (31, 77), (100, 50)] {
        let x = random(n, d, n as u64 * 31 + d as u64);
        let r = rows(&x, n, d);
        let med = median(&r).unwrap().vector;
        let f = n / 5;
        let tm = if n > 2 * f { Some(trimmed_mean(&r, f).unwrap().vector) } else { None };
        for c in 0..d {
            let col = column(&x, n, d, c);
            let want = if n % 2 == 1 { col[n / 2] } else { ((col[n / 2 - 1] as f64 + col[n / 2] as f64) / 2.0) as f32 };
            assert_eq!(med[c], want, "median n={n} c={c}");
            if let Some(tm) = &tm {
                let want = col[f..n - f].iter().map(|&v| v as f64).sum::<f64>() / (n - 2 * f) as f64;
                assert_eq!(tm[c], want as f32, "trimmed n={n} c={c}");
            }
        }
    }
}

#[test]
fn krum_matches_exact_reference_on_near_ties() {
    // Near-duplicates around a large common offset: the Gram form cancels
    // badly here, so the selection must come from the exact re-decision.
    for seed in 0..6u64 {
        let (n, d) = (13usize, 2000usize);
        let mut x = random(n, d, seed);
        for v in x.iter_mut() {
            *v = 1000.0 + *v * 1e-3;
        }
        // Exact duplicates of row 5 at rows 9 and 11.
        let row5 = x[5 * d..6 * d].to_vec();
        x[9 * d..10 * d].copy_from_slice(&row5);
        x[11 * d..12 * d].copy_from_slice(&row5);
        let r = rows(&x, n, d);
        for f in [1usize, 3, 5] {
            let pool: Vec<usize> = (0..n).collect();
            let scores = naive_krum_scores(&x, n, d, &pool, n - f - 2);
            let want = naive_lowest(&scores, &pool, 1);
            let got = krum(&r, f, KrumVariant::Standard).unwrap();
            assert_eq!(got.selected, want, "seed={seed} f={f}");
            let m = n - f;
            let got_m = multi_krum(&r, f, m, KrumVariant::Standard).unwrap();
            let mut a = got_m.selected.clone();
            let mut b = naive_lowest(&scores, &pool, m);
            a.sort();
            b.sort();
            assert_eq!(a, b, "multi seed={seed} f={f}");
        }
    }
}

#[test]
fn bulyan_selection_matches_iterated_exact_krum() {
    for seed in 0..4u64 {
        let (n, d, f) = (15usize, 300usize, 3usize);
        let mut x = random(n, d, 100 + seed);
        for v in x[..3 * d].iter_mut() {
            *v *= 50.0;
        }
        let got = bulyan(&rows(&x, n, d), f).unwrap();
        let mut pool: Vec<usize> = (0..n).collect();
        let mut want = Vec::new();
        while want.len() < n - 2 * f {
            let k = pool.len().saturating_sub(f + 2).max(1);
            let scores = naive_krum_scores(&x, n, d, &pool, k);
            let best = naive_lowest(&scores, &pool, 1)[0];
            pool.retain(|&i| i != best);
            want.push(best);
        }
        assert_eq!(got.selected, want, "seed={seed}");
    }
}

#[test]
fn geometric_median_of_symmetric_points_is_the_centre() {
    // Four corners of a square and a far point on the diagonal's extension:
    // the Weiszfeld iterate converges near the square's centre.
    let x = [0.0f32, 0.0, 2.0, 0.0, 0.0, 2.0, 2.0, 2.0];
    let a = geometric_median(&Rows::from_flat(&x, 4, 2).unwrap(), None, WeiszfeldParams::default()).unwrap();
    assert!((a.vector[0] - 1.0).abs() < 1e-6 && (a.vector[1] - 1.0).abs() < 1e-6, "{:?}", a.vector);
    assert!(a.scores.iter().all(|s| (s - 0.25).abs() < 1e-9));
}

#[test]
fn centered_clipping_one_step_by_hand() {
    // d = 1, centre 0, tau 1: x = [0.5, 4, -2] -> clipped [0.5, 1, -1], mean 1/6.
    let x = [0.5f32, 4.0, -2.0];
    let a = centered_clipping(&Rows::from_flat(&x, 3, 1).unwrap(), 1.0, 1, None).unwrap();
    assert!((a.vector[0] - 0.5 / 3.0).abs() < 1e-7, "{:?}", a.vector);
    assert_eq!(a.scores, vec![1.0, 0.25, 0.5]);
}

#[test]
fn nnm_and_bucketing() {
    let x = [0.0f32, 1.0, 10.0, 11.0, 100.0];
    let r = Rows::from_flat(&x, 5, 1).unwrap();
    let m = nnm(&r, 2).unwrap(); // 3 nearest, self first
    assert_eq!(m.groups[0], vec![0, 1, 2]);
    assert_eq!(m.groups[4], vec![4, 3, 2]);
    assert_eq!(m.rows[0], 11.0 / 3.0);
    let b = bucketing(&r, 2, 42).unwrap();
    let mut all: Vec<usize> = b.groups.concat();
    all.sort();
    assert_eq!(all, vec![0, 1, 2, 3, 4]);
    assert_eq!(b.groups.iter().map(|g| g.len()).collect::<Vec<_>>(), vec![2, 2, 1]);
    assert_eq!(bucketing(&r, 2, 42).unwrap(), b);
}

#[test]
fn bad_input_is_a_typed_error() {
    let x = [1.0f32, f32::NAN, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
    let r = Rows::from_flat(&x, 5, 2).unwrap();
    let nan = CoreError::NonFinite { param: "updates", row: 0, col: 1, value: f64::NAN };
    let is_nan = |e: CoreError| matches!(e, CoreError::NonFinite { param: "updates", row: 0, col: 1, .. });
    assert!(is_nan(median(&r).unwrap_err()), "{nan}");
    assert!(is_nan(trimmed_mean(&r, 1).unwrap_err()));
    assert!(is_nan(krum(&r, 1, KrumVariant::Standard).unwrap_err()));
    assert!(is_nan(mean(&r, None).unwrap_err()));
    assert!(is_nan(geometric_median(&r, None, WeiszfeldParams::default()).unwrap_err()));
    assert!(is_nan(centered_clipping(&r, 1.0, 1, None).unwrap_err()));
    let ok = random(5, 2, 1);
    let r = Rows::from_flat(&ok, 5, 2).unwrap();
    assert!(matches!(krum(&r, 2, KrumVariant::Standard), Err(CoreError::Precondition { rule: "krum", .. })));
    assert!(matches!(bulyan(&r, 1), Err(CoreError::Precondition { rule: "bulyan", .. })));
    assert!(matches!(trimmed_mean(&r, 3), Err(CoreError::Precondition { rule: "trimmed_mean", .. })));
    assert!(matches!(multi_krum(&r, 1, 0, KrumVariant::Standard), Err(CoreError::InvalidParameter { param: "m", .. })));
    assert!(matches!(
        mean(&r, Some(&[1.0, -1.0, 1.0, 1.0, 1.0])),
        Err(CoreError::InvalidParameter { param: "weights", .. })
    ));
    assert!(matches!(Rows::<f32>::new(vec![]), Err(CoreError::Empty { .. })));
    let a = [1.0f32, 2.0];
    let b = [1.0f32];
    assert!(matches!(Rows::new(vec![&a[..], &b[..]]), Err(CoreError::Shape { index: 1, expected: 2, got: 1, .. })));
    // Finite but huge: the f32 partial sums overflow, the f64 path does not.
    let big = [3e30f32, 0.0, -3e30, 0.0, 1.0, 1.0, 2.0, 2.0, 1.5, 1.5];
    let k = krum(&Rows::from_flat(&big, 5, 2).unwrap(), 1, KrumVariant::Standard).unwrap();
    assert!(k.scores.iter().all(|s| s.is_finite()));
    assert_eq!(k.selected, vec![4]);
}

#[test]
fn f64_inputs_give_the_same_rules() {
    let x = random(9, 40, 5);
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let a = krum(&Rows::from_flat(&x, 9, 40).unwrap(), 2, KrumVariant::Standard).unwrap();
    let b = krum(&Rows::from_flat(&x64, 9, 40).unwrap(), 2, KrumVariant::Standard).unwrap();
    assert_eq!(a.selected, b.selected);
    let m32 = median(&Rows::from_flat(&x, 9, 40).unwrap()).unwrap().vector;
    let m64 = median(&Rows::from_flat(&x64, 9, 40).unwrap()).unwrap().vector;
    assert!(m32.iter().zip(&m64).all(|(a, b)| *a as f64 == *b));
}
