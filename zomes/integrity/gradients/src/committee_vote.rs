//! Committee votes: a committee member's verdict on one submission.
//!
//! The committee has one definition, in the core (`zerotrustml_core::committee`),
//! used here and by the Python defence alike: a node is on the committee of
//! a round iff the first 8 bytes of SHA-256(committee_seed || round (u64
//! big-endian) || node key), read big-endian, are below
//! `committee_rate * 2^64`. The node key is the member's Ed25519 *node key*
//! from its `NodeRegistration` (the key that signs its proofs and votes), so
//! the embedded store, the mock conductor and the DHT draw the same
//! committee for the same nodes. Every validator evaluates it from the
//! vote's registration, its round and the DNA properties: no roster, no
//! reputation (a reputation record is its author's opinion, not a fact
//! validators agree on), nothing to agree on first. Readers weigh members'
//! votes by their own view of the members' reputation.
//!
//! On a closed network the seed of round r is not the fixed `committee_seed`
//! but `round_seed(committee_seed, beacon_r)` (core `committee`), where the
//! beacon is the admission key's signature over the round, released round by
//! round: the vote carries it and validators check it against the admission
//! key in the DNA properties. So a node key, registered once, cannot be
//! ground for the committees of rounds whose beacons did not exist yet. On
//! an open network the seed is `committee_seed` and a vote carries no beacon.
//!
//! Validation: quality finite; signature empty or 64 bytes; the vote's
//! `registration` a NodeRegistration by the vote's author, whose node key
//! wins the lottery of `round`; the voted submission a valid
//! GradientSubmission of the same round by another agent; one vote per
//! member per submission (the member's earlier chain).

use hdi::prelude::*;
use zerotrustml_core::committee::{beacon_message, is_committee_member, round_seed, BEACON_BYTES};

use crate::{
    check, created_entry, earlier_entries, link_target_action, model_properties, properties::Admission,
    registration_of, GradientSubmission, ModelProperties, UnitEntryTypes, Verdict,
};

/// A committee member's re-scoring of a submission.
#[hdk_entry_helper]
#[derive(Clone, PartialEq)]
pub struct CommitteeVote {
    pub round: u64,
    /// The GradientSubmission action voted on.
    pub submission: ActionHash,
    /// The member's quality score of the update on its own held-out data.
    pub quality: f64,
    pub accept: bool,
    /// The member's node-key signature over the vote (the Python SDK's
    /// `Vote.message()`: round, the voted node's id, its payload hash, the
    /// voter's id, quality, verdict, the voter's key), so the vote is
    /// evidence anyone can check offline against the members'
    /// `NodeRegistration`s. Empty when the member signs nothing beyond the
    /// action.
    #[serde(default, with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// The member's `NodeRegistration` action (its node key decides membership).
    pub registration: ActionHash,
    /// The round's beacon on a closed network (the admission key's signature
    /// over `beacon_message(committee_seed, round)`, 64 bytes); empty on an
    /// open one.
    #[serde(default, with = "serde_bytes")]
    pub beacon: Vec<u8>,
}

/// Whether the node with `node_key` is on the committee of `round` under the
/// DNA properties, given the round's lottery `seed` (see [`beacon_seed`]).
pub fn committee_member(props: &ModelProperties, seed: &[u8], node_key: &[u8], round: u64) -> bool {
    is_committee_member(seed, round, node_key, props.committee_rate)
}

/// The lottery seed of `round` given its `beacon`: on an open network the
/// committee seed (and no beacon); on a closed one the core's `round_seed`
/// of a beacon the admission key signed for this round. `Ok(Err(reason))`
/// names the `field` that holds the beacon.
pub fn beacon_seed(
    props: &ModelProperties,
    round: u64,
    beacon: &[u8],
    field: &str,
) -> ExternResult<Result<Vec<u8>, String>> {
    let seed = props.committee_seed.as_bytes();
    let key = match props.admission() {
        Err(reason) => return Ok(Err(reason)),
        Ok(Admission::Open) if beacon.is_empty() => return Ok(Ok(seed.to_vec())),
        Ok(Admission::Open) => {
            return Ok(Err(format!("{field}: must be empty on an open network (no admission key signs beacons)")))
        }
        Ok(Admission::Key(key)) => key,
    };
    if beacon.len() != BEACON_BYTES {
        return Ok(Err(format!(
            "{field}: required on a closed network, the admission key's {BEACON_BYTES}-byte signature over round \
             {round}, got {} bytes",
            beacon.len()
        )));
    }
    let mut sig = [0u8; BEACON_BYTES];
    sig.copy_from_slice(beacon);
    let signer = AgentPubKey::from_raw_32(key.to_vec());
    if !verify_signature_raw(signer, Signature::from(sig), beacon_message(seed, round))? {
        return Ok(Err(format!("{field}: not the admission key's beacon for round {round}")));
    }
    Ok(Ok(round_seed(seed, beacon)))
}

/// The rules on the vote's own fields and its member's node key, given the
/// round's lottery `seed`.
pub fn check_vote(props: &ModelProperties, seed: &[u8], node_key: &[u8], vote: &CommitteeVote) -> Result<(), String> {
    if !vote.quality.is_finite() {
        return Err(format!("CommitteeVote.quality: must be finite, got {}", vote.quality));
    }
    if !(vote.signature.is_empty() || vote.signature.len() == crate::NODE_SIGNATURE_BYTES) {
        return Err(format!(
            "CommitteeVote.signature: must be empty or {} bytes, got {}",
            crate::NODE_SIGNATURE_BYTES,
            vote.signature.len()
        ));
    }
    if !committee_member(props, seed, node_key, vote.round) {
        return Err(format!(
            "CommitteeVote.registration: node key {} is not on the committee of round {} (hash lottery, committee_rate {})",
            zerotrustml_core::validation::hex(node_key),
            vote.round,
            props.committee_rate
        ));
    }
    Ok(())
}

/// The voted submission must belong to the vote's round and not be the voter's own.
pub fn check_voted_submission(
    vote: &CommitteeVote,
    voter: &AgentPubKey,
    submitter: &AgentPubKey,
    submission: &GradientSubmission,
) -> Result<(), String> {
    if submission.round != vote.round {
        return Err(format!(
            "CommitteeVote.submission: a submission of round {}, the vote is for round {}",
            submission.round, vote.round
        ));
    }
    if submitter == voter {
        return Err("CommitteeVote.submission: a member cannot vote on its own submission".to_string());
    }
    Ok(())
}

/// One vote per member per submission, given the member's earlier votes.
pub fn check_first_vote(vote: &CommitteeVote, earlier: &[CommitteeVote]) -> Result<(), String> {
    if earlier.iter().any(|v| v.submission == vote.submission) {
        return Err(format!("CommitteeVote.submission: this member already voted on {}", vote.submission));
    }
    Ok(())
}

pub fn validate_create_committee_vote(action: &EntryCreationAction, vote: &CommitteeVote) -> Verdict {
    let props = check!(model_properties()?);
    let author = action.author();
    let registration = check!(registration_of(&vote.registration, author, "CommitteeVote.registration")?);
    let seed = check!(beacon_seed(&props, vote.round, &vote.beacon, "CommitteeVote.beacon")?);
    check!(check_vote(&props, &seed, &registration.node_key, vote));
    let record = must_get_valid_record(vote.submission.clone())?;
    let submission = check!(created_entry::<GradientSubmission>(
        &record,
        UnitEntryTypes::GradientSubmission,
        "CommitteeVote.submission"
    )?);
    check!(check_voted_submission(vote, author, record.action().author(), &submission));
    let earlier: Vec<CommitteeVote> = earlier_entries(author, action.prev_action(), UnitEntryTypes::CommitteeVote)?;
    Ok(check_first_vote(vote, &earlier))
}

/// A vote link points from the voted submission to a vote by the link's author.
pub fn validate_create_link_submission_to_votes(
    action: &CreateLink,
    base: &AnyLinkableHash,
    target: &AnyLinkableHash,
) -> Verdict {
    let hash = check!(link_target_action(target, "SubmissionToVotes"));
    let record = must_get_valid_record(hash)?;
    let vote = check!(created_entry::<CommitteeVote>(
        &record,
        UnitEntryTypes::CommitteeVote,
        "SubmissionToVotes link target"
    )?);
    if record.action().author() != &action.author {
        return Ok(Err("SubmissionToVotes link author must be the vote's author".to_string()));
    }
    let expected: AnyLinkableHash = vote.submission.into();
    if &expected != base {
        return Ok(Err("SubmissionToVotes link base must be the voted submission".to_string()));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::properties::tests::props;

    fn agent(i: u8) -> AgentPubKey {
        AgentPubKey::from_raw_32(vec![i; 32])
    }

    fn key(i: u8) -> Vec<u8> {
        vec![i; 32]
    }

    const SEED: &[u8] = b"ztml-committee-v1";

    fn vote(round: u64) -> CommitteeVote {
        CommitteeVote {
            round,
            submission: ActionHash::from_raw_32(vec![9; 32]),
            quality: 0.2,
            accept: true,
            signature: vec![],
            registration: ActionHash::from_raw_32(vec![8; 32]),
            beacon: vec![],
        }
    }

    /// A round where the node with `node_key` is (or is not) a member under the test properties.
    fn round_where(node_key: &[u8], member: bool) -> u64 {
        (0..1000).find(|r| committee_member(&props(), SEED, node_key, *r) == member).unwrap()
    }

    #[test]
    fn membership_uses_the_core_lottery_on_the_node_key() {
        let a = key(1);
        for round in 0..50 {
            assert_eq!(
                committee_member(&props(), SEED, &a, round),
                is_committee_member(b"ztml-committee-v1", round, &[1; 32], 0.5)
            );
        }
        let everyone = ModelProperties { committee_rate: 1.0, ..props() };
        let nobody = ModelProperties { committee_rate: 0.0, ..props() };
        assert!((0..50).all(|r| committee_member(&everyone, SEED, &a, r)));
        assert!((0..50).all(|r| !committee_member(&nobody, SEED, &a, r)));
    }

    #[test]
    fn member_accepted_non_member_rejected() {
        let a = key(1);
        let yes = round_where(&a, true);
        let no = round_where(&a, false);
        assert_eq!(check_vote(&props(), SEED, &a, &vote(yes)), Ok(()));
        let err = check_vote(&props(), SEED, &a, &vote(no)).unwrap_err();
        assert!(
            err.starts_with("CommitteeVote.registration: node key 0101")
                && err.contains(&format!("committee of round {no}")),
            "{err}"
        );
    }

    #[test]
    fn signature_empty_or_64_bytes() {
        let a = key(1);
        let yes = round_where(&a, true);
        assert_eq!(check_vote(&props(), SEED, &a, &CommitteeVote { signature: vec![1; 64], ..vote(yes) }), Ok(()));
        let err = check_vote(&props(), SEED, &a, &CommitteeVote { signature: vec![1; 63], ..vote(yes) }).unwrap_err();
        assert!(err.starts_with("CommitteeVote.signature: must be empty or 64 bytes, got 63"), "{err}");
    }

    #[test]
    fn quality_must_be_finite() {
        let a = key(1);
        let yes = round_where(&a, true);
        for q in [f64::NAN, f64::INFINITY] {
            let err = check_vote(&props(), SEED, &a, &CommitteeVote { quality: q, ..vote(yes) }).unwrap_err();
            assert!(err.starts_with("CommitteeVote.quality: "), "{err}");
        }
    }

    #[test]
    fn voted_submission_and_uniqueness() {
        let s = GradientSubmission {
            round: 4,
            model_id: "m".into(),
            dims: 1,
            dtype: "f32".into(),
            payload_hash: vec![0; 32],
            norm: 0.0,
            example_count: 1,
            chunk_hashes: vec![],
            proof: None,
        };
        assert_eq!(check_voted_submission(&vote(4), &agent(1), &agent(2), &s), Ok(()));
        assert!(check_voted_submission(&vote(5), &agent(1), &agent(2), &s).unwrap_err().contains("round 4"));
        assert!(check_voted_submission(&vote(4), &agent(1), &agent(1), &s).unwrap_err().contains("its own"));
        assert_eq!(check_first_vote(&vote(4), &[]), Ok(()));
        let err = check_first_vote(&vote(4), &[vote(4)]).unwrap_err();
        assert!(err.starts_with("CommitteeVote.submission: this member already voted on "), "{err}");
        let other = CommitteeVote { submission: ActionHash::from_raw_32(vec![8; 32]), ..vote(4) };
        assert_eq!(check_first_vote(&vote(4), &[other]), Ok(()));
    }
}
