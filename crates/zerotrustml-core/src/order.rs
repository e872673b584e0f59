//! Coordinate-wise order statistics (median, trimmed mean, Bulyan's
//! closest-to-median average) with sorting networks run across SIMD lanes.
//!
//! Each tile holds W = 16 adjacent columns of all n rows (one row segment per
//! "element"); a comparator is a lane-wise min and max of two elements, so
//! one network sorts 16 columns at once without branches. The network is
//! Batcher's odd-even merge sort for the next power of two, with the
//! comparators that touch padding dropped (padding would be +inf and never
//! move) and with the comparators that cannot reach the needed output
//! positions pruned. The same generic body is compiled for AVX-512, AVX2 and
//! portable code; min and max are exact, so the results are identical on
//! every path.

use crate::error::Result;
use crate::input::Rows;
use crate::par;
use crate::real::Real;
use crate::simd;
#[cfg(target_arch = "x86_64")]
use crate::simd::Isa;

/// Columns per tile.
pub const W: usize = 16;
/// How many tiles ahead the gather prefetches each row.
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD: usize = 8;
/// Columns per parallel task (a multiple of W).
const GRAIN: usize = W * 128;

pub type Comparator = (u32, u32);

/// Batcher's odd-even merge sort network on n inputs (i < j in each pair).
pub fn batcher(n: usize) -> Vec<Comparator> {
    let mut net = Vec::new();
    if n < 2 {
        return net;
    }
    let size = n.next_power_of_two();
    let mut p = 1;
    while p < size {
        let mut k = p;
        while k >= 1 {
            let mut j = k % p;
            while j + k < size {
                for i in 0..k.min(size - j - k) {
                    if (i + j) / (2 * p) == (i + j + k) / (2 * p) {
                        let (a, b) = (i + j, i + j + k);
                        if b < n {
                            net.push((a as u32, b as u32));
                        }
                    }
                }
                j += 2 * k;
            }
            k /= 2;
        }
        p *= 2;
    }
    net
}

/// Keeps the comparators on which the `needed` output positions depend.
pub fn prune(net: &[Comparator], needed: &[bool]) -> Vec<Comparator> {
    let mut live = needed.to_vec();
    let mut kept: Vec<Comparator> = Vec::with_capacity(net.len());
    for &(a, b) in net.iter().rev() {
        if live[a as usize] || live[b as usize] {
            live[a as usize] = true;
            live[b as usize] = true;
            kept.push((a, b));
        }
    }
    kept.reverse();
    kept
}

/// The network sorting positions `lo..hi` of n values into place.
pub fn network_for(n: usize, lo: usize, hi: usize) -> Vec<Comparator> {
    let needed: Vec<bool> = (0..n).map(|p| p >= lo && p < hi).collect();
    prune(&batcher(n), &needed)
}

/// Rows per block that a register kernel sorts whole (16 vectors).
pub const BLOCK: usize = 16;

/// The same network for inputs whose aligned blocks of `BLOCK` rows are
/// already sorted: Batcher's first stages (merges of width < BLOCK) only
/// sort those blocks, so they are dropped, and the rest is pruned as in
/// `network_for`. Correct because sorting a block yields exactly the values
/// those stages leave at every position.
pub fn network_after_blocks(n: usize, lo: usize, hi: usize) -> Vec<Comparator> {
    let needed: Vec<bool> = (0..n).map(|p| p >= lo && p < hi).collect();
    let full = batcher(n);
    // Comparators of merges of width < BLOCK connect positions of one block
    // and come first; the first comparator across blocks starts the rest.
    let split = full.iter().position(|&(a, b)| a as usize / BLOCK != b as usize / BLOCK).unwrap_or(full.len());
    prune(&full[split..], &needed)
}

/// One row segment of a tile: W values, aligned to a cache line so that
/// every SIMD load and store of the network stays within one line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct Tile<T>(pub [T; W]);

impl<T> core::ops::Index<usize> for Tile<T> {
    type Output = T;
    #[inline(always)]
    fn index(&self, l: usize) -> &T {
        &self.0[l]
    }
}

impl<T> core::ops::IndexMut<usize> for Tile<T> {
    #[inline(always)]
    fn index_mut(&mut self, l: usize) -> &mut T {
        &mut self.0[l]
    }
}

/// Runs a comparator network over a tile buffer, one SIMD min/max pair per
/// comparator. Per element type, because the portable form of a lane-wise
/// min lets LLVM emit a masked store, which blocks store-to-load forwarding
/// between the dependent comparators that follow.
#[doc(hidden)]
pub trait Network: Sized + Copy {
    /// # Safety
    /// Every comparator index is < buf.len() (networks come from `network_for(buf.len(), ..)`).
    unsafe fn run(isa: simd::Isa, buf: &mut [Tile<Self>], net: &[Comparator]);

    /// Sorts every aligned block of `BLOCK` rows in registers, if this type
    /// and instruction set have such a kernel; returns whether it did.
    ///
    /// # Safety
    /// `isa` is available on this CPU.
    unsafe fn sort_blocks(isa: simd::Isa, buf: &mut [Tile<Self>]) -> bool {
        let _ = (isa, buf);
        false
    }

    /// Whether `sort_blocks` does anything for this type and `isa`.
    fn sorts_blocks(isa: simd::Isa) -> bool {
        let _ = isa;
        false
    }
}

#[inline(always)]
fn network_portable<T: Real>(buf: &mut [Tile<T>], net: &[Comparator]) {
    for &(a, b) in net {
        let (x, y) = (buf[a as usize].0, buf[b as usize].0);
        let mut lo = [T::ZERO; W];
        let mut hi = [T::ZERO; W];
        for l in 0..W {
            // Inputs are finite (checked during the gather), so these are the
            // exact minimum and maximum.
            lo[l] = if x[l] < y[l] { x[l] } else { y[l] };
            hi[l] = if x[l] < y[l] { y[l] } else { x[l] };
        }
        buf[a as usize] = Tile(lo);
        buf[b as usize] = Tile(hi);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Comparator, Tile, W};
    use core::arch::x86_64::*;

    /// Generates a network runner: `$v` registers of `$lanes` per tile row.
    macro_rules! runner {
        ($name:ident, $t:ty, $feat:literal, $vec:ty, $lanes:expr, $load:ident, $store:ident, $min:ident, $max:ident) => {
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn $name(buf: &mut [Tile<$t>], net: &[Comparator]) {
                let base = buf.as_mut_ptr() as *mut $t;
                for &(a, b) in net {
                    let pa = base.add(a as usize * W);
                    let pb = base.add(b as usize * W);
                    let mut k = 0;
                    while k < W {
                        let x: $vec = $load(pa.add(k));
                        let y: $vec = $load(pb.add(k));
                        $store(pa.add(k), $min(x, y));
                        $store(pb.add(k), $max(x, y));
                        k += $lanes;
                    }
                }
            }
        };
    }
    /// Batcher's network on 16 inputs (63 comparators), straight-line code
    /// over 16 registers.
    macro_rules! sort16 {
        ($v:ident, $min:ident, $max:ident; $($a:literal, $b:literal);* $(;)?) => {
            $(
                let t = $min($v[$a], $v[$b]);
                $v[$b] = $max($v[$a], $v[$b]);
                $v[$a] = t;
            )*
        };
    }

    /// Sorts each aligned block of 16 tile rows (missing rows of the last
    /// block count as +inf and are not written back).
    #[target_feature(enable = "avx512f,avx512vl")]
    pub(super) unsafe fn f32_sort_blocks_avx512(buf: &mut [Tile<f32>]) {
        let n = buf.len();
        let base = buf.as_mut_ptr() as *mut f32;
        let mut b0 = 0;
        while b0 < n {
            let rows = (n - b0).min(16);
            let mut v: [__m512; 16] = [_mm512_set1_ps(f32::INFINITY); 16];
            for (r, slot) in v.iter_mut().enumerate().take(rows) {
                *slot = _mm512_load_ps(base.add((b0 + r) * W));
            }
            sort16!(v, _mm512_min_ps, _mm512_max_ps;
                0,1; 2,3; 4,5; 6,7; 8,9; 10,11; 12,13; 14,15; 0,2; 1,3; 4,6; 5,7; 8,10; 9,11; 12,14; 13,15;
                1,2; 5,6; 9,10; 13,14; 0,4; 1,5; 2,6; 3,7; 8,12; 9,13; 10,14; 11,15; 2,4; 3,5; 10,12; 11,13;
                1,2; 3,4; 5,6; 9,10; 11,12; 13,14; 0,8; 1,9; 2,10; 3,11; 4,12; 5,13; 6,14; 7,15; 4,8; 5,9;
                6,10; 7,11; 2,4; 3,5; 6,8; 7,9; 10,12; 11,13; 1,2; 3,4; 5,6; 7,8; 9,10; 11,12; 13,14;
            );
            for (r, slot) in v.iter().enumerate().take(rows) {
                _mm512_store_ps(base.add((b0 + r) * W), *slot);
            }
            b0 += 16;
        }
    }

    runner!(
        f32_avx512,
        f32,
        "avx512f,avx512vl",
        __m512,
        16,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_min_ps,
        _mm512_max_ps
    );
    runner!(
        f64_avx512,
        f64,
        "avx512f,avx512vl",
        __m512d,
        8,
        _mm512_loadu_pd,
        _mm512_storeu_pd,
        _mm512_min_pd,
        _mm512_max_pd
    );
    runner!(f32_avx2, f32, "avx2,fma", __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_min_ps, _mm256_max_ps);
    runner!(f64_avx2, f64, "avx2,fma", __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_min_pd, _mm256_max_pd);
}

macro_rules! network_impl {
    ($t:ty, $avx512:ident, $avx2:ident $(, $sort_blocks:ident)?) => {
        impl Network for $t {
            #[inline(always)]
            unsafe fn run(isa: simd::Isa, buf: &mut [Tile<Self>], net: &[Comparator]) {
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => x86::$avx512(buf, net),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => x86::$avx2(buf, net),
                    _ => network_portable(buf, net),
                }
            }
            $(
                #[inline(always)]
                unsafe fn sort_blocks(isa: simd::Isa, buf: &mut [Tile<Self>]) -> bool {
                    #[cfg(target_arch = "x86_64")]
                    if isa == Isa::Avx512 {
                        x86::$sort_blocks(buf);
                        return true;
                    }
                    let _ = (isa, buf);
                    false
                }

                fn sorts_blocks(isa: simd::Isa) -> bool {
                    cfg!(target_arch = "x86_64") && isa == simd::Isa::Avx512
                }
            )?
        }
    };
}
network_impl!(f32, f32_avx512, f32_avx2, f32_sort_blocks_avx512);
network_impl!(f64, f64_avx512, f64_avx2);

/// What a rule makes of a sorted tile: `emit(tile, out)` writes one value per
/// column of the tile (`out.len()` <= W columns are real).
pub(crate) trait Emit<T>: Sync + Send {
    fn emit(&self, tile: &[Tile<T>], out: &mut [T]);
}

impl<T, F: Fn(&[Tile<T>], &mut [T]) + Sync + Send> Emit<T> for F {
    #[inline(always)]
    fn emit(&self, tile: &[Tile<T>], out: &mut [T]) {
        self(tile, out)
    }
}

/// Sorts columns [c0, c0 + out.len()) tile by tile and lets `emit` fill
/// `out`. Returns false when a non-finite value was seen.
#[inline(always)]
fn run_range<T: Real, E: Emit<T>>(
    isa: simd::Isa,
    rows: &Rows<T>,
    c0: usize,
    out: &mut [T],
    net: &[Comparator],
    emit: &E,
) -> bool {
    let n = rows.n();
    let mut buf: Vec<Tile<T>> = vec![Tile([T::ZERO; W]); n];
    let mut check = [T::ZERO; W];
    let mut t = 0;
    while t < out.len() {
        let w = W.min(out.len() - t);
        let c = c0 + t;
        for (r, slot) in buf.iter_mut().enumerate() {
            let row = rows.row(r);
            // n row streams are more than the hardware prefetcher tracks:
            // ask for the line PREFETCH_AHEAD tiles on.
            #[cfg(target_arch = "x86_64")]
            if let Some(ahead) = row.get(c + PREFETCH_AHEAD * W) {
                // SAFETY: a prefetch hint on a valid address; it cannot fault.
                unsafe {
                    core::arch::x86_64::_mm_prefetch(ahead as *const T as *const i8, core::arch::x86_64::_MM_HINT_T0)
                };
            }
            let seg = &row[c..c + w];
            if w == W {
                slot.0.copy_from_slice(seg);
            } else {
                *slot = Tile([T::ZERO; W]);
                slot.0[..w].copy_from_slice(seg);
            }
            for l in 0..W {
                // x - x is NaN exactly when x is NaN or infinite.
                check[l] = check[l].add(slot[l].sub(slot[l]));
            }
        }
        // SAFETY: `net` comes from `network_for(n, ..)` or
        // `network_after_blocks(n, ..)` (the latter exactly when
        // `sorts_blocks(isa)`), so its indices are < n = buf.len(); `isa`
        // never exceeds what the CPU has.
        unsafe {
            T::sort_blocks(isa, &mut buf);
            T::run(isa, &mut buf, net);
        }
        emit.emit(&buf, &mut out[t..t + w]);
        t += W;
    }
    check.iter().all(|v| v.is_finite())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn run_range_avx512<T: Real, E: Emit<T>>(
    rows: &Rows<T>,
    c0: usize,
    out: &mut [T],
    net: &[Comparator],
    emit: &E,
) -> bool {
    run_range(simd::Isa::Avx512, rows, c0, out, net, emit)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_range_avx2<T: Real, E: Emit<T>>(
    rows: &Rows<T>,
    c0: usize,
    out: &mut [T],
    net: &[Comparator],
    emit: &E,
) -> bool {
    run_range(simd::Isa::Avx2, rows, c0, out, net, emit)
}

/// Sorts every column's positions `lo..hi` into place and applies `emit`
/// tile by tile. Fails on a non-finite input.
pub(crate) fn per_column<T: Real, E: Emit<T>>(rows: &Rows<T>, lo: usize, hi: usize, emit: E) -> Result<Vec<T>> {
    let isa = simd::active();
    let net = if T::sorts_blocks(isa) { network_after_blocks(rows.n(), lo, hi) } else { network_for(rows.n(), lo, hi) };
    let mut out = vec![T::ZERO; rows.d()];
    let bad = std::sync::atomic::AtomicBool::new(false);
    par::for_each_chunk_mut(&mut out, GRAIN, |c0, chunk| {
        let ok = match isa {
            // SAFETY: `active()` never returns an instruction set the CPU lacks.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { run_range_avx512(rows, c0, chunk, &net, &emit) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { run_range_avx2(rows, c0, chunk, &net, &emit) },
            _ => run_range(simd::Isa::Scalar, rows, c0, chunk, &net, &emit),
        };
        if !ok {
            bad.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    if bad.into_inner() {
        return Err(rows.find_non_finite().expect("a non-finite value was seen"));
    }
    Ok(out)
}

/// Column `l` of a sorted tile.
pub(crate) fn column<T: Real>(tile: &[Tile<T>], l: usize, col: &mut Vec<T>) {
    col.clear();
    col.extend(tile.iter().map(|r| r[l]));
}

/// Per-lane f64 sum of tile rows lo..hi (in row order).
#[inline(always)]
pub(crate) fn lane_sums<T: Real>(tile: &[Tile<T>], lo: usize, hi: usize) -> [f64; W] {
    let mut s = [0.0f64; W];
    for r in &tile[lo..hi] {
        for l in 0..W {
            s[l] += r[l].to_f64();
        }
    }
    s
}

/// (a + b) / 2 without overflow near f64::MAX.
#[inline]
pub(crate) fn midpoint(a: f64, b: f64) -> f64 {
    let s = a + b;
    if s.is_finite() {
        s / 2.0
    } else {
        a / 2.0 + b / 2.0
    }
}

/// Median of a sorted slice: the middle value, or the mean of the two.
#[inline]
pub(crate) fn median_sorted<T: Real>(v: &[T]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2].to_f64()
    } else {
        midpoint(v[n / 2 - 1].to_f64(), v[n / 2].to_f64())
    }
}

/// The mean of the `beta` values of a sorted slice closest to its median:
/// they form a window, grown from the middle, the lower side winning ties.
#[inline]
pub(crate) fn closest_to_median_mean<T: Real>(v: &[T], beta: usize) -> f64 {
    let n = v.len();
    let med = median_sorted(v);
    // Window [l, r) starts empty just left of the median position.
    let mut l = n / 2;
    let mut r = n / 2;
    while r - l < beta {
        let take_left = if l == 0 {
            false
        } else if r == n {
            true
        } else {
            (med - v[l - 1].to_f64()) <= (v[r].to_f64() - med)
        };
        if take_left {
            l -= 1;
        } else {
            r += 1;
        }
    }
    let s = v[l..r].iter().map(|x| x.to_f64()).sum::<f64>();
    if s.is_finite() {
        s / beta as f64
    } else {
        // Only f64 inputs near f64::MAX get here: divide first.
        v[l..r].iter().map(|x| x.to_f64() / beta as f64).sum()
    }
}
