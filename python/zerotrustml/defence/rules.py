"""Robust rules as defences: the aggregate plus a verdict per update.

A defence sees only the round's updates (never which nodes are Byzantine)
and returns the aggregate, the rows it kept and the evidence behind it.
What "flagged" means per rule (DESIGN.md: excluded, or down-weighted below
the exclusion threshold):

- krum, multi_krum, bulyan: every update the rule did not select;
- geometric_median: updates whose final Weiszfeld weight is below
  ``DOWNWEIGHT_FLAG`` times the uniform weight ``1/n``;
- centered_clipping: updates whose clipping factor is below
  ``DOWNWEIGHT_FLAG`` (scaled to less than that share of their length);
- mean, median, trimmed_mean: none (they do not single out updates; median
  and trimmed mean drop values per coordinate, not nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from zerotrustml import aggregators, plugins
from zerotrustml.exceptions import NonFiniteError, ParameterError, PreconditionError, ShapeError

#: The plain robust rules, as :mod:`zerotrustml.aggregators` names them.
DEFENCES = aggregators.RULES

#: Every defence ``zerotrustml run --aggregator`` accepts: the plain rules and the full pipeline
#: (:mod:`zerotrustml.defence.pipeline`, which the simulator runs itself).
ALL_DEFENCES = DEFENCES + ("pipeline",)

#: Share of the uniform weight (or of the length, for clipping) below which an update counts as flagged.
DOWNWEIGHT_FLAG = 0.5

# n >= minimum(f) for each rule that has a precondition; checked before a run starts.
_NEEDS: dict[str, tuple[str, Any]] = {
    "krum": ("n >= 2f + 3", lambda n, f: n >= 2 * f + 3),
    "multi_krum": ("n >= 2f + 3", lambda n, f: n >= 2 * f + 3),
    "bulyan": ("n >= 4f + 3", lambda n, f: n >= 4 * f + 3),
    "trimmed_mean": ("n > 2f", lambda n, f: n > 2 * f),
}


@dataclass(frozen=True)
class Verdict:
    """What a defence did with one round.

    Attributes
    ----------
    vector : ndarray, float32 (d,)
        The aggregate update.
    kept : ndarray of bool (n,)
        Rows the aggregate was built from (all rows for non-selecting rules).
    flagged : ndarray of bool (n,)
        Rows the defence excluded or down-weighted below the threshold.
    scores : ndarray of float64 (n,) or empty
        The rule's per-row scores (Krum scores, Weiszfeld weights, clipping factors).
    evidence : dict
        JSON-able details for the round record.
    """

    vector: npt.NDArray[np.float32]
    kept: npt.NDArray[np.bool_]
    flagged: npt.NDArray[np.bool_]
    scores: npt.NDArray[np.float64]
    evidence: dict[str, Any] = field(default_factory=dict)


def defence_names() -> tuple[str, ...]:
    """Every defence by name: the built-in ones, then the registered plug-ins (:mod:`zerotrustml.plugins`)."""
    return ALL_DEFENCES + plugins.names("aggregator")


def check_precondition(rule: str, n: int, f: int) -> None:
    """Raise ``PreconditionError`` now, not mid-run, when ``rule`` cannot run on ``n`` updates with ``f`` assumed."""
    plugin = None if rule in ALL_DEFENCES else plugins.get("aggregator", rule)
    if plugin is not None:
        reason = plugin.precondition(n, f) if plugin.precondition is not None else None
        if reason:
            raise PreconditionError(f"{rule}: {reason} (got n={n}, f={f}); lower --byzantine-fraction or --assumed-f")
        return
    if rule not in ALL_DEFENCES:
        raise ParameterError(f"aggregator: unknown name {rule!r}; choose one of {', '.join(defence_names())}")
    need = _NEEDS.get(rule)
    if need is not None and not need[1](n, f):
        raise PreconditionError(f"{rule} needs {need[0]} (got n={n}, f={f}); lower --byzantine-fraction or --assumed-f")


def _from_plugin(rule: str, out: Any, n: int, d: int) -> Verdict:
    vector, kept_rows = out if isinstance(out, tuple) and len(out) == 2 else (out, range(n))
    try:
        v = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ParameterError(f"aggregator plug-in {rule!r}: did not return an array of numbers ({e})") from None
    if v.shape != (d,):
        raise ShapeError(f"aggregator plug-in {rule!r}: must return a vector of shape ({d},), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise NonFiniteError(f"aggregator plug-in {rule!r}: returned non-finite values")
    kept = np.zeros(n, dtype=bool)
    for i in kept_rows:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < n:
            raise ParameterError(f"aggregator plug-in {rule!r}: kept row {i!r} is not in [0, {n})")
        kept[int(i)] = True
    return Verdict(v.astype(np.float32), kept, ~kept, np.zeros(0), {"plugin": rule})


def apply(
    rule: str,
    updates: npt.NDArray[np.float32],
    f: int,
    *,
    center: npt.NDArray[np.float32] | None = None,
    weights: npt.ArrayLike | None = None,
) -> Verdict:
    """Aggregate one round's ``(n, d)`` updates with ``rule``, assuming ``f`` Byzantine.

    ``center`` is the previous round's aggregate, used by centered clipping
    (the coordinate median when there is none yet). ``weights`` (example
    counts) weight the mean, as DESIGN.md pins it; the robust rules ignore
    them, since a count is the sender's own claim.
    """
    check_precondition(rule, updates.shape[0], f)
    n = updates.shape[0]
    plugin = None if rule in ALL_DEFENCES else plugins.get("aggregator", rule)
    if plugin is not None:
        return _from_plugin(rule, plugin.fn(updates, f), n, updates.shape[1])
    every = np.ones(n, dtype=bool)
    none = np.zeros(n, dtype=bool)
    if rule == "mean":
        res = aggregators.mean(updates, weights=weights)
        return Verdict(res.vector.astype(np.float32), every, none, res.scores)
    if rule in ("krum", "multi_krum", "bulyan"):
        if rule == "krum":
            res = aggregators.krum(updates, f)
        elif rule == "multi_krum":
            res = aggregators.multi_krum(updates, f)
        else:
            res = aggregators.bulyan(updates, f)
        kept = np.zeros(n, dtype=bool)
        kept[list(res.selected)] = True
        return Verdict(res.vector.astype(np.float32), kept, ~kept, res.scores, {"selected": list(res.selected)})
    if rule == "median":
        res = aggregators.median(updates)
        return Verdict(res.vector.astype(np.float32), every, none, res.scores)
    if rule == "trimmed_mean":
        res = aggregators.trimmed_mean(updates, f)
        return Verdict(res.vector.astype(np.float32), every, none, res.scores)
    if rule == "geometric_median":
        res = aggregators.geometric_median(updates)
        low = res.scores < DOWNWEIGHT_FLAG / n
        return Verdict(res.vector.astype(np.float32), ~low, low, res.scores, {"iterations": res.iterations})
    # centered_clipping: centre at the previous aggregate; radius the median distance to it, so
    # honest updates (the majority) pass unclipped and outliers are pulled in.
    c = aggregators.median(updates).vector if center is None else center
    tau = float(np.median(np.linalg.norm(updates - c, axis=1)))
    res = aggregators.centered_clipping(updates, tau=max(tau, 1e-12), iters=3, center=c)
    low = res.scores < DOWNWEIGHT_FLAG
    return Verdict(res.vector.astype(np.float32), ~low, low, res.scores, {"tau": tau})
