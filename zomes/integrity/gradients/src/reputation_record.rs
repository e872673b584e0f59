//! Reputation records: an author's score of an agent after a round.
//!
//! A record is its author's opinion (the action signature says whose) of
//! another agent; the DHT guarantees its form and that nobody rates itself.
//! No record is a fact: readers combine the latest opinion of each author
//! (the coordinator's `get_reputation` gives them and their median), so one
//! author cannot set anyone's standing, and a record's round number only
//! orders its own author's opinions. This is why the committee lottery does
//! not weigh by reputation. An author's opinions of one agent go forward in
//! rounds (each a later round than the one before, checked on the author's
//! chain), so an author holds at most one opinion of an agent per round.

use hdi::prelude::*;
use zerotrustml_core::validation::MAX_NUMBER;

use crate::{check, created_entry, earlier_entries, link_target_action, model_properties, UnitEntryTypes, Verdict};

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

/// Score finite in [0, 1]; round within the model's rounds (and at most
/// 2^63 - 1, as everywhere: `zerotrustml_core::validation::MAX_NUMBER`).
pub fn check_reputation(max_round: Option<u64>, r: &ReputationRecord) -> Result<(), String> {
    if !(r.score.is_finite() && (0.0..=1.0).contains(&r.score)) {
        return Err(format!("ReputationRecord.score: must be a finite number in [0, 1], got {}", r.score));
    }
    let max = max_round.unwrap_or(MAX_NUMBER).min(MAX_NUMBER);
    if r.round > max {
        return Err(format!("ReputationRecord.round: {} is past the last round {max}", r.round));
    }
    Ok(())
}

/// A record is one agent's opinion of another: nobody rates itself.
pub fn check_not_self(author: &AgentPubKey, r: &ReputationRecord) -> Result<(), String> {
    if author == &r.agent {
        return Err("ReputationRecord.agent: an agent cannot publish its own reputation (a record is its \
                    author's opinion of another agent)"
            .to_string());
    }
    Ok(())
}

/// An author's opinions of one agent go forward: `r` names a later round
/// than every earlier record of its author about the same agent.
pub fn check_later_opinion(r: &ReputationRecord, earlier: &[ReputationRecord]) -> Result<(), String> {
    match earlier.iter().filter(|e| e.agent == r.agent).map(|e| e.round).max() {
        Some(last) if last >= r.round => Err(format!(
            "ReputationRecord.round: this author's opinion of this agent is already at round {last}; a new one \
             must name a later round, got {}",
            r.round
        )),
        _ => Ok(()),
    }
}

pub fn validate_create_reputation_record(action: &EntryCreationAction, r: &ReputationRecord) -> Verdict {
    check!(check_not_self(action.author(), r));
    let props = check!(model_properties()?);
    check!(check_reputation(props.max_round, r));
    let earlier: Vec<ReputationRecord> =
        earlier_entries(action.author(), action.prev_action(), UnitEntryTypes::ReputationRecord)?;
    Ok(check_later_opinion(r, &earlier))
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
    fn opinions_of_an_agent_go_forward() {
        let other = ReputationRecord { agent: AgentPubKey::from_raw_32(vec![4; 32]), ..record(0.5, 9) };
        let earlier = [record(0.5, 2), other, record(0.7, 5)];
        assert_eq!(check_later_opinion(&record(0.1, 6), &earlier), Ok(()));
        assert_eq!(check_later_opinion(&record(0.1, 0), &[]), Ok(()));
        for round in [5, 3] {
            let err = check_later_opinion(&record(0.1, round), &earlier).unwrap_err();
            assert!(
                err.starts_with("ReputationRecord.round: this author's opinion of this agent is already at round 5")
            );
        }
        // Another agent's records do not count (round 9 is about agent 4).
        assert_eq!(check_later_opinion(&record(0.1, 8), &earlier), Ok(()));
    }

    #[test]
    fn nobody_rates_itself() {
        let r = record(1.0, 1);
        let err = check_not_self(&r.agent, &r).unwrap_err();
        assert!(err.starts_with("ReputationRecord.agent: an agent cannot publish its own reputation"), "{err}");
        assert_eq!(check_not_self(&AgentPubKey::from_raw_32(vec![4; 32]), &r), Ok(()));
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
        assert_eq!(check_reputation(None, &record(0.5, MAX_NUMBER)), Ok(()));
        assert_eq!(
            check_reputation(None, &record(0.5, u64::MAX)).unwrap_err(),
            format!("ReputationRecord.round: {} is past the last round {MAX_NUMBER}", u64::MAX)
        );
    }
}
