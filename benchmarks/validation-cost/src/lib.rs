//! The validators' worst work within the DNA bounds, as a wasm module.
//!
//! `bench(rule, n, d, f)` builds `n` deterministic pseudo-random rows of
//! `d` float32 values inside the module and runs the integrity zome's own
//! `recompute` on them (the function validators run on every aggregate
//! within `recompute_limit`). `benchmarks/validation_cost.py` loads the
//! wasm32 build in Node, times each call and reads the module's linear
//! memory afterwards (wasm memory only grows, so that is the peak).

use gradients_integrity::{recompute, Rule};

/// Rules by number, as the driver names them.
const RULES: [Rule; 5] = [Rule::Mean, Rule::Krum, Rule::MultiKrum, Rule::Median, Rule::TrimmedMean];

fn rows(n: usize, d: usize) -> Vec<Vec<f32>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            (0..d)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                })
                .collect()
        })
        .collect()
}

/// Runs `recompute` once; returns the number of flagged rows, or -1 when
/// the rule refused the input (a broken precondition).
#[no_mangle]
pub extern "C" fn bench(rule: u32, n: u32, d: u32, f: u32) -> i32 {
    let Some(rule) = RULES.get(rule as usize).copied() else {
        return -2;
    };
    let input = rows(n as usize, d as usize);
    let counts = vec![100u64; n as usize];
    match recompute(rule, f, &input, &counts, 10.0) {
        Ok(r) => i32::try_from(r.flagged.len()).unwrap_or(i32::MAX),
        Err(_) => -1,
    }
}
