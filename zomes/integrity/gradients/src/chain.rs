//! Reading an author's own chain during validation.
//!
//! "One submission per author per round" and "one vote per member per
//! submission" are facts about the author's chain before the new action.
//! `must_get_agent_activity` with a filter anchored at the action's
//! `prev_action` returns exactly that chain (genesis up to `prev_action`),
//! and the same on every validator, so the check is deterministic.
//!
//! Cost: one entry fetch per earlier entry of the type, i.e. O(rounds the
//! author took part in). Agent-activity authorities do not cache entries
//! (`cached_entry` is never filled in 0.6), so the entries come through
//! `must_get_entry`. [`count_earlier`] and [`earlier_link`] read the actions
//! only (their types, bases and targets), with no entry fetch.

use hdi::prelude::*;

use crate::{is_entry_type, UnitEntryTypes};

/// Every entry of type `unit` that `author` created before `prev_action`
/// (inclusive), newest first.
pub fn earlier_entries<T>(author: &AgentPubKey, prev_action: &ActionHash, unit: UnitEntryTypes) -> ExternResult<Vec<T>>
where
    T: TryFrom<Entry, Error = WasmError>,
{
    let activity = must_get_agent_activity(author.clone(), ChainFilter::new(prev_action.clone()))?;
    let mut out = Vec::new();
    for item in activity {
        if let Action::Create(create) = item.action.hashed.content {
            if is_entry_type(&create.entry_type, unit)? {
                let entry = must_get_entry(create.entry_hash)?;
                out.push(T::try_from(entry.content)?);
            }
        }
    }
    Ok(out)
}

/// How many entries of each type in `units` `author` created before
/// `prev_action` (inclusive), from the actions alone.
pub fn count_earlier(
    author: &AgentPubKey,
    prev_action: &ActionHash,
    units: &[UnitEntryTypes],
) -> ExternResult<Vec<u64>> {
    let activity = must_get_agent_activity(author.clone(), ChainFilter::new(prev_action.clone()))?;
    let mut counts = vec![0u64; units.len()];
    for item in activity {
        if let Action::Create(create) = item.action.hashed.content {
            for (count, unit) in counts.iter_mut().zip(units) {
                if is_entry_type(&create.entry_type, *unit)? {
                    *count += 1;
                }
            }
        }
    }
    Ok(counts)
}

/// Whether `link`'s author already created a link of the same zome and type
/// from the same base to the same target before it.
pub fn earlier_link(link: &CreateLink) -> ExternResult<bool> {
    let activity = must_get_agent_activity(link.author.clone(), ChainFilter::new(link.prev_action.clone()))?;
    Ok(activity.into_iter().any(|item| {
        matches!(&item.action.hashed.content, Action::CreateLink(c)
            if c.zome_index == link.zome_index && c.link_type == link.link_type
                && c.base_address == link.base_address && c.target_address == link.target_address)
    }))
}
