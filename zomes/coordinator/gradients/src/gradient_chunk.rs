//! Writing a payload as chunks and reading it back.

use gradients_integrity::*;
use hdk::prelude::*;
use zerotrustml_core::validation::payload_hash;

use crate::get_many;

/// Commits the canonical split of `values` and returns the chunks' entry
/// hashes in order.
pub(crate) fn create_chunks(values: &[f32], chunk_values: u64) -> ExternResult<Vec<EntryHash>> {
    split_payload(values, chunk_values)
        .into_iter()
        .map(|chunk| {
            let hash = hash_entry(&chunk)?;
            create_entry(&EntryTypes::GradientChunk(chunk))?;
            Ok(hash)
        })
        .collect()
}

/// Reassembles payloads from their chunk hashes with one batched get. A
/// payload is `None` when a chunk is not reachable yet, or when the chunks
/// do not hash to `expected` (cannot happen for a valid entry; checked so a
/// reader never hands on values that differ from what was signed).
pub(crate) fn read_payloads(payloads: &[(&[EntryHash], &[u8])]) -> ExternResult<Vec<Option<Vec<f32>>>> {
    let all: Vec<AnyDhtHash> =
        payloads.iter().flat_map(|(hashes, _)| hashes.iter().map(|h| h.clone().into())).collect();
    let mut records = get_many(all)?.into_iter();
    let mut out = Vec::with_capacity(payloads.len());
    for (hashes, expected) in payloads {
        let mut values = Some(Vec::new());
        for _ in 0..hashes.len() {
            let chunk = records
                .next()
                .flatten()
                .and_then(|r| r.entry().as_option().cloned())
                .and_then(|e| GradientChunk::try_from(e).ok());
            match (chunk, values.as_mut()) {
                (Some(c), Some(v)) => v.extend_from_slice(&c.values),
                _ => values = None,
            }
        }
        out.push(values.filter(|v| payload_hash(v).as_slice() == *expected));
    }
    Ok(out)
}
