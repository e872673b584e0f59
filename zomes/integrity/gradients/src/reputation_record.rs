//! Reputation records: an author's score of an agent after a round.
//!
//! A record is its author's claim (the action signature says whose); the
//! DHT only guarantees its form. Readers choose whose records they trust,
//! which is why the committee lottery does not weigh by reputation.

use hdi::prelude::*;

use crate::{check, created_entry, link_target_action, model_properties, UnitEntryTypes, Verdict};

#[hdk_entry_helper]
#[derive(Clone, PartialEq)]
pub struct ReputationRecord {
    /// The agent the score is about.
    pub agent: AgentPubKey,
    /// The round after which the score holds.
    pub round: u64,
    /// In [0, 1].
    pub score: f64,
}

/// Score finite in [0, 1]; round within the model's rounds.
pub fn check_reputation(max_round: Option<u64>, r: &ReputationRecord) -> Result<(), String> {
    if !(r.score.is_finite() && (0.0..=1.0).contains(&r.score)) {
        return Err(format!("ReputationRecord.score: must be a finite number in [0, 1], got {}", r.score));
    }
    if let Some(max) = max_round {
        if r.round > max {
            return Err(format!("ReputationRecord.round: {} is past the last round {max}", r.round));
        }
    }
    Ok(())
}

pub fn validate_create_reputation_record(r: &ReputationRecord) -> Verdict {
    let props = check!(model_properties()?);
    Ok(check_reputation(props.max_round, r))
}

/// A reputation link points from the rated agent to a record about it, by
/// the link's author.
pub fn validate_create_link_agent_to_reputation(
    action: &CreateLink,
    base: &AnyLinkableHash,
    target: &AnyLinkableHash,
) -> Verdict {
    let hash = check!(link_target_action(target, "AgentToReputation"));
    let record = must_get_valid_record(hash)?;
    let rep = check!(created_entry::<ReputationRecord>(
        &record,
        UnitEntryTypes::ReputationRecord,
        "AgentToReputation link target"
    )?);
    if record.action().author() != &action.author {
        return Ok(Err("AgentToReputation link author must be the record's author".to_string()));
    }
    let expected: AnyLinkableHash = rep.agent.into();
    if &expected != base {
        return Ok(Err("AgentToReputation link base must be the rated agent".to_string()));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(score: f64, round: u64) -> ReputationRecord {
        ReputationRecord { agent: AgentPubKey::from_raw_32(vec![3; 32]), round, score }
    }

    #[test]
    fn score_in_unit_interval() {
        for ok in [0.0, 0.5, 1.0] {
            assert_eq!(check_reputation(None, &record(ok, 1)), Ok(()));
        }
        for bad in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
            let err = check_reputation(None, &record(bad, 1)).unwrap_err();
            assert!(err.starts_with("ReputationRecord.score: must be a finite number in [0, 1]"), "{err}");
        }
    }

    #[test]
    fn round_bound() {
        assert_eq!(check_reputation(Some(5), &record(0.5, 5)), Ok(()));
        assert_eq!(
            check_reputation(Some(5), &record(0.5, 6)).unwrap_err(),
            "ReputationRecord.round: 6 is past the last round 5"
        );
    }
}
