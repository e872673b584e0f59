//! ZeroTrustML core: robust aggregation and submission validation rules, pure Rust.
//!
//! No Python here (the `zerotrustml-py` crate binds it) and nothing that
//! needs an OS: with default features off it builds for wasm32-unknown-unknown,
//! where the Holochain zomes reuse it. The rules are the pinned definitions
//! of DESIGN.md; see each function's docs.

// Kernels index lanes and tiles by position; iterator chains would hide the maths.
#![allow(clippy::needless_range_loop)]

pub mod aggregate;
pub mod committee;
pub mod error;
pub mod examples;
pub mod gram;
pub mod input;
pub mod order;
mod par;
pub mod real;
pub mod rng;
mod select;
pub mod simd;
pub mod validation;
mod weighted;

pub use aggregate::{
    bucketing, bulyan, centered_clipping, geometric_median, krum, mean, median, multi_krum, nnm, trimmed_mean,
    Aggregate, KrumVariant, Mixed, WeiszfeldParams,
};
pub use error::{CoreError, Result};
pub use input::Rows;
pub use real::Real;
