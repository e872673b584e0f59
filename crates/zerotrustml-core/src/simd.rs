//! Which instruction set the f32 kernels use, chosen once at run time.
//!
//! `ZEROTRUSTML_SIMD=scalar|avx2|avx512` forces a path (tests use it to
//! exercise each; a path the CPU lacks falls back to the best it has).
//! Non-x86_64 targets (wasm32 in the zomes) always use the portable code.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust, f64 products: also what the zomes run.
    Scalar,
    /// AVX2 + FMA, 8 f32 lanes.
    Avx2,
    /// AVX-512F with VL, 16 f32 lanes.
    Avx512,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// The best instruction set this CPU supports.
pub fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Scalar
}

static ACTIVE: AtomicU8 = AtomicU8::new(0);

fn encode(i: Isa) -> u8 {
    i as u8 + 1
}

fn decode(v: u8) -> Isa {
    match v {
        1 => Isa::Scalar,
        2 => Isa::Avx2,
        _ => Isa::Avx512,
    }
}

/// Parses a path name as `ZEROTRUSTML_SIMD` takes it.
pub fn parse(name: &str) -> Option<Isa> {
    match name {
        "scalar" => Some(Isa::Scalar),
        "avx2" => Some(Isa::Avx2),
        "avx512" => Some(Isa::Avx512),
        _ => None,
    }
}

/// The instruction set in use: `detect()`, lowered by `ZEROTRUSTML_SIMD` or
/// by `force`.
pub fn active() -> Isa {
    match ACTIVE.load(Ordering::Relaxed) {
        0 => {
            let wanted = std::env::var("ZEROTRUSTML_SIMD").ok().and_then(|v| parse(&v)).unwrap_or(Isa::Avx512);
            let isa = wanted.min(detect());
            ACTIVE.store(encode(isa), Ordering::Relaxed);
            isa
        }
        v => decode(v),
    }
}

/// Uses `isa` (or the best below it that the CPU has) from now on; returns
/// the path actually taken. Results do not depend on the path except for
/// the reported Gram-form scores, within their error bound.
pub fn force(isa: Isa) -> Isa {
    let isa = isa.min(detect());
    ACTIVE.store(encode(isa), Ordering::Relaxed);
    isa
}
