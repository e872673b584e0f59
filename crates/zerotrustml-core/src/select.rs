//! Distance-based selection (Krum scores, nearest neighbours) that is exact
//! at its boundary: decisions come from the fast Gram-form distances, and any
//! index whose error interval leaves the decision in doubt is re-decided with
//! exact f64 distances. Ties then go to the lowest index.

use std::collections::HashMap;

use crate::error::{invalid, Result};
use crate::gram::{self, Gram};
use crate::input::Rows;

pub(crate) struct Scorer<'r, 'a, T> {
    rows: &'r Rows<'a, T>,
    pub gram: Gram,
    exact: HashMap<usize, Vec<f64>>,
    /// How many rows were re-scored exactly (reported for benchmarks).
    pub refined: usize,
}

/// Sum of the k smallest values (sorted first, so the order is fixed).
fn sum_k_smallest(v: &mut [f64], k: usize) -> f64 {
    if k == 0 {
        return 0.0;
    }
    if k < v.len() {
        v.select_nth_unstable_by(k - 1, |a, b| a.total_cmp(b));
    }
    let head = &mut v[..k];
    head.sort_unstable_by(|a, b| a.total_cmp(b));
    head.iter().sum()
}

impl<'r, 'a, T: crate::real::Real> Scorer<'r, 'a, T> {
    pub fn new(rows: &'r Rows<'a, T>) -> Result<Self> {
        let gram = gram::gram(rows)?;
        // Finite inputs give a finite Gram matrix unless squared norms near
        // f64::MAX (float64 values beyond ~1e154), where the distances would
        // overflow: no distance rule can rank those.
        if let Some(i) = (0..gram.n)
            .find(|&i| gram.g[i * gram.n + i].partial_cmp(&(f64::MAX / 4.0)) != Some(core::cmp::Ordering::Less))
        {
            return Err(invalid(
                "updates",
                format!("the squared norm of update {i} overflows float64; scale the updates down"),
            ));
        }
        Ok(Scorer { rows, gram, exact: HashMap::new(), refined: 0 })
    }

    fn ensure_exact(&mut self, idx: &[usize]) {
        let missing: Vec<usize> = idx.iter().copied().filter(|i| !self.exact.contains_key(i)).collect();
        self.refined += missing.len();
        for (i, row) in missing.iter().zip(gram::exact_rows(self.rows, &missing)) {
            self.exact.insert(*i, row);
        }
    }

    /// Krum scores over `pool` with `k` neighbours: (scores, error bounds).
    fn approx_scores(&self, pool: &[usize], k: usize) -> (Vec<f64>, Vec<f64>) {
        let mut buf = Vec::with_capacity(pool.len());
        let mut scores = Vec::with_capacity(pool.len());
        let mut errs = Vec::with_capacity(pool.len());
        for &i in pool {
            buf.clear();
            let mut e: f64 = 0.0;
            for &j in pool {
                if j != i {
                    buf.push(self.gram.dist(i, j));
                    e = e.max(self.gram.dist_err(i, j));
                }
            }
            scores.push(sum_k_smallest(&mut buf, k));
            errs.push(k as f64 * e);
        }
        (scores, errs)
    }

    fn exact_score(&self, i: usize, pool: &[usize], k: usize) -> f64 {
        let row = &self.exact[&i];
        let mut buf: Vec<f64> = pool.iter().filter(|&&j| j != i).map(|&j| row[j]).collect();
        sum_k_smallest(&mut buf, k)
    }

    /// The m members of `pool` with the lowest Krum scores (k nearest
    /// neighbours within the pool), ordered by score then index, and the
    /// score of every pool member (exact for the members that were in doubt).
    pub fn lowest_scores(&mut self, pool: &[usize], k: usize, m: usize) -> (Vec<usize>, Vec<f64>) {
        let k = k.min(pool.len().saturating_sub(1));
        let (mut scores, errs) = self.approx_scores(pool, k);
        let mut upper: Vec<f64> = scores.iter().zip(&errs).map(|(s, e)| s + e).collect();
        let (_, &mut u, _) = upper.select_nth_unstable_by(m - 1, |a, b| a.total_cmp(b));
        // Members whose lower bound reaches the m-th upper bound may belong to
        // the m lowest; all others certainly do not.
        let cand: Vec<usize> = (0..pool.len()).filter(|&p| scores[p] - errs[p] <= u).collect();
        if cand.len() > m || errs.iter().any(|e| !e.is_finite()) {
            let ids: Vec<usize> = cand.iter().map(|&p| pool[p]).collect();
            self.ensure_exact(&ids);
            for &p in &cand {
                scores[p] = self.exact_score(pool[p], pool, k);
            }
        }
        let mut order = cand;
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(pool[a].cmp(&pool[b])));
        order.truncate(m);
        (order.into_iter().map(|p| pool[p]).collect(), scores)
    }

    /// The `count` nearest rows to row i (itself included, first), by
    /// distance then index.
    pub fn nearest(&mut self, i: usize, count: usize) -> Vec<usize> {
        let n = self.gram.n;
        let others = count.saturating_sub(1);
        let mut order: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        let exact_needed = if others == 0 || others >= order.len() {
            false
        } else {
            let mut upper: Vec<f64> = order.iter().map(|&j| self.gram.dist(i, j) + self.gram.dist_err(i, j)).collect();
            let (_, &mut u, _) = upper.select_nth_unstable_by(others - 1, |a, b| a.total_cmp(b));
            order.iter().filter(|&&j| self.gram.dist(i, j) - self.gram.dist_err(i, j) <= u).count() > others
        };
        if exact_needed {
            self.ensure_exact(&[i]);
            let row = &self.exact[&i];
            order.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
        } else {
            order.sort_by(|&a, &b| self.gram.dist(i, a).total_cmp(&self.gram.dist(i, b)).then(a.cmp(&b)));
        }
        let mut out = vec![i];
        out.extend_from_slice(&order[..others.min(order.len())]);
        out
    }
}
