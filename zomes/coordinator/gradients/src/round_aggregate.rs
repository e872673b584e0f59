//! Calls for round aggregates: compute one locally, publish it, read them.
//!
//! `compute_round_aggregate` runs the same function the integrity zome uses
//! to check a published aggregate (`gradients_integrity::recompute`, i.e. the
//! core's rule), over the round's submissions ordered by action hash, so two
//! agents that see the same submissions compute the same bytes.

use gradients_integrity::*;
use hdk::prelude::*;
use zerotrustml_core::validation::payload_hash;

use crate::{
    create_chunks, get_many, get_round_submissions, guest, properties, read_payloads, target_actions, SubmissionOutput,
};

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct AggregateInput {
    pub round: u64,
    /// "mean" | "krum" | "multi_krum" | "median" | "trimmed_mean".
    pub rule: String,
    #[serde(default)]
    pub f: u32,
}

/// An aggregate as computed (not yet published).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AggregateComputation {
    pub round: u64,
    pub rule: String,
    pub f: u32,
    pub values: Vec<f32>,
    /// Submission action hashes, ascending by raw bytes (the rule's row order).
    pub contributors: Vec<ActionHash>,
    /// Authors of the contributors the rule did not select.
    pub flagged: Vec<AgentPubKey>,
    #[serde(with = "serde_bytes")]
    pub result_hash: Vec<u8>,
}

/// An aggregate computed elsewhere (e.g. natively by the Python SDK with the
/// same core), published as given: validation decides whether it stands.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PublishComputedInput {
    pub round: u64,
    pub rule: String,
    #[serde(default)]
    pub f: u32,
    pub contributors: Vec<ActionHash>,
    pub flagged: Vec<AgentPubKey>,
    pub values: Vec<f32>,
    /// The result hash claim (default: SHA-256 of `values`).
    #[serde(default, with = "serde_bytes")]
    pub result_hash: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct AggregateOutput {
    pub action_hash: ActionHash,
    pub author: AgentPubKey,
    pub aggregate: RoundAggregate,
    pub values: Vec<f32>,
    /// Whether validators recomputed it (a rule they can recompute, within
    /// `recompute_limit`). Otherwise it is its author's claim, checked for
    /// structure, preconditions and result norm only: recompute it before
    /// relying on it.
    pub verified: bool,
    /// What the aggregate covers of the round as this reader sees it (an
    /// aggregate over a hand-picked subset validates; its coverage says so).
    pub coverage: Coverage,
}

/// An aggregate's contributors against the round's submissions this reader
/// sees: one per author, authors with two (a forked chain) left out, as
/// `compute_round_aggregate` counts them. From the round's links, so it
/// costs no entry fetch; it is a reader's view at one moment (eventual
/// consistency), not a property of the aggregate.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Coverage {
    /// Contributors that are among the round's submissions.
    pub covered: u32,
    /// The round's submissions.
    pub round_submissions: u32,
    /// The contributors are exactly the round's submissions.
    pub complete: bool,
}

/// The round's submissions this agent sees, one per author (an author with
/// two or more is equivocating and left out), ascending by raw bytes.
fn round_set(round: u64) -> ExternResult<Vec<ActionHash>> {
    let links =
        get_links(LinkQuery::try_new(round_anchor(round)?, LinkTypes::RoundToSubmissions)?, GetStrategy::Network)?;
    let mut by_author: std::collections::HashMap<AgentPubKey, std::collections::BTreeSet<ActionHash>> =
        std::collections::HashMap::new();
    for link in links {
        if let Some(target) = link.target.into_action_hash() {
            by_author.entry(link.author).or_default().insert(target);
        }
    }
    let mut set: Vec<ActionHash> =
        by_author.into_values().filter(|s| s.len() == 1).flat_map(|s| s.into_iter()).collect();
    set.sort_by(|a, b| a.get_raw_39().cmp(b.get_raw_39()));
    Ok(set)
}

fn coverage(contributors: &[ActionHash], set: &[ActionHash]) -> Coverage {
    // `set` is ascending by raw bytes (round_set), so each lookup is a binary search.
    let covered =
        contributors.iter().filter(|c| set.binary_search_by(|h| h.get_raw_39().cmp(c.get_raw_39())).is_ok()).count();
    Coverage {
        covered: u32::try_from(covered).unwrap_or(u32::MAX),
        round_submissions: u32::try_from(set.len()).unwrap_or(u32::MAX),
        complete: contributors == set,
    }
}

/// Applies the rule to the given submissions, sorted by action hash.
pub(crate) fn compute(
    round: u64,
    rule_name: &str,
    f: u32,
    mut subs: Vec<SubmissionOutput>,
) -> ExternResult<AggregateComputation> {
    let rule = Rule::parse(rule_name).map_err(guest)?;
    // Two submissions by one author in a round (a forked chain) are equivocation: neither counts.
    let mut per_author: std::collections::HashMap<AgentPubKey, usize> = std::collections::HashMap::new();
    for s in &subs {
        *per_author.entry(s.author.clone()).or_default() += 1;
    }
    subs.retain(|s| per_author.get(&s.author) == Some(&1));
    subs.sort_by(|a, b| a.action_hash.get_raw_39().cmp(b.action_hash.get_raw_39()));
    if subs.is_empty() {
        return Err(guest(format!("round {round}: no submissions reachable to aggregate")));
    }
    let counts: Vec<u64> = subs.iter().map(|s| s.submission.example_count).collect();
    let rows: Vec<Vec<f32>> = subs.iter().map(|s| s.values.clone()).collect();
    let result = recompute(rule, f, &rows, &counts, properties()?.example_cap).map_err(guest)?;
    let flagged = result.flagged.iter().filter_map(|i| subs.get(*i)).map(|s| s.author.clone()).collect();
    Ok(AggregateComputation {
        round,
        rule: rule.name().to_string(),
        f,
        result_hash: payload_hash(&result.values).to_vec(),
        values: result.values,
        contributors: subs.into_iter().map(|s| s.action_hash).collect(),
        flagged,
    })
}

/// The aggregate of every submission of the round this agent can reach.
#[hdk_extern]
pub fn compute_round_aggregate(input: AggregateInput) -> ExternResult<AggregateComputation> {
    let subs = get_round_submissions(input.round)?;
    compute(input.round, &input.rule, input.f, subs)
}

fn publish(c: AggregateComputation, result_hash: Vec<u8>) -> ExternResult<ActionHash> {
    let props = properties()?;
    let result_chunks = create_chunks(&c.values, props.chunk_values)?;
    let aggregate = RoundAggregate {
        round: c.round,
        rule: c.rule,
        f: c.f,
        contributors: c.contributors,
        flagged: c.flagged,
        result_hash,
        result_chunks,
    };
    let action_hash = create_entry(&EntryTypes::RoundAggregate(aggregate))?;
    create_link(round_anchor(c.round)?, action_hash.clone(), LinkTypes::RoundToAggregate, ())?;
    Ok(action_hash)
}

/// Computes the round's aggregate and publishes it (result chunks, the
/// RoundAggregate entry, the round link); validators recompute it.
#[hdk_extern]
pub fn publish_aggregate(input: AggregateInput) -> ExternResult<ActionHash> {
    let c = compute_round_aggregate(input)?;
    let hash = c.result_hash.clone();
    publish(c, hash)
}

/// Publishes an aggregate computed by the caller, as given.
#[hdk_extern]
pub fn publish_computed_aggregate(input: PublishComputedInput) -> ExternResult<ActionHash> {
    let result_hash = input.result_hash.unwrap_or_else(|| payload_hash(&input.values).to_vec());
    let c = AggregateComputation {
        round: input.round,
        rule: input.rule,
        f: input.f,
        values: input.values,
        contributors: input.contributors,
        flagged: input.flagged,
        result_hash: result_hash.clone(),
    };
    publish(c, result_hash)
}

/// Every aggregate published for `round` that this agent can reach, with
/// its result values and whether validators recomputed it.
#[hdk_extern]
pub fn get_round_aggregates(round: u64) -> ExternResult<Vec<AggregateOutput>> {
    let links =
        get_links(LinkQuery::try_new(round_anchor(round)?, LinkTypes::RoundToAggregate)?, GetStrategy::Network)?;
    let records = get_many(target_actions(links).into_iter().map(Into::into).collect())?;
    let mut found = Vec::new();
    for record in records.into_iter().flatten() {
        if let Ok(Some(aggregate)) = record.entry().to_app_option::<RoundAggregate>() {
            found.push((record.action_address().clone(), record.action().author().clone(), aggregate));
        }
    }
    let payloads: Vec<(&[EntryHash], &[u8])> =
        found.iter().map(|(_, _, a)| (a.result_chunks.as_slice(), a.result_hash.as_slice())).collect();
    let values = read_payloads(&payloads)?;
    let props = properties()?;
    let set = round_set(round)?;
    Ok(found
        .into_iter()
        .zip(values)
        .filter_map(|((action_hash, author, aggregate), values)| {
            let verified = Rule::parse(&aggregate.rule).is_ok_and(|r| r.recomputable())
                && within_recompute_limit(aggregate.contributors.len(), props.dims, props.recompute_limit);
            let coverage = coverage(&aggregate.contributors, &set);
            values.map(|values| AggregateOutput { action_hash, author, aggregate, values, verified, coverage })
        })
        .collect())
}
