//! The submission rules, shared by every backend.
//!
//! The embedded store calls them through the Python binding and the
//! integrity zome calls them compiled to wasm, so both accept exactly the
//! same submissions. Nothing here knows about SQLite or Holochain: a rule
//! takes the model spec, the claimed metadata and the payload, and returns
//! the first rule it breaks as a [`Rejection`] that names the field.
//!
//! The payload is a flat float32 vector. Its hash is SHA-256 over the
//! little-endian bytes of the values in order, so a payload split into
//! chunks hashes the same as the whole (feed the chunks to a
//! [`PayloadDigest`] in order). The norm is the L2 norm accumulated in f64
//! in index order; a client may compute it another way (numpy float32 uses
//! pairwise sums), so a claimed norm is accepted within [`NORM_RTOL`].

use core::fmt;

use sha2::{Digest, Sha256};

/// Relative tolerance between a claimed norm and the recomputed one.
///
/// A float32 norm computed by pairwise summation is within a few ulps
/// times log2(d) of the f64 one; 1e-4 covers any d below 2^64 with room to
/// spare and is still far below any change an attacker could profit from.
pub const NORM_RTOL: f64 = 1e-4;

/// Bytes per payload value (float32).
pub const VALUE_BYTES: u64 = 4;

/// The largest round number and example count either store takes:
/// 2^63 - 1, the largest SQLite integer. The DHT could hold any u64, but
/// the same rule on both sides means an entry valid on one is valid on
/// the other (a hot swap copies either way).
pub const MAX_NUMBER: u64 = i64::MAX as u64;

/// What a round's submissions must look like. In the DHT it lives in the
/// DNA properties, in the embedded store in its metadata table.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The model the updates are for; a submission naming another is rejected.
    pub model_id: String,
    /// Number of parameters: the length of every payload.
    pub dims: u64,
    /// Largest accepted L2 norm of a payload.
    pub max_norm: f64,
    /// Largest accepted payload, in bytes (4 per value).
    pub max_payload_bytes: u64,
    /// Rounds run from 0 to `max_round` inclusive; `None` for no bound.
    pub max_round: Option<u64>,
}

/// The claims a submission makes about its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionMeta<'a> {
    pub model_id: &'a str,
    pub round: u64,
    pub dims: u64,
    pub norm: f64,
    pub example_count: u64,
    pub payload_hash: [u8; 32],
}

/// Bytes of an edge proof's nonce.
pub const PROOF_NONCE_BYTES: usize = 16;
/// Bytes of an edge proof's signature (Ed25519) when it carries one.
pub const PROOF_SIGNATURE_BYTES: usize = 64;

/// The form of a submission's edge proof: a node's claim of its held-out
/// loss before and after a step of size `lr` along its update. The stores
/// check the form only; the signature and the losses are evidence that
/// committees weigh.
#[derive(Debug, Clone, PartialEq)]
pub struct ProofForm {
    pub loss_before: f64,
    pub loss_after: f64,
    pub holdout_size: u64,
    pub lr: f64,
    pub nonce_len: usize,
    /// 0 (the proof signs nothing beyond the entry's action) or
    /// [`PROOF_SIGNATURE_BYTES`].
    pub signature_len: usize,
}

/// The first rule a submission breaks.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// The spec itself is unusable (zero dims, a negative norm bound, ...).
    Spec { field: &'static str, reason: String },
    /// `model_id` names another model.
    ModelId { expected: String, got: String },
    /// `round` beyond the spec's last round.
    Round { round: u64, max_round: u64 },
    /// `dims` does not match the spec.
    Dims { expected: u64, got: u64 },
    /// The payload's length does not match `dims`.
    Length { expected: u64, got: u64 },
    /// The payload is larger than the spec allows.
    TooLarge { bytes: u64, limit: u64 },
    /// A NaN or infinite value in the payload.
    NonFinite { index: u64, value: f32 },
    /// The claimed norm is not a finite non-negative number.
    NormClaim { norm: f64 },
    /// The claimed norm differs from the payload's.
    NormMismatch { claimed: f64, actual: f64 },
    /// The payload's norm exceeds the spec's bound.
    NormBound { norm: f64, bound: f64 },
    /// The payload hash does not match the payload.
    HashMismatch { claimed: [u8; 32], actual: [u8; 32] },
    /// `example_count` is zero or above [`MAX_NUMBER`].
    ExampleCount { count: u64 },
    /// The author already submitted in this round.
    Duplicate { round: u64 },
    /// The edge proof is malformed; `field` is `proof.<name>`.
    Proof { field: &'static str, reason: String },
}

impl Rejection {
    /// The field the rule is about, as the submission names it.
    pub fn field(&self) -> &'static str {
        match self {
            Rejection::Spec { field, .. } => field,
            Rejection::ModelId { .. } => "model_id",
            Rejection::Round { .. } | Rejection::Duplicate { .. } => "round",
            Rejection::Dims { .. } => "dims",
            Rejection::Length { .. } | Rejection::TooLarge { .. } | Rejection::NonFinite { .. } => "values",
            Rejection::NormClaim { .. } | Rejection::NormMismatch { .. } | Rejection::NormBound { .. } => "norm",
            Rejection::HashMismatch { .. } => "payload_hash",
            Rejection::ExampleCount { .. } => "example_count",
            Rejection::Proof { field, .. } => field,
        }
    }

    /// A stable machine-readable name of the rule.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Spec { .. } => "bad_spec",
            Rejection::ModelId { .. } => "model_mismatch",
            Rejection::Round { .. } => "round_out_of_range",
            Rejection::Dims { .. } => "dims_mismatch",
            Rejection::Length { .. } => "length_mismatch",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::NonFinite { .. } => "non_finite",
            Rejection::NormClaim { .. } => "bad_norm",
            Rejection::NormMismatch { .. } => "norm_mismatch",
            Rejection::NormBound { .. } => "norm_bound",
            Rejection::HashMismatch { .. } => "hash_mismatch",
            Rejection::ExampleCount { count: 0 } => "no_examples",
            Rejection::ExampleCount { .. } => "example_count_out_of_range",
            Rejection::Duplicate { .. } => "duplicate",
            Rejection::Proof { .. } => "bad_proof",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = self.field();
        match self {
            Rejection::Spec { reason, .. } => write!(f, "model spec {field}: {reason}"),
            Rejection::ModelId { expected, got } => write!(f, "{field}: expected {expected:?}, got {got:?}"),
            Rejection::Round { round, max_round } => write!(f, "{field}: {round} is past the last round {max_round}"),
            Rejection::Dims { expected, got } => write!(f, "{field}: the model has {expected} parameters, got {got}"),
            Rejection::Length { expected, got } => write!(f, "{field}: expected {expected} values, got {got}"),
            Rejection::TooLarge { bytes, limit } => write!(f, "{field}: payload of {bytes} bytes exceeds {limit}"),
            Rejection::NonFinite { index, value } => write!(f, "{field}: non-finite value {value} at index {index}"),
            Rejection::NormClaim { norm } => write!(f, "{field}: {norm} is not a finite non-negative number"),
            Rejection::NormMismatch { claimed, actual } => {
                write!(f, "{field}: claimed {claimed} but the payload's norm is {actual}")
            }
            Rejection::NormBound { norm, bound } => write!(f, "{field}: {norm} exceeds the bound {bound}"),
            Rejection::HashMismatch { claimed, actual } => {
                write!(f, "{field}: claimed {} but the payload hashes to {}", hex(claimed), hex(actual))
            }
            Rejection::ExampleCount { count: 0 } => write!(f, "{field}: must be at least 1"),
            Rejection::ExampleCount { count } => {
                write!(f, "{field}: {count} is above the largest count {MAX_NUMBER}")
            }
            Rejection::Duplicate { round } => write!(f, "{field}: this author already submitted in round {round}"),
            Rejection::Proof { reason, .. } => write!(f, "{field}: {reason}"),
        }
    }
}

impl std::error::Error for Rejection {}

/// The form of an edge proof: finite losses and step, `lr > 0`, a held-out
/// set of 1..=[`MAX_NUMBER`] examples, a 16-byte nonce, and no signature or
/// a 64-byte one.
pub fn check_proof(p: &ProofForm) -> Result<(), Rejection> {
    let bad = |field: &'static str, reason: String| Err(Rejection::Proof { field, reason });
    for (field, v) in [("proof.loss_before", p.loss_before), ("proof.loss_after", p.loss_after), ("proof.lr", p.lr)] {
        if !v.is_finite() {
            return bad(field, format!("must be finite, got {v}"));
        }
    }
    if p.lr <= 0.0 {
        return bad("proof.lr", format!("must be > 0, got {}", p.lr));
    }
    if p.holdout_size == 0 || p.holdout_size > MAX_NUMBER {
        return bad("proof.holdout_size", format!("must be in 1..={MAX_NUMBER}, got {}", p.holdout_size));
    }
    if p.nonce_len != PROOF_NONCE_BYTES {
        return bad("proof.nonce", format!("must be {PROOF_NONCE_BYTES} bytes, got {}", p.nonce_len));
    }
    if !(p.signature_len == 0 || p.signature_len == PROOF_SIGNATURE_BYTES) {
        return bad(
            "proof.signature",
            format!("must be empty or {PROOF_SIGNATURE_BYTES} bytes, got {}", p.signature_len),
        );
    }
    Ok(())
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|b| [DIGITS[(b >> 4) as usize] as char, DIGITS[(b & 15) as usize] as char]).collect()
}

/// Incremental hash, norm and finiteness of a payload fed in chunks.
#[derive(Clone, Default)]
pub struct PayloadDigest {
    hasher: Sha256,
    sum_sq: f64,
    len: u64,
    non_finite: Option<(u64, f32)>,
}

impl PayloadDigest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the next chunk of values.
    pub fn update(&mut self, chunk: &[f32]) {
        // 1 KiB staging keeps the hasher fed in blocks without allocating.
        let mut buf = [0u8; 1024];
        for block in chunk.chunks(buf.len() / 4) {
            for (i, v) in block.iter().enumerate() {
                buf[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
                if !v.is_finite() && self.non_finite.is_none() {
                    self.non_finite = Some((self.len + i as u64, *v));
                }
                self.sum_sq += f64::from(*v) * f64::from(*v);
            }
            self.hasher.update(&buf[..4 * block.len()]);
            self.len += block.len() as u64;
        }
    }

    /// Values seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first non-finite value and its index, if any.
    pub fn non_finite(&self) -> Option<(u64, f32)> {
        self.non_finite
    }

    /// L2 norm of the values seen so far (f64, index order).
    pub fn norm(&self) -> f64 {
        self.sum_sq.sqrt()
    }

    /// SHA-256 of the values' little-endian bytes.
    pub fn hash(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }
}

/// SHA-256 of a payload's little-endian float32 bytes.
pub fn payload_hash(values: &[f32]) -> [u8; 32] {
    let mut d = PayloadDigest::new();
    d.update(values);
    d.hash()
}

/// L2 norm of a payload, accumulated in f64 in index order (exact for the
/// squares: a float32 squared is exact in f64).
pub fn l2_norm(values: &[f32]) -> f64 {
    values.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>().sqrt()
}

/// Check that a spec can be used at all.
pub fn check_spec(spec: &ModelSpec) -> Result<(), Rejection> {
    let bad = |field, reason: &str| Err(Rejection::Spec { field, reason: reason.into() });
    if spec.model_id.is_empty() {
        return bad("model_id", "must not be empty");
    }
    if spec.dims == 0 {
        return bad("dims", "must be at least 1");
    }
    if !(spec.max_norm.is_finite() && spec.max_norm > 0.0) {
        return bad("max_norm", "must be a finite number > 0");
    }
    if spec.max_payload_bytes < spec.dims.saturating_mul(VALUE_BYTES) {
        return bad("max_payload_bytes", "is smaller than one payload of dims float32 values");
    }
    Ok(())
}

/// The rules that need only the claims (the zome checks them before it
/// fetches the chunks; a store checks them before it reads the payload).
pub fn validate_meta(spec: &ModelSpec, meta: &SubmissionMeta<'_>) -> Result<(), Rejection> {
    check_spec(spec)?;
    if meta.model_id != spec.model_id {
        return Err(Rejection::ModelId { expected: spec.model_id.clone(), got: meta.model_id.into() });
    }
    let max_round = spec.max_round.unwrap_or(MAX_NUMBER).min(MAX_NUMBER);
    if meta.round > max_round {
        return Err(Rejection::Round { round: meta.round, max_round });
    }
    // Size before shape: an oversize payload is reported as what it is.
    let bytes = meta.dims.saturating_mul(VALUE_BYTES);
    if bytes > spec.max_payload_bytes {
        return Err(Rejection::TooLarge { bytes, limit: spec.max_payload_bytes });
    }
    if meta.dims != spec.dims {
        return Err(Rejection::Dims { expected: spec.dims, got: meta.dims });
    }
    if !(meta.norm.is_finite() && meta.norm >= 0.0) {
        return Err(Rejection::NormClaim { norm: meta.norm });
    }
    if meta.norm > spec.max_norm * (1.0 + NORM_RTOL) {
        return Err(Rejection::NormBound { norm: meta.norm, bound: spec.max_norm });
    }
    if meta.example_count == 0 || meta.example_count > MAX_NUMBER {
        return Err(Rejection::ExampleCount { count: meta.example_count });
    }
    Ok(())
}

/// The rules that need the payload, given its digest.
pub fn validate_digest(spec: &ModelSpec, meta: &SubmissionMeta<'_>, digest: &PayloadDigest) -> Result<(), Rejection> {
    validate_meta(spec, meta)?;
    if digest.len() != meta.dims {
        let bytes = digest.len().saturating_mul(VALUE_BYTES);
        if bytes > spec.max_payload_bytes {
            return Err(Rejection::TooLarge { bytes, limit: spec.max_payload_bytes });
        }
        return Err(Rejection::Length { expected: meta.dims, got: digest.len() });
    }
    if let Some((index, value)) = digest.non_finite() {
        return Err(Rejection::NonFinite { index, value });
    }
    let actual = digest.norm();
    if actual > spec.max_norm {
        return Err(Rejection::NormBound { norm: actual, bound: spec.max_norm });
    }
    if (meta.norm - actual).abs() > NORM_RTOL * actual.max(f64::MIN_POSITIVE) {
        return Err(Rejection::NormMismatch { claimed: meta.norm, actual });
    }
    let actual = digest.hash();
    if actual != meta.payload_hash {
        return Err(Rejection::HashMismatch { claimed: meta.payload_hash, actual });
    }
    Ok(())
}

/// Every rule of one submission whose payload is in one piece.
pub fn validate_submission(spec: &ModelSpec, meta: &SubmissionMeta<'_>, values: &[f32]) -> Result<(), Rejection> {
    validate_meta(spec, meta)?;
    let mut digest = PayloadDigest::new();
    digest.update(values);
    validate_digest(spec, meta, &digest)
}

/// One submission per author per round: `already` is how many the store or
/// the DHT holds for this author and round.
pub fn check_unique(round: u64, already: u64) -> Result<(), Rejection> {
    if already > 0 {
        return Err(Rejection::Duplicate { round });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ModelSpec {
        ModelSpec { model_id: "m".into(), dims: 3, max_norm: 10.0, max_payload_bytes: 12, max_round: Some(5) }
    }

    fn meta(values: &[f32]) -> SubmissionMeta<'static> {
        SubmissionMeta {
            model_id: "m",
            round: 1,
            dims: values.len() as u64,
            norm: l2_norm(values),
            example_count: 4,
            payload_hash: payload_hash(values),
        }
    }

    #[test]
    fn accepts_a_good_submission() {
        let v = [1.0, 2.0, 2.0];
        assert_eq!(validate_submission(&spec(), &meta(&v), &v), Ok(()));
        assert_eq!(l2_norm(&v), 3.0);
    }

    #[test]
    fn chunked_digest_equals_whole() {
        let v: Vec<f32> = (0..3000).map(|i| i as f32 * 0.5 - 7.0).collect();
        let mut d = PayloadDigest::new();
        for c in v.chunks(257) {
            d.update(c);
        }
        assert_eq!(d.hash(), payload_hash(&v));
        assert_eq!(d.len(), 3000);
        assert_eq!(d.norm(), l2_norm(&v));
    }

    #[test]
    fn known_sha256() {
        // Python: hashlib.sha256(struct.pack("<f", 1.0)).hexdigest()
        assert_eq!(hex(&payload_hash(&[1.0])), "e00e5eb9444182f352323374ef4e08ebcb784725fdd4fd612d7730540b3e0c8c");
    }

    #[test]
    fn each_rule_names_its_field() {
        let v = [1.0f32, 2.0, 2.0];
        let s = spec();
        let cases: Vec<(SubmissionMeta<'static>, Vec<f32>, &str, &str)> = vec![
            (SubmissionMeta { model_id: "x", ..meta(&v) }, v.to_vec(), "model_id", "model_mismatch"),
            (SubmissionMeta { round: 6, ..meta(&v) }, v.to_vec(), "round", "round_out_of_range"),
            (SubmissionMeta { dims: 2, ..meta(&v) }, v.to_vec(), "dims", "dims_mismatch"),
            (meta(&v), vec![1.0, 2.0], "values", "length_mismatch"),
            (meta(&v), vec![1.0, 2.0, 2.0, 0.0], "values", "too_large"),
            (meta(&v), vec![1.0, f32::NAN, 2.0], "values", "non_finite"),
            (SubmissionMeta { norm: f64::NAN, ..meta(&v) }, v.to_vec(), "norm", "bad_norm"),
            (SubmissionMeta { norm: 3.1, ..meta(&v) }, v.to_vec(), "norm", "norm_mismatch"),
            (SubmissionMeta { payload_hash: [0; 32], ..meta(&v) }, v.to_vec(), "payload_hash", "hash_mismatch"),
            (SubmissionMeta { example_count: 0, ..meta(&v) }, v.to_vec(), "example_count", "no_examples"),
            (
                SubmissionMeta { example_count: MAX_NUMBER + 1, ..meta(&v) },
                v.to_vec(),
                "example_count",
                "example_count_out_of_range",
            ),
        ];
        for (m, values, field, code) in cases {
            let err = validate_submission(&s, &m, &values).unwrap_err();
            assert_eq!((err.field(), err.code()), (field, code), "{err}");
            assert!(err.to_string().contains(field), "{err}");
        }
        let big = [6.0f32, 8.0, 1.0];
        let err = validate_submission(&s, &meta(&big), &big).unwrap_err();
        assert_eq!(err.code(), "norm_bound");
        assert_eq!(check_unique(2, 1).unwrap_err().code(), "duplicate");
        assert_eq!(check_unique(2, 0), Ok(()));
    }

    #[test]
    fn numbers_stop_at_the_largest_sqlite_integer() {
        // Without a last round, rounds still end at 2^63 - 1: both stores take the same entries.
        let open = ModelSpec { max_round: None, ..spec() };
        let v = [1.0f32, 2.0, 2.0];
        let ok = SubmissionMeta { round: MAX_NUMBER, example_count: MAX_NUMBER, ..meta(&v) };
        assert_eq!(validate_meta(&open, &ok), Ok(()));
        let late = SubmissionMeta { round: MAX_NUMBER + 1, ..meta(&v) };
        assert_eq!(validate_meta(&open, &late), Err(Rejection::Round { round: MAX_NUMBER + 1, max_round: MAX_NUMBER }));
        let many = SubmissionMeta { example_count: u64::MAX, ..meta(&v) };
        let err = validate_meta(&open, &many).unwrap_err();
        assert_eq!(
            err.to_string(),
            "example_count: 18446744073709551615 is above the largest count 9223372036854775807"
        );
    }

    #[test]
    fn proofs_are_checked_for_form() {
        let good = ProofForm {
            loss_before: 0.7,
            loss_after: 0.6,
            holdout_size: 32,
            lr: 0.1,
            nonce_len: PROOF_NONCE_BYTES,
            signature_len: PROOF_SIGNATURE_BYTES,
        };
        assert_eq!(check_proof(&good), Ok(()));
        assert_eq!(check_proof(&ProofForm { signature_len: 0, ..good.clone() }), Ok(()));
        assert_eq!(check_proof(&ProofForm { holdout_size: MAX_NUMBER, ..good.clone() }), Ok(()));
        for (p, field) in [
            (ProofForm { loss_before: f64::NAN, ..good.clone() }, "proof.loss_before"),
            (ProofForm { loss_after: f64::INFINITY, ..good.clone() }, "proof.loss_after"),
            (ProofForm { lr: f64::NEG_INFINITY, ..good.clone() }, "proof.lr"),
            (ProofForm { lr: 0.0, ..good.clone() }, "proof.lr"),
            (ProofForm { holdout_size: 0, ..good.clone() }, "proof.holdout_size"),
            (ProofForm { holdout_size: MAX_NUMBER + 1, ..good.clone() }, "proof.holdout_size"),
            (ProofForm { nonce_len: 8, ..good.clone() }, "proof.nonce"),
            (ProofForm { signature_len: 63, ..good.clone() }, "proof.signature"),
        ] {
            let err = check_proof(&p).unwrap_err();
            assert_eq!((err.field(), err.code()), (field, "bad_proof"), "{p:?}");
            assert!(err.to_string().starts_with(&format!("{field}: ")), "{err}");
        }
        let err = check_proof(&ProofForm { lr: -0.5, ..good }).unwrap_err();
        assert_eq!(err.to_string(), "proof.lr: must be > 0, got -0.5");
    }

    #[test]
    fn bad_specs_are_named() {
        let v = [1.0f32, 2.0, 2.0];
        for (s, field) in [
            (ModelSpec { dims: 0, ..spec() }, "dims"),
            (ModelSpec { max_norm: f64::INFINITY, ..spec() }, "max_norm"),
            (ModelSpec { max_payload_bytes: 11, ..spec() }, "max_payload_bytes"),
            (ModelSpec { model_id: String::new(), ..spec() }, "model_id"),
        ] {
            let err = validate_submission(&s, &meta(&v), &v).unwrap_err();
            assert_eq!((err.code(), err.field()), ("bad_spec", field));
        }
    }
}
