//! Example-count weights for the mean, capped.
//!
//! A submission's `example_count` is a claim nobody can check: weighting the
//! mean by it raw lets one submission claiming 2^64-1 examples decide the
//! round. Every count is capped at `cap` times the median count of the
//! round's contributors:
//!
//! ```text
//! w_i = min(c_i, cap * median(c))      median of an even count: mean of the two middle values
//! ```
//!
//! An honest node with many examples keeps up to `cap` times a typical
//! weight; a liar gains at most the same, however large its claim. The
//! median moves only when more than half the contributors lie about their
//! counts. The DNA property `example_cap` sets `cap` for validators; the
//! Python pipeline and the plain mean use the same function.

/// The cap when nothing else is configured.
pub const DEFAULT_EXAMPLE_CAP: f64 = 10.0;

/// `cap` is usable: finite and at least 1 (below 1 every node would be cut
/// below the median's own weight).
pub fn check_example_cap(cap: f64) -> Result<(), String> {
    if !cap.is_finite() || cap < 1.0 {
        return Err(format!("must be a finite number >= 1, got {cap}"));
    }
    Ok(())
}

/// The median of `counts` as f64 (`None` when empty).
pub fn median_count(counts: &[u64]) -> Option<f64> {
    if counts.is_empty() {
        return None;
    }
    let mut sorted: Vec<u64> = counts.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    Some(if n % 2 == 1 { sorted[n / 2] as f64 } else { (sorted[n / 2 - 1] as f64 + sorted[n / 2] as f64) / 2.0 })
}

/// The weights of the mean: each count capped at `cap` times the median.
pub fn capped_example_weights(counts: &[u64], cap: f64) -> Vec<f64> {
    let Some(median) = median_count(counts) else {
        return Vec::new();
    };
    let bound = cap * median;
    counts.iter().map(|&c| (c as f64).min(bound)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_claim_weighs_at_most_cap_times_the_median() {
        let w = capped_example_weights(&[100, 120, u64::MAX, 80, 110], 10.0);
        assert_eq!(w, vec![100.0, 120.0, 1100.0, 80.0, 110.0]);
        // Uncapped, the liar's share of the mean would be 1 - 4e-17; capped it is 1100 / 1510.
        let total: f64 = w.iter().sum();
        assert!((w[2] / total - 1100.0 / 1510.0).abs() < 1e-15);
    }

    #[test]
    fn median_of_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median_count(&[4, 1, 3, 2]), Some(2.5));
        assert_eq!(median_count(&[7]), Some(7.0));
        assert_eq!(median_count(&[]), None);
        assert_eq!(capped_example_weights(&[1, 1, 1000, 1000], 1.0), vec![1.0, 1.0, 500.5, 500.5]);
        assert!(capped_example_weights(&[], 10.0).is_empty());
    }

    #[test]
    fn honest_counts_below_the_cap_are_untouched() {
        let c = [50, 60, 70, 400];
        assert_eq!(capped_example_weights(&c, 10.0), vec![50.0, 60.0, 70.0, 400.0]);
    }

    #[test]
    fn cap_must_be_finite_and_at_least_one() {
        for bad in [0.5, f64::NAN, f64::INFINITY, -1.0] {
            assert!(check_example_cap(bad).is_err(), "{bad}");
        }
        assert!(check_example_cap(1.0).is_ok());
    }
}
