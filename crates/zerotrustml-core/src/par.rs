//! Data parallelism over column ranges: rayon when the `parallel` feature is
//! on (native builds), a plain loop otherwise (wasm32 zomes). Results do not
//! depend on the split: every reduction here is over disjoint columns or is
//! an exact boolean/max combination, except `map_reduce` of f64 sums, whose
//! callers fix the split by `grain` alone.

use core::ops::Range;

fn ranges(total: usize, grain: usize) -> impl Iterator<Item = Range<usize>> + Clone {
    let grain = grain.max(1);
    (0..total.div_ceil(grain)).map(move |c| c * grain..((c + 1) * grain).min(total))
}

/// Maps each range of `grain` columns and reduces the results in range order.
pub(crate) fn map_reduce<R, M, Rd>(total: usize, grain: usize, map: M, reduce: Rd) -> R
where
    R: Send,
    M: Fn(Range<usize>) -> R + Sync + Send,
    Rd: Fn(R, R) -> R + Sync + Send,
{
    let rs: Vec<Range<usize>> = ranges(total, grain).collect();
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        let parts: Vec<R> = rs.into_par_iter().map(&map).collect();
        parts.into_iter().reduce(&reduce).expect("total > 0")
    }
    #[cfg(not(feature = "parallel"))]
    {
        rs.into_iter().map(&map).reduce(&reduce).expect("total > 0")
    }
}

/// Calls `f(start, chunk)` on disjoint mutable chunks of `out` of `grain` items.
pub(crate) fn for_each_chunk_mut<T: Send, F>(out: &mut [T], grain: usize, f: F)
where
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    let grain = grain.max(1);
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(grain).enumerate().for_each(|(c, ch)| f(c * grain, ch));
    }
    #[cfg(not(feature = "parallel"))]
    {
        out.chunks_mut(grain).enumerate().for_each(|(c, ch)| f(c * grain, ch));
    }
}
