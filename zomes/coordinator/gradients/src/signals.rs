//! Signals: this agent's UI hears of its own committed submissions, and
//! every registered participant hears of everybody else's.
//!
//! After a commit, `post_commit` emits `SubmissionCommitted` locally and
//! sends `NewSubmission` as a remote signal to the agents linked from the
//! `participants` anchor (each registers itself in `init`); their
//! `recv_remote_signal` re-emits it locally. Remote signals are fire and
//! forget: an offline participant misses it and reads the round instead.

use gradients_integrity::*;
use hdk::prelude::*;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "type")]
pub enum Signal {
    /// This agent committed a submission.
    SubmissionCommitted { round: u64, action_hash: ActionHash },
    /// Another agent committed a submission (relayed by its author).
    NewSubmission { round: u64, action_hash: ActionHash, author: AgentPubKey },
}

#[hdk_extern(infallible)]
pub fn post_commit(committed: Vec<SignedActionHashed>) {
    for action in committed {
        if let Err(e) = signal_submission(&action) {
            error!("post_commit: could not signal {}: {e:?}", action.as_hash());
        }
    }
}

fn signal_submission(action: &SignedActionHashed) -> ExternResult<()> {
    let Action::Create(create) = action.action() else {
        return Ok(());
    };
    if !is_entry_type(&create.entry_type, UnitEntryTypes::GradientSubmission)? {
        return Ok(());
    }
    let action_hash = action.as_hash().clone();
    let Some(record) = get(action_hash.clone(), GetOptions::local())? else {
        return Ok(());
    };
    let Some(submission) = record.entry().to_app_option::<GradientSubmission>().map_err(|e| wasm_error!(e))? else {
        return Ok(());
    };
    emit_signal(Signal::SubmissionCommitted { round: submission.round, action_hash: action_hash.clone() })?;

    let me = create.author.clone();
    let links = get_links(LinkQuery::try_new(participants_anchor()?, LinkTypes::Participants)?, GetStrategy::Network)?;
    let mut peers: Vec<AgentPubKey> =
        links.into_iter().filter_map(|l| l.target.into_agent_pub_key()).filter(|a| a != &me).collect();
    peers.sort_by(|a, b| a.get_raw_39().cmp(b.get_raw_39()));
    peers.dedup();
    if !peers.is_empty() {
        send_remote_signal(Signal::NewSubmission { round: submission.round, action_hash, author: me }, peers)?;
    }
    Ok(())
}

/// A peer's `NewSubmission`, re-emitted to this agent's clients. Only the
/// submission's author may announce it (the remote call's provenance is the
/// sender, signed by the sender's conductor).
#[hdk_extern]
pub fn recv_remote_signal(signal: Signal) -> ExternResult<()> {
    if let Signal::NewSubmission { author, .. } = &signal {
        if call_info()?.provenance == *author {
            emit_signal(signal)?;
        }
    }
    Ok(())
}
