//! Calls for gradient submissions: publish one, read a round or an agent.

use gradients_integrity::*;
use hdk::prelude::*;
use zerotrustml_core::validation::{l2_norm, payload_hash};

use crate::{create_chunks, get_many, properties, read_payloads, target_actions};

/// What a client submits. `dims` is the length of `values`; the norm and
/// payload hash are computed here unless the client passes its own claims
/// (the Python SDK computes them itself and signs over them; tests pass
/// wrong ones to see validation refuse them). Either way the integrity zome
/// checks the claims against the chunks.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SubmitGradientInput {
    pub round: u64,
    pub model_id: String,
    pub values: Vec<f32>,
    pub example_count: u64,
    #[serde(default)]
    pub proof: Option<EdgeProof>,
    /// The client's norm claim (default: L2 norm of `values`, f64).
    #[serde(default)]
    pub norm: Option<f64>,
    /// The client's payload hash claim (default: SHA-256 of `values`).
    #[serde(default, with = "serde_bytes")]
    pub payload_hash: Option<Vec<u8>>,
}

/// A submission as read back: the entry, who wrote it, and its values.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SubmissionOutput {
    pub action_hash: ActionHash,
    pub author: AgentPubKey,
    pub submission: GradientSubmission,
    pub values: Vec<f32>,
}

/// Commits the payload's chunks, then the submission, then its links from
/// the round anchor and from the author. One zome call, one atomic commit:
/// if validation refuses the submission, none of it is stored.
#[hdk_extern]
pub fn submit_gradient(input: SubmitGradientInput) -> ExternResult<ActionHash> {
    let props = properties()?;
    let chunk_hashes = create_chunks(&input.values, props.chunk_values)?;
    let submission = GradientSubmission {
        round: input.round,
        model_id: input.model_id,
        dims: input.values.len() as u64,
        dtype: DTYPE.to_string(),
        payload_hash: input.payload_hash.unwrap_or_else(|| payload_hash(&input.values).to_vec()),
        norm: input.norm.unwrap_or_else(|| l2_norm(&input.values)),
        example_count: input.example_count,
        chunk_hashes,
        proof: input.proof,
    };
    let action_hash = create_entry(&EntryTypes::GradientSubmission(submission))?;
    create_link(round_anchor(input.round)?, action_hash.clone(), LinkTypes::RoundToSubmissions, ())?;
    let me = agent_info()?.agent_initial_pubkey;
    create_link(me, action_hash.clone(), LinkTypes::AgentToSubmissions, ())?;
    Ok(action_hash)
}

/// Reads submissions and their payloads; leaves out what is not reachable.
pub(crate) fn read_submissions(hashes: Vec<ActionHash>) -> ExternResult<Vec<SubmissionOutput>> {
    let records = get_many(hashes.into_iter().map(Into::into).collect())?;
    let mut found = Vec::new();
    for record in records.into_iter().flatten() {
        if let Ok(Some(submission)) = record.entry().to_app_option::<GradientSubmission>() {
            found.push((record.action_address().clone(), record.action().author().clone(), submission));
        }
    }
    let payloads: Vec<(&[EntryHash], &[u8])> =
        found.iter().map(|(_, _, s)| (s.chunk_hashes.as_slice(), s.payload_hash.as_slice())).collect();
    let values = read_payloads(&payloads)?;
    Ok(found
        .into_iter()
        .zip(values)
        .filter_map(|((action_hash, author, submission), values)| {
            values.map(|values| SubmissionOutput { action_hash, author, submission, values })
        })
        .collect())
}

/// Every submission of `round` this agent can reach, with its values, in
/// link order.
#[hdk_extern]
pub fn get_round_submissions(round: u64) -> ExternResult<Vec<SubmissionOutput>> {
    let links =
        get_links(LinkQuery::try_new(round_anchor(round)?, LinkTypes::RoundToSubmissions)?, GetStrategy::Network)?;
    read_submissions(target_actions(links))
}

/// Every submission of `agent` this agent can reach.
#[hdk_extern]
pub fn get_agent_submissions(agent: AgentPubKey) -> ExternResult<Vec<SubmissionOutput>> {
    let links = get_links(LinkQuery::try_new(agent, LinkTypes::AgentToSubmissions)?, GetStrategy::Network)?;
    read_submissions(target_actions(links))
}
