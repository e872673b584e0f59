//! The gradient submission entry, its links and their validation.
//!
//! A submission carries the claims about an update (round, model, dims,
//! norm, payload hash, example count, optional edge proof) and the hashes of
//! the chunks holding its values. Validation, in order:
//! 1. form: dtype is "f32", payload hash 32 bytes, proof fields well formed;
//! 2. the claims against the DNA's model spec: core `validate_meta`;
//! 3. the payload: each chunk fetched in order (`must_get_entry`), checked
//!    against the canonical split and fed to the core's `PayloadDigest`, then
//!    core `validate_digest` (length = dims, finite, norm claim, norm bound,
//!    hash matches the chunks);
//! 4. one submission per author per round: the author's chain before this
//!    action is walked and core `check_unique` decides.
//!
//! The author is the action's author: Holochain checks the action signature
//! before app validation, so the provenance needs no rule of ours, and the
//! edge proof needs no signature of its own.

use hdi::prelude::*;
use zerotrustml_core::validation::{
    check_proof as core_check_proof, check_unique, validate_digest, validate_meta, ProofForm, Rejection, SubmissionMeta,
};

use crate::{
    check, created_entry, earlier_entries, fetch_payload, link_target_action, model_properties, round_anchor,
    ModelProperties, UnitEntryTypes, Verdict,
};

/// The only payload dtype: little-endian float32.
pub const DTYPE: &str = "f32";
/// Bytes of a payload or result hash (SHA-256).
pub const HASH_BYTES: usize = 32;
/// Bytes of an edge proof's nonce (as in the Python SDK's proofs).
pub const NONCE_BYTES: usize = zerotrustml_core::validation::PROOF_NONCE_BYTES;

/// A node's claim about the quality of its update: the loss on its own
/// held-out data before and after a step of size `lr` along the update.
/// Bound to the round, the payload and the author by the submission that
/// carries it (whose action the author signed).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EdgeProof {
    pub loss_before: f64,
    pub loss_after: f64,
    pub holdout_size: u64,
    pub lr: f64,
    /// 16 random bytes, fresh per proof.
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    /// The node key's Ed25519 signature over the proof (the Python SDK's
    /// `EdgeProof.message()`, which names the node id, round, payload hash
    /// and every field above), so the proof is evidence anyone can check
    /// offline against the author's `NodeRegistration`. Empty when the
    /// client signs nothing beyond the action.
    #[serde(default, with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// One node's update for one round; the values live in `chunk_hashes`.
#[hdk_entry_helper]
#[derive(Clone, PartialEq)]
pub struct GradientSubmission {
    pub round: u64,
    pub model_id: String,
    pub dims: u64,
    /// Always "f32".
    pub dtype: String,
    /// SHA-256 of the values' little-endian float32 bytes, in order.
    #[serde(with = "serde_bytes")]
    pub payload_hash: Vec<u8>,
    /// L2 norm of the values (f64 accumulation; checked within the core's
    /// relative tolerance).
    pub norm: f64,
    pub example_count: u64,
    /// The payload's chunks, in order (canonical split, see `gradient_chunk`).
    pub chunk_hashes: Vec<EntryHash>,
    pub proof: Option<EdgeProof>,
}

/// A rejection of the core, prefixed with the entry type so the message
/// names the field as `Entry.field`, and suffixed with the rule's code in
/// brackets, so a client maps it to the same typed error (field and code)
/// as the embedded store raises for the same rule.
pub fn rejection(entry: &str, r: &Rejection) -> String {
    match r {
        Rejection::Spec { .. } => format!("DNA properties: {r} [{}]", r.code()),
        _ => format!("{entry}.{r} [{}]", r.code()),
    }
}

/// The 32 bytes of a hash field (code `bad_hash`, as the embedded store names the rule).
pub fn hash32(bytes: &[u8], field: &str) -> Result<[u8; HASH_BYTES], String> {
    <[u8; HASH_BYTES]>::try_from(bytes)
        .map_err(|_| format!("{field}: must be {HASH_BYTES} bytes, got {} [bad_hash]", bytes.len()))
}

impl GradientSubmission {
    /// The claims in the core's terms.
    pub fn meta(&self) -> Result<SubmissionMeta<'_>, String> {
        Ok(SubmissionMeta {
            model_id: &self.model_id,
            round: self.round,
            dims: self.dims,
            norm: self.norm,
            example_count: self.example_count,
            payload_hash: hash32(&self.payload_hash, "GradientSubmission.payload_hash")?,
        })
    }
}

/// Checks of the entry's own fields that the core has no notion of.
pub fn check_form(s: &GradientSubmission) -> Result<(), String> {
    if s.dtype != DTYPE {
        return Err(format!("GradientSubmission.dtype: only {DTYPE:?} is supported, got {:?}", s.dtype));
    }
    hash32(&s.payload_hash, "GradientSubmission.payload_hash")?;
    if let Some(p) = &s.proof {
        check_proof(p)?;
    }
    Ok(())
}

/// The form of an edge proof: the core's rule, the one both stores apply
/// (its signature, when empty, is the submission's action signature here).
pub fn check_proof(p: &EdgeProof) -> Result<(), String> {
    let form = ProofForm {
        loss_before: p.loss_before,
        loss_after: p.loss_after,
        holdout_size: p.holdout_size,
        lr: p.lr,
        nonce_len: p.nonce.len(),
        signature_len: p.signature.len(),
    };
    core_check_proof(&form).map_err(|r| rejection("GradientSubmission", &r))
}

/// Everything that needs no host call: form and the core's claim rules.
pub fn check_claims(props: &ModelProperties, s: &GradientSubmission) -> Result<(), String> {
    check_form(s)?;
    validate_meta(&props.spec(), &s.meta()?).map_err(|r| rejection("GradientSubmission", &r))
}

/// Structure, then the core's payload rules on the digest of the chunks.
pub fn check_payload(
    props: &ModelProperties,
    s: &GradientSubmission,
    digest: &zerotrustml_core::validation::PayloadDigest,
) -> Result<(), String> {
    validate_digest(&props.spec(), &s.meta()?, digest).map_err(|r| rejection("GradientSubmission", &r))
}

/// One submission per author per round, given the rounds of the author's
/// earlier submissions.
pub fn check_first_in_round(round: u64, earlier_rounds: &[u64]) -> Result<(), String> {
    let already = earlier_rounds.iter().filter(|r| **r == round).count() as u64;
    check_unique(round, already).map_err(|r| rejection("GradientSubmission", &r))
}

pub fn validate_create_gradient_submission(action: &EntryCreationAction, s: &GradientSubmission) -> Verdict {
    let props = check!(model_properties()?);
    // Claims first: they are free, and a wrong dims must not make us fetch
    // a wrong number of chunks.
    check!(check_claims(&props, s));
    let (digest, _) =
        check!(fetch_payload("GradientSubmission.chunk_hashes", &s.chunk_hashes, s.dims, props.chunk_values, false)?);
    check!(check_payload(&props, s, &digest));
    let earlier: Vec<GradientSubmission> =
        earlier_entries(action.author(), action.prev_action(), UnitEntryTypes::GradientSubmission)?;
    let rounds: Vec<u64> = earlier.iter().map(|e| e.round).collect();
    Ok(check_first_in_round(s.round, &rounds))
}

/// The submission a link points at, with its author.
fn linked_submission(
    target: &AnyLinkableHash,
    link: &str,
) -> ExternResult<Result<(AgentPubKey, GradientSubmission), String>> {
    let hash = check!(link_target_action(target, link));
    let record = must_get_valid_record(hash)?;
    let submission = check!(created_entry::<GradientSubmission>(
        &record,
        UnitEntryTypes::GradientSubmission,
        &format!("{link} link target")
    )?);
    Ok(Ok((record.action().author().clone(), submission)))
}

/// A round link points from the anchor of the submission's own round to a
/// submission by the link's author, so nobody can file someone else's update
/// (or their own) under another round.
pub fn validate_create_link_round_to_submissions(
    action: &CreateLink,
    base: &AnyLinkableHash,
    target: &AnyLinkableHash,
) -> Verdict {
    let (author, submission) = check!(linked_submission(target, "RoundToSubmissions")?);
    if author != action.author {
        return Ok(Err("RoundToSubmissions link author must be the submission's author".to_string()));
    }
    let expected: AnyLinkableHash = round_anchor(submission.round)?.into();
    if &expected != base {
        return Ok(Err(format!("RoundToSubmissions link base is not the anchor of round {}", submission.round)));
    }
    Ok(Ok(()))
}

/// An author links only their own submissions from their own key.
pub fn validate_create_link_agent_to_submissions(
    action: &CreateLink,
    base: &AnyLinkableHash,
    target: &AnyLinkableHash,
) -> Verdict {
    let (author, _) = check!(linked_submission(target, "AgentToSubmissions")?);
    if author != action.author {
        return Ok(Err("AgentToSubmissions link author must be the submission's author".to_string()));
    }
    let expected: AnyLinkableHash = author.into();
    if &expected != base {
        return Ok(Err("AgentToSubmissions link base must be the submission's author".to_string()));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::properties::tests::props;
    use crate::{split_payload, ChunkReader};
    use zerotrustml_core::validation::{l2_norm, payload_hash, PayloadDigest};

    fn values() -> Vec<f32> {
        (0..24).map(|i| (i as f32 - 12.0) * 0.125).collect()
    }

    fn sample(v: &[f32]) -> GradientSubmission {
        GradientSubmission {
            round: 3,
            model_id: "mnist-mlp-v1".into(),
            dims: v.len() as u64,
            dtype: DTYPE.into(),
            payload_hash: payload_hash(v).to_vec(),
            norm: l2_norm(v),
            example_count: 32,
            chunk_hashes: Vec::new(),
            proof: Some(EdgeProof {
                loss_before: 0.9,
                loss_after: 0.7,
                holdout_size: 50,
                lr: 0.1,
                nonce: vec![7; 16],
                signature: vec![],
            }),
        }
    }

    fn digest_of(v: &[f32]) -> PayloadDigest {
        let chunks = split_payload(v, 10);
        let mut r = ChunkReader::new("GradientSubmission.chunk_hashes", 24, 10, chunks.len(), false).unwrap();
        for c in &chunks {
            r.push(c).unwrap();
        }
        r.finish().0
    }

    fn full_check(s: &GradientSubmission, v: &[f32]) -> Result<(), String> {
        check_claims(&props(), s)?;
        check_payload(&props(), s, &digest_of(v))
    }

    #[test]
    fn accepts_a_well_formed_submission() {
        let v = values();
        assert_eq!(full_check(&sample(&v), &v), Ok(()));
    }

    #[test]
    fn rejects_nan_payload_naming_values() {
        let mut v = values();
        v[1] = f32::NAN;
        let s = GradientSubmission { norm: 3.0, ..sample(&values()) };
        assert_eq!(
            full_check(&s, &v).unwrap_err(),
            "GradientSubmission.values: non-finite value NaN at index 1 [non_finite]"
        );
        // A NaN norm claim (what a client computes from a NaN payload) is
        // caught before the payload is fetched.
        let s = GradientSubmission { norm: f64::NAN, ..sample(&v) };
        assert_eq!(
            check_claims(&props(), &s).unwrap_err(),
            "GradientSubmission.norm: NaN is not a finite non-negative number [bad_norm]"
        );
    }

    #[test]
    fn rejects_wrong_dims_and_model() {
        let v = values();
        let s = GradientSubmission { dims: 4, ..sample(&v) };
        assert_eq!(
            check_claims(&props(), &s).unwrap_err(),
            "GradientSubmission.dims: the model has 24 parameters, got 4 [dims_mismatch]"
        );
        let s = GradientSubmission { dims: 1000, ..sample(&v) };
        assert_eq!(
            check_claims(&props(), &s).unwrap_err(),
            "GradientSubmission.values: payload of 4000 bytes exceeds 96 [too_large]"
        );
        let s = GradientSubmission { model_id: "other".into(), ..sample(&v) };
        assert!(check_claims(&props(), &s).unwrap_err().starts_with("GradientSubmission.model_id: "));
    }

    #[test]
    fn rejects_a_hash_that_does_not_match_the_chunks() {
        let v = values();
        let mut other = v.clone();
        other[0] += 1.0;
        let s = GradientSubmission { payload_hash: payload_hash(&other).to_vec(), ..sample(&v) };
        let err = full_check(&s, &v).unwrap_err();
        assert!(err.starts_with("GradientSubmission.payload_hash: claimed "), "{err}");
        let s = GradientSubmission { payload_hash: vec![1, 2, 3], ..sample(&v) };
        assert_eq!(
            check_claims(&props(), &s).unwrap_err(),
            "GradientSubmission.payload_hash: must be 32 bytes, got 3 [bad_hash]"
        );
    }

    #[test]
    fn rejects_norm_lies_and_bound() {
        let v = values();
        let s = GradientSubmission { norm: l2_norm(&v) * 1.01, ..sample(&v) };
        assert!(full_check(&s, &v).unwrap_err().starts_with("GradientSubmission.norm: claimed "));
        let big: Vec<f32> = vec![30.0; 24];
        let s = sample(&big);
        assert!(check_claims(&props(), &s).unwrap_err().contains("exceeds the bound 100"));
    }

    #[test]
    fn rejects_bad_form() {
        let v = values();
        let s = GradientSubmission { dtype: "f64".into(), ..sample(&v) };
        assert_eq!(check_form(&s).unwrap_err(), "GradientSubmission.dtype: only \"f32\" is supported, got \"f64\"");
        let bad_proofs = [
            (EdgeProof { loss_before: f64::NAN, ..sample(&v).proof.unwrap() }, "proof.loss_before"),
            (EdgeProof { lr: 0.0, ..sample(&v).proof.unwrap() }, "proof.lr"),
            (EdgeProof { holdout_size: 0, ..sample(&v).proof.unwrap() }, "proof.holdout_size"),
            (EdgeProof { nonce: vec![0; 8], ..sample(&v).proof.unwrap() }, "proof.nonce"),
            (EdgeProof { signature: vec![0; 8], ..sample(&v).proof.unwrap() }, "proof.signature"),
        ];
        for (p, field) in bad_proofs {
            let err = check_form(&GradientSubmission { proof: Some(p), ..sample(&v) }).unwrap_err();
            assert!(err.starts_with(&format!("GradientSubmission.{field}: ")), "{err}");
        }
        let s = GradientSubmission { example_count: 0, ..sample(&v) };
        assert_eq!(
            check_claims(&props(), &s).unwrap_err(),
            "GradientSubmission.example_count: must be at least 1 [no_examples]"
        );
    }

    #[test]
    fn second_submission_in_a_round_is_a_duplicate() {
        assert_eq!(check_first_in_round(3, &[]), Ok(()));
        assert_eq!(check_first_in_round(3, &[1, 2, 4]), Ok(()));
        assert_eq!(
            check_first_in_round(3, &[1, 3]).unwrap_err(),
            "GradientSubmission.round: this author already submitted in round 3 [duplicate]"
        );
    }

    #[test]
    fn spec_errors_name_the_dna_properties() {
        let v = values();
        let p = ModelProperties { dims: 0, ..props() };
        let err = check_claims(&p, &sample(&v)).unwrap_err();
        assert!(err.starts_with("DNA properties: model spec dims"), "{err}");
    }
}
