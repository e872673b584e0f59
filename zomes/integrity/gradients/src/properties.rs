//! The model spec and round parameters, held in the DNA properties.
//!
//! They are part of the DNA hash, so every agent of a network validates
//! against the same values, and changing one makes a new network. Set them
//! in `dnas/zerotrustml/dna.yaml` (`integrity.properties`) or override them
//! per installation (`roles_settings` / `modifiers.properties`).

use hdi::prelude::*;
use zerotrustml_core::committee::check_committee_rate;
use zerotrustml_core::examples::check_example_cap;
use zerotrustml_core::validation::{check_spec, ModelSpec};

/// Largest `chunk_values`: a chunk is msgpack of `{index, values}` at 5 bytes
/// per float32, and Holochain refuses entries above 4 MB; 500,000 values is
/// 2.5 MB, leaving room for the envelope.
pub const MAX_CHUNK_VALUES: u64 = 500_000;

/// Largest `max_contributors`: a Krum recompute holds an n x n f64 Gram
/// matrix (8 x 4096^2 bytes = 128 MiB at this bound; wasm32 has 4 GiB).
pub const MAX_CONTRIBUTORS: u64 = 4096;

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
    /// Most contributors an aggregate may list (the Krum Gram matrix is
    /// n x n; this bounds every validator's work whatever `dims` is).
    pub max_contributors: u64,
    /// How far above the round's median example count one submission's
    /// claimed count may weigh in a `mean` (`zerotrustml_core::examples`).
    pub example_cap: f64,
    /// Who may join (`crate::admission`): `"ed25519:<64 hex>"`, the public
    /// key that signs membrane proofs, or `"open"` to admit every agent.
    pub admission: String,
}

/// The admission rule named by the `admission` property.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Every agent may join (tests, public demos).
    Open,
    /// Only agents with a proof signed by this Ed25519 key.
    Key([u8; 32]),
}

/// Reads the `admission` property.
pub fn parse_admission(value: &str) -> Result<Admission, String> {
    if value == "open" {
        return Ok(Admission::Open);
    }
    let bad = || format!("DNA properties: admission must be \"open\" or \"ed25519:\" and 64 hex digits, got {value:?}");
    let hex = value.strip_prefix("ed25519:").ok_or_else(bad)?;
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(Admission::Key(key))
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

    /// The admission rule (see [`parse_admission`]).
    pub fn admission(&self) -> Result<Admission, String> {
        parse_admission(&self.admission)
    }

    /// The properties are usable: the core accepts the spec, chunks fit in
    /// an entry, the committee rate is a probability, admission is named.
    pub fn check(&self) -> Result<(), String> {
        self.admission()?;
        check_spec(&self.spec()).map_err(|r| format!("DNA properties: {r}"))?;
        if !(1..=MAX_CHUNK_VALUES).contains(&self.chunk_values) {
            return Err(format!(
                "DNA properties: chunk_values must be in 1..={MAX_CHUNK_VALUES}, got {}",
                self.chunk_values
            ));
        }
        check_committee_rate(self.committee_rate).map_err(|e| format!("DNA properties: committee_rate {e}"))?;
        check_example_cap(self.example_cap).map_err(|e| format!("DNA properties: example_cap {e}"))?;
        if !(1..=MAX_CONTRIBUTORS).contains(&self.max_contributors) {
            return Err(format!(
                "DNA properties: max_contributors must be in 1..={MAX_CONTRIBUTORS}, got {}",
                self.max_contributors
            ));
        }
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
            max_contributors: 1000,
            example_cap: 10.0,
            admission: "open".into(),
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
            (ModelProperties { admission: "closed".into(), ..props() }, "admission"),
            (ModelProperties { example_cap: 0.5, ..props() }, "example_cap"),
            (ModelProperties { max_contributors: 0, ..props() }, "max_contributors"),
            (ModelProperties { max_contributors: MAX_CONTRIBUTORS + 1, ..props() }, "max_contributors"),
            (ModelProperties { example_cap: f64::INFINITY, ..props() }, "example_cap"),
            (ModelProperties { admission: format!("ed25519:{}", "a".repeat(63)), ..props() }, "admission"),
            (ModelProperties { admission: format!("ed25519:{}", "g".repeat(64)), ..props() }, "admission"),
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
            max_contributors: u64,
            example_cap: u64, // an integer in YAML
            admission: &'a str,
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
            max_contributors: 7,
            example_cap: 4,
            admission: "ed25519:00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff",
        };
        let bytes = SerializedBytes::from(UnsafeBytes::from(holochain_serialized_bytes::encode(&raw).unwrap()));
        let p = ModelProperties::try_from(bytes).unwrap();
        assert_eq!(p.max_norm, 10.0);
        assert_eq!(p.max_round, None);
        assert_eq!(p.check(), Ok(()));
        let Ok(Admission::Key(key)) = p.admission() else { panic!("admission key not read") };
        assert_eq!(key[..2], [0x00, 0xff]);
        assert_eq!(props().admission(), Ok(Admission::Open));
    }
}
