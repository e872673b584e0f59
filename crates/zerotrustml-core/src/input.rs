//! Validated views of the input updates: n rows of equal length d.

use crate::error::{CoreError, Result};
use crate::par;
use crate::real::Real;

/// n update vectors of dimension d, borrowed (no copy), each a contiguous
/// slice. Construction checks emptiness and shape; finiteness is checked by
/// each rule (fused into its kernel where that saves a pass over the data).
#[derive(Debug, Clone)]
pub struct Rows<'a, T> {
    rows: Vec<&'a [T]>,
    d: usize,
}

impl<'a, T: Real> Rows<'a, T> {
    /// Rows from separate slices (a list of 1-D arrays).
    pub fn new(rows: Vec<&'a [T]>) -> Result<Self> {
        let first =
            rows.first().ok_or(CoreError::Empty { param: "updates", reason: "at least one update is required" })?;
        let d = first.len();
        if d == 0 {
            return Err(CoreError::Empty { param: "updates", reason: "updates must have at least one coordinate" });
        }
        if let Some((index, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != d) {
            return Err(CoreError::Shape { param: "updates", index, expected: d, got: r.len() });
        }
        Ok(Rows { rows, d })
    }

    /// Rows from a C-contiguous (n, d) buffer.
    pub fn from_flat(data: &'a [T], n: usize, d: usize) -> Result<Self> {
        if n == 0 {
            return Err(CoreError::Empty { param: "updates", reason: "at least one update is required" });
        }
        if d == 0 {
            return Err(CoreError::Empty { param: "updates", reason: "updates must have at least one coordinate" });
        }
        if data.len() != n * d {
            return Err(CoreError::Shape { param: "updates", index: 0, expected: n * d, got: data.len() });
        }
        Ok(Rows { rows: data.chunks_exact(d).collect(), d })
    }

    #[inline]
    pub fn n(&self) -> usize {
        self.rows.len()
    }

    #[inline]
    pub fn d(&self) -> usize {
        self.d
    }

    #[inline]
    pub fn row(&self, i: usize) -> &'a [T] {
        self.rows[i]
    }

    #[inline]
    pub fn rows(&self) -> &[&'a [T]] {
        &self.rows
    }

    /// A view of a subset of the rows, in the given order.
    pub fn subset(&self, idx: &[usize]) -> Rows<'a, T> {
        Rows { rows: idx.iter().map(|&i| self.rows[i]).collect(), d: self.d }
    }

    /// The first non-finite value, scanning row by row.
    pub fn find_non_finite(&self) -> Option<CoreError> {
        for (row, r) in self.rows.iter().enumerate() {
            if let Some(col) = r.iter().position(|v| !v.is_finite()) {
                return Some(CoreError::NonFinite { param: "updates", row, col, value: r[col].to_f64() });
            }
        }
        None
    }

    /// Checks every value is finite (one parallel pass over the data).
    pub fn check_finite(&self) -> Result<()> {
        let bad = par::map_reduce(
            self.d,
            1 << 14,
            |cols| {
                // x - x is 0 for finite x and NaN for NaN and +-inf.
                let mut acc = T::ZERO;
                for r in &self.rows {
                    for &v in &r[cols.clone()] {
                        acc = acc.add(v.sub(v));
                    }
                }
                !acc.is_finite()
            },
            |a, b| a || b,
        );
        match bad {
            false => Ok(()),
            true => Err(self.find_non_finite().expect("a non-finite value was seen")),
        }
    }
}

/// Checks an optional per-update weight vector: length n, finite, >= 0, sum > 0.
pub(crate) fn check_weights(weights: &[f64], n: usize, param: &'static str) -> Result<()> {
    if weights.len() != n {
        return Err(CoreError::Shape { param, index: 0, expected: n, got: weights.len() });
    }
    for (i, &w) in weights.iter().enumerate() {
        if !w.is_finite() {
            return Err(CoreError::NonFinite { param, row: i, col: 0, value: w });
        }
        if w < 0.0 {
            return Err(crate::error::invalid(param, format!("weight {i} is negative ({w})")));
        }
    }
    if weights.iter().sum::<f64>() <= 0.0 {
        return Err(crate::error::invalid(param, "weights must not all be zero"));
    }
    Ok(())
}

/// Checks a vector parameter of length d is finite.
pub(crate) fn check_vector<T: Real>(v: &[T], d: usize, param: &'static str) -> Result<()> {
    if v.len() != d {
        return Err(CoreError::Shape { param, index: 0, expected: d, got: v.len() });
    }
    if let Some(col) = v.iter().position(|x| !x.is_finite()) {
        return Err(CoreError::NonFinite { param, row: 0, col, value: v[col].to_f64() });
    }
    Ok(())
}
