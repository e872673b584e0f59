//! The round aggregate entry: a robust rule applied to a set of submissions.
//!
//! An aggregate is a claim "rule R with parameter f over exactly these
//! contributors gives this result". It does not claim to cover every
//! submission of the round (the DHT is eventually consistent, so nobody can
//! prove a set complete); a reader compares `contributors` with the
//! submissions it sees and recomputes if in doubt (`compute_round_aggregate`).
//!
//! Definitions (what validation enforces):
//! - `contributors`: action hashes of GradientSubmissions of `round`,
//!   strictly ascending by their 39 raw bytes (canonical order, no
//!   duplicates). Row i of the rule's input is contributor i's payload.
//! - rules (core `aggregate`): `mean` = weighted by the contributors'
//!   `example_count`; `krum` = core `krum(f)` (standard n-f-2 neighbours);
//!   `multi_krum` = core `multi_krum(f, m = n - f)`; `median` = coordinate
//!   median; `trimmed_mean` = core `trimmed_mean(f)`. `f` is ignored by mean
//!   and median.
//! - `flagged`: for krum and multi_krum, the authors of the contributors the
//!   rule did not select, in contributor order (n-1 for krum, f for
//!   multi_krum); for the other rules, which select nobody, empty.
//! - `result_hash`: SHA-256 of the result's little-endian float32 bytes (the
//!   payload hash of the core), and `result_chunks` its canonical split.
//!
//! - `personal`: an agent's own result under its own defence (the full
//!   pipeline: proofs, similarity, committee votes, reputation, a clipped
//!   weighted mean; or a plain rule applied in its own row order). It can
//!   depend on the agent's reputation history and the votes it read, so
//!   validators cannot recompute it: it is a claim attributed to its author,
//!   checked for structure only (any number of flagged contributors, in
//!   contributor order), and readers recompute it themselves (the Python
//!   `HolochainBackend` does, for every honest agent). `contributors` then
//!   says exactly which submissions the agent's result covers.
//!
//! Validation always checks the structure: every contributor a valid
//! submission of the round, canonical order, the result chunks' digest equal
//! to `result_hash` with `dims` finite values, `flagged` authors of
//! contributors in contributor order and as many as the rule flags. When
//! `contributors x dims <= recompute_limit` (DNA property), it also fetches
//! every contributor's payload, recomputes the rule with the core and
//! requires the same result hash and the same flagged list. Above the
//! bound only the structure is checked, and readers must recompute
//! themselves.

use hdi::prelude::*;
use zerotrustml_core::aggregate::check_rule_precondition;
use zerotrustml_core::examples::capped_example_weights;
use zerotrustml_core::validation::{payload_hash, Rejection, NORM_RTOL};
use zerotrustml_core::{krum, mean, median, multi_krum, trimmed_mean, CoreError, KrumVariant, Rows};

use crate::{
    check, created_entry, earlier_entries, fetch_payload, hash32, link_target_action, model_properties, rejection,
    round_anchor, GradientSubmission, UnitEntryTypes, Verdict,
};

/// A published aggregate of one round.
#[hdk_entry_helper]
#[derive(Clone, PartialEq)]
pub struct RoundAggregate {
    pub round: u64,
    /// "mean" | "krum" | "multi_krum" | "median" | "trimmed_mean" | "personal".
    pub rule: String,
    /// Assumed number of Byzantine contributors.
    pub f: u32,
    /// Submission action hashes, strictly ascending by raw bytes.
    pub contributors: Vec<ActionHash>,
    /// Authors of the contributors the rule did not select.
    pub flagged: Vec<AgentPubKey>,
    /// SHA-256 of the result's little-endian float32 bytes.
    #[serde(with = "serde_bytes")]
    pub result_hash: Vec<u8>,
    /// The result's chunks (canonical split).
    pub result_chunks: Vec<EntryHash>,
}

/// The aggregation rules an aggregate may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Mean,
    Krum,
    MultiKrum,
    Median,
    TrimmedMean,
    /// An agent's own result: a claim, never recomputed by validators.
    Personal,
}

impl Rule {
    pub const ALL: [Rule; 6] =
        [Rule::Mean, Rule::Krum, Rule::MultiKrum, Rule::Median, Rule::TrimmedMean, Rule::Personal];

    pub fn name(self) -> &'static str {
        match self {
            Rule::Mean => "mean",
            Rule::Krum => "krum",
            Rule::MultiKrum => "multi_krum",
            Rule::Median => "median",
            Rule::TrimmedMean => "trimmed_mean",
            Rule::Personal => "personal",
        }
    }

    /// Whether validators can recompute the rule from the contributors alone.
    pub fn recomputable(self) -> bool {
        !matches!(self, Rule::Personal)
    }

    pub fn parse(name: &str) -> Result<Rule, String> {
        Rule::ALL.into_iter().find(|r| r.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
            format!("RoundAggregate.rule: unknown rule {name:?}, expected one of {}", names.join(", "))
        })
    }

    /// How many contributors the rule flags out of `n` (structure check);
    /// `None` when any number up to `n` is possible.
    pub fn flagged_count(self, n: usize, f: usize) -> Option<usize> {
        match self {
            Rule::Krum => Some(n.saturating_sub(1)),
            Rule::MultiKrum => Some(n.min(f)),
            Rule::Mean | Rule::Median | Rule::TrimmedMean => Some(0),
            Rule::Personal => None,
        }
    }
}

impl Rule {
    /// The rule's precondition on `n` contributors and `f` (the core's own
    /// check, so validators refuse an aggregate the rule could not produce
    /// even when they do not recompute it).
    pub fn check_precondition(self, n: usize, f: u32) -> Result<(), String> {
        let f = usize::try_from(f).unwrap_or(usize::MAX);
        check_rule_precondition(self.name(), n, f).map_err(|e| core_error(self, e))
    }

    /// The largest result norm the rule can give when every contributor's
    /// norm is at most `max_norm`: a mean, Krum's pick and Multi-Krum's mean
    /// stay in the contributors' convex hull (`max_norm`); a coordinate-wise
    /// median or trimmed mean takes each coordinate from some contributor, so
    /// its squared norm is at most the sum of theirs (`sqrt(n) * max_norm`).
    /// `None` for `personal` (its author's own defence, not bounded here).
    pub fn result_norm_bound(self, n: usize, max_norm: f64) -> Option<f64> {
        match self {
            Rule::Mean | Rule::Krum | Rule::MultiKrum => Some(max_norm),
            Rule::Median | Rule::TrimmedMean => Some((n as f64).sqrt() * max_norm),
            Rule::Personal => None,
        }
    }
}

/// The result's norm within what the rule can give (float32 rounding
/// allowed for with the core's `NORM_RTOL`).
pub fn check_result_norm(rule: Rule, n: usize, norm: f64, max_norm: f64) -> Result<(), String> {
    if let Some(bound) = rule.result_norm_bound(n, max_norm) {
        if norm > bound * (1.0 + NORM_RTOL) {
            return Err(format!(
                "RoundAggregate.result_chunks: result norm {norm} exceeds {bound}, the most {} over {n} \
                 contributors within max_norm {max_norm} can give",
                rule.name()
            ));
        }
    }
    Ok(())
}

/// At most `max` contributors: the Krum Gram matrix is n x n, so the bound
/// keeps every validator's memory and time in reach whatever the dims.
pub fn check_contributor_count(n: usize, max: u64) -> Result<(), String> {
    if n as u64 > max {
        return Err(format!(
            "RoundAggregate.contributors: {n} contributors, the DNA allows at most {max} (max_contributors)"
        ));
    }
    Ok(())
}

/// No author twice: two submissions by one author in a round (a forked
/// chain) are equivocation, and neither may count.
pub fn check_distinct_authors(authors: &[AgentPubKey]) -> Result<(), String> {
    for (i, a) in authors.iter().enumerate() {
        if let Some(j) = authors[..i].iter().position(|b| b == a) {
            return Err(format!(
                "RoundAggregate.contributors[{i}]: a second submission by the author of contributors[{j}] in one \
                 round (equivocation: neither may count)"
            ));
        }
    }
    Ok(())
}

/// One aggregate per author per round, given the rounds of its earlier ones.
pub fn check_first_aggregate(round: u64, earlier_rounds: &[u64]) -> Result<(), String> {
    if earlier_rounds.contains(&round) {
        return Err(format!("RoundAggregate.round: this author already published an aggregate of round {round}"));
    }
    Ok(())
}

/// A rule's result on the contributors' payloads.
#[derive(Debug, Clone, PartialEq)]
pub struct Recomputed {
    pub values: Vec<f32>,
    /// Indices (into the contributors) the rule did not select, ascending.
    pub flagged: Vec<usize>,
}

fn core_error(rule: Rule, e: CoreError) -> String {
    match e {
        CoreError::Precondition { .. } => format!("RoundAggregate.f: {e}"),
        _ => format!("RoundAggregate.contributors: {} over the contributors failed: {e}", rule.name()),
    }
}

/// Applies `rule` with the core to `rows` (one payload per contributor, in
/// contributor order). `example_counts` weight the mean, each capped at
/// `example_cap` times their median (`zerotrustml_core::examples`). Deterministic: the
/// core's kernels sum in a fixed order whatever the platform, and the zomes
/// all run the same wasm.
pub fn recompute(
    rule: Rule,
    f: u32,
    rows: &[Vec<f32>],
    example_counts: &[u64],
    example_cap: f64,
) -> Result<Recomputed, String> {
    let views: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
    let rows = Rows::new(views).map_err(|e| core_error(rule, e))?;
    let n = rows.n();
    let f = usize::try_from(f).unwrap_or(usize::MAX);
    let selected_to_flagged = |selected: &[usize]| -> Vec<usize> { (0..n).filter(|i| !selected.contains(i)).collect() };
    let (values, flagged) = match rule {
        Rule::Mean => {
            if example_counts.len() != n {
                return Err(format!(
                    "RoundAggregate.contributors: {} example counts for {n} rows",
                    example_counts.len()
                ));
            }
            let w = capped_example_weights(example_counts, example_cap);
            (mean(&rows, Some(&w)).map_err(|e| core_error(rule, e))?.vector, Vec::new())
        }
        Rule::Krum => {
            let a = krum(&rows, f, KrumVariant::Standard).map_err(|e| core_error(rule, e))?;
            let flagged = selected_to_flagged(&a.selected);
            (a.vector, flagged)
        }
        Rule::MultiKrum => {
            let a =
                multi_krum(&rows, f, n.saturating_sub(f), KrumVariant::Standard).map_err(|e| core_error(rule, e))?;
            let flagged = selected_to_flagged(&a.selected);
            (a.vector, flagged)
        }
        Rule::Median => (median(&rows).map_err(|e| core_error(rule, e))?.vector, Vec::new()),
        Rule::TrimmedMean => (trimmed_mean(&rows, f).map_err(|e| core_error(rule, e))?.vector, Vec::new()),
        Rule::Personal => {
            return Err("RoundAggregate.rule: personal results are claims; they cannot be recomputed".into())
        }
    };
    Ok(Recomputed { values, flagged })
}

/// Contributors must be strictly ascending by raw bytes (the order every
/// agent uses, and no duplicates).
pub fn check_contributor_order(contributors: &[ActionHash]) -> Result<(), String> {
    if contributors.is_empty() {
        return Err("RoundAggregate.contributors: at least one contributor is required".to_string());
    }
    for (i, pair) in contributors.windows(2).enumerate() {
        if let [a, b] = pair {
            if a.get_raw_39() >= b.get_raw_39() {
                return Err(format!(
                    "RoundAggregate.contributors[{}]: not strictly ascending (contributors are sorted by action hash, without duplicates)",
                    i + 1
                ));
            }
        }
    }
    Ok(())
}

/// `flagged` as a function of the contributors' authors: a sub-list of them
/// in contributor order, of the size the rule flags.
pub fn check_flagged_structure(
    rule: Rule,
    f: u32,
    authors: &[AgentPubKey],
    flagged: &[AgentPubKey],
) -> Result<(), String> {
    let want = rule.flagged_count(authors.len(), usize::try_from(f).unwrap_or(usize::MAX)).unwrap_or(flagged.len());
    if flagged.len() != want {
        return Err(format!(
            "RoundAggregate.flagged: {} flagged, but {} flags {want} of {} contributors",
            flagged.len(),
            rule.name(),
            authors.len()
        ));
    }
    let mut rest = authors.iter();
    for (i, agent) in flagged.iter().enumerate() {
        if !rest.any(|a| a == agent) {
            return Err(format!(
                "RoundAggregate.flagged[{i}]: {agent} is not a contributor's author (or out of contributor order)"
            ));
        }
    }
    Ok(())
}

/// The result's digest against the claimed hash: `dims` finite values whose
/// payload hash is `result_hash`.
pub fn check_result_digest(
    dims: u64,
    result_hash: &[u8; 32],
    digest: &zerotrustml_core::validation::PayloadDigest,
) -> Result<(), String> {
    if digest.len() != dims {
        return Err(rejection("RoundAggregate", &Rejection::Length { expected: dims, got: digest.len() })
            .replace("RoundAggregate.values", "RoundAggregate.result_chunks"));
    }
    if let Some((index, value)) = digest.non_finite() {
        return Err(format!("RoundAggregate.result_chunks: non-finite value {value} at index {index}"));
    }
    let actual = digest.hash();
    if &actual != result_hash {
        return Err(rejection("RoundAggregate", &Rejection::HashMismatch { claimed: *result_hash, actual })
            .replace("RoundAggregate.payload_hash", "RoundAggregate.result_hash"));
    }
    Ok(())
}

/// The recomputed result against the claims.
pub fn check_recomputed(
    rule: Rule,
    authors: &[AgentPubKey],
    result_hash: &[u8; 32],
    flagged: &[AgentPubKey],
    recomputed: &Recomputed,
) -> Result<(), String> {
    let actual = payload_hash(&recomputed.values);
    if &actual != result_hash {
        return Err(format!(
            "RoundAggregate.result_hash: {} over the contributors gives {}, the aggregate claims {}",
            rule.name(),
            zerotrustml_core::validation::hex(&actual),
            zerotrustml_core::validation::hex(result_hash)
        ));
    }
    let want: Vec<&AgentPubKey> = recomputed.flagged.iter().filter_map(|i| authors.get(*i)).collect();
    let got: Vec<&AgentPubKey> = flagged.iter().collect();
    if want != got {
        return Err(format!(
            "RoundAggregate.flagged: {} flags contributors {:?}, the aggregate lists other agents",
            rule.name(),
            recomputed.flagged
        ));
    }
    Ok(())
}

/// Whether validators recompute: contributors x dims within the bound.
pub fn within_recompute_limit(n: usize, dims: u64, limit: u64) -> bool {
    (n as u64).saturating_mul(dims) <= limit
}

pub fn validate_create_round_aggregate(action: &EntryCreationAction, a: &RoundAggregate) -> Verdict {
    let props = check!(model_properties()?);
    let rule = check!(Rule::parse(&a.rule));
    let result_hash = check!(hash32(&a.result_hash, "RoundAggregate.result_hash"));
    check!(check_contributor_order(&a.contributors));
    check!(check_contributor_count(a.contributors.len(), props.max_contributors));
    check!(rule.check_precondition(a.contributors.len(), a.f));

    // The result first: it is one payload, the contributors are n.
    let (digest, _) =
        check!(fetch_payload("RoundAggregate.result_chunks", &a.result_chunks, props.dims, props.chunk_values, false)?);
    check!(check_result_digest(props.dims, &result_hash, &digest));
    check!(check_result_norm(rule, a.contributors.len(), digest.norm(), props.max_norm));
    let earlier: Vec<RoundAggregate> =
        earlier_entries(action.author(), action.prev_action(), UnitEntryTypes::RoundAggregate)?;
    let rounds: Vec<u64> = earlier.iter().map(|e| e.round).collect();
    check!(check_first_aggregate(a.round, &rounds));

    let mut authors = Vec::with_capacity(a.contributors.len());
    let mut submissions = Vec::with_capacity(a.contributors.len());
    for (i, hash) in a.contributors.iter().enumerate() {
        let record = must_get_valid_record(hash.clone())?;
        let what = format!("RoundAggregate.contributors[{i}]");
        let s = check!(created_entry::<GradientSubmission>(&record, UnitEntryTypes::GradientSubmission, &what)?);
        if s.round != a.round {
            return Ok(Err(format!("{what}: a submission of round {}, not of round {}", s.round, a.round)));
        }
        authors.push(record.action().author().clone());
        submissions.push(s);
    }
    check!(check_distinct_authors(&authors));
    check!(check_flagged_structure(rule, a.f, &authors, &a.flagged));

    if !rule.recomputable() || !within_recompute_limit(submissions.len(), props.dims, props.recompute_limit) {
        return Ok(Ok(()));
    }
    let mut rows = Vec::with_capacity(submissions.len());
    for (i, s) in submissions.iter().enumerate() {
        let owner = format!("RoundAggregate.contributors[{i}].chunk_hashes");
        let (_, values) = check!(fetch_payload(&owner, &s.chunk_hashes, props.dims, props.chunk_values, true)?);
        rows.push(values.unwrap_or_default());
    }
    let counts: Vec<u64> = submissions.iter().map(|s| s.example_count).collect();
    let recomputed = check!(recompute(rule, a.f, &rows, &counts, props.example_cap));
    Ok(check_recomputed(rule, &authors, &result_hash, &a.flagged, &recomputed))
}

/// A round's aggregate link points from the anchor of the aggregate's round
/// to an aggregate by the link's author.
pub fn validate_create_link_round_to_aggregate(
    action: &CreateLink,
    base: &AnyLinkableHash,
    target: &AnyLinkableHash,
) -> Verdict {
    let hash = check!(link_target_action(target, "RoundToAggregate"));
    let record = must_get_valid_record(hash)?;
    let aggregate = check!(created_entry::<RoundAggregate>(
        &record,
        UnitEntryTypes::RoundAggregate,
        "RoundToAggregate link target"
    )?);
    if record.action().author() != &action.author {
        return Ok(Err("RoundToAggregate link author must be the aggregate's author".to_string()));
    }
    let expected: AnyLinkableHash = round_anchor(aggregate.round)?.into();
    if &expected != base {
        return Ok(Err(format!("RoundToAggregate link base is not the anchor of round {}", aggregate.round)));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{split_payload, ChunkReader};

    fn agent(i: u8) -> AgentPubKey {
        AgentPubKey::from_raw_32(vec![i; 32])
    }

    fn action(i: u8) -> ActionHash {
        ActionHash::from_raw_32(vec![i; 32])
    }

    /// Four honest updates near (1, ..., 1) and one far away.
    fn rows() -> Vec<Vec<f32>> {
        let mut rows: Vec<Vec<f32>> =
            (0..4).map(|i| (0..24).map(|j| 1.0 + 0.01 * ((i * 7 + j) % 5) as f32).collect()).collect();
        rows.push(vec![-20.0; 24]);
        rows
    }

    #[test]
    fn rule_names_round_trip() {
        for r in Rule::ALL {
            assert_eq!(Rule::parse(r.name()), Ok(r));
        }
        let err = Rule::parse("bulyan").unwrap_err();
        assert!(err.starts_with("RoundAggregate.rule: unknown rule \"bulyan\""), "{err}");
    }

    #[test]
    fn multi_krum_flags_the_outlier() {
        let r = recompute(Rule::MultiKrum, 1, &rows(), &[1; 5], 10.0).unwrap();
        assert_eq!(r.flagged, vec![4]);
        assert!(r.values.iter().all(|v| (1.0..1.05).contains(v)));
        let r = recompute(Rule::Krum, 1, &rows(), &[1; 5], 10.0).unwrap();
        assert_eq!(r.flagged.len(), 4);
        assert!(r.flagged.contains(&4));
    }

    #[test]
    fn recompute_is_deterministic_and_mean_is_weighted() {
        let a = recompute(Rule::Mean, 0, &rows()[..2], &[1, 3], 10.0).unwrap();
        let b = recompute(Rule::Mean, 0, &rows()[..2], &[1, 3], 10.0).unwrap();
        assert_eq!(payload_hash(&a.values), payload_hash(&b.values));
        let want = (rows()[0][0] as f64 * 0.25 + rows()[1][0] as f64 * 0.75) as f32;
        assert_eq!(a.values[0], want);
        assert!(a.flagged.is_empty());
        // A claim of 2^64-1 examples weighs at most example_cap times the median (here 3 x 2), not all.
        let liar = recompute(Rule::Mean, 0, &rows()[..3], &[1, 2, u64::MAX], 3.0).unwrap();
        let want = ((rows()[0][0] as f64 + 2.0 * rows()[1][0] as f64 + 6.0 * rows()[2][0] as f64) / 9.0) as f32;
        assert_eq!(liar.values[0], want);
        for rule in [Rule::Median, Rule::TrimmedMean] {
            assert!(recompute(rule, 1, &rows(), &[1; 5], 10.0).unwrap().flagged.is_empty());
        }
    }

    #[test]
    fn preconditions_name_f() {
        let err = recompute(Rule::Krum, 1, &rows()[..3], &[1; 3], 10.0).unwrap_err();
        assert_eq!(err, "RoundAggregate.f: krum needs n >= 2f+3 (got n=3, f=1)");
        let err = recompute(Rule::TrimmedMean, 2, &rows()[..4], &[1; 4], 10.0).unwrap_err();
        assert!(err.starts_with("RoundAggregate.f: trimmed_mean needs n > 2f"), "{err}");
        let err = recompute(Rule::Mean, 0, &[], &[], 10.0).unwrap_err();
        assert!(err.starts_with("RoundAggregate.contributors: "), "{err}");
    }

    #[test]
    fn contributor_order() {
        assert_eq!(check_contributor_order(&[action(1), action(2)]), Ok(()));
        assert!(check_contributor_order(&[]).is_err());
        let err = check_contributor_order(&[action(2), action(1)]).unwrap_err();
        assert!(err.starts_with("RoundAggregate.contributors[1]: not strictly ascending"), "{err}");
        assert!(check_contributor_order(&[action(1), action(1)]).is_err());
    }

    #[test]
    fn flagged_structure() {
        let authors: Vec<AgentPubKey> = (1..=5).map(agent).collect();
        assert_eq!(check_flagged_structure(Rule::MultiKrum, 1, &authors, &[agent(5)]), Ok(()));
        assert!(check_flagged_structure(Rule::MultiKrum, 1, &authors, &[]).unwrap_err().contains("0 flagged"));
        assert!(check_flagged_structure(Rule::MultiKrum, 1, &authors, &[agent(9)])
            .unwrap_err()
            .starts_with("RoundAggregate.flagged[0]: "));
        // Out of contributor order.
        assert!(check_flagged_structure(Rule::Krum, 1, &authors, &[agent(2), agent(1), agent(3), agent(4)]).is_err());
        assert_eq!(check_flagged_structure(Rule::Krum, 1, &authors, &[agent(1), agent(2), agent(4), agent(5)]), Ok(()));
        assert_eq!(check_flagged_structure(Rule::Mean, 3, &authors, &[]), Ok(()));
        // A personal claim flags any sub-list, still in contributor order and of contributors only.
        assert_eq!(check_flagged_structure(Rule::Personal, 0, &authors, &[]), Ok(()));
        assert_eq!(check_flagged_structure(Rule::Personal, 0, &authors, &[agent(2), agent(5)]), Ok(()));
        assert!(check_flagged_structure(Rule::Personal, 0, &authors, &[agent(5), agent(2)]).is_err());
        assert!(check_flagged_structure(Rule::Personal, 0, &authors, &[agent(7)]).is_err());
    }

    #[test]
    fn preconditions_are_checked_without_the_rows() {
        // multi_krum with f >= n would flag everyone: refused before any fetch.
        let err = Rule::MultiKrum.check_precondition(3, 3).unwrap_err();
        assert!(err.starts_with("RoundAggregate.f: ") && err.contains("n >= 2f+3"), "{err}");
        assert!(Rule::Krum.check_precondition(5, 1).is_ok());
        assert!(Rule::Krum.check_precondition(4, 1).is_err());
        assert!(Rule::TrimmedMean.check_precondition(4, 2).unwrap_err().contains("n > 2f"));
        assert!(Rule::Krum.check_precondition(5, u32::MAX).is_err());
        for rule in [Rule::Mean, Rule::Median, Rule::Personal] {
            assert!(rule.check_precondition(1, u32::MAX).is_ok());
        }
    }

    #[test]
    fn result_norm_is_bounded_by_what_the_rule_can_give() {
        assert!(check_result_norm(Rule::Mean, 4, 100.0, 100.0).is_ok());
        let err = check_result_norm(Rule::Mean, 4, 101.0, 100.0).unwrap_err();
        assert!(err.starts_with("RoundAggregate.result_chunks: result norm 101 exceeds 100"), "{err}");
        assert!(check_result_norm(Rule::Median, 4, 199.0, 100.0).is_ok()); // sqrt(4) * 100
        assert!(check_result_norm(Rule::TrimmedMean, 4, 201.0, 100.0).is_err());
        assert!(check_result_norm(Rule::Personal, 4, 1e30, 100.0).is_ok());
        // A coordinate-wise median really can exceed max_norm: three unit rows, each missing one coordinate,
        // give (s, s, s) with norm 1.22, which the sqrt(n) bound admits.
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let rows = vec![vec![s, s, 0.0], vec![s, 0.0, s], vec![0.0, s, s]];
        let r = recompute(Rule::Median, 0, &rows, &[1; 3], 10.0).unwrap();
        let norm = r.values.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        assert!(norm > 1.2 && check_result_norm(Rule::Median, 3, norm, 1.0).is_ok(), "{norm}");
        assert!(check_result_norm(Rule::Mean, 3, norm, 1.0).is_err());
    }

    #[test]
    fn contributors_and_authors_are_bounded() {
        assert!(check_contributor_count(1000, 1000).is_ok());
        let err = check_contributor_count(1001, 1000).unwrap_err();
        assert!(err.contains("1001 contributors, the DNA allows at most 1000 (max_contributors)"), "{err}");
        assert!(check_distinct_authors(&[agent(1), agent(2), agent(3)]).is_ok());
        let err = check_distinct_authors(&[agent(1), agent(2), agent(1)]).unwrap_err();
        assert!(err.starts_with("RoundAggregate.contributors[2]: a second submission by the author of contributors[0]"));
        assert!(check_first_aggregate(3, &[1, 2]).is_ok());
        let err = check_first_aggregate(2, &[1, 2]).unwrap_err();
        assert_eq!(err, "RoundAggregate.round: this author already published an aggregate of round 2");
    }

    #[test]
    fn personal_is_a_claim_validators_do_not_recompute() {
        assert!(!Rule::Personal.recomputable());
        assert!(Rule::ALL.iter().filter(|r| **r != Rule::Personal).all(|r| r.recomputable()));
        let err = recompute(Rule::Personal, 0, &rows(), &[1; 5], 10.0).unwrap_err();
        assert!(err.starts_with("RoundAggregate.rule: personal results are claims"), "{err}");
    }

    #[test]
    fn forged_results_are_caught() {
        let authors: Vec<AgentPubKey> = (1..=5).map(agent).collect();
        let honest = recompute(Rule::MultiKrum, 1, &rows(), &[1; 5], 10.0).unwrap();
        let hash = payload_hash(&honest.values);
        assert_eq!(check_recomputed(Rule::MultiKrum, &authors, &hash, &[agent(5)], &honest), Ok(()));

        let mut forged = honest.values.clone();
        forged[0] += 0.5;
        let err =
            check_recomputed(Rule::MultiKrum, &authors, &payload_hash(&forged), &[agent(5)], &honest).unwrap_err();
        assert!(err.starts_with("RoundAggregate.result_hash: multi_krum over the contributors gives "), "{err}");

        let err = check_recomputed(Rule::MultiKrum, &authors, &hash, &[agent(1)], &honest).unwrap_err();
        assert!(err.starts_with("RoundAggregate.flagged: "), "{err}");
    }

    #[test]
    fn result_digest_checks() {
        let v: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let digest_of = |v: &[f32]| {
            let chunks = split_payload(v, 10);
            let mut r =
                ChunkReader::new("RoundAggregate.result_chunks", v.len() as u64, 10, chunks.len(), false).unwrap();
            for c in &chunks {
                r.push(c).unwrap();
            }
            r.finish().0
        };
        let hash = payload_hash(&v);
        assert_eq!(check_result_digest(24, &hash, &digest_of(&v)), Ok(()));
        let err = check_result_digest(24, &[0; 32], &digest_of(&v)).unwrap_err();
        assert!(err.starts_with("RoundAggregate.result_hash: claimed 0000"), "{err}");
        let mut nan = v.clone();
        nan[3] = f32::NAN;
        let err = check_result_digest(24, &payload_hash(&nan), &digest_of(&nan)).unwrap_err();
        assert_eq!(err, "RoundAggregate.result_chunks: non-finite value NaN at index 3");
        let err = check_result_digest(25, &hash, &digest_of(&v)).unwrap_err();
        assert_eq!(err, "RoundAggregate.result_chunks: expected 25 values, got 24 [length_mismatch]");
    }

    #[test]
    fn recompute_bound() {
        assert!(within_recompute_limit(5, 24, 120));
        assert!(!within_recompute_limit(6, 24, 120));
        assert!(!within_recompute_limit(usize::MAX, u64::MAX, u64::MAX - 1));
    }
}
