//! Naive reference implementations the kernels are checked against.
#![allow(dead_code)]

use zerotrustml_core::rng::SplitMix64;

pub fn random(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..n * d).map(|_| ((r.next_u64() >> 40) as f64 / (1u64 << 24) as f64 - 0.5) as f32).collect()
}

pub fn exact_sqdist(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum()
}

/// Krum by the book, exact f64 distances: (selected by (score, index), scores).
pub fn naive_krum_scores(x: &[f32], n: usize, d: usize, pool: &[usize], k: usize) -> Vec<f64> {
    pool.iter()
        .map(|&i| {
            let mut ds: Vec<f64> = pool
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| exact_sqdist(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d]))
                .collect();
            ds.sort_by(|a, b| a.total_cmp(b));
            let _ = n;
            ds[..k.min(ds.len())].iter().sum()
        })
        .collect()
}

pub fn naive_lowest(scores: &[f64], pool: &[usize], m: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..pool.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(pool[a].cmp(&pool[b])));
    idx[..m].iter().map(|&p| pool[p]).collect()
}

pub fn column(x: &[f32], n: usize, d: usize, c: usize) -> Vec<f32> {
    let mut col: Vec<f32> = (0..n).map(|r| x[r * d + c]).collect();
    col.sort_by(|a, b| a.total_cmp(b));
    col
}
