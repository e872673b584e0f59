//! Reading an author's own chain during validation.
//!
//! "One submission per author per round" and "one vote per member per
//! submission" are facts about the author's chain before the new action.
//! `must_get_agent_activity` with a filter anchored at the action's
//! `prev_action` returns exactly that chain (genesis up to `prev_action`),
//! and the same on every validator, so the check is deterministic.
//!
//! Cost: a walk reads every action of the chain before the new one, so it is
//! O(chain length); [`earlier_entries`] adds one entry fetch per earlier
//! entry of the type (agent-activity authorities do not cache entries:
//! `cached_entry` is never filled in 0.6). [`count_earlier`] and
//! [`earlier_link`] read the actions only (their types, bases and targets).
//! Entry types are resolved to their scoped index once per walk, not per
//! action: each resolution is a `zome_info` host call, and resolving per
//! action made a walk of 2,000 actions cost seconds
//! (`benchmarks/chain_walk.py` measures submit latency against chain length).
//!
//! Where the walks run: each action is validated once per DHT op, and a
//! rule about the author's chain belongs with the authority that holds the
//! action, not with one that holds content. `validate` therefore turns the
//! walks off ([`with_chain_rules`]) for `StoreEntry` (entry authorities judge
//! content, which any author may have written) and for the `StoreRecord` of
//! a link (its `RegisterCreateLink` authority, which serves `get_links`,
//! walks the chain). Readers reach entries through actions and links, so
//! every read still passes an authority that walked the chain; the walks
//! run once per action instead of twice.

use std::cell::Cell;

use hdi::prelude::*;

thread_local! {
    static CHAIN_RULES: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` with the chain walks of this module on or off (off: nothing
/// earlier is found, so every rule about the author's chain passes).
pub fn with_chain_rules<R>(on: bool, f: impl FnOnce() -> R) -> R {
    let before = CHAIN_RULES.with(|c| c.replace(on));
    let out = f();
    CHAIN_RULES.with(|c| c.set(before));
    out
}

fn chain_rules() -> bool {
    CHAIN_RULES.with(|c| c.get())
}

use crate::UnitEntryTypes;

/// Every entry of type `unit` that `author` created before `prev_action`
/// (inclusive), newest first.
pub fn earlier_entries<T>(author: &AgentPubKey, prev_action: &ActionHash, unit: UnitEntryTypes) -> ExternResult<Vec<T>>
where
    T: TryFrom<Entry, Error = WasmError>,
{
    if !chain_rules() {
        return Ok(Vec::new());
    }
    let scoped = ScopedEntryDefIndex::try_from(unit)?;
    let activity = must_get_agent_activity(author.clone(), ChainFilter::new(prev_action.clone()))?;
    let mut out = Vec::new();
    for item in activity {
        if let Action::Create(create) = item.action.hashed.content {
            if is_scoped(&create.entry_type, &scoped) {
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
    if !chain_rules() {
        return Ok(vec![0; units.len()]);
    }
    // Resolved once: each resolution is a host call (`zome_info`), and the walk visits every action.
    let scoped = units.iter().map(|u| ScopedEntryDefIndex::try_from(*u)).collect::<Result<Vec<_>, _>>()?;
    let activity = must_get_agent_activity(author.clone(), ChainFilter::new(prev_action.clone()))?;
    let mut counts = vec![0u64; units.len()];
    for item in activity {
        if let Action::Create(create) = item.action.hashed.content {
            for (count, unit) in counts.iter_mut().zip(&scoped) {
                if is_scoped(&create.entry_type, unit) {
                    *count += 1;
                }
            }
        }
    }
    Ok(counts)
}

fn is_scoped(entry_type: &EntryType, scoped: &ScopedEntryDefIndex) -> bool {
    matches!(entry_type, EntryType::App(def) if def.zome_index == scoped.zome_index && def.entry_index == scoped.zome_type)
}

/// Whether `link`'s author already created a link of the same zome and type
/// from the same base to the same target before it.
pub fn earlier_link(link: &CreateLink) -> ExternResult<bool> {
    if !chain_rules() {
        return Ok(false);
    }
    let activity = must_get_agent_activity(link.author.clone(), ChainFilter::new(link.prev_action.clone()))?;
    Ok(activity.into_iter().any(|item| {
        matches!(&item.action.hashed.content, Action::CreateLink(c)
            if c.zome_index == link.zome_index && c.link_type == link.link_type
                && c.base_address == link.base_address && c.target_address == link.target_address)
    }))
}
