//! Calls for reputation records: publish a score, read an agent's latest.

use gradients_integrity::*;
use hdk::prelude::*;

use crate::{get_many, target_actions};

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ReputationOutput {
    pub action_hash: ActionHash,
    /// Who published the score (a record is its author's claim).
    pub author: AgentPubKey,
    pub timestamp: Timestamp,
    pub record: ReputationRecord,
}

/// Commits a reputation record and links it from the rated agent.
#[hdk_extern]
pub fn publish_reputation(record: ReputationRecord) -> ExternResult<ActionHash> {
    let agent = record.agent.clone();
    let action_hash = create_entry(&EntryTypes::ReputationRecord(record))?;
    create_link(agent, action_hash.clone(), LinkTypes::AgentToReputation, ())?;
    Ok(action_hash)
}

/// Every reputation record about `agent` this agent can reach.
#[hdk_extern]
pub fn get_reputation_history(agent: AgentPubKey) -> ExternResult<Vec<ReputationOutput>> {
    let links = get_links(LinkQuery::try_new(agent, LinkTypes::AgentToReputation)?, GetStrategy::Network)?;
    let records = get_many(target_actions(links).into_iter().map(Into::into).collect())?;
    Ok(records
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let record = r.entry().to_app_option::<ReputationRecord>().ok().flatten()?;
            Some(ReputationOutput {
                action_hash: r.action_address().clone(),
                author: r.action().author().clone(),
                timestamp: r.action().timestamp(),
                record,
            })
        })
        .collect())
}

/// The latest record about `agent`: the highest round, then the newest
/// action, then the largest action hash (so every reader picks the same).
#[hdk_extern]
pub fn get_reputation(agent: AgentPubKey) -> ExternResult<Option<ReputationOutput>> {
    Ok(get_reputation_history(agent)?.into_iter().max_by(|a, b| {
        (a.record.round, a.timestamp, a.action_hash.get_raw_39()).cmp(&(
            b.record.round,
            b.timestamp,
            b.action_hash.get_raw_39(),
        ))
    }))
}
