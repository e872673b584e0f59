//! Calls for reputation records: publish an opinion, read every author's latest and their median.

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

/// What the DHT says about `agent`: each author's latest opinion (highest
/// round, then newest action, then largest hash; sorted by author) and
/// their median. A record's round orders only its own author's opinions;
/// no single author decides the view.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ReputationView {
    pub agent: AgentPubKey,
    pub opinions: Vec<ReputationOutput>,
    /// The median of the opinions' scores (mean of the middle two for an
    /// even count); `None` without opinions.
    pub median: Option<f64>,
}

#[hdk_extern]
pub fn get_reputation(agent: AgentPubKey) -> ExternResult<ReputationView> {
    let mut latest: Vec<ReputationOutput> = Vec::new();
    for r in get_reputation_history(agent.clone())? {
        let key = |x: &ReputationOutput| (x.record.round, x.timestamp, x.action_hash.get_raw_39().to_vec());
        match latest.iter_mut().find(|x| x.author == r.author) {
            Some(cur) if key(&r) > key(cur) => *cur = r,
            Some(_) => {}
            None => latest.push(r),
        }
    }
    latest.sort_by(|a, b| a.author.get_raw_39().cmp(b.author.get_raw_39()));
    let mut scores: Vec<f64> = latest.iter().map(|x| x.record.score).collect();
    scores.sort_by(f64::total_cmp);
    let n = scores.len();
    let median = match n {
        0 => None,
        _ if n % 2 == 1 => Some(scores[n / 2]),
        _ => Some((scores[n / 2 - 1] + scores[n / 2]) / 2.0),
    };
    Ok(ReputationView { agent, opinions: latest, median })
}
