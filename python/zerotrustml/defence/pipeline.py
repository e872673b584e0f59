"""The full defence: validation -> proofs -> similarity -> committee -> reputation -> aggregation.

One round, given what the backend holds (submissions that passed the shared
validation rules) and the signed committee votes:

1. **Proofs.** Each submission's edge proof must verify against the node's
   registered key and be bound to its payload hash, round and node; a
   missing, forged or replayed proof flags the node (a proof's claimed
   quality is evidence only: a liar signs its own lies).
2. **Similarity** (:mod:`zerotrustml.defence.detection`): robust statistics of the
   round's updates, with the label-skew cosine band.
3. **Committee** (:mod:`zerotrustml.defence.committee`): the round's committee is
   drawn from the round seed, weighted by reputation, among nodes in good
   standing; members re-score each update on their own held-out data and
   sign a vote. An update is rejected when a strict majority of its
   committee, by head count and by reputation, does not accept it (or its
   pooled score is a low outlier) *and* similarity already finds it
   doubtful (suspicion at least half the flag threshold): the committee
   tips doubtful cases but never condemns alone, because a round whose
   committee drew a Byzantine majority would otherwise flag every honest
   node. DESIGN.md: the committee is not the root of trust.
4. **Reputation** (:mod:`zerotrustml.defence.reputation`): the round's flags update
   each node's reputation; a node below the exclusion threshold is excluded
   whatever this round's evidence says.
5. **Aggregation**: the kept updates, each clipped to ``AGGREGATION_CLIP``
   times the median norm of the kept ones, averaged with weights reputation
   times the example count (the count capped at ``COUNT_CAP`` times the
   round's median, so a node cannot buy unbounded weight by claiming a huge
   dataset; label-skewed honest nodes differ by far less).

A node is flagged in a round when any of 1-4 excludes it. The pipeline sees
node ids, payloads, proofs and votes, never which nodes are Byzantine.

How a member votes (:func:`member_votes`): it scores every update of the
round on its own held-out data by its leave-one-out contribution to the
round's average step (:func:`contributions`) and accepts an update that
does not hurt (score >= ``COMMITTEE_QUALITY_MIN``) or whose score is within
``SIMILARITY_Z_THRESHOLD`` robust deviations of its median score over the
round. The relative test matters under label skew: a member holding two
classes sees many honest updates hurt its loss a little, and must judge
them against each other, not against zero.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import nacl.signing
import numpy as np
import numpy.typing as npt

from zerotrustml import aggregators
from zerotrustml.defence import committee, detection
from zerotrustml.defence.config import DefenceConfig
from zerotrustml.defence.proofs import ProofError, verify_submission_proof
from zerotrustml.defence.reputation import ReputationLedger
from zerotrustml.fl.models import Model
from zerotrustml.validation import Submission

F32 = npt.NDArray[np.float32]

#: Example counts above this multiple of the round's median count no more.
COUNT_CAP = aggregators.DEFAULT_EXAMPLE_CAP

#: Votes for a round: called with the committee and the round's submissions, returns every member's signed votes.
VoteSource = Callable[[Sequence[str], Sequence[Submission]], Sequence[committee.Vote]]


def signing_key(seed: int, node_id: str) -> nacl.signing.SigningKey:
    """A node's deterministic Ed25519 key in a simulation (real nodes generate theirs)."""
    digest = hashlib.blake2b(f"{seed}:{node_id}".encode(), digest_size=32, person=b"zerotrustml-key").digest()
    return nacl.signing.SigningKey(digest)


def committee_seed(seed: int) -> str:
    """The committee lottery's seed for a run (the DNA's ``committee_seed`` when the run is on the DHT)."""
    return f"ztml-committee-{int(seed)}"


def authority_key(seed: int) -> nacl.signing.SigningKey:
    """A simulated federation's authority: its admission key, which also releases the committee beacons.

    Derived from the run's seed so that a run draws the same committees on every backend (the Holochain
    backend closes its network with this key). A real federation generates its key (``zerotrustml admission
    keygen``) and keeps it secret; a simulation's lives on loopback for the run only.
    """
    digest = hashlib.blake2b(f"{int(seed)}".encode(), digest_size=32, person=b"ztml-authority").digest()
    return nacl.signing.SigningKey(digest)


@functools.lru_cache(maxsize=4096)
def round_beacon(seed: int, round: int) -> bytes:
    """The committee beacon of ``round`` in a run: :func:`authority_key`'s signature over the round."""
    from zerotrustml.holochain.admission import issue_beacon

    return issue_beacon(authority_key(seed), committee_seed(seed), round)


def assumed_f(config: DefenceConfig, n: int) -> int:
    """The f the pipeline assumes among ``n`` updates when nobody names one: ``ASSUMED_BYZANTINE_FRACTION`` of them.

    Never the true count, which a real network does not know; a caller who knows f better passes it instead.
    """
    return int(math.floor(config.assumed_byzantine_fraction * max(int(n), 0) + 1e-9))


def lottery_rate(config: DefenceConfig, federation_size: int) -> float:
    """The lottery rate that makes ``config.committee_size`` the expected committee of ``federation_size`` nodes."""
    return min(1.0, config.committee_size / max(int(federation_size), 1))


def member_votes(
    signing_key_of: nacl.signing.SigningKey,
    member: str,
    round: int,
    submissions: Sequence[Submission],
    *,
    model: Model,
    params: F32,
    lr: float,
    x_holdout: npt.ArrayLike,
    y_holdout: npt.ArrayLike,
    config: DefenceConfig,
) -> list[committee.Vote]:
    """An honest member's signed votes on every other node's update of the round (rule in the module docs)."""
    others = [s for s in submissions if s.node_id != member]
    if not others or len(np.asarray(y_holdout)) == 0:
        return []
    q = contributions(model, params, [s.values for s in submissions], lr, x_holdout, y_holdout)
    q = q[[i for i, s in enumerate(submissions) if s.node_id != member]]
    med = float(np.median(q))
    # The floor is a share of the typical magnitude of the scores, not of their median, which can sit near zero.
    typical = float(np.median(np.abs(q)))
    spread = max(1.4826 * float(np.median(np.abs(q - med))), config.similarity_mad_floor * typical, 1e-12)
    bar = min(config.committee_quality_min, med - config.similarity_z_threshold * spread)
    return [
        committee.cast_vote(
            signing_key_of,
            voter=member,
            round=round,
            node_id=s.node_id,
            payload_hash=s.payload_hash,
            quality=float(qi),
            accept=bool(qi >= bar),
        )
        for s, qi in zip(others, q, strict=True)
    ]


def _pooled_quality(qualities: Sequence[float], weights: Sequence[float]) -> float:
    """Reputation-weighted median of the members' scores (a lying minority cannot move it), NaN when none."""
    q = np.asarray(qualities, dtype=np.float64)
    if q.size == 0:
        return float("nan")
    order = np.argsort(q, kind="stable")
    w = np.maximum(np.asarray(weights, dtype=np.float64)[order], 1e-12)
    cum = np.cumsum(w)
    return float(q[order][int(np.searchsorted(cum, 0.5 * cum[-1]))])


def _low_z(values: npt.NDArray[np.float64], mad_floor: float) -> npt.NDArray[np.float64]:
    """How far below the median each value lies, in robust deviations (0 for values above it)."""
    med = float(np.median(values))
    spread = max(1.4826 * float(np.median(np.abs(values - med))), mad_floor * float(np.median(np.abs(values))), 1e-12)
    out: npt.NDArray[np.float64] = np.maximum(med - values, 0.0) / spread
    return out


def contributions(
    model: Model,
    params: npt.ArrayLike,
    updates: Sequence[npt.ArrayLike],
    lr: float,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
) -> npt.NDArray[np.float64]:
    """Each update's leave-one-out contribution to the round, on one member's held-out data.

    ``q_i = (L(theta - lr * mean_without_i) - L(theta - lr * mean)) / L(theta)``: positive when the round's
    step is better with update ``i`` than without it. An update is judged by what it does inside the
    average, at the scale it will have there, not alone at full step: under label skew an honest update
    applied alone overshoots towards its own classes and raises every other member's loss.
    """
    rows = np.stack([np.asarray(u, dtype=np.float64) for u in updates])
    theta = np.asarray(params, dtype=np.float64)
    n = rows.shape[0]
    base = max(float(model.loss(theta, x, y)), 1e-12)
    total = rows.sum(axis=0)
    with_all = float(model.loss(theta - lr * total / n, x, y))
    if n == 1:
        return np.zeros(1)
    out = np.empty(n)
    for i in range(n):
        out[i] = (float(model.loss(theta - lr * (total - rows[i]) / (n - 1), x, y)) - with_all) / base
    return out


def committee_members(
    round: int,
    node_ids: Sequence[str],
    *,
    ledger: ReputationLedger,
    keys: Mapping[str, bytes],
    seed: int,
    rate: float,
) -> list[str]:
    """The committee of a round: the nodes in good standing (of those that submitted) that win the lottery.

    The lottery is the one committee rule (:func:`zerotrustml.defence.committee.committee_member`, seeded by
    the round's beacon, :func:`round_beacon`), over each
    node's registered key; a node this agent has excluded does not count as a member even when drawn.
    :func:`run_round` draws the same committee; callers whose votes travel (the DHT) call this first, let the
    members vote, and hand :func:`run_round` the votes they read back.
    """
    standing = {nid: keys[nid] for nid in node_ids if nid in keys and not ledger.excluded(nid)}
    return committee.select_committee(standing, round, committee_seed(seed), rate, round_beacon(seed, round))


@dataclass
class PipelineVerdict:
    """What the pipeline did with one round."""

    vector: F32
    kept: list[str]
    flagged: list[str]
    committee: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)


def trusted_mean(
    rows: F32, example_counts: Sequence[int], reputations: Sequence[float], config: DefenceConfig
) -> tuple[F32, list[int]]:
    """The pipeline's last stage: the kept rows' mean, weighted by reputation x capped example count, each row
    clipped to ``aggregation_clip`` times the median row norm. Returns the vector and the clipped row indices."""
    weights = aggregators.example_weights(list(example_counts), COUNT_CAP) * np.asarray(reputations, np.float64)
    clipped: list[int] = []
    if config.aggregation_clip > 0:
        # Whatever slipped through moves the average by at most its clipped length: a bound on the
        # damage of an update built to pass every test, at little cost to honest ones of typical size.
        norms = np.linalg.norm(rows.astype(np.float64), axis=1)
        bound = config.aggregation_clip * float(np.median(norms))
        factors = np.where(norms > bound, bound / np.maximum(norms, 1e-300), 1.0)
        rows = (rows * factors[:, None]).astype(np.float32)
        clipped = [j for j, fct in enumerate(factors.tolist()) if fct < 1.0]
    vector = aggregators.mean(rows, weights=weights if weights.sum() > 0 else None).vector.astype(np.float32)
    return vector, clipped


def run_round(
    round: int,
    submissions: Sequence[Submission],
    *,
    config: DefenceConfig,
    keys: Mapping[str, bytes],
    ledger: ReputationLedger,
    votes: VoteSource,
    seed: int,
    f: int,
    previous: F32 | None,
    seen_nonces: set[bytes] | None = None,
    committee_rate: float | None = None,
) -> PipelineVerdict:
    """Run the pipeline on one round's stored submissions and update ``ledger``.

    Parameters
    ----------
    round
        The round.
    submissions
        What the backend holds for the round (already validated).
    config
        The defence configuration.
    keys
        Registered Ed25519 public keys by node id.
    ledger
        Reputation so far; updated in place with this round's flags.
    votes
        Where the committee's signed votes come from (the simulator's members,
        or the DHT).
    seed
        The run's seed (it fixes the committee lottery's seed, :func:`committee_seed`).
    f
        The number of Byzantine nodes the similarity statistics assume.
    previous
        The previous round's aggregate (the similarity reference), if any.
    seen_nonces
        Proof nonces seen so far, for replay detection (updated in place).
    committee_rate
        The lottery rate (:func:`lottery_rate` of the federation's size); default: as if the round's
        submitters were the whole federation.
    """
    ids = [s.node_id for s in submissions]
    n = len(ids)
    reasons: dict[str, list[str]] = {nid: [] for nid in ids}
    flagged = np.zeros(n, dtype=bool)

    # 1. Proofs.
    for i, sub in enumerate(submissions if config.stage_proofs else ()):
        key = keys.get(sub.node_id)
        try:
            if key is None:
                raise ProofError(f"node_id: no registered key for {sub.node_id!r}", field="node_id", code="unknown_key")
            verify_submission_proof(sub, key, seen_nonces=seen_nonces)
        except ProofError as e:
            flagged[i] = True
            reasons[sub.node_id].append(f"proof {e.code}")

    # 2. Similarity (needs three updates for robust statistics).
    evidence: dict[str, Any] = {}
    if n >= 3 and config.stage_similarity:
        matrix = np.stack([np.asarray(s.values, dtype=np.float32) for s in submissions])
        ev = detection.similarity_evidence(matrix, previous, min(f, n - 1), config)
        sim = detection.flag(ev, config)
        for i, nid in enumerate(ids):
            if sim.flagged[i]:
                flagged[i] = True
                reasons[nid].extend(sim.reasons[i])
        evidence["suspicion"] = {nid: float(v) for nid, v in zip(ids, sim.suspicion, strict=True)}
        suspicion = sim.suspicion
    else:
        suspicion = np.zeros(n)
    # The committee tips updates that similarity already finds doubtful; it never condemns one alone,
    # since a round whose committee has a Byzantine majority would otherwise flag every honest node.
    doubtful = suspicion >= 0.5 * config.suspicion_threshold

    # 3. Committee, drawn from the nodes in good standing.
    rate = committee_rate if committee_rate is not None else lottery_rate(config, n)
    if not config.stage_committee:
        rate = 0.0
    members = committee_members(round, ids, ledger=ledger, keys=keys, seed=seed, rate=rate)
    cast = list(votes(members, submissions))
    decisions: dict[str, Any] = {}
    pooled = np.full(n, np.nan)
    for i, sub in enumerate(submissions):
        own = [m for m in members if m != sub.node_id]
        if not own:
            continue
        decision = committee.aggregate_committee_votes(
            [v for v in cast if v.node_id == sub.node_id],
            members=own,
            keys=keys,
            round=round,
            node_id=sub.node_id,
            payload_hash=sub.payload_hash,
        )
        decisions[sub.node_id] = {
            "accepted": decision.accepted,
            "quality": decision.quality,
            "n_accept": decision.n_accept,
            "n_valid": decision.n_valid,
        }
        # A strict majority by head count, and by reputation: members caught lying lose their say.
        accepting = {v.voter for v in decision.votes if v.accept}
        weight = {m: ledger.score(m) for m in own}
        against = sum(w for m, w in weight.items() if m not in accepting)
        decisions[sub.node_id]["reject_weight"] = against / max(sum(weight.values()), 1e-12)
        if not decision.accepted and 2.0 * against > sum(weight.values()) and doubtful[i]:
            flagged[i] = True
            reasons[sub.node_id].append(f"committee {decision.n_accept}/{len(own)} accept")
        pooled[i] = _pooled_quality(
            [v.quality for v in decision.votes], [ledger.score(v.voter) for v in decision.votes]
        )
        decisions[sub.node_id]["pooled_quality"] = None if np.isnan(pooled[i]) else float(pooled[i])

    # The committee's pooled view: the reputation-weighted median member's score, judged against the
    # round's other updates.
    have = ~np.isnan(pooled)
    if have.sum() >= 3:
        z = np.zeros(n)
        z[have] = _low_z(pooled[have], config.similarity_mad_floor)
        for j in np.flatnonzero(have).tolist():
            if z[j] > config.similarity_z_threshold and pooled[j] < config.committee_quality_min and doubtful[j]:
                flagged[j] = True
                reasons[ids[j]].append(f"committee pooled quality {pooled[j]:.4f} is a low outlier (z {z[j]:.1f})")

    # 4. Reputation: this round's flags, then exclusion by standing.
    if config.stage_reputation:
        ledger.update(round, {nid: bool(fl) for nid, fl in zip(ids, flagged, strict=True)})
    for i, nid in enumerate(ids if config.stage_reputation else ()):
        if ledger.excluded(nid) and not flagged[i]:
            flagged[i] = True
            reasons[nid].append(f"reputation {ledger.score(nid):.2f} below exclusion threshold")

    # 5. Aggregate the kept updates, weighted by reputation x capped example count.
    kept = [i for i in range(n) if not flagged[i]]
    if kept:
        rows = np.stack([np.asarray(submissions[i].values, dtype=np.float32) for i in kept])
        vector, clipped = trusted_mean(
            rows,
            [submissions[i].example_count for i in kept],
            [ledger.score(ids[i]) if config.stage_reputation else 1.0 for i in kept],
            config,
        )
        if config.aggregation_clip > 0:
            evidence["clipped"] = [ids[kept[j]] for j in clipped]
    else:
        dims = int(np.asarray(submissions[0].values).shape[0]) if submissions else 0
        vector = np.zeros(dims, dtype=np.float32)  # nothing trusted: no step this round
    evidence.update(
        {
            "committee": members,
            "votes": decisions,
            "reasons": {nid: r for nid, r in reasons.items() if r},
            "reputation": {nid: ledger.score(nid) for nid in ids},
        }
    )
    return PipelineVerdict(
        vector=vector,
        kept=[ids[i] for i in kept],
        flagged=[ids[i] for i in range(n) if flagged[i]],
        committee=list(members),
        evidence=evidence,
    )
