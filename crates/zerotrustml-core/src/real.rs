//! The element types the rules accept (f32 and f64), and the few operations
//! the generic code needs from them.

/// A floating-point element of an update vector.
pub trait Real: Copy + Send + Sync + PartialOrd + Default + core::fmt::Debug + crate::order::Network + 'static {
    const ZERO: Self;
    /// Lanes of this type in 64 bytes: the tile width of the column kernels.
    const LANES: usize;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    fn is_finite(self) -> bool;
    fn sub(self, o: Self) -> Self;
    fn add(self, o: Self) -> Self;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const LANES: usize = 16;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self + o
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const LANES: usize = 8;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self - o
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self + o
    }
}
