//! Admission: who may join a federation's network.
//!
//! A federation has a known membership. Its DNA properties name an
//! *admission key* (`admission: "ed25519:<64 hex>"`), and an agent joins only
//! with a membrane proof signed by that key for its own agent key and this
//! network's seed:
//!
//! ```text
//! message        = lp("zerotrustml/admission/v1") || lp(agent key, 39 bytes)
//!                  || lp(network seed, UTF-8)        lp(x) = u32 big-endian length || x
//! membrane proof = Ed25519(admission key, message)    (the 64 signature bytes)
//! ```
//!
//! The proof names the agent, so it cannot be reused by another key, and the
//! network seed, so it cannot be carried to another network of the same DNA.
//! It is checked three times: `genesis_self_check` refuses the install on an
//! honest conductor; validators refuse the agent's `AgentValidationPkg` (a
//! conductor that skips the self-check still publishes an invalid genesis);
//! and a `NodeRegistration` carries the same signature, so every reader and
//! every vote that cites a registration sees an admitted agent without
//! walking to the author's genesis.
//!
//! `admission: "open"` admits every agent. It is for tests and public demos,
//! and says so in the properties every agent can read.

use hdi::prelude::*;

use crate::{model_properties, properties::Admission};

/// Domain tag at the start of the admission message.
pub const ADMISSION_DOMAIN: &[u8] = b"zerotrustml/admission/v1";
/// Bytes of an admission signature (the membrane proof).
pub const ADMISSION_SIGNATURE_BYTES: usize = 64;

fn lp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The bytes an admission signature covers.
pub fn admission_message(agent: &AgentPubKey, network_seed: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + ADMISSION_DOMAIN.len() + 39 + network_seed.len());
    lp(&mut out, ADMISSION_DOMAIN);
    lp(&mut out, agent.get_raw_39());
    lp(&mut out, network_seed.as_bytes());
    out
}

/// Whether `proof` admits `agent` under `admission` on the network with
/// `network_seed`; `what` names the field in the message.
pub fn check_admission(
    admission: &Admission,
    agent: &AgentPubKey,
    network_seed: &str,
    proof: Option<&[u8]>,
    what: &str,
) -> ExternResult<Result<(), String>> {
    let Admission::Key(key) = admission else {
        return Ok(Ok(()));
    };
    let Some(proof) = proof.filter(|p| !p.is_empty()) else {
        return Ok(Err(format!(
            "{what}: required (this network admits only agents with a proof signed by its admission key)"
        )));
    };
    if proof.len() != ADMISSION_SIGNATURE_BYTES {
        return Ok(Err(format!("{what}: must be {ADMISSION_SIGNATURE_BYTES} bytes, got {}", proof.len())));
    }
    let mut sig = [0u8; ADMISSION_SIGNATURE_BYTES];
    sig.copy_from_slice(proof);
    let signer = AgentPubKey::from_raw_32(key.to_vec());
    if !verify_signature_raw(signer, Signature::from(sig), admission_message(agent, network_seed))? {
        return Ok(Err(format!("{what}: not signed by the admission key for this agent and network seed")));
    }
    Ok(Ok(()))
}

/// `agent` holds a valid proof for this DNA (its properties and network
/// seed); `Ok(Err(reason))` otherwise.
pub fn admitted(agent: &AgentPubKey, proof: Option<&[u8]>, what: &str) -> ExternResult<Result<(), String>> {
    let props = match model_properties()? {
        Ok(p) => p,
        Err(reason) => return Ok(Err(reason)),
    };
    let admission = match props.admission() {
        Ok(a) => a,
        Err(reason) => return Ok(Err(reason)),
    };
    let seed = dna_info()?.modifiers.network_seed;
    check_admission(&admission, agent, &seed, proof, what)
}

/// Refuses the install of an agent without a valid proof on an honest
/// conductor, before anything is written.
#[hdk_extern]
pub fn genesis_self_check(data: GenesisSelfCheckData) -> ExternResult<ValidateCallbackResult> {
    let proof = data.membrane_proof.as_ref().map(|p| p.bytes().as_slice());
    Ok(match admitted(&data.agent_key, proof, "membrane proof")? {
        Ok(()) => ValidateCallbackResult::Valid,
        Err(reason) => ValidateCallbackResult::Invalid(reason),
    })
}

/// The `AgentValidationPkg` of an agent's genesis, as validators see it.
pub fn validate_agent_validation_pkg(
    action: &AgentValidationPkg,
    membrane_proof: &Option<MembraneProof>,
) -> ExternResult<ValidateCallbackResult> {
    let proof = membrane_proof.as_ref().map(|p| p.bytes().as_slice());
    Ok(match admitted(&action.author, proof, "AgentValidationPkg.membrane_proof")? {
        Ok(()) => ValidateCallbackResult::Valid,
        Err(reason) => ValidateCallbackResult::Invalid(reason),
    })
}
