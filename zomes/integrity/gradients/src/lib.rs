//! ZeroTrustML integrity zome: entry and link types of a federated round and
//! their validation.
//!
//! Every rule that decides what the DHT accepts lives here, and every rule
//! the embedded store shares is called from `zerotrustml-core` (compiled to
//! wasm with default features off), never re-implemented: a submission is
//! checked with `validate_meta` / `validate_digest` / `check_unique`, an
//! aggregate is recomputed with the core's rule, committee membership is the
//! core's hash lottery. The coordinator zome only writes and reads.
//!
//! Rejections name the entry type and the field, e.g.
//! `GradientSubmission.values: non-finite value NaN at index 1`.
//!
//! Host errors (including "dependency not available yet", which Holochain
//! signals through an error that must reach the host untouched) propagate
//! with `?`; only a broken rule becomes `ValidateCallbackResult::Invalid`.

use hdi::prelude::*;

mod admission;
mod chain;
mod committee_vote;
mod gradient_chunk;
mod gradient_submission;
mod node_registration;
mod participants;
mod properties;
mod reputation_record;
mod round_aggregate;

pub use admission::*;
pub use chain::*;
pub use committee_vote::*;
pub use gradient_chunk::*;
pub use gradient_submission::*;
pub use node_registration::*;
pub use participants::*;
pub use properties::*;
pub use reputation_record::*;
pub use round_aggregate::*;

#[hdk_entry_types]
#[unit_enum(UnitEntryTypes)]
pub enum EntryTypes {
    GradientSubmission(GradientSubmission),
    GradientChunk(GradientChunk),
    RoundAggregate(RoundAggregate),
    CommitteeVote(CommitteeVote),
    ReputationRecord(ReputationRecord),
    NodeRegistration(NodeRegistration),
}

#[hdk_link_types]
pub enum LinkTypes {
    /// `round.{n}` anchor -> GradientSubmission action.
    RoundToSubmissions,
    /// Author's agent key -> their GradientSubmission actions.
    AgentToSubmissions,
    /// `round.{n}` anchor -> RoundAggregate action.
    RoundToAggregate,
    /// Rated agent's key -> ReputationRecord actions about it.
    AgentToReputation,
    /// GradientSubmission action -> CommitteeVote actions on it.
    SubmissionToVotes,
    /// `participants` anchor -> agent key (each agent registers itself in
    /// `init`, so peers know whom to signal).
    Participants,
    /// `nodes` anchor -> NodeRegistration actions (one per agent).
    NodeRegistrations,
}

/// The result of one validation rule: `Ok(Err(reason))` is an invalid op,
/// `Err` a host error (to propagate as is).
pub type Verdict = ExternResult<Result<(), String>>;

/// Returns `Ok(Err(reason))` from the enclosing verdict function when a
/// check fails; evaluates to the check's value otherwise.
#[macro_export]
macro_rules! check {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(reason) => return Ok(Err(reason)),
        }
    };
}

fn to_callback(verdict: Verdict) -> ExternResult<ValidateCallbackResult> {
    Ok(match verdict? {
        Ok(()) => ValidateCallbackResult::Valid,
        Err(reason) => ValidateCallbackResult::Invalid(reason),
    })
}

/// The deterministic anchor of a round: every agent derives the same hash from
/// the round number alone, so readers need no index entry to find a round.
/// Submissions and aggregates hang off it with their own link types.
pub fn round_anchor(round: u64) -> ExternResult<EntryHash> {
    Path::from(format!("round.{round}")).path_entry_hash()
}

/// The anchor every agent links itself from in `init`.
pub fn participants_anchor() -> ExternResult<EntryHash> {
    Path::from("participants").path_entry_hash()
}

/// The anchor every node registration hangs off.
pub fn nodes_anchor() -> ExternResult<EntryHash> {
    Path::from("nodes").path_entry_hash()
}

fn entry_name(entry: &EntryTypes) -> &'static str {
    match entry {
        EntryTypes::GradientSubmission(_) => "GradientSubmission",
        EntryTypes::GradientChunk(_) => "GradientChunk",
        EntryTypes::RoundAggregate(_) => "RoundAggregate",
        EntryTypes::CommitteeVote(_) => "CommitteeVote",
        EntryTypes::ReputationRecord(_) => "ReputationRecord",
        EntryTypes::NodeRegistration(_) => "NodeRegistration",
    }
}

#[hdk_extern]
pub fn validate(op: Op) -> ExternResult<ValidateCallbackResult> {
    match op.flattened::<EntryTypes, LinkTypes>()? {
        // Entry authorities judge content; the author's chain is walked where the action is held (see `chain`).
        FlatOp::StoreEntry(OpEntry::CreateEntry { app_entry, action }) => {
            with_chain_rules(false, || validate_create(EntryCreationAction::Create(action), app_entry))
        }
        FlatOp::StoreEntry(OpEntry::UpdateEntry { app_entry, .. }) => immutable(entry_name(&app_entry), "updated"),
        FlatOp::StoreEntry(_) => Ok(ValidateCallbackResult::Valid),
        FlatOp::RegisterUpdate(OpUpdate::Entry { app_entry, .. }) => immutable(entry_name(&app_entry), "updated"),
        FlatOp::RegisterUpdate(_) => Ok(ValidateCallbackResult::Valid),
        FlatOp::RegisterDelete(OpDelete { action }) => validate_delete(&action.deletes_address),
        FlatOp::RegisterCreateLink { link_type, base_address, target_address, action, .. } => {
            to_callback(validate_create_link(link_type, &action, &base_address, &target_address))
        }
        FlatOp::RegisterDeleteLink { link_type, .. } => immutable_link(link_type),
        FlatOp::StoreRecord(record) => match record {
            OpRecord::CreateEntry { app_entry, action } => {
                validate_create(EntryCreationAction::Create(action), app_entry)
            }
            OpRecord::UpdateEntry { app_entry, .. } => immutable(entry_name(&app_entry), "updated"),
            OpRecord::DeleteEntry { original_action_hash, .. } => validate_delete(&original_action_hash),
            // The link's `RegisterCreateLink` authority walks the author's chain for it.
            OpRecord::CreateLink { link_type, base_address, target_address, action, .. } => {
                with_chain_rules(false, || {
                    to_callback(validate_create_link(link_type, &action, &base_address, &target_address))
                })
            }
            OpRecord::DeleteLink { original_action_hash, .. } => match own_link_type(&original_action_hash)? {
                Some(link_type) => immutable_link(link_type),
                None => Ok(ValidateCallbackResult::Valid),
            },
            OpRecord::AgentValidationPkg { membrane_proof, action } => {
                validate_agent_validation_pkg(&action, &membrane_proof)
            }
            _ => Ok(ValidateCallbackResult::Valid),
        },
        FlatOp::RegisterAgentActivity(OpActivity::AgentValidationPkg { membrane_proof, action }) => {
            validate_agent_validation_pkg(&action, &membrane_proof)
        }
        FlatOp::RegisterAgentActivity(_) => Ok(ValidateCallbackResult::Valid),
    }
}

fn validate_create(action: EntryCreationAction, entry: EntryTypes) -> ExternResult<ValidateCallbackResult> {
    to_callback(match &entry {
        EntryTypes::GradientSubmission(s) => validate_create_gradient_submission(&action, s),
        EntryTypes::GradientChunk(c) => validate_create_gradient_chunk(&action, c),
        EntryTypes::RoundAggregate(a) => validate_create_round_aggregate(&action, a),
        EntryTypes::CommitteeVote(v) => validate_create_committee_vote(&action, v),
        EntryTypes::ReputationRecord(r) => validate_create_reputation_record(&action, r),
        EntryTypes::NodeRegistration(r) => validate_create_node_registration(&action, r),
    })
}

fn validate_create_link(
    link_type: LinkTypes,
    action: &CreateLink,
    base: &AnyLinkableHash,
    target: &AnyLinkableHash,
) -> Verdict {
    let verdict = match link_type {
        LinkTypes::RoundToSubmissions => validate_create_link_round_to_submissions(action, base, target),
        LinkTypes::AgentToSubmissions => validate_create_link_agent_to_submissions(action, base, target),
        LinkTypes::RoundToAggregate => validate_create_link_round_to_aggregate(action, base, target),
        LinkTypes::AgentToReputation => validate_create_link_agent_to_reputation(action, base, target),
        LinkTypes::SubmissionToVotes => validate_create_link_submission_to_votes(action, base, target),
        LinkTypes::Participants => validate_create_link_participants(action, base, target),
        LinkTypes::NodeRegistrations => validate_create_link_node_registrations(action, base, target),
    }?;
    if verdict.is_err() {
        return Ok(verdict);
    }
    // Every link of the hApp points at something its author wrote once (or, for `Participants`, at the
    // author itself): the same link again adds nothing but load, so nobody may write one twice.
    if earlier_link(action)? {
        return Ok(Err(format!(
            "{link_type:?} link: its author already linked this base to this target (a link is written once)"
        )));
    }
    Ok(Ok(()))
}

/// Every entry here is immutable: a round's aggregate must be recomputable
/// by every agent from exactly what was published, so updates and deletes
/// are rejected rather than merely ignored.
fn immutable(what: &str, verb: &str) -> ExternResult<ValidateCallbackResult> {
    Ok(ValidateCallbackResult::Invalid(format!("{what} cannot be {verb}: entries of a round are immutable")))
}

fn immutable_link(link_type: LinkTypes) -> ExternResult<ValidateCallbackResult> {
    Ok(ValidateCallbackResult::Invalid(format!(
        "{link_type:?} links cannot be deleted: the round's index is append-only"
    )))
}

/// Holochain routes deletes of non-app entries (capability grants, ...) to
/// every integrity zome, so only deletes of entries defined here are refused.
fn validate_delete(deleted: &ActionHash) -> ExternResult<ValidateCallbackResult> {
    let deleted = must_get_action(deleted.clone())?;
    match deleted.action().entry_type() {
        Some(EntryType::App(def)) if def.zome_index == zome_info()?.id => {
            let scoped = ScopedEntryDefIndex { zome_index: def.zome_index, zome_type: def.entry_index };
            let name = UnitEntryTypes::try_from(scoped)
                .map(|u| format!("{u:?}"))
                .unwrap_or_else(|_| "an entry of this zome".to_string());
            immutable(&name, "deleted")
        }
        _ => Ok(ValidateCallbackResult::Valid),
    }
}

fn own_link_type(deleted: &ActionHash) -> ExternResult<Option<LinkTypes>> {
    let deleted = must_get_action(deleted.clone())?;
    match deleted.action() {
        Action::CreateLink(create) if create.zome_index == zome_info()?.id => {
            Ok(LinkTypes::try_from(ScopedLinkType { zome_index: create.zome_index, zome_type: create.link_type }).ok())
        }
        _ => Ok(None),
    }
}

/// Whether an entry type is `unit` of this zome.
pub fn is_entry_type(entry_type: &EntryType, unit: UnitEntryTypes) -> ExternResult<bool> {
    let scoped = ScopedEntryDefIndex::try_from(unit)?;
    Ok(matches!(entry_type, EntryType::App(def)
        if def.zome_index == scoped.zome_index && def.entry_index == scoped.zome_type))
}

/// The entry a record's `Create` action made, when it is of type `unit`;
/// otherwise why not (`what` names the reference in the message).
pub fn created_entry<T>(record: &Record, unit: UnitEntryTypes, what: &str) -> ExternResult<Result<T, String>>
where
    T: TryFrom<Entry, Error = WasmError>,
{
    let is_create = match record.action() {
        Action::Create(create) => is_entry_type(&create.entry_type, unit)?,
        _ => false,
    };
    if !is_create {
        return Ok(Err(format!("{what} is not the creation of a {unit:?}")));
    }
    let Some(entry) = record.entry().as_option() else {
        return Ok(Err(format!("{what}: the record carries no entry")));
    };
    Ok(T::try_from(entry.clone()).map_err(|e| format!("{what}: not a valid {unit:?} ({e:?})")))
}

/// The action a link points at, as an action hash.
pub fn link_target_action(target: &AnyLinkableHash, link: &str) -> Result<ActionHash, String> {
    target.clone().into_action_hash().ok_or_else(|| format!("{link} link target must be an action hash"))
}
