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
//! `must_get_entry`.

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
