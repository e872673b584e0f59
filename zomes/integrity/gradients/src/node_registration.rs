//! Node registrations: an agent's federated-learning identity.
//!
//! A node signs its edge proofs and committee votes with its own Ed25519
//! *node key* (the Python SDK's key), so that evidence can be checked by
//! anyone, offline, whatever store it came through. A registration binds
//! that key and the node's id to the agent that publishes it:
//!
//! ```text
//! message   = lp("zerotrustml/node-registration/v1") || lp(agent key, 39 bytes)
//!             || lp(node_id, UTF-8) || lp(node key, 32 bytes)
//! signature = Ed25519(node key, message)         lp(x) = u32 big-endian length || x
//! ```
//!
//! The signature proves the registrant holds the node key, and names the
//! agent, so nobody can replay another node's registration under their own
//! agent. One registration per agent (its earlier chain is walked), and it
//! is immutable. On a closed network it carries the agent's admission proof
//! (`crate::admission`), checked again here. Two agents may claim the same node id or key; validators
//! cannot see the whole DHT, so readers resolve it (see the coordinator's
//! `get_node_registrations`) and the committee lottery counts a key, not an
//! id.

use hdi::prelude::*;

use crate::{
    admitted, check, created_entry, earlier_entries, link_target_action, nodes_anchor, UnitEntryTypes, Verdict,
};

/// Domain tag at the start of a registration's signed message.
pub const REGISTRATION_DOMAIN: &[u8] = b"zerotrustml/node-registration/v1";
/// Longest node id, in bytes.
pub const MAX_NODE_ID_BYTES: usize = 128;
/// Bytes of an Ed25519 public key and of a signature.
pub const NODE_KEY_BYTES: usize = 32;
pub const NODE_SIGNATURE_BYTES: usize = 64;

#[hdk_entry_helper]
#[derive(Clone, PartialEq)]
pub struct NodeRegistration {
    /// The node's id in the federation (what its proofs and votes name).
    pub node_id: String,
    /// The node's Ed25519 public key.
    #[serde(with = "serde_bytes")]
    pub node_key: Vec<u8>,
    /// Ed25519 signature by `node_key` over the message in the module docs.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// The agent's admission proof, the same bytes as its membrane proof
    /// (`crate::admission`); empty on an open network. Carried here so that
    /// whoever trusts a registration trusts an admitted agent.
    #[serde(with = "serde_bytes", default)]
    pub admission: Vec<u8>,
}

fn lp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The bytes a registration's signature covers.
pub fn registration_message(agent: &AgentPubKey, node_id: &str, node_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 * 4 + REGISTRATION_DOMAIN.len() + 39 + node_id.len() + node_key.len());
    lp(&mut out, REGISTRATION_DOMAIN);
    lp(&mut out, agent.get_raw_39());
    lp(&mut out, node_id.as_bytes());
    lp(&mut out, node_key);
    out
}

/// The registration's own fields: node id, key and signature sizes.
pub fn check_registration_form(r: &NodeRegistration) -> Result<(), String> {
    if r.node_id.is_empty() || r.node_id.len() > MAX_NODE_ID_BYTES {
        return Err(format!(
            "NodeRegistration.node_id: must be 1 to {MAX_NODE_ID_BYTES} bytes, got {}",
            r.node_id.len()
        ));
    }
    if r.node_id.chars().any(char::is_control) {
        return Err("NodeRegistration.node_id: must not contain control characters".to_string());
    }
    if r.node_key.len() != NODE_KEY_BYTES {
        return Err(format!("NodeRegistration.node_key: must be {NODE_KEY_BYTES} bytes, got {}", r.node_key.len()));
    }
    if r.signature.len() != NODE_SIGNATURE_BYTES {
        return Err(format!(
            "NodeRegistration.signature: must be {NODE_SIGNATURE_BYTES} bytes, got {}",
            r.signature.len()
        ));
    }
    Ok(())
}

/// One registration per agent, given how many it made before.
pub fn check_first_registration(earlier: usize) -> Result<(), String> {
    if earlier > 0 {
        return Err("NodeRegistration.agent: this agent is already registered".to_string());
    }
    Ok(())
}

pub fn validate_create_node_registration(action: &EntryCreationAction, r: &NodeRegistration) -> Verdict {
    check!(check_registration_form(r));
    let key = AgentPubKey::from_raw_32(r.node_key.clone());
    let mut sig = [0u8; NODE_SIGNATURE_BYTES];
    sig.copy_from_slice(&r.signature);
    let message = registration_message(action.author(), &r.node_id, &r.node_key);
    if !verify_signature_raw(key, Signature::from(sig), message)? {
        return Ok(Err(
            "NodeRegistration.signature: does not verify under node_key for this agent and node_id".to_string()
        ));
    }
    check!(admitted(action.author(), Some(&r.admission), "NodeRegistration.admission")?);
    let earlier: Vec<NodeRegistration> =
        earlier_entries(action.author(), action.prev_action(), UnitEntryTypes::NodeRegistration)?;
    Ok(check_first_registration(earlier.len()))
}

/// The registration `hash` points at, when it was created by `author`.
pub fn registration_of(
    hash: &ActionHash,
    author: &AgentPubKey,
    what: &str,
) -> ExternResult<Result<NodeRegistration, String>> {
    let record = must_get_valid_record(hash.clone())?;
    let r = check!(created_entry::<NodeRegistration>(&record, UnitEntryTypes::NodeRegistration, what)?);
    if record.action().author() != author {
        return Ok(Err(format!("{what}: the registration of another agent")));
    }
    Ok(Ok(r))
}

/// `nodes` anchor -> registration, by the registration's author.
pub fn validate_create_link_node_registrations(
    action: &CreateLink,
    base: &AnyLinkableHash,
    target: &AnyLinkableHash,
) -> Verdict {
    let anchor: AnyLinkableHash = nodes_anchor()?.into();
    if base != &anchor {
        return Ok(Err("NodeRegistrations link base must be the nodes anchor".to_string()));
    }
    let hash = check!(link_target_action(target, "NodeRegistrations"));
    check!(registration_of(&hash, &action.author, "NodeRegistrations link target")?);
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> NodeRegistration {
        NodeRegistration { node_id: "node-03".into(), node_key: vec![5; 32], signature: vec![1; 64], admission: vec![] }
    }

    #[test]
    fn message_is_length_prefixed_fields() {
        let agent = AgentPubKey::from_raw_32(vec![2; 32]);
        let m = registration_message(&agent, "n", &[5; 32]);
        let mut want = Vec::new();
        want.extend_from_slice(&(REGISTRATION_DOMAIN.len() as u32).to_be_bytes());
        want.extend_from_slice(REGISTRATION_DOMAIN);
        want.extend_from_slice(&39u32.to_be_bytes());
        want.extend_from_slice(agent.get_raw_39());
        want.extend_from_slice(&[0, 0, 0, 1, b'n']);
        want.extend_from_slice(&32u32.to_be_bytes());
        want.extend_from_slice(&[5; 32]);
        assert_eq!(m, want);
    }

    #[test]
    fn form_names_the_field() {
        assert_eq!(check_registration_form(&reg()), Ok(()));
        let cases = [
            (NodeRegistration { node_id: String::new(), ..reg() }, "NodeRegistration.node_id: "),
            (NodeRegistration { node_id: "x".repeat(129), ..reg() }, "NodeRegistration.node_id: "),
            (NodeRegistration { node_id: "a\nb".into(), ..reg() }, "NodeRegistration.node_id: "),
            (NodeRegistration { node_key: vec![5; 31], ..reg() }, "NodeRegistration.node_key: must be 32 bytes"),
            (NodeRegistration { signature: vec![], ..reg() }, "NodeRegistration.signature: must be 64 bytes"),
        ];
        for (r, want) in cases {
            let err = check_registration_form(&r).unwrap_err();
            assert!(err.starts_with(want), "{err}");
        }
    }

    #[test]
    fn one_registration_per_agent() {
        assert_eq!(check_first_registration(0), Ok(()));
        assert_eq!(
            check_first_registration(1).unwrap_err(),
            "NodeRegistration.agent: this agent is already registered"
        );
    }
}
