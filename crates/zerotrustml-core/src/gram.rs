//! Pairwise squared L2 distances through the Gram matrix G = X X^T:
//! D_ij = max(0, G_ii + G_jj - 2 G_ij), with f64 accumulation.
//!
//! Two kernels compute G:
//! - portable: f32 (or f64) inputs widened to f64, products and sums in f64
//!   over 8 lanes. Used on wasm32 and as the reference.
//! - AVX-512 / AVX2 (f32 only): products and sums in f32 lanes within a
//!   column chunk of `KB` columns (KB/16 resp. KB/8 terms per lane), then the
//!   lanes are widened and added in f64 across chunks. That keeps f32 FMA
//!   throughput (the GEMM floor) while the error stays that of a KB-term sum.
//!
//! Each `Gram` carries a rigorous bound `eps` such that
//! |G_ij - exact| <= eps * sqrt(G_ii G_jj), hence
//! |D_ij - exact| <= 2 eps (G_ii + G_jj). Selections made from D are
//! re-decided with exact distances whenever that bound leaves them in doubt
//! (see `select`), so the selected indices are those of the exact computation.

use crate::error::Result;
use crate::input::Rows;
use crate::par;
use crate::real::Real;
use crate::simd::{self, Isa};

/// Columns per chunk of the SIMD kernels: f32 partial sums run over at most
/// KB/lanes terms before they are folded into f64.
pub const KB: usize = 1024;
/// Row tile of the AVX-512 micro-kernel (rows of X held in registers).
const MR512: usize = 4;
/// Column tile of the AVX-512 micro-kernel (24 accumulators).
const NR512: usize = 6;
const MR256: usize = 3;
const NR256: usize = 4;

const U32: f64 = 1.0 / (1u64 << 24) as f64;
const U64: f64 = 1.0 / (1u64 << 53) as f64;

/// The Gram matrix (n x n, row-major, symmetric) with its error bound.
#[derive(Debug, Clone)]
pub struct Gram {
    pub n: usize,
    pub g: Vec<f64>,
    /// |G_ij - exact| <= eps * sqrt(G_ii * G_jj).
    pub eps: f64,
    /// The instruction set that computed it.
    pub isa: Isa,
}

impl Gram {
    /// Squared distance from the Gram form, clamped at zero.
    #[inline]
    pub fn dist(&self, i: usize, j: usize) -> f64 {
        if i == j {
            return 0.0;
        }
        let n = self.n;
        (self.g[i * n + i] + self.g[j * n + j] - 2.0 * self.g[i * n + j]).max(0.0)
    }

    /// Bound on |dist(i, j) - exact squared distance|.
    #[inline]
    pub fn dist_err(&self, i: usize, j: usize) -> f64 {
        if i == j {
            return 0.0;
        }
        let n = self.n;
        // Factor 2 of slack over the derivation in the module docs, for the
        // rounding of this very expression and of the bound itself.
        4.0 * self.eps * (self.g[i * n + i] + self.g[j * n + j]) + 8.0 * U64 * self.g[i * n + i].max(self.g[j * n + j])
    }
}

/// Computes the Gram matrix with the active instruction set; fails with
/// `NonFinite` if an input value is NaN or infinite.
pub fn gram<T: Real>(rows: &Rows<T>) -> Result<Gram> {
    gram_with(rows, simd::active())
}

/// As `gram`, with a chosen instruction set (tests compare paths).
pub fn gram_with<T: Real>(rows: &Rows<T>, isa: Isa) -> Result<Gram> {
    let isa = isa.min(simd::detect());
    let g = match as_f32_rows(rows) {
        Some(r32) if isa != Isa::Scalar => gram_simd(&r32, isa),
        _ => gram_portable(rows),
    };
    if g.g.iter().all(|v| v.is_finite()) {
        return Ok(g);
    }
    // NaN/inf in the input propagates to the diagonal; a finite input can
    // only overflow in the f32 partial sums, which f64 cannot.
    if let Some(e) = rows.find_non_finite() {
        return Err(e);
    }
    Ok(gram_portable(rows))
}

fn as_f32_rows<'a, T: Real>(rows: &Rows<'a, T>) -> Option<Vec<&'a [f32]>> {
    if core::any::TypeId::of::<T>() != core::any::TypeId::of::<f32>() {
        return None;
    }
    // SAFETY: T is f32 (checked above), so the slices have the same layout.
    Some(
        rows.rows().iter().map(|r| unsafe { core::slice::from_raw_parts(r.as_ptr() as *const f32, r.len()) }).collect(),
    )
}

fn add_into(mut a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    a
}

/// Mirrors the upper triangle into the lower one.
fn symmetrize(g: &mut [f64], n: usize) {
    for i in 0..n {
        for j in 0..i {
            g[i * n + j] = g[j * n + i];
        }
    }
}

/// Portable kernel: widened products, 8 f64 lanes per dot product.
pub fn gram_portable<T: Real>(rows: &Rows<T>) -> Gram {
    let n = rows.n();
    let d = rows.d();
    let grain = KB * 16;
    let mut g = par::map_reduce(
        d,
        grain,
        |cols| {
            let mut g = vec![0.0f64; n * n];
            for i in 0..n {
                let a = &rows.row(i)[cols.clone()];
                for j in i..n {
                    let b = &rows.row(j)[cols.clone()];
                    g[i * n + j] = dot_f64(a, b);
                }
            }
            g
        },
        add_into,
    );
    symmetrize(&mut g, n);
    // Products of f32 are exact in f64; of f64 they round once. Sums: 8 lanes
    // of at most grain/8 terms, a lane tree, and d/grain chunk additions.
    let terms = (grain / 8 + 8 + d.div_ceil(grain)) as f64;
    Gram { n, g, eps: (terms + 1.0) * U64, isa: Isa::Scalar }
}

/// Dot product in f64 with 8 independent lanes (a fixed summation order).
#[inline]
pub(crate) fn dot_f64<T: Real>(a: &[T], b: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l].to_f64() * y[l].to_f64();
        }
    }
    for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[l] += x.to_f64() * y.to_f64();
    }
    lane_sum(acc)
}

/// Squared distance in f64 with 8 independent lanes: the exact reference.
#[inline]
pub(crate) fn sqdist_f64<T: Real>(a: &[T], b: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            let t = x[l].to_f64() - y[l].to_f64();
            acc[l] += t * t;
        }
    }
    for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        let t = x.to_f64() - y.to_f64();
        acc[l] += t * t;
    }
    lane_sum(acc)
}

#[inline(always)]
fn lane_sum(a: [f64; 8]) -> f64 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// Exact squared distances (f64 differences) from each row in `from` to
/// every row, in one pass over the data: `out[c][j]` for `from[c]`.
pub fn exact_rows<T: Real>(rows: &Rows<T>, from: &[usize]) -> Vec<Vec<f64>> {
    let n = rows.n();
    let m = from.len();
    if m == 0 {
        return Vec::new();
    }
    let flat = par::map_reduce(
        rows.d(),
        KB * 16,
        |cols| {
            let mut out = vec![0.0f64; m * n];
            for (c, &i) in from.iter().enumerate() {
                let a = &rows.row(i)[cols.clone()];
                for j in 0..n {
                    if j != i {
                        out[c * n + j] = sqdist_f64(a, &rows.row(j)[cols.clone()]);
                    }
                }
            }
            out
        },
        add_into,
    );
    flat.chunks_exact(n).map(|r| r.to_vec()).collect()
}

#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables, unreachable_code))]
fn gram_simd(rows: &[&[f32]], isa: Isa) -> Gram {
    let n = rows.len();
    let d = rows[0].len();
    // Chunks of KB columns; a task takes several so its private n x n
    // accumulator is amortised, and there are enough tasks to balance.
    let grain = KB * 8;
    let mut g = par::map_reduce(
        d,
        grain,
        |cols| {
            let mut g = vec![0.0f64; n * n];
            let mut c0 = cols.start;
            while c0 < cols.end {
                let c1 = (c0 + KB).min(cols.end);
                chunk_upper(rows, c0, c1, isa, &mut g);
                c0 = c1;
            }
            g
        },
        add_into,
    );
    symmetrize(&mut g, n);
    let lanes = if isa == Isa::Avx512 { 16 } else { 8 };
    // Per chunk: an f32 sum of KB/lanes FMA terms per lane (relative error
    // <= (KB/lanes + 1) u32), then f64: lane tree and d/KB chunk sums.
    let eps = (KB / lanes + 2) as f64 * U32 + (lanes + d.div_ceil(KB) + 4) as f64 * U64;
    Gram { n, g, eps, isa }
}

/// Adds the dot products of columns [c0, c1) into the upper triangle of g.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables, unused_mut))]
fn chunk_upper(rows: &[&[f32]], c0: usize, c1: usize, isa: Isa, g: &mut [f64]) {
    let n = rows.len();
    let len = c1 - c0;
    let (mr, nr) = match isa {
        Isa::Avx512 => (MR512, NR512),
        _ => (MR256, NR256),
    };
    // Each unordered pair {a <= b} is added exactly once: in the row tile of
    // a, by the column tile (starting at that row tile) that holds b. Tiles
    // running past n repeat row n-1 and drop those results.
    let ptr = |r: usize| -> *const f32 { rows[r.min(n - 1)][c0..].as_ptr() };
    let mut out = [[0.0f64; NR512]; MR512];
    let mut i0 = 0;
    while i0 < n {
        let mut j0 = i0;
        while j0 < n {
            let a: [*const f32; MR512] = core::array::from_fn(|t| ptr(i0 + t.min(mr - 1)));
            let b: [*const f32; NR512] = core::array::from_fn(|t| ptr(j0 + t.min(nr - 1)));
            // SAFETY: every pointer addresses `len` readable f32s of a row
            // (rows have length d >= c1), and the CPU has the feature (the
            // isa never exceeds `simd::detect()`).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                match isa {
                    Isa::Avx512 => x86::tile_avx512(&a, &b, len, &mut out),
                    _ => x86::tile_avx2(&a, &b, len, &mut out),
                }
            }
            for ia in 0..mr.min(n - i0) {
                for jb in 0..nr.min(n - j0) {
                    let (r, c) = (i0 + ia, j0 + jb);
                    if c >= r {
                        g[r * n + c] += out[ia][jb];
                    }
                }
            }
            j0 += nr;
        }
        i0 += mr;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MR256, MR512, NR256, NR512};
    use core::arch::x86_64::*;

    /// out[a][b] = sum_k A_a[k] B_b[k] over k < len, f32 lanes, f64 result.
    #[target_feature(enable = "avx512f,avx512vl")]
    pub(super) unsafe fn tile_avx512(
        a: &[*const f32; MR512],
        b: &[*const f32; NR512],
        len: usize,
        out: &mut [[f64; NR512]; MR512],
    ) {
        let mut acc = [[_mm512_setzero_ps(); NR512]; MR512];
        let mut k = 0;
        while k + 16 <= len {
            let av: [__m512; MR512] = core::array::from_fn(|t| _mm512_loadu_ps(a[t].add(k)));
            for jb in 0..NR512 {
                let bv = _mm512_loadu_ps(b[jb].add(k));
                for ia in 0..MR512 {
                    acc[ia][jb] = _mm512_fmadd_ps(av[ia], bv, acc[ia][jb]);
                }
            }
            k += 16;
        }
        if k < len {
            let m: __mmask16 = ((1u32 << (len - k)) - 1) as u16;
            let av: [__m512; MR512] = core::array::from_fn(|t| _mm512_maskz_loadu_ps(m, a[t].add(k)));
            for jb in 0..NR512 {
                let bv = _mm512_maskz_loadu_ps(m, b[jb].add(k));
                for ia in 0..MR512 {
                    acc[ia][jb] = _mm512_fmadd_ps(av[ia], bv, acc[ia][jb]);
                }
            }
        }
        for ia in 0..MR512 {
            for jb in 0..NR512 {
                let v = acc[ia][jb];
                let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
                let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
                out[ia][jb] = _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
            }
        }
    }

    /// The AVX2 + FMA variant: 8 lanes, a 3 x 4 tile (12 accumulators).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2(
        a: &[*const f32; MR512],
        b: &[*const f32; NR512],
        len: usize,
        out: &mut [[f64; NR512]; MR512],
    ) {
        let mut acc = [[_mm256_setzero_ps(); NR256]; MR256];
        let mut k = 0;
        while k + 8 <= len {
            let av: [__m256; MR256] = core::array::from_fn(|t| _mm256_loadu_ps(a[t].add(k)));
            for jb in 0..NR256 {
                let bv = _mm256_loadu_ps(b[jb].add(k));
                for ia in 0..MR256 {
                    acc[ia][jb] = _mm256_fmadd_ps(av[ia], bv, acc[ia][jb]);
                }
            }
            k += 8;
        }
        for ia in 0..MR256 {
            for jb in 0..NR256 {
                let v = acc[ia][jb];
                let s = _mm256_add_pd(
                    _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                    _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)),
                );
                let s2 = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
                let mut t = _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
                // Tail columns (< 8): products widened to f64, exact.
                for kk in k..len {
                    t += (*a[ia].add(kk) as f64) * (*b[jb].add(kk) as f64);
                }
                out[ia][jb] = t;
            }
        }
    }
}
