//! Pairwise squared L2 distances through the Gram matrix G = X X^T:
//! D_ij = max(0, G_ii + G_jj - 2 G_ij), with f64 accumulation.
//!
//! Kernels that compute G:
//! - portable: f32 (or f64) inputs widened to f64, products and sums in f64
//!   over 8 lanes. Used on wasm32 and as the reference.
//! - AVX2, and AVX-512 for n <= SMALL_N (f32 only): lanes along the columns;
//!   products and sums in f32 lanes within a column chunk of `KB` columns
//!   (KB/16 resp. KB/8 terms per lane), then the lanes are widened and added
//!   in f64 across chunks. That keeps f32 FMA throughput (the GEMM floor)
//!   while the error stays that of a KB-term sum.
//! - AVX-512 for n > SMALL_N (f32 only): GEMM-style (`task_avx512`). Per
//!   chunk of KC columns, strips of rows are packed so that a zmm holds 4
//!   rows x 4 columns, and register tiles of accumulators (4 rows x 4
//!   columns each) run KF k-quads in f32 before they are added into the
//!   chunk's f32 sums, which are widened and added in f64 once per chunk.
//!   Each input value is loaded a few times instead of once per tile pair,
//!   so the kernel runs near the FMA peak rather than at the L2 bandwidth.
//!
//! Each `Gram` carries a rigorous bound (`eps`, `abs`) such that
//! |G_ij - exact| <= eps * sqrt(G_ii G_jj) + abs (abs covers roundings in
//! the subnormal range), hence |D_ij - exact| <= 2 eps (G_ii + G_jj) + 4 abs
//! (`dist_err` doubles it for slack). Selections made from D are
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
/// Row tile of the small-n AVX-512 micro-kernel (rows of X held in
/// registers).
const MR512: usize = 4;
/// Column tile of the small-n AVX-512 micro-kernel (24 accumulators).
const NR512: usize = 6;
const MR256: usize = 3;
const NR256: usize = 4;
/// AVX-512: up to this many rows use lanes along k (no packing).
const SMALL_N: usize = 10;
/// AVX-512: columns per packed chunk; a chunk's f32 sums are folded into
/// f64 once.
const KC: usize = 256;
/// AVX-512: k-quads (4 columns each) an f32 accumulator runs before it is
/// added into the chunk's f32 sum (KC / (4 KF) such runs per chunk).
const KF: usize = 32;
/// AVX-512: row-quads per strip (tile height 4 MA rows).
#[cfg(target_arch = "x86_64")]
const MA: usize = 3;
/// AVX-512: columns per rectangular tile.
#[cfg(target_arch = "x86_64")]
const NC: usize = 8;
/// AVX-512: inputs of at least this many bytes are prefetched a chunk
/// ahead (smaller ones are expected in L2).
#[cfg(target_arch = "x86_64")]
const AHEAD_BYTES: usize = 2 << 20;

/// One zmm of f32 on its own cache line: the unit of the AVX-512 pack.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

const U32: f64 = 1.0 / (1u64 << 24) as f64;
const U64: f64 = 1.0 / (1u64 << 53) as f64;
/// The smallest positive subnormal f32 (2^-149) and f64 (2^-1074).
const F32_TINY: f64 = 1.401298464324817e-45;
const F64_TINY: f64 = 5e-324;

/// The Gram matrix (n x n, row-major, symmetric) with its error bound.
#[derive(Debug, Clone)]
pub struct Gram {
    pub n: usize,
    pub g: Vec<f64>,
    /// |G_ij - exact| <= eps * sqrt(G_ii * G_jj) + abs.
    pub eps: f64,
    /// The absolute part of the bound: underflow. A rounding in the
    /// subnormal range errs by up to half the smallest subnormal whatever
    /// the magnitude of the sum, and at most 2d roundings (a product and an
    /// addition per column) reach G_ij.
    pub abs: f64,
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
        4.0 * self.eps * (self.g[i * n + i] + self.g[j * n + j])
            + 8.0 * U64 * self.g[i * n + i].max(self.g[j * n + j])
            + 8.0 * self.abs
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
    // f64 underflow: half of 2^-1074 per rounding, at most 2d of them.
    Gram { n, g, eps: (terms + 1.0) * U64, abs: d as f64 * F64_TINY, isa: Isa::Scalar }
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
pub(crate) fn sqdist_f64<A: Real, B: Real>(a: &[A], b: &[B]) -> f64 {
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
    // AVX-512 with more than SMALL_N rows: the packed (GEMM-style) kernel;
    // otherwise lanes along k (`chunk_upper`).
    let packed = isa == Isa::Avx512 && n > SMALL_N;
    // Chunks of KB (or KC) columns; a task takes several so its private
    // accumulator is amortised, and there are enough tasks to balance. The
    // split depends on `grain` alone.
    let grain = KB * 8;
    let mut g = par::map_reduce(
        d,
        grain,
        |cols| {
            #[cfg(target_arch = "x86_64")]
            if packed {
                return task_avx512(rows, cols);
            }
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
    #[cfg(target_arch = "x86_64")]
    if packed {
        g = from_blocks(&g, n);
    }
    symmetrize(&mut g, n);
    let eps = if packed {
        // Each product a_k b_k is rounded by at most KF f32 FMAs (its run),
        // KC/(4 KF) f32 additions (the runs of a chunk) and 2 more (the 4
        // lanes k mod 4), then, exactly widened, by at most d/KC + 1 f64
        // additions (chunks within a task, then the tasks in `add_into`).
        // So |G_ij - exact| <= ((1 + u32)^(KF + KC/(4 KF) + 2)
        // (1 + u64)^(d/KC + 1) - 1) sum_k |a_k b_k|, and by Cauchy-Schwarz
        // sum_k |a_k b_k| <= sqrt(exact G_ii G_jj). The +2 u32 and +4 u64
        // cover the higher-order terms and the use of the computed diagonal.
        (KF + KC / (4 * KF) + 4) as f64 * U32 + (d.div_ceil(KC) + 5) as f64 * U64
    } else {
        let lanes = if isa == Isa::Avx512 { 16 } else { 8 };
        // Per chunk: an f32 sum of KB/lanes FMA terms per lane (relative
        // error <= (KB/lanes + 1) u32), then f64: lane tree and d/KB chunk
        // sums.
        (KB / lanes + 2) as f64 * U32 + (lanes + d.div_ceil(KB) + 4) as f64 * U64
    };
    // f32 underflow: half of 2^-149 per rounding, at most 2d of them.
    Gram { n, g, eps, abs: d as f64 * F32_TINY, isa }
}

/// AVX-512 task: the Gram contribution of columns `cols` (upper triangle of
/// an n x n matrix), GEMM-style, per chunk of KC columns.
///
/// Rows are taken by quads; strips of MA quads (4 MA rows) are packed in
/// turn: panel r of the strip holds rows 4(q0 + r)..+4 as one zmm per
/// k-quad kq whose 128-bit lane l is row 4(q0 + r) + l at columns 4kq..+4
/// (zero past n or the chunk). A zmm accumulator pairs such a vector with
/// one column j, its 4 values broadcast to every lane (read from row j
/// itself, or from the pack for the strip's own rows): lane (l, m) sums
/// the products of row 4(q0 + r) + l and row j at the columns = m mod 4. A strip computes its own triangle, then
/// rectangles of NC columns to its right, each tile's accumulators held in
/// registers; the 4 lanes of a row are added once per chunk, so each 4 x 4
/// block of results is one zmm.
#[cfg(target_arch = "x86_64")]
fn task_avx512(rows: &[&[f32]], cols: core::ops::Range<usize>) -> Vec<f64> {
    let n = rows.len();
    let q = n.div_ceil(4);
    let mut pack = vec![Line([0.0; 16]); MA * KC / 4];
    // The upper triangle by 4 x 4 blocks (see `block`).
    let mut acc = vec![0.0f64; block(q, q, q) * 16];
    // Tiles per chunk: a triangle and ceil((q - q0 - ma) / 2) rectangles
    // per strip.
    let mut tiles = 0;
    let mut q0 = 0;
    while q0 < q {
        let ma = strip(q - q0);
        tiles += 1 + (q - q0 - ma).div_ceil(NC / 4);
        q0 += ma;
    }
    let mut c0 = cols.start;
    while c0 < cols.end {
        let len = (cols.end - c0).min(KC);
        // The next KC columns of every row (within d) are prefetched into
        // L2 at an even pace over this chunk's tiles, once per 4 k-quads.
        let next = (rows[0].len() - (c0 + len)).min(KC).div_ceil(16);
        let steps = tiles * len.div_ceil(16);
        let per = (n * next).div_ceil(steps).next_power_of_two();
        let on = next > 0 && n * rows[0].len() * 4 >= AHEAD_BYTES;
        let mut ahead = x86::Ahead { rows, c0: c0 + len, lines: next, j: if on { 0 } else { n }, l: 0, per };
        let mut q0 = 0;
        while q0 < q {
            let ma = strip(q - q0);
            // SAFETY (here and below): every row has d >= c0 + len columns,
            // `pack` holds MA panels of KC / 4 zmm, the tiles stay within
            // the q row- and column-quads (`acc` has all their blocks), and
            // the CPU has AVX-512F and VL (the isa never exceeds
            // `simd::detect()`).
            unsafe { x86::pack_avx512(rows, 4 * q0, ma, c0, len, &mut pack) };
            // The strip's triangle, then rectangles to its right.
            // SAFETY: as above; `pack` now holds this strip.
            unsafe { x86::tile_avx512(ma, 0, &mut ahead, &pack, rows, q0, q0, c0, len, &mut acc) };
            let mut cq = q0 + ma;
            while cq < q {
                let nc = if q - cq >= NC / 4 { NC } else { 4 };
                // SAFETY: as above; cq + nc / 4 <= q.
                unsafe { x86::tile_avx512(ma, nc, &mut ahead, &pack, rows, q0, cq, c0, len, &mut acc) };
                cq += nc / 4;
            }
            q0 += ma;
        }
        c0 += len;
    }
    acc
}

/// Row-quads of the next strip when `left` remain: MA, but 2 + 2 rather
/// than 3 + 1 (a strip of one quad has too few accumulators to hide the
/// FMA latency).
#[cfg(target_arch = "x86_64")]
fn strip(left: usize) -> usize {
    if left == 4 {
        2
    } else {
        left.min(MA)
    }
}

/// Index of the 4 x 4 block (qi, qj), qi <= qj, of the upper triangle of
/// a matrix of q x q blocks stored by block rows; `block(q, q, q)` is the
/// block count. Within a block, [4 l + c] is (4 qi + l, 4 qj + c).
#[cfg(target_arch = "x86_64")]
fn block(qi: usize, qj: usize, q: usize) -> usize {
    qi * (2 * q + 1 - qi) / 2 + qj - qi
}

/// The n x n upper triangle from its 4 x 4 blocks.
#[cfg(target_arch = "x86_64")]
fn from_blocks(acc: &[f64], n: usize) -> Vec<f64> {
    let q = n.div_ceil(4);
    let mut g = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i..n {
            g[i * n + j] = acc[block(i / 4, j / 4, q) * 16 + 4 * (i % 4) + j % 4];
        }
    }
    g
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
                    Isa::Avx512 => x86::tile_k512(&a, &b, len, &mut out),
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
    use super::{block, Line, KC, KF, MR256, MR512, NR256, NR512};
    use core::arch::x86_64::*;

    /// Prefetches lines of the rows' next chunk into L2: `per` lines a step,
    /// row by row, `lines` lines from column c0 each.
    pub(super) struct Ahead<'a> {
        pub(super) rows: &'a [&'a [f32]],
        pub(super) c0: usize,
        pub(super) lines: usize,
        pub(super) j: usize,
        pub(super) l: usize,
        pub(super) per: usize,
    }

    impl Ahead<'_> {
        /// Issues the next `per` prefetches.
        ///
        /// # Safety
        /// The CPU has SSE (every x86_64 does); prefetches never fault.
        #[inline(always)]
        unsafe fn step(&mut self) {
            let Some(r) = self.rows.get(self.j) else { return };
            // A hint only: the addresses are those of the row's next chunk
            // (or just past it, harmlessly, when `per` overshoots).
            let p = r.as_ptr().wrapping_add(self.c0 + 16 * self.l);
            for i in 0..self.per {
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(16 * i) as *const i8);
            }
            self.l += self.per;
            if self.l >= self.lines {
                self.l = 0;
                self.j += 1;
            }
        }
    }

    /// Stands in for the rows past n.
    static ZEROS: [f32; KC] = [0.0; KC];

    /// Row j from column c0 on, or zeros past n.
    ///
    /// # Safety
    /// c0 is at most the rows' length.
    #[inline(always)]
    unsafe fn row_at(rows: &[&[f32]], j: usize, c0: usize) -> *const f32 {
        match rows.get(j) {
            Some(r) => r.as_ptr().add(c0),
            None => ZEROS.as_ptr(),
        }
    }

    /// Packs columns [c0, c0 + len) of rows r0..r0 + 4 ma, len <= KC, by
    /// quads of rows and columns: the zmm at pack[(r * KC / 4 + kq) * 16]
    /// has in lane 4 l + m the value rows[r0 + 4 r + l][c0 + 4 kq + m] (zero
    /// past n or len).
    ///
    /// # Safety
    /// The CPU has AVX-512F and VL, every row has at least c0 + len values,
    /// and `pack` holds ma * KC / 4 lines.
    #[target_feature(enable = "avx512f,avx512vl")]
    pub(super) unsafe fn pack_avx512(rows: &[&[f32]], r0: usize, ma: usize, c0: usize, len: usize, pack: &mut [Line]) {
        for r in 0..ma {
            let dst = (pack.as_mut_ptr() as *mut f32).add(r * KC * 4);
            let src: [*const f32; 4] = core::array::from_fn(|l| row_at(rows, r0 + 4 * r + l, c0));
            let mut k = 0;
            while k + 16 <= len {
                // 4 rows x 16 columns; a 4 x 4 transpose of 128-bit lanes.
                let v: [__m512; 4] = core::array::from_fn(|l| _mm512_loadu_ps(src[l].add(k)));
                let t0 = _mm512_shuffle_f32x4::<0x44>(v[0], v[1]); // r0 q0 q1, r1 q0 q1
                let t1 = _mm512_shuffle_f32x4::<0xee>(v[0], v[1]); // r0 q2 q3, r1 q2 q3
                let t2 = _mm512_shuffle_f32x4::<0x44>(v[2], v[3]);
                let t3 = _mm512_shuffle_f32x4::<0xee>(v[2], v[3]);
                let o = dst.add(4 * k);
                _mm512_store_ps(o, _mm512_shuffle_f32x4::<0x88>(t0, t2));
                _mm512_store_ps(o.add(16), _mm512_shuffle_f32x4::<0xdd>(t0, t2));
                _mm512_store_ps(o.add(32), _mm512_shuffle_f32x4::<0x88>(t1, t3));
                _mm512_store_ps(o.add(48), _mm512_shuffle_f32x4::<0xdd>(t1, t3));
                k += 16;
            }
            while k < len {
                let m = if k + 4 <= len { 0xf } else { ((1u32 << (len - k)) - 1) as u8 };
                let x: [__m128; 4] = core::array::from_fn(|l| _mm_maskz_loadu_ps(m, src[l].add(k)));
                let lo = _mm256_insertf128_ps::<1>(_mm256_castps128_ps256(x[0]), x[1]);
                let hi = _mm256_insertf128_ps::<1>(_mm256_castps128_ps256(x[2]), x[3]);
                let v = _mm512_insertf64x4::<1>(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi));
                _mm512_store_ps(dst.add(4 * k), _mm512_castpd_ps(v));
                k += 4;
            }
        }
    }

    /// Dispatches the tile of the packed strip (`ma` row-quads from q0) by
    /// `nc` columns (4 or NC) from column-quad cq, or, for nc == 0, the
    /// strip's own triangle (cq == q0), over columns [c0, c0 + len).
    ///
    /// # Safety
    /// As `pack_avx512` for `pack` (packed from the same rows, 4 q0, ma, c0,
    /// len); the tile lies within the ceil(n / 4) = q quads and `acc` has
    /// all their blocks (`block`).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512vl")]
    pub(super) unsafe fn tile_avx512(
        ma: usize,
        nc: usize,
        ahead: &mut Ahead,
        pack: &[Line],
        rows: &[&[f32]],
        q0: usize,
        cq: usize,
        c0: usize,
        len: usize,
        acc: &mut [f64],
    ) {
        let q = rows.len().div_ceil(4);
        let a = pack.as_ptr() as *const f32;
        macro_rules! go {
            ($r:literal, $c:literal, $tri:literal) => {{
                let b: [*const f32; $c] = core::array::from_fn(|c| row_at(rows, 4 * cq + c, c0));
                // Block row q0 + r from column-quad cq (a triangle only
                // writes its blocks right of the diagonal: cq + g >= q0 + r).
                let out: [*mut f64; $r] = core::array::from_fn(|r| {
                    acc.as_mut_ptr().wrapping_add(16 * (block(q0 + r, q0 + r, q) + cq) - 16 * (q0 + r))
                });
                tile::<$r, $c, $tri>(a, &b, len, &out, ahead)
            }};
        }
        match (ma, nc) {
            (1, 0) => go!(1, 4, true),
            (2, 0) => go!(2, 8, true),
            (3, 0) => go!(3, 12, true),
            (1, 4) => go!(1, 4, false),
            (2, 4) => go!(2, 4, false),
            (3, 4) => go!(3, 4, false),
            (1, 8) => go!(1, 8, false),
            (2, 8) => go!(2, 8, false),
            (3, 8) => go!(3, 8, false),
            _ => unreachable!("tile {ma} x {nc} outside the dispatch table"),
        }
    }

    /// Whether accumulator (row-quad r, column c) of a tile is computed: all
    /// of a rectangle, the upper triangle (by quads) of a triangle.
    #[inline(always)]
    const fn live<const TRI: bool>(r: usize, c: usize) -> bool {
        !TRI || c >= 4 * r
    }

    /// One k-quad: acc[r][c] += A(r, kq) * B(c, kq) for the live (r, c).
    /// B comes from the packed strip itself (`at`, equal to `a`) for a
    /// triangle, else from the rows (masked to the columns in `m`).
    ///
    /// # Safety
    /// As `tile`, for a packed k-quad kq whose columns in `m` lie within
    /// the rows b[c].
    #[inline(always)]
    unsafe fn step<const R: usize, const C: usize, const TRI: bool>(
        a: *const f32,
        at: *const f32,
        b: &[*const f32; C],
        kq: usize,
        m: __mmask8,
        acc: &mut [[__m512; C]; R],
    ) {
        let av: [__m512; R] = core::array::from_fn(|r| _mm512_load_ps(a.add(r * KC * 4 + kq * 16)));
        for c in 0..C {
            let bx = if TRI {
                _mm_load_ps(at.add((c / 4) * KC * 4 + kq * 16 + 4 * (c % 4)))
            } else if m == 0xf {
                _mm_loadu_ps(b[c].add(4 * kq))
            } else {
                _mm_maskz_loadu_ps(m, b[c].add(4 * kq))
            };
            let bv = _mm512_broadcast_f32x4(bx);
            for r in 0..R {
                if live::<TRI>(r, c) {
                    acc[r][c] = _mm512_fmadd_ps(av[r], bv, acc[r][c]);
                }
            }
        }
    }

    /// out[r][(c / 4) * 16 + 4 l + c % 4] += sum_k A(r, l, k) B(c, k) over
    /// k < len for the live (r, c) (R row-quads, C columns, C a multiple of
    /// 4): A(r, l, k) is row 4 r + l of the packed strip `a`, B(c, k) =
    /// b[c][k] (for a triangle: row c of the strip).
    /// Runs of at most KF k-quads per f32 lane, added into f32 chunk sums;
    /// the 4 lanes of a row (k mod 4) are added in f32 (2 roundings), then
    /// widened to f64. Every tile advances `ahead`.
    ///
    /// # Safety
    /// The CPU has AVX-512F and VL; `a` has R panels (KC * 4 values apart)
    /// of ceil(len / 4) zmm; each b[c] has len values; out[r] + 16 g
    /// addresses 16 f64 for each live (r, 4 g).
    #[inline(always)]
    unsafe fn tile<const R: usize, const C: usize, const TRI: bool>(
        a: *const f32,
        b: &[*const f32; C],
        len: usize,
        out: &[*mut f64; R],
        ahead: &mut Ahead,
    ) {
        let z = _mm512_setzero_ps();
        let kqf = len / 4;
        let kqn = len.div_ceil(4);
        // A triangle's B is the strip itself: the same memory as A, read
        // through a pointer the optimiser cannot relate to `a`, so that it
        // keeps the broadcasts as loads (not shuffles of the A vectors).
        let at = core::hint::black_box(a);
        let mut sum = [[z; C]; R];
        let mut kq = 0;
        while kq < kqn {
            let end = (kq + KF).min(kqn);
            let mut acc = [[z; C]; R];
            while kq < end.min(kqf) {
                if kq % 4 == 0 {
                    ahead.step();
                }
                step::<R, C, TRI>(a, at, b, kq, 0xf, &mut acc);
                kq += 1;
            }
            if kq < end {
                // The chunk's last, partial k-quad.
                step::<R, C, TRI>(a, at, b, kq, ((1u32 << (len % 4)) - 1) as u8, &mut acc);
                kq += 1;
            }
            for r in 0..R {
                for c in 0..C {
                    if live::<TRI>(r, c) {
                        sum[r][c] = _mm512_add_ps(sum[r][c], acc[r][c]);
                    }
                }
            }
        }
        for r in 0..R {
            for g in 0..C / 4 {
                if !live::<TRI>(r, 4 * g) {
                    continue;
                }
                let s = &sum[r][4 * g..4 * g + 4];
                // Lane l of w01: [s0 m0+m2, s1 m0+m2, s0 m1+m3, s1 m1+m3].
                let w01 = _mm512_add_ps(_mm512_unpacklo_ps(s[0], s[1]), _mm512_unpackhi_ps(s[0], s[1]));
                let w23 = _mm512_add_ps(_mm512_unpacklo_ps(s[2], s[3]), _mm512_unpackhi_ps(s[2], s[3]));
                let (w01, w23) = (_mm512_castps_pd(w01), _mm512_castps_pd(w23));
                // Lane l of t: row l's sums with the 4 columns.
                let t = _mm512_add_ps(
                    _mm512_castpd_ps(_mm512_unpacklo_pd(w01, w23)),
                    _mm512_castpd_ps(_mm512_unpackhi_pd(w01, w23)),
                );
                let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(t));
                let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1)));
                let o = out[r].add(g * 16);
                _mm512_storeu_pd(o, _mm512_add_pd(_mm512_loadu_pd(o), lo));
                _mm512_storeu_pd(o.add(8), _mm512_add_pd(_mm512_loadu_pd(o.add(8)), hi));
            }
        }
    }

    /// Small n: out[a][b] = sum_k A_a[k] B_b[k] over k < len, f32 lanes
    /// along k, f64 result.
    #[target_feature(enable = "avx512f,avx512vl")]
    pub(super) unsafe fn tile_k512(
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
