//! A Byzantine agent's coordinator, for attack tests only.
//!
//! The threat model's attacker runs a conductor of its own and writes any
//! entry its keys can sign; the honest coordinator (`gradients`) never
//! writes what these functions write. They skip nothing: every write still
//! goes through the integrity zome's validation, first on the attacker's
//! own conductor (an unmodified one refuses the commit) and then on every
//! validator. The hApp `workdir/zerotrustml-byzantine.happ` pairs this
//! coordinator with the honest one over the same integrity zome, so its
//! agents join the same network (coordinators are not part of the DNA
//! hash). It is never installed outside tests.

use gradients_integrity::*;
use hdk::prelude::*;

/// A chunk on its own, referenced by nothing.
#[hdk_extern]
pub fn create_raw_chunk(chunk: GradientChunk) -> ExternResult<ActionHash> {
    create_entry(&EntryTypes::GradientChunk(chunk))
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct RoundLinkInput {
    pub round: u64,
    pub submission: ActionHash,
}

/// A `RoundToSubmissions` link from the round's anchor to `submission`
/// (the honest coordinator writes one per submission).
#[hdk_extern]
pub fn link_round_submission(input: RoundLinkInput) -> ExternResult<ActionHash> {
    create_link(round_anchor(input.round)?, input.submission, LinkTypes::RoundToSubmissions, ())
}

/// A `Participants` link from the anchor to this agent (the honest
/// coordinator writes one, in `init`).
#[hdk_extern]
pub fn link_participant(_: ()) -> ExternResult<ActionHash> {
    create_link(participants_anchor()?, agent_info()?.agent_initial_pubkey, LinkTypes::Participants, ())
}
