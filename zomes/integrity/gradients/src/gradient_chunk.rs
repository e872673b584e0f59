//! Gradient chunks: a payload too large for one entry, in pieces.
//!
//! A payload of `dims` float32 values is split canonically: chunk `i` holds
//! values `i*chunk_values .. min((i+1)*chunk_values, dims)`, so there are
//! exactly `ceil(dims / chunk_values)` chunks, each full except the last.
//! Chunks are content-addressed entries: equal pieces share a hash, and a
//! submission's list of chunk hashes fixes its payload. The canonical split
//! means the number of fetches a validator makes is known before it makes
//! any, and a payload has one representation.
//!
//! A chunk on its own is checked for size only; what its values must be
//! (finite, hashing to the claimed payload hash, ...) is checked by the
//! submission or aggregate that references it, with the core's rules.
//!
//! A chunk is written before the entry that references it, so validators
//! cannot tie it to one; instead each author has a budget: its chunks may
//! run ahead of its submissions and aggregates by at most two payloads
//! (`chunk_count(dims)` chunks each). As an author has at most one
//! submission and one aggregate per round, that bounds what it can publish
//! outside them per round. Counted from the author's chain before the chunk
//! (action types only, no entry fetch).

use hdi::prelude::*;
use zerotrustml_core::validation::PayloadDigest;

use crate::{check, count_earlier, model_properties, UnitEntryTypes, Verdict};

/// One piece of a payload.
#[hdk_entry_helper]
#[derive(Clone, PartialEq)]
pub struct GradientChunk {
    /// Position of the chunk in its payload (0-based).
    pub index: u32,
    /// The values, at most `chunk_values` of them.
    pub values: Vec<f32>,
}

/// Number of chunks of a `dims`-value payload.
pub fn chunk_count(dims: u64, chunk_values: u64) -> u64 {
    dims.div_ceil(chunk_values.max(1))
}

/// Length of chunk `index` in the canonical split, or `None` past the end.
pub fn chunk_len(dims: u64, chunk_values: u64, index: u64) -> Option<u64> {
    let start = index.checked_mul(chunk_values)?;
    if start >= dims {
        return None;
    }
    Some((dims - start).min(chunk_values))
}

/// The canonical split of a payload (`chunk_values` >= 1, else one chunk).
pub fn split_payload(values: &[f32], chunk_values: u64) -> Vec<GradientChunk> {
    let size = usize::try_from(chunk_values).unwrap_or(usize::MAX).max(1);
    values
        .chunks(size)
        .enumerate()
        .map(|(i, c)| GradientChunk { index: u32::try_from(i).unwrap_or(u32::MAX), values: c.to_vec() })
        .collect()
}

/// A chunk entry on its own: not empty and at most `chunk_values` values.
/// Its index is checked by whoever references it (index = position), so a
/// payload that is too long is reported by the submission's size rule.
pub fn check_chunk(chunk: &GradientChunk, chunk_values: u64) -> Result<(), String> {
    let len = chunk.values.len() as u64;
    if len == 0 || len > chunk_values {
        return Err(format!("GradientChunk.values: {len} values, expected 1 to {chunk_values} (chunk_values)"));
    }
    Ok(())
}

/// The author's next chunk fits its budget: `chunks_before` chunks so far
/// against `owners_before` submissions and aggregates, `per_payload`
/// chunks each, and two payloads ahead.
pub fn check_chunk_budget(chunks_before: u64, owners_before: u64, per_payload: u64) -> Result<(), String> {
    let budget = per_payload.saturating_mul(owners_before.saturating_add(2));
    if chunks_before >= budget {
        return Err(format!(
            "GradientChunk: its author already wrote {chunks_before} chunks for {owners_before} submissions and \
             aggregates; chunks may run ahead of what references them by two payloads ({} chunks) at most",
            per_payload.saturating_mul(2)
        ));
    }
    Ok(())
}

pub fn validate_create_gradient_chunk(action: &EntryCreationAction, chunk: &GradientChunk) -> Verdict {
    let props = check!(model_properties()?);
    check!(check_chunk(chunk, props.chunk_values));
    let units = [UnitEntryTypes::GradientChunk, UnitEntryTypes::GradientSubmission, UnitEntryTypes::RoundAggregate];
    let counts = count_earlier(action.author(), action.prev_action(), &units)?;
    Ok(check_chunk_budget(counts[0], counts[1] + counts[2], chunk_count(props.dims, props.chunk_values)))
}

/// Reads a payload chunk by chunk, in order, checking each chunk's place in
/// the canonical split and feeding the core's [`PayloadDigest`]. Pure, so the
/// same code checks fetched chunks in the zome and in native tests.
pub struct ChunkReader {
    /// `Entry.field` of the reference being read, for messages.
    owner: String,
    dims: u64,
    chunk_values: u64,
    next: u64,
    digest: PayloadDigest,
    values: Option<Vec<f32>>,
}

impl ChunkReader {
    /// A reader for `count` chunk references of a `dims`-value payload;
    /// fails when `count` is not the canonical number of chunks.
    /// `keep_values` also collects the values (for recomputation).
    pub fn new(owner: &str, dims: u64, chunk_values: u64, count: usize, keep_values: bool) -> Result<Self, String> {
        let expected = chunk_count(dims, chunk_values);
        if count as u64 != expected {
            return Err(format!(
                "{owner}: {count} chunks, expected {expected} ({dims} values in chunks of {chunk_values})"
            ));
        }
        let values = if keep_values { Some(Vec::with_capacity(usize::try_from(dims).unwrap_or(0))) } else { None };
        Ok(ChunkReader { owner: owner.to_string(), dims, chunk_values, next: 0, digest: PayloadDigest::new(), values })
    }

    /// Adds the next chunk: its index must be its position and its length the
    /// canonical one.
    pub fn push(&mut self, chunk: &GradientChunk) -> Result<(), String> {
        let pos = self.next;
        let owner = &self.owner;
        if u64::from(chunk.index) != pos {
            return Err(format!("{owner}[{pos}]: chunk has index {}, expected {pos}", chunk.index));
        }
        let Some(want) = chunk_len(self.dims, self.chunk_values, pos) else {
            return Err(format!("{owner}[{pos}]: more chunks than the payload has"));
        };
        let got = chunk.values.len() as u64;
        if got != want {
            return Err(format!("{owner}[{pos}]: chunk has {got} values, expected {want}"));
        }
        self.digest.update(&chunk.values);
        if let Some(v) = self.values.as_mut() {
            v.extend_from_slice(&chunk.values);
        }
        self.next += 1;
        Ok(())
    }

    /// The digest of everything pushed, and the values if kept.
    pub fn finish(self) -> ReadPayload {
        (self.digest, self.values)
    }
}

/// A payload's digest, and its values when they were kept.
pub type ReadPayload = (PayloadDigest, Option<Vec<f32>>);

/// Fetches a payload through its chunk hashes (`must_get_entry`, so a chunk
/// not yet available makes validation wait) and reads it with a
/// [`ChunkReader`].
pub fn fetch_payload(
    owner: &str,
    hashes: &[EntryHash],
    dims: u64,
    chunk_values: u64,
    keep_values: bool,
) -> ExternResult<Result<ReadPayload, String>> {
    let mut reader = check!(ChunkReader::new(owner, dims, chunk_values, hashes.len(), keep_values));
    for (i, hash) in hashes.iter().enumerate() {
        let entry = must_get_entry(hash.clone())?;
        let chunk = match GradientChunk::try_from(entry.content) {
            Ok(c) => c,
            Err(_) => return Ok(Err(format!("{owner}[{i}]: {hash} is not a GradientChunk entry"))),
        };
        check!(reader.push(&chunk));
    }
    Ok(Ok(reader.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerotrustml_core::validation::payload_hash;

    fn payload(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32 * 0.25 - 2.0).collect()
    }

    #[test]
    fn chunks_run_ahead_by_two_payloads_at_most() {
        // 3 chunks per payload: 6 before anything references them, 3 more per submission or aggregate.
        assert_eq!(check_chunk_budget(5, 0, 3), Ok(()));
        let err = check_chunk_budget(6, 0, 3).unwrap_err();
        assert!(err.starts_with("GradientChunk: its author already wrote 6 chunks for 0 submissions"), "{err}");
        assert!(err.ends_with("by two payloads (6 chunks) at most"), "{err}");
        assert_eq!(check_chunk_budget(8, 1, 3), Ok(()));
        assert!(check_chunk_budget(9, 1, 3).is_err());
        assert_eq!(check_chunk_budget(3 * 41 - 1, 39, 3), Ok(()));
        assert!(check_chunk_budget(u64::MAX, u64::MAX, u64::MAX).is_err()); // saturates, never wraps
    }

    #[test]
    fn canonical_split() {
        assert_eq!(chunk_count(24, 10), 3);
        assert_eq!(chunk_count(20, 10), 2);
        assert_eq!(chunk_count(1, 10), 1);
        assert_eq!([0, 1, 2, 3].map(|i| chunk_len(24, 10, i)), [Some(10), Some(10), Some(4), None]);
        assert_eq!(chunk_len(24, 10, u64::MAX), None);
        let chunks = split_payload(&payload(24), 10);
        assert_eq!(chunks.iter().map(|c| (c.index, c.values.len())).collect::<Vec<_>>(), [(0, 10), (1, 10), (2, 4)]);
        assert_eq!(chunks.concat_values(), payload(24));
    }

    trait Concat {
        fn concat_values(&self) -> Vec<f32>;
    }
    impl Concat for Vec<GradientChunk> {
        fn concat_values(&self) -> Vec<f32> {
            self.iter().flat_map(|c| c.values.iter().copied()).collect()
        }
    }

    #[test]
    fn reader_digest_equals_whole_payload_hash() {
        let v = payload(24);
        let chunks = split_payload(&v, 10);
        let mut r = ChunkReader::new("GradientSubmission.chunk_hashes", 24, 10, chunks.len(), true).unwrap();
        for c in &chunks {
            r.push(c).unwrap();
        }
        let (digest, values) = r.finish();
        assert_eq!(digest.hash(), payload_hash(&v));
        assert_eq!(digest.len(), 24);
        assert_eq!(values.unwrap(), v);
    }

    #[test]
    fn reader_rejects_wrong_count_order_and_size() {
        let owner = "GradientSubmission.chunk_hashes";
        let err = ChunkReader::new(owner, 24, 10, 2, false).err().unwrap();
        assert_eq!(err, "GradientSubmission.chunk_hashes: 2 chunks, expected 3 (24 values in chunks of 10)");

        let chunks = split_payload(&payload(24), 10);
        let mut r = ChunkReader::new(owner, 24, 10, 3, false).unwrap();
        assert_eq!(r.push(&chunks[1]).unwrap_err(), format!("{owner}[0]: chunk has index 1, expected 0"));

        let mut r = ChunkReader::new(owner, 24, 10, 3, false).unwrap();
        let short = GradientChunk { index: 0, values: vec![1.0; 9] };
        assert_eq!(r.push(&short).unwrap_err(), format!("{owner}[0]: chunk has 9 values, expected 10"));

        // A payload of 4 chunks of 6 covers 24 values too, but it is not the
        // canonical split for chunk_values 10.
        let other = split_payload(&payload(24), 6);
        assert!(ChunkReader::new(owner, 24, 10, other.len(), false).is_err());
    }

    #[test]
    fn chunk_entry_size() {
        assert_eq!(check_chunk(&GradientChunk { index: 2, values: vec![0.0; 4] }, 10), Ok(()));
        assert_eq!(check_chunk(&GradientChunk { index: 0, values: vec![0.0; 10] }, 10), Ok(()));
        let err = check_chunk(&GradientChunk { index: 0, values: vec![0.0; 11] }, 10).unwrap_err();
        assert_eq!(err, "GradientChunk.values: 11 values, expected 1 to 10 (chunk_values)");
        assert!(check_chunk(&GradientChunk { index: 0, values: vec![] }, 10).unwrap_err().contains("values"));
    }

    #[test]
    fn non_finite_values_pass_the_reader_and_reach_the_core_rule() {
        // The reader checks structure only; the core's digest records the NaN
        // and validate_digest reports it (see gradient_submission tests).
        let mut v = payload(24);
        v[13] = f32::NAN;
        let mut r = ChunkReader::new("x", 24, 10, 3, false).unwrap();
        for c in split_payload(&v, 10) {
            r.push(&c).unwrap();
        }
        let (digest, _) = r.finish();
        assert_eq!(digest.non_finite().map(|(i, _)| i), Some(13));
    }
}
