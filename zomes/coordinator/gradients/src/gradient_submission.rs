//! Calls for gradient submissions: publish one, read a round.

use gradients_integrity::*;
use hdk::prelude::*;

/// Commits the submission and links it from its round's anchor. Validation
/// runs inline at commit, so an invalid submission fails here with the
/// integrity zome's message and nothing is published.
#[hdk_extern]
pub fn submit_gradient(submission: GradientSubmission) -> ExternResult<ActionHash> {
    let round = submission.round;
    let action_hash = create_entry(&EntryTypes::GradientSubmission(submission))?;
    let anchor = round_path(round)?.path_entry_hash()?;
    create_link(anchor, action_hash.clone(), LinkTypes::RoundToSubmissions, ())?;
    Ok(action_hash)
}

/// Every submission linked from the round's anchor that this agent can reach,
/// in link order. Records not (yet) retrievable are left out rather than
/// failing the whole read: gossip is eventually consistent.
#[hdk_extern]
pub fn get_round_submissions(round: u64) -> ExternResult<Vec<Record>> {
    let anchor = round_path(round)?.path_entry_hash()?;
    let links = get_links(LinkQuery::try_new(anchor, LinkTypes::RoundToSubmissions)?, GetStrategy::Network)?;
    let inputs = links
        .into_iter()
        .map(|link| {
            link.target.into_action_hash().map(|hash| GetInput::new(hash.into(), GetOptions::default())).ok_or_else(
                || wasm_error!(WasmErrorInner::Guest("round link target is not an action hash".to_string())),
            )
        })
        .collect::<ExternResult<Vec<GetInput>>>()?;
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    let records = HDK.with(|hdk| hdk.borrow().get(inputs))?;
    Ok(records.into_iter().flatten().collect())
}
