//! The participants index: each agent links itself from the `participants`
//! anchor in `init`, so a submitter knows whom to send its remote signal.

use hdi::prelude::*;

use crate::{participants_anchor, Verdict};

/// An agent can register only itself, and only under the participants anchor.
pub fn validate_create_link_participants(
    action: &CreateLink,
    base: &AnyLinkableHash,
    target: &AnyLinkableHash,
) -> Verdict {
    let anchor: AnyLinkableHash = participants_anchor()?.into();
    if base != &anchor {
        return Ok(Err("Participants link base must be the participants anchor".to_string()));
    }
    let me: AnyLinkableHash = action.author.clone().into();
    if target != &me {
        return Ok(Err("Participants link target must be the link's author (agents register themselves)".to_string()));
    }
    Ok(Ok(()))
}
