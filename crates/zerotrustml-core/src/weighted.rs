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
        // Four rows per sweep keep the accumulator in registers for four
        // additions; the additions still happen in row order, so the result
        // is the same as one row at a time.
        let mut groups = idx.chunks_exact(4).zip(w.chunks_exact(4));
        for (r, wr) in &mut groups {
            let (x0, x1, x2, x3) =
                (&rows.row(r[0])[c0..c1], &rows.row(r[1])[c0..c1], &rows.row(r[2])[c0..c1], &rows.row(r[3])[c0..c1]);
            for (k, a) in acc.iter_mut().enumerate() {
                *a = (((*a + wr[0] * x0[k].to_f64()) + wr[1] * x1[k].to_f64()) + wr[2] * x2[k].to_f64())
                    + wr[3] * x3[k].to_f64();
            }
        }
        let rest = idx.len() - idx.len() % 4;
        for (&r, &wr) in idx[rest..].iter().zip(&w[rest..]) {
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

/// Exact power-of-two scalings that bring f64 values near f64::MAX into
/// range for a sum (2^-600) and back (2^600).
const DOWN: f64 = 2.409919865102884e-181;
const UP: f64 = 4.149515568880993e180;

/// The mean of the rows `idx`, weighted by `w` (None: equal weights), in f64.
/// Sums that overflow (only f64 inputs near f64::MAX can) are redone with
/// the weights scaled down by an exact power of two.
pub(crate) fn mean_of<T: Real>(rows: &Rows<T>, idx: &[usize], w: Option<&[f64]>) -> Vec<f64> {
    let mut w: Vec<f64> = match w {
        Some(w) => w.to_vec(),
        None => vec![1.0; idx.len()],
    };
    let mut total: f64 = w.iter().sum();
    if !total.is_finite() {
        let top = w.iter().cloned().fold(0.0, f64::max);
        w.iter_mut().for_each(|v| *v /= top);
        total = w.iter().sum();
    }
    let mut s = weighted_sum(rows, idx, &w);
    if s.iter().all(|v| v.is_finite()) {
        s.iter_mut().for_each(|v| *v /= total);
        return s;
    }
    w.iter_mut().for_each(|v| *v *= DOWN);
    let mut s = weighted_sum(rows, idx, &w);
    s.iter_mut().for_each(|v| *v = *v / total * UP);
    s
}

/// ||x - v|| in f64; a sum of squares that overflows is redone on values
/// scaled down by an exact power of two.
pub(crate) fn dist<T: Real>(x: &[T], v: &[f64]) -> f64 {
    let s = crate::gram::sqdist_f64(x, v);
    if s.is_finite() {
        return s.sqrt();
    }
    let scaled: f64 = x
        .iter()
        .zip(v)
        .map(|(a, b)| {
            let t = a.to_f64() * DOWN - b * DOWN;
            t * t
        })
        .sum();
    scaled.sqrt() * UP
}

/// Distances from every row to v, in parallel over rows.
pub(crate) fn dists_to<T: Real>(rows: &Rows<T>, v: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0f64; rows.n()];
    par::for_each_chunk_mut(&mut out, 1, |i, o| o[0] = dist(rows.row(i), v));
    out
}
