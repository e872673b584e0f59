//! Calls for node registrations: register this agent's node, read them all.

use gradients_integrity::*;
use hdk::prelude::*;

use crate::{get_many, target_actions};

/// A registration as read back: the entry and the agent that published it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct RegistrationOutput {
    pub action_hash: ActionHash,
    pub agent: AgentPubKey,
    pub registration: NodeRegistration,
}

/// Commits this agent's registration and links it from the `nodes` anchor.
/// An empty `admission` is filled with this agent's own membrane proof.
/// Refused by validation when a signature does not verify or the agent
/// is already registered.
#[hdk_extern]
pub fn register_node(mut registration: NodeRegistration) -> ExternResult<ActionHash> {
    if registration.admission.is_empty() {
        registration.admission = own_membrane_proof()?;
    }
    let action_hash = create_entry(&EntryTypes::NodeRegistration(registration))?;
    create_link(nodes_anchor()?, action_hash.clone(), LinkTypes::NodeRegistrations, ())?;
    Ok(action_hash)
}

/// Every registration this agent can reach, ordered by action hash (the
/// same order for every reader). Readers decide what to do with two agents
/// claiming one node id.
#[hdk_extern]
pub fn get_node_registrations() -> ExternResult<Vec<RegistrationOutput>> {
    let links = get_links(LinkQuery::try_new(nodes_anchor()?, LinkTypes::NodeRegistrations)?, GetStrategy::Network)?;
    let records = get_many(target_actions(links).into_iter().map(Into::into).collect())?;
    let mut out: Vec<RegistrationOutput> = records
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let registration = r.entry().to_app_option::<NodeRegistration>().ok().flatten()?;
            Some(RegistrationOutput {
                action_hash: r.action_address().clone(),
                agent: r.action().author().clone(),
                registration,
            })
        })
        .collect();
    out.sort_by(|a, b| a.action_hash.get_raw_39().cmp(b.action_hash.get_raw_39()));
    Ok(out)
}

/// The membrane proof this agent joined with (empty when it had none).
fn own_membrane_proof() -> ExternResult<Vec<u8>> {
    let genesis = query(ChainQueryFilter::new().action_type(ActionType::AgentValidationPkg))?;
    Ok(genesis
        .first()
        .and_then(|r| match r.action() {
            Action::AgentValidationPkg(pkg) => pkg.membrane_proof.as_ref().map(|p| p.bytes().clone()),
            _ => None,
        })
        .unwrap_or_default())
}
