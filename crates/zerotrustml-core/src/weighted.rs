//! Weighted sums of rows in f64, the building block of every averaging rule.
//! Each column is summed over the rows in index order, so the result does
//! not depend on threads or instruction set.

use crate::input::Rows;
use crate::par;
use crate::real::Real;

const GRAIN: usize = 1 << 14;

/// sum_r w[r] * x_{idx[r]} per column, in f64.
pub(crate) fn weighted_sum<T: Real>(rows: &Rows<T>, idx: &[usize], w: &[f64]) -> Vec<f64> {
    debug_assert_eq!(idx.len(), w.len());
    let mut out = vec![0.0f64; rows.d()];
    par::for_each_chunk_mut(&mut out, GRAIN, |c0, acc| {
        let c1 = c0 + acc.len();
        for (&r, &wr) in idx.iter().zip(w) {
            for (a, &x) in acc.iter_mut().zip(&rows.row(r)[c0..c1]) {
                *a += wr * x.to_f64();
            }
        }
    });
    out
}

/// Casts an f64 vector to the element type.
pub(crate) fn cast<T: Real>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

/// The mean of the rows `idx`, weighted by `w` (None: equal weights), in f64.
pub(crate) fn mean_of<T: Real>(rows: &Rows<T>, idx: &[usize], w: Option<&[f64]>) -> Vec<f64> {
    let equal;
    let w = match w {
        Some(w) => w,
        None => {
            equal = vec![1.0; idx.len()];
            &equal
        }
    };
    let total: f64 = w.iter().sum();
    let mut s = weighted_sum(rows, idx, w);
    s.iter_mut().for_each(|v| *v /= total);
    s
}

/// ||x - v||^2 in f64 for a row and an f64 vector, 8 lanes.
pub(crate) fn sqdist_to<T: Real>(x: &[T], v: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut cx = x.chunks_exact(8);
    let mut cv = v.chunks_exact(8);
    for (a, b) in (&mut cx).zip(&mut cv) {
        for l in 0..8 {
            let t = a[l].to_f64() - b[l];
            acc[l] += t * t;
        }
    }
    for (l, (a, b)) in cx.remainder().iter().zip(cv.remainder()).enumerate() {
        let t = a.to_f64() - b;
        acc[l] += t * t;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Distances from every row to v, in parallel over rows.
pub(crate) fn dists_to<T: Real>(rows: &Rows<T>, v: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0f64; rows.n()];
    par::for_each_chunk_mut(&mut out, 1, |i, o| o[0] = sqdist_to(rows.row(i), v).sqrt());
    out
}
