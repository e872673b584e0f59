//! ZeroTrustML coordinator zome: the calls clients make. It holds no
//! validation logic; what the DHT accepts is decided by `gradients_integrity`.

mod gradient_submission;
pub use gradient_submission::*;
