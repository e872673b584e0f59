//! Every instruction-set path against the portable one. One test in its own
//! binary, because it switches the process-wide path.

mod common;

use common::*;
use zerotrustml_core::simd::{self, Isa};
use zerotrustml_core::*;

#[test]
fn every_path_agrees_and_respects_its_bound() {
    let paths = [Isa::Scalar, Isa::Avx2, Isa::Avx512];
    let cases: Vec<(usize, usize, f32, u64)> = vec![
        (3, 1, 0.0, 1),
        (7, 15, 0.0, 2),
        (10, 1024, 0.0, 3),
        (23, 3000, 0.0, 4),
        (13, 2049, 500.0, 5),
        (50, 777, 1.0, 6),
    ];
    for &(n, d, offset, seed) in &cases {
        let mut x = random(n, d, seed);
        x.iter_mut().for_each(|v| *v += offset);
        let r = Rows::from_flat(&x, n, d).unwrap();
        let mut reference: Option<(Vec<usize>, Vec<f32>, Vec<f32>, Vec<f32>)> = None;
        for &isa in &paths {
            let taken = simd::force(isa);
            let g = gram::gram_with(&r, taken).unwrap();
            for i in 0..n {
                for j in 0..n {
                    let exact = exact_sqdist(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]);
                    let err = (g.dist(i, j) - exact).abs();
                    assert!(
                        err <= g.dist_err(i, j),
                        "{taken:?} n={n} d={d} ({i},{j}) err {err} > {}",
                        g.dist_err(i, j)
                    );
                }
            }
            let f = (n.saturating_sub(3)) / 2;
            let sel = multi_krum(&r, f, (n - f).max(1), KrumVariant::Standard).unwrap().selected;
            let med = median(&r).unwrap().vector;
            let tm = trimmed_mean(&r, n / 4).unwrap().vector;
            let mn = mean(&r, None).unwrap().vector;
            match &reference {
                None => reference = Some((sel, med, tm, mn)),
                Some((s0, m0, t0, a0)) => {
                    let (mut s0, mut s1) = (s0.clone(), sel);
                    s0.sort();
                    s1.sort();
                    assert_eq!(s0, s1, "{taken:?} selection");
                    assert_eq!(m0, &med, "{taken:?} median is bit-identical");
                    assert_eq!(t0, &tm, "{taken:?} trimmed mean is bit-identical");
                    assert_eq!(a0, &mn, "{taken:?} mean is bit-identical");
                }
            }
        }
    }
    simd::force(Isa::Avx512);
}
