//! Calls for committee votes: membership, casting, reading.

use gradients_integrity::*;
use hdk::prelude::*;

use crate::{get_many, guest, properties, target_actions};

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct MembershipInput {
    /// A node key (32 bytes, as in its NodeRegistration).
    #[serde(with = "serde_bytes")]
    pub node_key: Vec<u8>,
    pub round: u64,
    /// The round's beacon on a closed network (see `CommitteeVote.beacon`).
    #[serde(default, with = "serde_bytes")]
    pub beacon: Vec<u8>,
}

/// Whether the node with `node_key` is on the committee of `round`: the
/// same lottery the integrity zome applies to every vote (on a closed
/// network, seeded by the round's beacon, which must be valid).
#[hdk_extern]
pub fn is_committee_member(input: MembershipInput) -> ExternResult<bool> {
    let props = properties()?;
    let seed = beacon_seed(&props, input.round, &input.beacon, "beacon")?.map_err(guest)?;
    Ok(committee_member(&props, &seed, &input.node_key, input.round))
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct VoteOutput {
    pub action_hash: ActionHash,
    pub author: AgentPubKey,
    pub vote: CommitteeVote,
}

/// Commits a vote and links it from the voted submission. Refused by
/// validation unless the vote's registration is this agent's and its node
/// key is on the round's committee.
#[hdk_extern]
pub fn cast_vote(vote: CommitteeVote) -> ExternResult<ActionHash> {
    let submission = vote.submission.clone();
    let action_hash = create_entry(&EntryTypes::CommitteeVote(vote))?;
    create_link(submission, action_hash.clone(), LinkTypes::SubmissionToVotes, ())?;
    Ok(action_hash)
}

/// Every vote on `submission` this agent can reach.
#[hdk_extern]
pub fn get_submission_votes(submission: ActionHash) -> ExternResult<Vec<VoteOutput>> {
    let links = get_links(LinkQuery::try_new(submission, LinkTypes::SubmissionToVotes)?, GetStrategy::Network)?;
    let records = get_many(target_actions(links).into_iter().map(Into::into).collect())?;
    Ok(records
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let vote = r.entry().to_app_option::<CommitteeVote>().ok().flatten()?;
            Some(VoteOutput { action_hash: r.action_address().clone(), author: r.action().author().clone(), vote })
        })
        .collect())
}
