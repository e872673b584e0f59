//! ZeroTrustML integrity zome: entry and link types and their validation.
//!
//! Every validation rule that decides what the DHT accepts lives here; the
//! coordinator zome only writes and reads.

use hdi::prelude::*;

mod gradient_submission;
pub use gradient_submission::*;

#[hdk_entry_types]
#[unit_enum(UnitEntryTypes)]
pub enum EntryTypes {
    GradientSubmission(GradientSubmission),
}

#[hdk_link_types]
pub enum LinkTypes {
    RoundToSubmissions,
}

/// The deterministic anchor of a round: every agent derives the same hash from
/// the round number alone, so readers need no index entry to find a round.
pub fn round_path(round: u64) -> ExternResult<TypedPath> {
    Path::from(format!("round.{round}")).typed(LinkTypes::RoundToSubmissions)
}

#[hdk_extern]
pub fn validate(op: Op) -> ExternResult<ValidateCallbackResult> {
    match op.flattened::<EntryTypes, LinkTypes>()? {
        FlatOp::StoreEntry(store_entry) => match store_entry {
            OpEntry::CreateEntry { app_entry, action } => match app_entry {
                EntryTypes::GradientSubmission(submission) => {
                    validate_create_gradient_submission(EntryCreationAction::Create(action), submission)
                }
            },
            OpEntry::UpdateEntry { app_entry, .. } => match app_entry {
                EntryTypes::GradientSubmission(_) => validate_update_gradient_submission(),
            },
            _ => Ok(ValidateCallbackResult::Valid),
        },
        FlatOp::RegisterUpdate(update) => match update {
            OpUpdate::Entry { app_entry, .. } => match app_entry {
                EntryTypes::GradientSubmission(_) => validate_update_gradient_submission(),
            },
            _ => Ok(ValidateCallbackResult::Valid),
        },
        FlatOp::RegisterDelete(OpDelete { action }) => {
            if deletes_own_entry(&action.deletes_address)? {
                validate_delete_gradient_submission()
            } else {
                Ok(ValidateCallbackResult::Valid)
            }
        }
        FlatOp::RegisterCreateLink { link_type, base_address, target_address, action, .. } => match link_type {
            LinkTypes::RoundToSubmissions => {
                validate_create_link_round_to_submissions(&action, &base_address, &target_address)
            }
        },
        FlatOp::RegisterDeleteLink { link_type, .. } => match link_type {
            LinkTypes::RoundToSubmissions => validate_delete_link_round_to_submissions(),
        },
        FlatOp::StoreRecord(store_record) => match store_record {
            OpRecord::CreateEntry { app_entry, action } => match app_entry {
                EntryTypes::GradientSubmission(submission) => {
                    validate_create_gradient_submission(EntryCreationAction::Create(action), submission)
                }
            },
            OpRecord::UpdateEntry { app_entry, .. } => match app_entry {
                EntryTypes::GradientSubmission(_) => validate_update_gradient_submission(),
            },
            OpRecord::DeleteEntry { original_action_hash, .. } => {
                if deletes_own_entry(&original_action_hash)? {
                    validate_delete_gradient_submission()
                } else {
                    Ok(ValidateCallbackResult::Valid)
                }
            }
            OpRecord::CreateLink { link_type, base_address, target_address, action, .. } => match link_type {
                LinkTypes::RoundToSubmissions => {
                    validate_create_link_round_to_submissions(&action, &base_address, &target_address)
                }
            },
            OpRecord::DeleteLink { original_action_hash, .. } => {
                if deletes_own_link(&original_action_hash)? {
                    validate_delete_link_round_to_submissions()
                } else {
                    Ok(ValidateCallbackResult::Valid)
                }
            }
            _ => Ok(ValidateCallbackResult::Valid),
        },
        FlatOp::RegisterAgentActivity(_) => Ok(ValidateCallbackResult::Valid),
    }
}

/// Holochain routes deletes of non-app entries (capability grants, ...) to
/// every integrity zome, so only deletes of entries defined here are refused.
fn deletes_own_entry(deleted: &ActionHash) -> ExternResult<bool> {
    let deleted = must_get_action(deleted.clone())?;
    match deleted.action().entry_type() {
        Some(EntryType::App(def)) => Ok(def.zome_index == zome_info()?.id),
        _ => Ok(false),
    }
}

fn deletes_own_link(deleted: &ActionHash) -> ExternResult<bool> {
    let deleted = must_get_action(deleted.clone())?;
    match deleted.action() {
        Action::CreateLink(create) => Ok(create.zome_index == zome_info()?.id),
        _ => Ok(false),
    }
}
