//! ZeroTrustML coordinator zome: the calls clients make. It holds no
//! validation logic; what the DHT accepts is decided by `gradients_integrity`
//! (inline at commit, so an invalid write fails the call with the integrity
//! zome's message and nothing of the call is committed).
//!
//! Reads are eventually consistent: a round read returns what this agent can
//! reach now, leaving out entries whose chunks have not arrived yet.

use gradients_integrity::*;
use hdk::prelude::*;

mod committee_vote;
mod gradient_chunk;
mod gradient_submission;
mod node_registration;
mod reputation_record;
mod round_aggregate;
mod signals;

pub use committee_vote::*;
use gradient_chunk::*;
pub use gradient_submission::*;
pub use node_registration::*;
pub use reputation_record::*;
pub use round_aggregate::*;
pub use signals::*;

/// A caller-facing error (rejected input, missing data).
pub(crate) fn guest(msg: impl Into<String>) -> WasmError {
    wasm_error!(WasmErrorInner::Guest(msg.into()))
}

/// The DNA properties, or the reason they are unusable as an error.
pub(crate) fn properties() -> ExternResult<ModelProperties> {
    model_properties()?.map_err(guest)
}

/// Records for many hashes in one host call, `None` where not reachable.
pub(crate) fn get_many(hashes: Vec<AnyDhtHash>) -> ExternResult<Vec<Option<Record>>> {
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    let inputs = hashes.into_iter().map(|h| GetInput::new(h, GetOptions::default())).collect();
    HDK.with(|hdk| hdk.borrow().get(inputs))
}

/// Action hashes of the link targets, deduplicated, in link order.
pub(crate) fn target_actions(links: Vec<Link>) -> Vec<ActionHash> {
    let mut seen = std::collections::HashSet::new();
    links.into_iter().filter_map(|l| l.target.into_action_hash()).filter(|h| seen.insert(h.clone())).collect()
}

/// Registers this agent for remote signals: an unrestricted grant for
/// `recv_remote_signal` (only that function) and a link from the
/// `participants` anchor, so submitters know whom to notify.
#[hdk_extern]
pub fn init() -> ExternResult<InitCallbackResult> {
    let mut functions = HashSet::new();
    functions.insert((zome_info()?.name, FunctionName::from("recv_remote_signal")));
    create_cap_grant(ZomeCallCapGrant {
        tag: "remote_signals".to_string(),
        access: CapAccess::Unrestricted,
        functions: GrantedFunctions::Listed(functions),
    })?;
    let me = agent_info()?.agent_initial_pubkey;
    create_link(participants_anchor()?, me, LinkTypes::Participants, ())?;
    Ok(InitCallbackResult::Pass)
}

/// Every agent that has joined (linked itself from the `participants`
/// anchor in `init`) and that this agent can reach, sorted by key. Local
/// networks wait for every agent to see every other one before use.
#[hdk_extern]
pub fn get_participants() -> ExternResult<Vec<AgentPubKey>> {
    let links = get_links(LinkQuery::try_new(participants_anchor()?, LinkTypes::Participants)?, GetStrategy::Network)?;
    let mut agents: Vec<AgentPubKey> = links.into_iter().filter_map(|l| l.target.into_agent_pub_key()).collect();
    agents.sort_by(|a, b| a.get_raw_39().cmp(b.get_raw_39()));
    agents.dedup();
    Ok(agents)
}

/// What the network knows of an agent's source chain (`get_chain_status`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ChainStatusOutput {
    /// "empty" (nothing reached yet), "valid", "forked" (two valid actions at
    /// one sequence number: one key committing from two conductors) or
    /// "invalid" (validators rejected one of its actions).
    pub status: String,
    /// Where a fork starts (the sequence number both branches use).
    pub fork_seq: Option<u32>,
}

/// The agent-activity authorities' view of `agent`'s chain. A fork is
/// evidence of equivocation by that key; readers already leave out both of
/// an author's submissions in one round (see `compute_round_aggregate`), and
/// this call lets them see forks that did not collide in a round.
#[hdk_extern]
pub fn get_chain_status(agent: AgentPubKey) -> ExternResult<ChainStatusOutput> {
    let activity = get_agent_activity(agent, ChainQueryFilter::new(), ActivityRequest::Full, GetOptions::network())?;
    let (status, fork_seq) = match activity.status {
        ChainStatus::Empty => ("empty", None),
        ChainStatus::Valid(_) => ("valid", None),
        ChainStatus::Forked(fork) => ("forked", Some(fork.fork_seq)),
        ChainStatus::Invalid(_) => ("invalid", None),
    };
    Ok(ChainStatusOutput { status: status.to_string(), fork_seq })
}

/// The DNA properties this cell validates against (model spec, chunk size,
/// committee parameters, recompute bound).
#[hdk_extern]
pub fn get_model_properties() -> ExternResult<ModelProperties> {
    properties()
}
