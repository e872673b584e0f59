//! The one error type of the core. Every variant names the parameter it is
//! about, so the Python binding and the zomes can report it as it is.

use core::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum CoreError {
    /// A required collection was empty (`updates` with no rows, rows of length 0).
    Empty { param: &'static str, reason: &'static str },
    /// Rows of different lengths, or a vector whose length does not match.
    Shape { param: &'static str, index: usize, expected: usize, got: usize },
    /// A NaN or infinite value in an input.
    NonFinite { param: &'static str, row: usize, col: usize, value: f64 },
    /// A rule's precondition on n and f does not hold (e.g. Krum's n >= 2f+3).
    Precondition { rule: &'static str, requirement: &'static str, n: usize, f: usize },
    /// A parameter outside its domain.
    InvalidParameter { param: &'static str, reason: String },
}

pub type Result<T> = core::result::Result<T, CoreError>;

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Empty { param, reason } => write!(f, "{param}: {reason}"),
            CoreError::Shape { param, index, expected, got } => {
                write!(f, "{param}: ragged or mismatched shape at index {index}: expected length {expected}, got {got}")
            }
            CoreError::NonFinite { param, row, col, value } => {
                write!(f, "{param}: non-finite value {value} at row {row}, column {col}")
            }
            CoreError::Precondition { rule, requirement, n, f: ff } => {
                write!(f, "{rule} needs {requirement} (got n={n}, f={ff})")
            }
            CoreError::InvalidParameter { param, reason } => write!(f, "{param}: {reason}"),
        }
    }
}

impl std::error::Error for CoreError {}

pub(crate) fn invalid(param: &'static str, reason: impl Into<String>) -> CoreError {
    CoreError::InvalidParameter { param, reason: reason.into() }
}
