//! The model spec and round parameters, held in the DNA properties.
//!
//! They are part of the DNA hash, so every agent of a network validates
//! against the same values, and changing one makes a new network. Set them
//! in `dnas/zerotrustml/dna.yaml` (`integrity.properties`) or override them
//! per installation (`roles_settings` / `modifiers.properties`).

use hdi::prelude::*;
use zerotrustml_core::committee::check_committee_rate;
use zerotrustml_core::validation::{check_spec, ModelSpec};

/// Largest `chunk_values`: a chunk is msgpack of `{index, values}` at 5 bytes
/// per float32, and Holochain refuses entries above 4 MB; 500,000 values is
/// 2.5 MB, leaving room for the envelope.
pub const MAX_CHUNK_VALUES: u64 = 500_000;

/// The DNA properties (all required except `max_round`).
#[derive(Serialize, Deserialize, SerializedBytes, Debug, Clone, PartialEq)]
pub struct ModelProperties {
    /// The model every submission must name.
    pub model_id: String,
    /// Parameters per update: the length of every payload and aggregate.
    pub dims: u64,
    /// Largest accepted L2 norm of an update.
    pub max_norm: f64,
    /// Largest accepted payload in bytes (4 per float32 value).
    pub max_payload_bytes: u64,
    /// Last round (inclusive); absent or null for no bound.
    #[serde(default)]
    pub max_round: Option<u64>,
    /// Values per chunk: payloads are split into chunks of exactly this many
    /// values (the last one holds the rest).
    pub chunk_values: u64,
    /// Probability that an agent is on a given round's committee
    /// (`zerotrustml_core::committee`).
    pub committee_rate: f64,
    /// Seed of the committee lottery (its UTF-8 bytes are hashed).
    pub committee_seed: String,
    /// Validators recompute an aggregate only when contributors x dims is at
    /// most this; above it they check its structure only.
    pub recompute_limit: u64,
}

impl ModelProperties {
    /// The core's view of the model.
    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            model_id: self.model_id.clone(),
            dims: self.dims,
            max_norm: self.max_norm,
            max_payload_bytes: self.max_payload_bytes,
            max_round: self.max_round,
        }
    }

    /// The properties are usable: the core accepts the spec, chunks fit in
    /// an entry, the committee rate is a probability.
    pub fn check(&self) -> Result<(), String> {
        check_spec(&self.spec()).map_err(|r| format!("DNA properties: {r}"))?;
        if !(1..=MAX_CHUNK_VALUES).contains(&self.chunk_values) {
            return Err(format!(
                "DNA properties: chunk_values must be in 1..={MAX_CHUNK_VALUES}, got {}",
                self.chunk_values
            ));
        }
        check_committee_rate(self.committee_rate).map_err(|e| format!("DNA properties: committee_rate {e}"))?;
        Ok(())
    }
}

/// Reads and checks the DNA properties; `Ok(Err(reason))` when they are
/// missing or unusable (every entry is then invalid: the DNA is broken).
pub fn model_properties() -> ExternResult<Result<ModelProperties, String>> {
    let raw = dna_info()?.modifiers.properties;
    let props = match ModelProperties::try_from(raw) {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("DNA properties: not a ZeroTrustML model spec ({e})"))),
    };
    Ok(props.check().map(|()| props))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The defaults of dnas/zerotrustml/dna.yaml.
    pub fn props() -> ModelProperties {
        ModelProperties {
            model_id: "mnist-mlp-v1".into(),
            dims: 24,
            max_norm: 100.0,
            max_payload_bytes: 96,
            max_round: Some(1_000_000),
            chunk_values: 10,
            committee_rate: 0.5,
            committee_seed: "ztml-committee-v1".into(),
            recompute_limit: 1_000_000,
        }
    }

    #[test]
    fn defaults_are_usable() {
        assert_eq!(props().check(), Ok(()));
    }

    #[test]
    fn bad_properties_are_named() {
        let cases = [
            (ModelProperties { chunk_values: 0, ..props() }, "chunk_values"),
            (ModelProperties { chunk_values: MAX_CHUNK_VALUES + 1, ..props() }, "chunk_values"),
            (ModelProperties { committee_rate: 1.5, ..props() }, "committee_rate"),
            (ModelProperties { committee_rate: f64::NAN, ..props() }, "committee_rate"),
            (ModelProperties { dims: 0, ..props() }, "dims"),
            (ModelProperties { max_payload_bytes: 95, ..props() }, "max_payload_bytes"),
        ];
        for (p, field) in cases {
            let err = p.check().unwrap_err();
            assert!(err.starts_with("DNA properties: ") && err.contains(field), "{err}");
        }
    }

    #[test]
    fn reads_what_dna_yaml_packs() {
        // hc packs YAML properties as msgpack maps; max_round may be null.
        #[derive(Serialize, Debug)]
        struct Raw<'a> {
            model_id: &'a str,
            dims: u64,
            max_norm: u64, // an integer in YAML must still read as f64
            max_payload_bytes: u64,
            max_round: Option<u64>,
            chunk_values: u64,
            committee_rate: f64,
            committee_seed: &'a str,
            recompute_limit: u64,
        }
        let raw = Raw {
            model_id: "m",
            dims: 3,
            max_norm: 10,
            max_payload_bytes: 12,
            max_round: None,
            chunk_values: 2,
            committee_rate: 1.0,
            committee_seed: "s",
            recompute_limit: 9,
        };
        let bytes = SerializedBytes::from(UnsafeBytes::from(holochain_serialized_bytes::encode(&raw).unwrap()));
        let p = ModelProperties::try_from(bytes).unwrap();
        assert_eq!(p.max_norm, 10.0);
        assert_eq!(p.max_round, None);
        assert_eq!(p.check(), Ok(()));
    }
}
