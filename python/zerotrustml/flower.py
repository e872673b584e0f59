"""ZeroTrustML in Flower: a strategy for Flower 1.42's Message API that aggregates with our rules.

One line in a Flower ``ServerApp`` adds Byzantine resilience::

    from zerotrustml.flower import ZeroTrustStrategy

    strategy = ZeroTrustStrategy(rule="pipeline", num_malicious_nodes=2)   # instead of FedAvg()
    result = strategy.start(grid=grid, initial_arrays=arrays, num_rounds=10)

It is Flower's ``FedAvg`` (sampling, configuration, evaluation and metrics unchanged) with
``aggregate_train`` replaced: each reply's arrays become the client's update (its arrays minus the global
model the round sent), the updates are aggregated by ``rule``, and the new global model is the old one plus
that aggregate. ``rule`` is one of :data:`zerotrustml.defence.ALL_DEFENCES` or a registered aggregator
plug-in:

- a plain rule (``multi_krum``, ``median``, ``trimmed_mean``, ``bulyan``, ``centered_clipping``, ...)
  runs as in the simulator, ``num_malicious_nodes`` being its ``f``;
- ``pipeline`` runs the pipeline's server-side stages: the similarity statistics, the reputation ledger
  kept across rounds by Flower node id, and the clipped, reputation-weighted mean of what was kept. The
  stages that need the clients' cooperation (signed quality proofs, the committee) need ZeroTrustML's own
  clients and are not part of a plain Flower run.

Every round's decision is in :attr:`ZeroTrustStrategy.rounds` (node ids kept and flagged, and the metrics
each node sent), and the train metrics carry ``zerotrustml-flagged``, the number of replies left out.
Requires ``flwr`` (``pip install 'zerotrustml[flower]'``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

try:
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
    from flwr.serverapp import Grid
    from flwr.serverapp.strategy import FedAvg
except ImportError as e:  # pragma: no cover - the extra is part of make test
    raise ImportError(f"zerotrustml.flower needs Flower: pip install 'zerotrustml[flower]' ({e})") from e

from zerotrustml import defence
from zerotrustml.defence import detection
from zerotrustml.defence.config import DefenceConfig
from zerotrustml.defence.pipeline import trusted_mean
from zerotrustml.defence.reputation import ReputationLedger
from zerotrustml.exceptions import ParameterError, ShapeError

__all__ = ["FlowerRound", "ZeroTrustStrategy"]

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class FlowerRound:
    """What :class:`ZeroTrustStrategy` decided in one round."""

    server_round: int
    nodes: list[int]
    kept: list[int]
    flagged: list[int]
    reasons: dict[int, list[str]] = field(default_factory=dict)
    metrics: dict[int, dict[str, Any]] = field(default_factory=dict)


class ZeroTrustStrategy(FedAvg):
    """Flower's FedAvg with ZeroTrustML's robust aggregation and detection (see the module docstring).

    Parameters
    ----------
    rule
        ``pipeline`` (default) or any other defence name (:func:`zerotrustml.defence.defence_names`).
    num_malicious_nodes
        The ``f`` the rule assumes (the similarity statistics' for ``pipeline``).
    defence_config
        The pipeline's settings (default: :class:`DefenceConfig` defaults).
    **kwargs
        Passed to Flower's ``FedAvg`` (``fraction_train``, ``min_train_nodes``, ``weighted_by_key``, ...).
    """

    def __init__(
        self,
        rule: str = "pipeline",
        num_malicious_nodes: int = 0,
        *,
        defence_config: DefenceConfig | None = None,
        **kwargs: Any,
    ) -> None:
        if rule not in defence.defence_names():
            raise ParameterError(f"rule: unknown name {rule!r}; choose one of {', '.join(defence.defence_names())}")
        if isinstance(num_malicious_nodes, bool) or not isinstance(num_malicious_nodes, int) or num_malicious_nodes < 0:
            raise ParameterError(f"num_malicious_nodes: must be an integer >= 0, got {num_malicious_nodes!r}")
        super().__init__(**kwargs)
        self.rule = rule
        self.num_malicious_nodes = num_malicious_nodes
        self.defence_config = defence_config or DefenceConfig()
        self.ledger = ReputationLedger(self.defence_config)
        self.rounds: list[FlowerRound] = []
        self._global: list[np.ndarray] | None = None
        self._previous: F32 | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """As FedAvg, remembering the global model the round sends (updates are measured from it)."""
        self._global = [np.asarray(a) for a in arrays.to_numpy_ndarrays()]
        self._keys = list(arrays.keys())
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate the replies' updates with the rule; flagged replies count neither in the model nor in
        the metrics."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid or self._global is None:
            return None, None
        nodes = [int(msg.metadata.src_node_id) for msg in valid]
        contents = [msg.content for msg in valid]
        shapes = [g.shape for g in self._global]
        flat_global = np.concatenate([g.ravel() for g in self._global]).astype(np.float64)
        rows = []
        for node, content in zip(nodes, contents, strict=True):
            parts = [np.asarray(a) for a in content.array_records[self.arrayrecord_key].to_numpy_ndarrays()]
            if [p.shape for p in parts] != shapes:
                raise ShapeError(
                    f"node {node}: sent arrays of shapes {[p.shape for p in parts]}, the model has {shapes}"
                )
            rows.append(np.concatenate([p.ravel() for p in parts]).astype(np.float64) - flat_global)
        updates = np.stack(rows).astype(np.float32)
        counts = [int(_number(c.metric_records[_metric_key(c)][self.weighted_by_key])) for c in contents]
        if self.rule == "pipeline":
            vector, flagged, reasons = self._pipeline(server_round, nodes, updates, counts)
        else:
            verdict = defence.apply(self.rule, updates, self.num_malicious_nodes, center=self._previous, weights=counts)
            vector, flagged, reasons = verdict.vector, [bool(x) for x in verdict.flagged], {}
        self._previous = vector
        new_flat = flat_global + vector.astype(np.float64)
        new_parts, at = [], 0
        for shape, g in zip(shapes, self._global, strict=True):
            size = int(np.prod(shape))
            new_parts.append(new_flat[at : at + size].reshape(shape).astype(g.dtype))
            at += size
        kept = [i for i, fl in enumerate(flagged) if not fl]
        self.rounds.append(
            FlowerRound(
                server_round,
                nodes,
                kept=[nodes[i] for i in kept],
                flagged=[nodes[i] for i in range(len(nodes)) if flagged[i]],
                reasons={nodes[i]: r for i, r in reasons.items()},
                metrics={n: dict(c.metric_records[_metric_key(c)]) for n, c in zip(nodes, contents, strict=True)},
            )
        )
        metrics = self.train_metrics_aggr_fn([contents[i] for i in kept], self.weighted_by_key) if kept else None
        metrics = metrics if metrics is not None else MetricRecord({})
        metrics["zerotrustml-flagged"] = len(nodes) - len(kept)
        return ArrayRecord(dict(zip(self._keys, map(_array, new_parts), strict=True))), metrics

    def _pipeline(
        self, server_round: int, nodes: list[int], updates: F32, counts: list[int]
    ) -> tuple[F32, list[bool], dict[int, list[str]]]:
        ids = [str(n) for n in nodes]
        n = len(ids)
        flagged = [False] * n
        reasons: dict[int, list[str]] = {}
        if n >= 3:
            ev = detection.similarity_evidence(
                updates, self._previous, min(self.num_malicious_nodes, n - 1), self.defence_config
            )
            sim = detection.flag(ev, self.defence_config)
            for i in range(n):
                if sim.flagged[i]:
                    flagged[i] = True
                    reasons.setdefault(i, []).extend(sim.reasons[i])
        self.ledger.update(server_round, dict(zip(ids, flagged, strict=True)))
        for i, nid in enumerate(ids):
            if self.ledger.excluded(nid) and not flagged[i]:
                flagged[i] = True
                reasons.setdefault(i, []).append(f"reputation {self.ledger.score(nid):.2f} below exclusion threshold")
        kept = [i for i in range(n) if not flagged[i]]
        if not kept:
            return np.zeros(updates.shape[1], dtype=np.float32), flagged, reasons  # nothing trusted: no step
        vector, _ = trusted_mean(
            updates[kept], [counts[i] for i in kept], [self.ledger.score(ids[i]) for i in kept], self.defence_config
        )
        return vector, flagged, reasons


def _metric_key(content: Any) -> str:
    keys = list(content.metric_records.keys())
    if len(keys) != 1:
        raise ParameterError(f"a reply must carry one MetricRecord, got {len(keys)}")
    return str(keys[0])


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"a reply's example count must be a number, got {value!r}")
    return float(value)


def _array(a: np.ndarray) -> Any:
    from flwr.app import Array

    return Array(a)
