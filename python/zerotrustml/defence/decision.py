"""A round's decision from what one agent holds: which updates count, and the aggregate they make.

The simulator, the HTTP service and every agent reading the DHT decide a round with :func:`decide_round`, so
one rule set means one result wherever it is computed. The decision sees node ids, payloads, proofs, claimed
example counts and the committee's votes; never which nodes are Byzantine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from zerotrustml import aggregators
from zerotrustml.defence import pipeline, rules
from zerotrustml.defence.config import DefenceConfig
from zerotrustml.defence.reputation import ReputationLedger
from zerotrustml.exceptions import EmptyInputError, PreconditionError
from zerotrustml.validation import Submission

__all__ = ["RoundDecision", "decide_round", "no_votes"]

F32 = npt.NDArray[np.float32]


@dataclass
class RoundDecision:
    """One agent's result of a round."""

    aggregate: F32
    kept: list[str]
    flagged: set[str]
    evidence: dict[str, Any]
    ledger: dict[str, Any] | None


def no_votes(members: Sequence[str], subs: Sequence[Submission]) -> list[Any]:
    """The vote source of a decider without a committee (``committee=False``): no member, no vote."""
    return []


def decide_round(
    round: int,
    stored: Sequence[Submission],
    rejected: Mapping[str, str],
    *,
    aggregator: str,
    f: int,
    seed: int,
    dims: int,
    defence_config: DefenceConfig,
    keys: Mapping[str, bytes],
    ledger: Mapping[str, Any] | None,
    previous: F32 | None,
    votes: pipeline.VoteSource,
    federation_size: int,
    committee: bool = True,
) -> RoundDecision:
    """Decide round ``round`` from its stored submissions (in the order given) and the rejected node ids.

    ``aggregator`` is ``pipeline`` or a plain rule (:func:`zerotrustml.defence.apply`); ``ledger`` is the
    reputation state so far (``None`` before the first round) and comes back updated in the decision. A plain
    rule whose precondition the round breaks (too many rejections) falls back to the median, and the evidence
    says so. With nothing stored the aggregate is zero: no step. ``committee=False`` runs the pipeline without
    its committee stage (a decider whose nodes cast no votes, as the HTTP service): nobody is drawn, so an
    absent vote never counts as a rejection.
    """
    ids = [sub.node_id for sub in stored]
    flagged_ids = set(rejected)
    kept_ids: list[str] = []
    evidence: dict[str, Any] = {"rejected": dict(rejected)}
    ledger_state = None if ledger is None else dict(ledger)
    if ids and aggregator == "pipeline":
        book = ReputationLedger(defence_config)
        if ledger is not None:
            book = ReputationLedger.from_state(defence_config, ledger)
        pv = pipeline.run_round(
            round,
            stored,
            config=defence_config,
            keys=keys,
            ledger=book,
            votes=votes,
            seed=seed,
            f=f,
            previous=previous,
            seen_nonces=set(),
            committee_rate=pipeline.lottery_rate(defence_config, federation_size) if committee else 0.0,
        )
        ledger_state = book.state()
        aggregate = pv.vector
        kept_ids = pv.kept
        flagged_ids |= set(pv.flagged)
        evidence.update(pv.evidence)
    elif ids:
        matrix = np.stack([np.asarray(sub.values, dtype=np.float32) for sub in stored])
        # Claimed counts weigh at most DEFAULT_EXAMPLE_CAP times the median (the DHT's validators agree).
        weights = aggregators.example_weights([sub.example_count for sub in stored])
        f_eff = min(f, max(0, (len(ids) - 1) // 2))
        try:
            verdict = rules.apply(aggregator, matrix, f_eff, center=previous, weights=weights)
        except (PreconditionError, EmptyInputError) as e:  # too many rejections broke the rule's precondition
            evidence["aggregate_error"] = str(e)
            verdict = rules.apply("median", matrix, 0)
        aggregate = verdict.vector
        kept_ids = [nid for nid, k in zip(ids, verdict.kept, strict=True) if k]
        flagged_ids |= {nid for nid, fl in zip(ids, verdict.flagged, strict=True) if fl}
        evidence.update(verdict.evidence)
        evidence["scores"] = {nid: float(v) for nid, v in zip(ids, verdict.scores, strict=False)}
    else:
        aggregate = np.zeros(dims, dtype=np.float32)
    return RoundDecision(np.asarray(aggregate, dtype=np.float32), kept_ids, flagged_ids, evidence, ledger_state)
