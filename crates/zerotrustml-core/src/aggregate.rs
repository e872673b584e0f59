//! The aggregation rules, as pinned in DESIGN.md. Each takes n rows of
//! dimension d and returns the aggregate and, where the rule selects or
//! weighs, the selected indices and per-update scores.

use crate::error::{invalid, CoreError, Result};
use crate::input::{check_vector, check_weights, Rows};
use crate::order::{self, lane_sums, per_column, Tile, W};
use crate::real::Real;
use crate::rng::SplitMix64;
use crate::select::Scorer;
use crate::weighted::{cast, dist, dists_to, mean_of};

/// An aggregate with the evidence detection needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate<T> {
    /// The aggregated vector (length d).
    pub vector: Vec<T>,
    /// Indices of the updates the rule selected, in selection order (empty
    /// for rules that do not select).
    pub selected: Vec<usize>,
    /// One score per update (Krum scores, Weiszfeld weights, clipping
    /// factors); empty for rules without scores.
    pub scores: Vec<f64>,
    /// Iterations run by iterative rules (0 otherwise).
    pub iterations: usize,
}

impl<T> Aggregate<T> {
    fn plain(vector: Vec<T>) -> Self {
        Aggregate { vector, selected: Vec::new(), scores: Vec::new(), iterations: 0 }
    }
}

/// Number of neighbours in a Krum score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KrumVariant {
    /// n - f - 2 nearest neighbours (Blanchard et al. 2017): ours.
    #[default]
    Standard,
    /// n - f - 1 nearest neighbours, as ByzFL counts them.
    ByzFl,
}

fn precondition(rule: &'static str, requirement: &'static str, n: usize, f: usize) -> CoreError {
    CoreError::Precondition { rule, requirement, n, f }
}

/// n >= a f + b, without overflow for any f.
fn at_least(n: usize, a: u128, f: usize, b: u128) -> bool {
    n as u128 >= a * f as u128 + b
}

/// Fails on non-finite values in an aggregate computed in f64 (finite f32
/// inputs cannot overflow there; f64 inputs can).
fn finish<T: Real>(rows: &Rows<T>, v: Vec<f64>) -> Result<Vec<T>> {
    if v.iter().all(|x| x.is_finite()) {
        let out: Vec<T> = cast(&v);
        if out.iter().all(|x| x.is_finite()) {
            return Ok(out);
        }
    }
    Err(rows.find_non_finite().unwrap_or_else(|| invalid("updates", "the aggregate overflows the element type")))
}

/// Mean of the updates, weighted by `weights` (e.g. example counts) when
/// given: sum_i w_i x_i / sum_i w_i, accumulated in f64.
pub fn mean<T: Real>(rows: &Rows<T>, weights: Option<&[f64]>) -> Result<Aggregate<T>> {
    if let Some(w) = weights {
        check_weights(w, rows.n(), "weights")?;
    }
    let all: Vec<usize> = (0..rows.n()).collect();
    Ok(Aggregate::plain(finish(rows, mean_of(rows, &all, weights))?))
}

fn krum_k(n: usize, f: usize, variant: KrumVariant) -> usize {
    match variant {
        KrumVariant::Standard => n - f - 2,
        KrumVariant::ByzFl => n - f - 1,
    }
}

/// Krum: score(i) = sum of the k smallest squared distances from x_i to the
/// others (k = n-f-2, or n-f-1 for `ByzFl`); returns the update with the
/// lowest score, ties to the lowest index. Needs n >= 2f+3.
pub fn krum<T: Real>(rows: &Rows<T>, f: usize, variant: KrumVariant) -> Result<Aggregate<T>> {
    multi_krum(rows, f, 1, variant)
}

/// Krum's and Multi-Krum's precondition on n updates with f Byzantine:
/// n >= 2f+3 (a checker that has only the counts, e.g. a validator, calls
/// this without the rows).
pub fn check_krum_precondition(n: usize, f: usize) -> Result<()> {
    if !at_least(n, 2, f, 3) {
        return Err(precondition("krum", "n >= 2f+3", n, f));
    }
    Ok(())
}

/// The trimmed mean's precondition: n > 2f.
pub fn check_trimmed_mean_precondition(n: usize, f: usize) -> Result<()> {
    if !at_least(n, 2, f, 1) {
        return Err(precondition("trimmed_mean", "n > 2f", n, f));
    }
    Ok(())
}

/// The precondition of the rule named `rule` on n updates with f Byzantine
/// (krum and multi_krum: [`check_krum_precondition`]; trimmed_mean:
/// [`check_trimmed_mean_precondition`]; every other rule has none), for
/// checkers that know a rule by name and only the counts (the integrity
/// zome's aggregate validation, the mock conductor).
pub fn check_rule_precondition(rule: &str, n: usize, f: usize) -> Result<()> {
    match rule {
        "krum" | "multi_krum" => check_krum_precondition(n, f),
        "trimmed_mean" => check_trimmed_mean_precondition(n, f),
        _ => Ok(()),
    }
}

/// Multi-Krum: the m updates with the lowest Krum scores, averaged with equal
/// weights. Needs n >= 2f+3 and 1 <= m <= n.
pub fn multi_krum<T: Real>(rows: &Rows<T>, f: usize, m: usize, variant: KrumVariant) -> Result<Aggregate<T>> {
    let n = rows.n();
    check_krum_precondition(n, f)?;
    if m == 0 || m > n {
        return Err(invalid("m", format!("must be in 1..={n} (the number of updates), got {m}")));
    }
    let mut scorer = Scorer::new(rows)?;
    let pool: Vec<usize> = (0..n).collect();
    let (selected, scores) = scorer.lowest_scores(&pool, krum_k(n, f, variant), m);
    let vector = if m == 1 { rows.row(selected[0]).to_vec() } else { finish(rows, mean_of(rows, &selected, None))? };
    Ok(Aggregate { vector, selected, scores, iterations: 0 })
}

/// Coordinate-wise median (mean of the two middle values for even n).
pub fn median<T: Real>(rows: &Rows<T>) -> Result<Aggregate<T>> {
    let n = rows.n();
    let (lo, hi) = ((n - 1) / 2, n / 2);
    let v = per_column(rows, lo, hi + 1, move |tile: &[Tile<T>], out: &mut [T]| {
        for (l, o) in out.iter_mut().enumerate() {
            *o = if lo == hi {
                tile[lo][l]
            } else {
                T::from_f64(order::midpoint(tile[lo][l].to_f64(), tile[hi][l].to_f64()))
            };
        }
    })?;
    Ok(Aggregate::plain(v))
}

/// Trimmed mean: per coordinate, drop the f largest and f smallest values and
/// average the remaining n-2f (in f64). Needs n > 2f.
pub fn trimmed_mean<T: Real>(rows: &Rows<T>, f: usize) -> Result<Aggregate<T>> {
    let n = rows.n();
    check_trimmed_mean_precondition(n, f)?;
    let keep = (n - 2 * f) as f64;
    let v = per_column(rows, f, n - f, move |tile: &[Tile<T>], out: &mut [T]| {
        let s = lane_sums(tile, f, n - f);
        for (l, o) in out.iter_mut().enumerate() {
            *o = T::from_f64(if s[l].is_finite() {
                s[l] / keep
            } else {
                // Only f64 inputs near f64::MAX get here: divide first.
                tile[f..n - f].iter().map(|r| r[l].to_f64() / keep).sum()
            });
        }
    })?;
    Ok(Aggregate::plain(v))
}

/// Bulyan (El Mhamdi et al. 2018): select theta = n-2f updates by iterated
/// Krum (each step scores the remaining pool with k = max(1, |pool|-f-2)
/// neighbours and removes the winner), then per coordinate average the
/// beta = theta-2f selected values closest to their median (the lower value
/// wins a tie). Needs n >= 4f+3. Scores are each winner's score when chosen.
pub fn bulyan<T: Real>(rows: &Rows<T>, f: usize) -> Result<Aggregate<T>> {
    let n = rows.n();
    if !at_least(n, 4, f, 3) {
        return Err(precondition("bulyan", "n >= 4f+3", n, f));
    }
    let theta = n - 2 * f;
    let beta = theta - 2 * f;
    let mut scorer = Scorer::new(rows)?;
    let mut pool: Vec<usize> = (0..n).collect();
    let mut selected = Vec::with_capacity(theta);
    let mut win_scores = Vec::with_capacity(theta);
    while selected.len() < theta {
        let k = pool.len().saturating_sub(f + 2).max(1);
        let (best, scores) = scorer.lowest_scores(&pool, k, 1);
        let p = pool.iter().position(|&i| i == best[0]).expect("winner is in the pool");
        win_scores.push(scores[p]);
        selected.push(pool.remove(p));
    }
    let chosen = rows.subset(&selected);
    let v = per_column(&chosen, 0, theta, move |tile: &[Tile<T>], out: &mut [T]| {
        let mut col = Vec::with_capacity(theta);
        for (l, o) in out.iter_mut().enumerate() {
            order::column(tile, l, &mut col);
            *o = T::from_f64(order::closest_to_median_mean(&col, beta));
        }
    })?;
    Ok(Aggregate { vector: v, selected, scores: win_scores, iterations: 0 })
}

/// Parameters of the smoothed Weiszfeld iteration.
#[derive(Debug, Clone, Copy)]
pub struct WeiszfeldParams {
    /// Smoothing nu: distances below it count as nu (avoids division by 0).
    pub nu: f64,
    /// Stop when ||z_{t+1} - z_t|| <= tol * (1 + ||z_t||).
    pub tol: f64,
    /// Iteration cap.
    pub max_iter: usize,
}

impl Default for WeiszfeldParams {
    fn default() -> Self {
        WeiszfeldParams { nu: 1e-6, tol: 1e-7, max_iter: 100 }
    }
}

/// Geometric median by smoothed Weiszfeld (Pillutla et al., RFA): starting at
/// the (weighted) mean, z <- sum_i b_i x_i / sum_i b_i with
/// b_i = a_i / max(nu, ||x_i - z||). Scores: the final b_i, normalised.
pub fn geometric_median<T: Real>(rows: &Rows<T>, weights: Option<&[f64]>, p: WeiszfeldParams) -> Result<Aggregate<T>> {
    let n = rows.n();
    if !(p.nu > 0.0 && p.nu.is_finite()) {
        return Err(invalid("nu", format!("must be a positive finite number, got {}", p.nu)));
    }
    if !(p.tol >= 0.0 && p.tol.is_finite()) {
        return Err(invalid("tol", format!("must be a non-negative finite number, got {}", p.tol)));
    }
    if p.max_iter == 0 {
        return Err(invalid("max_iter", "must be at least 1"));
    }
    if let Some(w) = weights {
        check_weights(w, n, "weights")?;
    }
    rows.check_finite()?;
    let a: Vec<f64> = weights.map(|w| w.to_vec()).unwrap_or_else(|| vec![1.0; n]);
    let all: Vec<usize> = (0..n).collect();
    let mut z = mean_of(rows, &all, Some(&a));
    let origin = vec![0.0; rows.d()];
    let mut b = vec![0.0; n];
    let mut iterations = 0;
    while iterations < p.max_iter {
        iterations += 1;
        let dz = dists_to(rows, &z);
        for i in 0..n {
            b[i] = a[i] / dz[i].max(p.nu);
        }
        let next = mean_of(rows, &all, Some(&b));
        let step = dist(&next, &z);
        let norm = dist(&z, &origin);
        z = next;
        if step <= p.tol * (1.0 + norm) {
            break;
        }
    }
    let total: f64 = b.iter().sum();
    let scores = b.iter().map(|v| v / total).collect();
    Ok(Aggregate { vector: finish(rows, z)?, selected: Vec::new(), scores, iterations })
}

/// Centered clipping (Karimireddy, He & Jaggi 2021): from the centre v
/// (the previous aggregate or momentum; zeros when not given, as ByzFL),
/// repeat `iters` times v <- v + (1/n) sum_i (x_i - v) min(1, tau/||x_i - v||).
/// Scores: each update's clipping factor in the last iteration.
pub fn centered_clipping<T: Real>(
    rows: &Rows<T>,
    tau: f64,
    iters: usize,
    center: Option<&[T]>,
) -> Result<Aggregate<T>> {
    let n = rows.n();
    if !(tau > 0.0 && tau.is_finite()) {
        return Err(invalid("tau", format!("must be a positive finite radius, got {tau}")));
    }
    if iters == 0 {
        return Err(invalid("iters", "must be at least 1"));
    }
    if let Some(c) = center {
        check_vector(c, rows.d(), "center")?;
    }
    rows.check_finite()?;
    let mut v: Vec<f64> = center.map(|c| c.iter().map(|x| x.to_f64()).collect()).unwrap_or_else(|| vec![0.0; rows.d()]);
    let all: Vec<usize> = (0..n).collect();
    let mut c = vec![0.0; n];
    for _ in 0..iters {
        let dist = dists_to(rows, &v);
        for i in 0..n {
            c[i] = if dist[i] > tau { tau / dist[i] } else { 1.0 };
        }
        // v + (1/n) sum c_i (x_i - v) = v (1 - C/n) + (C/n) cm, with C = sum c
        // and cm = sum c_i x_i / C (a weighted mean, safe from overflow).
        let share = c.iter().sum::<f64>() / n as f64;
        let cm = mean_of(rows, &all, Some(&c));
        for (vj, mj) in v.iter_mut().zip(&cm) {
            *vj = *vj * (1.0 - share) + mj * share;
        }
    }
    Ok(Aggregate { vector: finish(rows, v)?, selected: Vec::new(), scores: c, iterations: iters })
}

/// Updates transformed before a robust rule: `rows` is (groups.len(), d)
/// row-major; row g is the mean of the inputs `groups[g]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixed<T> {
    pub rows: Vec<T>,
    pub d: usize,
    pub groups: Vec<Vec<usize>>,
}

fn mix<T: Real>(rows: &Rows<T>, groups: Vec<Vec<usize>>) -> Result<Mixed<T>> {
    let mut out = Vec::with_capacity(groups.len() * rows.d());
    for g in &groups {
        out.extend(finish(rows, mean_of(rows, g, None))?);
    }
    Ok(Mixed { rows: out, d: rows.d(), groups })
}

/// Nearest-neighbour mixing (Allouah et al. 2023): each x_i is replaced by
/// the mean of its n-f nearest neighbours, itself included (distance ties to
/// the lowest index). Needs n > f.
pub fn nnm<T: Real>(rows: &Rows<T>, f: usize) -> Result<Mixed<T>> {
    let n = rows.n();
    if n <= f {
        return Err(precondition("nnm", "n > f", n, f));
    }
    let mut scorer = Scorer::new(rows)?;
    let groups = (0..n).map(|i| scorer.nearest(i, n - f)).collect();
    mix(rows, groups)
}

/// Bucketing (Karimireddy, He & Jaggi 2022): a seeded random permutation
/// (SplitMix64, Fisher-Yates) cut into buckets of `s` consecutive updates
/// (the last may be smaller); each bucket is replaced by its mean.
pub fn bucketing<T: Real>(rows: &Rows<T>, s: usize, seed: u64) -> Result<Mixed<T>> {
    if s == 0 {
        return Err(invalid("s", "bucket size must be at least 1"));
    }
    let perm = SplitMix64::new(seed).permutation(rows.n());
    mix(rows, perm.chunks(s).map(|c| c.to_vec()).collect())
}

/// Re-exported for the binding's use of the network width.
pub const TILE_COLUMNS: usize = W;
