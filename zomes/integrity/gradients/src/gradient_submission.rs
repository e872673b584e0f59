//! The gradient submission entry and its validation rules.
//!
//! A submission is immutable once published: the round's aggregate must be
//! recomputable by every agent from exactly what was submitted, so updates and
//! deletes are rejected rather than merely ignored.

use hdi::prelude::*;

use crate::round_path;

/// One node's flat float32 update for one round (first version; a later
/// issue adds payload hashing, chunking and the edge proof).
#[hdk_entry_helper]
#[derive(Clone, PartialEq)]
pub struct GradientSubmission {
    pub round: u64,
    pub model_id: String,
    pub dims: u32,
    pub values: Vec<f32>,
    pub norm: f32,
    pub example_count: u32,
}

/// Shape and finiteness; the author is checked by Holochain's own signature
/// validation, and the round link by `validate_create_link_round_to_submissions`.
pub fn validate_create_gradient_submission(
    _action: EntryCreationAction,
    submission: GradientSubmission,
) -> ExternResult<ValidateCallbackResult> {
    match check_gradient_submission(&submission) {
        Ok(()) => Ok(ValidateCallbackResult::Valid),
        Err(reason) => invalid(reason),
    }
}

/// The content rules alone (no host calls), so they run in native tests.
pub fn check_gradient_submission(submission: &GradientSubmission) -> Result<(), String> {
    if submission.values.len() != submission.dims as usize {
        return Err(format!(
            "GradientSubmission.values has {} elements but dims is {}",
            submission.values.len(),
            submission.dims
        ));
    }
    if let Some(i) = submission.values.iter().position(|v| !v.is_finite()) {
        return Err(format!("GradientSubmission.values[{i}] is not finite ({})", submission.values[i]));
    }
    if !submission.norm.is_finite() || submission.norm < 0.0 {
        return Err(format!("GradientSubmission.norm must be finite and >= 0, got {}", submission.norm));
    }
    Ok(())
}

pub fn validate_update_gradient_submission() -> ExternResult<ValidateCallbackResult> {
    invalid("GradientSubmission cannot be updated: submissions are immutable".to_string())
}

pub fn validate_delete_gradient_submission() -> ExternResult<ValidateCallbackResult> {
    invalid("GradientSubmission cannot be deleted: submissions are immutable".to_string())
}

/// A round link must point from the anchor of the submission's own round to a
/// submission written by the link's author, so nobody can file someone else's
/// update (or their own) under a different round.
pub fn validate_create_link_round_to_submissions(
    action: &CreateLink,
    base_address: &AnyLinkableHash,
    target_address: &AnyLinkableHash,
) -> ExternResult<ValidateCallbackResult> {
    let Some(target) = target_address.clone().into_action_hash() else {
        return invalid("RoundToSubmissions link target must be an action hash".to_string());
    };
    let record = must_get_valid_record(target)?;
    let submission: GradientSubmission = match record.entry().to_app_option() {
        Ok(Some(submission)) => submission,
        Ok(None) => return invalid("RoundToSubmissions link target is not a GradientSubmission".to_string()),
        Err(e) => return Err(wasm_error!(e)),
    };
    if record.action().author() != &action.author {
        return invalid("RoundToSubmissions link author must be the submission's author".to_string());
    }
    let expected: AnyLinkableHash = round_path(submission.round)?.path_entry_hash()?.into();
    if &expected != base_address {
        return invalid(format!("RoundToSubmissions link base is not the anchor of round {}", submission.round));
    }
    Ok(ValidateCallbackResult::Valid)
}

pub fn validate_delete_link_round_to_submissions() -> ExternResult<ValidateCallbackResult> {
    invalid("RoundToSubmissions links cannot be deleted: submissions are immutable".to_string())
}

fn invalid(reason: String) -> ExternResult<ValidateCallbackResult> {
    Ok(ValidateCallbackResult::Invalid(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GradientSubmission {
        GradientSubmission {
            round: 1,
            model_id: "m".to_string(),
            dims: 3,
            values: vec![0.5, -1.0, 2.0],
            norm: 2.29,
            example_count: 10,
        }
    }

    #[test]
    fn accepts_a_well_formed_submission() {
        assert_eq!(check_gradient_submission(&sample()), Ok(()));
    }

    #[test]
    fn rejects_length_not_matching_dims() {
        let s = GradientSubmission { dims: 4, ..sample() };
        assert_eq!(
            check_gradient_submission(&s),
            Err("GradientSubmission.values has 3 elements but dims is 4".to_string())
        );
    }

    #[test]
    fn rejects_non_finite_values() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let s = GradientSubmission { values: vec![0.0, bad, 1.0], ..sample() };
            let err = check_gradient_submission(&s).unwrap_err();
            assert!(err.starts_with("GradientSubmission.values[1] is not finite"), "{err}");
        }
    }

    #[test]
    fn rejects_bad_norm() {
        for bad in [f32::NAN, -1.0] {
            let s = GradientSubmission { norm: bad, ..sample() };
            assert!(check_gradient_submission(&s).unwrap_err().contains("norm"));
        }
    }
}
