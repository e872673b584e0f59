"""Robust aggregation rules, computed in Rust (``zerotrustml._core``).

Every function takes the updates as one ``(n_updates, n_params)`` float32 or
float64 array (used without a copy when C-contiguous) or as a list of 1-D
arrays, never mutates them, releases the GIL while computing, and returns an
:class:`AggregationResult` (or :class:`MixedUpdates` for the transforms
``nnm`` and ``bucketing``). The definitions are pinned in DESIGN.md; each
docstring restates its own. Notation: ``n`` updates ``x_1..x_n`` of dimension
``d``; ``f`` is the assumed number of Byzantine updates.

Bad input raises a :class:`~zerotrustml.exceptions.ValidationError` subclass
(a ``ValueError``) or a ``TypeError`` whose message names the parameter.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from zerotrustml import _core
from zerotrustml.exceptions import ParameterError, ShapeError

FloatArray = npt.NDArray[np.floating[Any]]
Updates = FloatArray | Sequence[npt.ArrayLike]
KrumVariant = Literal["standard", "byzfl"]

__all__ = [
    "AggregationResult",
    "MixedUpdates",
    "mean",
    "example_weights",
    "DEFAULT_EXAMPLE_CAP",
    "krum",
    "multi_krum",
    "median",
    "trimmed_mean",
    "bulyan",
    "geometric_median",
    "centered_clipping",
    "nnm",
    "bucketing",
    "gram_distances",
    "simd_path",
    "set_simd_path",
    "RULES",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class AggregationResult:
    """An aggregate and the evidence detection needs.

    Attributes
    ----------
    vector : ndarray, shape (d,)
        The aggregate, in the dtype of the updates.
    selected : tuple of int
        Indices of the selected updates, in selection order (empty for rules
        that do not select).
    scores : ndarray of float64, shape (n,) or empty
        Per-update scores: Krum scores, Weiszfeld weights, clipping factors.
    iterations : int
        Iterations of an iterative rule (0 otherwise).
    rule : str
        The rule's name.
    """

    vector: FloatArray
    selected: tuple[int, ...]
    scores: npt.NDArray[np.float64]
    iterations: int
    rule: str

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None) -> FloatArray:
        return np.asarray(self.vector, dtype=dtype)


@dataclass(frozen=True)
class MixedUpdates:
    """Updates transformed before a robust rule.

    Attributes
    ----------
    updates : ndarray, shape (len(groups), d)
        Row ``g`` is the mean of the input updates ``groups[g]``.
    groups : tuple of tuple of int
        The input indices behind each row.
    """

    updates: FloatArray
    groups: tuple[tuple[int, ...], ...]


def _prepare(updates: Updates) -> FloatArray | list[FloatArray]:
    """Checks container, dtype and rank; copies only non-contiguous arrays."""
    if isinstance(updates, np.ndarray):
        if updates.ndim != 2:
            raise ShapeError(
                f"updates: expected a 2-D array of shape (n_updates, n_params), got {updates.ndim}-D "
                f"shape {updates.shape}"
            )
        if updates.dtype not in _FLOATS:
            raise TypeError(f"updates: dtype must be float32 or float64, got {updates.dtype}")
        return np.ascontiguousarray(updates)
    if isinstance(updates, (list, tuple)):
        rows: list[FloatArray] = []
        for i, u in enumerate(updates):
            a = u if isinstance(u, np.ndarray) else np.asarray(u, dtype=np.float64)
            if a.dtype not in _FLOATS:
                raise TypeError(f"updates[{i}]: dtype must be float32 or float64, got {a.dtype}")
            if a.ndim != 1:
                raise ShapeError(f"updates[{i}]: expected a 1-D array, got shape {a.shape}")
            rows.append(np.ascontiguousarray(a))
        if len({r.dtype for r in rows}) > 1:
            raise TypeError("updates: all arrays must have the same dtype (float32 or float64)")
        return rows
    raise TypeError(f"updates: expected a 2-D numpy array or a list of 1-D arrays, got {type(updates).__name__}")


_USIZE_MAX = 2**64 - 1  # counts cross into Rust as usize (64-bit builds only)


def _count(name: str, value: object, minimum: int = 0, maximum: int = _USIZE_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not minimum <= int(value) <= maximum:
        raise ParameterError(f"{name}: must be an integer in [{minimum}, {maximum}], got {value!r}")
    return int(value)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{name}: must be a real number, got {value!r}")
    return float(value)


def _weights(weights: npt.ArrayLike | None) -> list[float] | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1:
        raise ShapeError(f"weights: expected a 1-D sequence, got shape {w.shape}")
    return [float(v) for v in w]


def _result(rule: str, raw: tuple[FloatArray, list[int], npt.NDArray[np.float64], int]) -> AggregationResult:
    vector, selected, scores, iterations = raw
    return AggregationResult(vector, tuple(selected), scores, iterations, rule)


def _mixed(raw: tuple[FloatArray, list[list[int]]]) -> MixedUpdates:
    rows, groups = raw
    return MixedUpdates(rows, tuple(tuple(g) for g in groups))


def mean(updates: Updates, weights: npt.ArrayLike | None = None) -> AggregationResult:
    """Mean of the updates, weighted when ``weights`` is given.

    ``sum_i w_i x_i / sum_i w_i`` (plain mean without weights), accumulated in
    float64. Pass example counts as weights for FedAvg.

    Parameters
    ----------
    updates : (n, d) array or list of n 1-D arrays
    weights : sequence of n non-negative floats, not all zero, optional

    Raises
    ------
    ValidationError
        Empty or ragged updates, NaN/Inf, bad weights.
    """
    return _result("mean", _core.mean(_prepare(updates), _weights(weights)))


#: How far above the median example count a submission's claim may weigh (see :func:`example_weights`).
DEFAULT_EXAMPLE_CAP: float = _core.DEFAULT_EXAMPLE_CAP


def example_weights(counts: npt.ArrayLike, cap: float = DEFAULT_EXAMPLE_CAP) -> npt.NDArray[np.float64]:
    """FedAvg weights from claimed example counts, each capped at ``cap`` times the median count.

    A count is a claim nobody can check; uncapped, one submission claiming 2^64-1 examples would decide the
    mean. The DHT's validators apply the same rule (``example_cap`` in the DNA properties) when they recompute
    a ``mean`` aggregate, so both sides weigh a round identically.

    Raises
    ------
    ParameterError
        ``cap`` not finite or below 1; counts not non-negative integers.
    """
    arr = np.asarray(counts)
    if arr.ndim != 1 or (arr.size and (not np.issubdtype(arr.dtype, np.integer) or int(arr.min()) < 0)):
        raise ParameterError("counts: must be a 1-D sequence of non-negative integers")
    return np.asarray(_core.capped_example_weights([int(c) for c in arr], float(cap)), dtype=np.float64)


def krum(updates: Updates, f: int, variant: KrumVariant = "standard") -> AggregationResult:
    """Krum (Blanchard et al. 2017).

    ``score(i)`` is the sum of the ``k`` smallest squared L2 distances from
    ``x_i`` to the others, ``k = n - f - 2`` (``variant="byzfl"``: ``n - f - 1``,
    as ByzFL counts). Returns the update with the lowest score, ties to the
    lowest index; ``scores`` holds every score. Distances use the Gram form
    with float64 accumulation; a selection the Gram form leaves in doubt is
    re-decided with exact distances.

    Raises
    ------
    PreconditionError
        Unless ``n >= 2f + 3``.
    """
    return _result("krum", _core.krum(_prepare(updates), _count("f", f), variant))


def multi_krum(updates: Updates, f: int, m: int | None = None, variant: KrumVariant = "standard") -> AggregationResult:
    """Multi-Krum: the ``m`` updates with the lowest Krum scores, averaged with equal weights.

    ``m`` defaults to ``n - f``. ``selected`` lists them by score, then index.

    Raises
    ------
    PreconditionError
        Unless ``n >= 2f + 3``.
    ParameterError
        Unless ``1 <= m <= n``.
    """
    prepared = _prepare(updates)
    f = _count("f", f)
    n = len(prepared)
    mm = max(n - f, 1) if m is None else _count("m", m, 1)
    return _result("multi_krum", _core.multi_krum(prepared, f, mm, variant))


def median(updates: Updates) -> AggregationResult:
    """Coordinate-wise median (the mean of the two middle values for even ``n``)."""
    return _result("median", _core.median(_prepare(updates)))


def trimmed_mean(updates: Updates, f: int) -> AggregationResult:
    """Trimmed mean: per coordinate, drop the ``f`` largest and ``f`` smallest values, average the rest.

    ``f`` counts values per side (Flower trims a proportion instead:
    ``proportiontocut = f / n``).

    Raises
    ------
    PreconditionError
        Unless ``n > 2f``.
    """
    return _result("trimmed_mean", _core.trimmed_mean(_prepare(updates), _count("f", f)))


def bulyan(updates: Updates, f: int) -> AggregationResult:
    """Bulyan (El Mhamdi et al. 2018).

    Iterated Krum selects ``theta = n - 2f`` updates: each step scores the
    remaining pool with ``k = max(1, |pool| - f - 2)`` neighbours and removes
    the winner. Then, per coordinate, the ``beta = theta - 2f`` selected values
    closest to their median are averaged (the lower value wins a tie).
    ``selected`` lists the theta updates in selection order; ``scores`` their
    Krum scores when chosen.

    Raises
    ------
    PreconditionError
        Unless ``n >= 4f + 3``.
    """
    return _result("bulyan", _core.bulyan(_prepare(updates), _count("f", f)))


def geometric_median(
    updates: Updates,
    weights: npt.ArrayLike | None = None,
    nu: float = 1e-6,
    tol: float = 1e-7,
    max_iter: int = 100,
) -> AggregationResult:
    """Geometric median by smoothed Weiszfeld iterations (Pillutla et al., RFA).

    From the (weighted) mean, iterate ``z <- sum_i b_i x_i / sum_i b_i`` with
    ``b_i = w_i / max(nu, ||x_i - z||)`` until ``||z' - z|| <= tol * (1 + ||z||)``
    or ``max_iter`` iterations. ``scores`` are the final ``b_i``, normalised to
    sum to one.
    """
    return _result(
        "geometric_median",
        _core.geometric_median(
            _prepare(updates),
            _weights(weights),
            _number("nu", nu),
            _number("tol", tol),
            _count("max_iter", max_iter, 1),
        ),
    )


def centered_clipping(
    updates: Updates, tau: float, iters: int = 1, center: npt.ArrayLike | None = None
) -> AggregationResult:
    """Centered clipping (Karimireddy, He & Jaggi 2021).

    From the centre ``v`` (the previous aggregate or momentum; zeros when not
    given, as ByzFL does), repeat ``iters`` times
    ``v <- v + (1/n) sum_i (x_i - v) min(1, tau / ||x_i - v||)``.
    ``scores`` are the clipping factors of the last iteration.
    """
    c = None if center is None else [float(v) for v in np.asarray(center, dtype=np.float64).ravel()]
    return _result(
        "centered_clipping",
        _core.centered_clipping(_prepare(updates), _number("tau", tau), _count("iters", iters, 1), c),
    )


def nnm(updates: Updates, f: int) -> MixedUpdates:
    """Nearest-neighbour mixing (Allouah et al. 2023).

    Each ``x_i`` is replaced by the mean of its ``n - f`` nearest neighbours,
    itself included (distance ties to the lowest index). Feed the result to a
    robust rule, e.g. ``krum(nnm(x, f).updates, f)``.

    Raises
    ------
    PreconditionError
        Unless ``n > f``.
    """
    return _mixed(_core.nnm(_prepare(updates), _count("f", f)))


def bucketing(updates: Updates, s: int, seed: int = 0) -> MixedUpdates:
    """Bucketing (Karimireddy, He & Jaggi 2022).

    A seeded random permutation (SplitMix64, Fisher-Yates; identical on every
    platform) is cut into buckets of ``s`` consecutive updates, the last one
    possibly smaller; each bucket becomes its mean.
    """
    return _mixed(_core.bucketing(_prepare(updates), _count("s", s, 1), _count("seed", seed)))


def gram_distances(updates: Updates) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Squared distances through the Gram matrix, and a bound on their error.

    Returns ``(D, E)`` with ``D[i, j] = max(0, G_ii + G_jj - 2 G_ij)`` and
    ``|D[i, j] - exact| <= E[i, j]``.
    """
    return _core.gram_distances(_prepare(updates))


def simd_path() -> str:
    """The instruction set the kernels use: 'avx512', 'avx2' or 'scalar'."""
    return _core.simd_path()


def set_simd_path(name: Literal["scalar", "avx2", "avx512"]) -> str:
    """Forces an instruction set (never above what the CPU has); returns the one taken.

    Results are identical on every path except the reported Gram-form scores,
    which stay within their error bound. ``ZEROTRUSTML_SIMD`` sets it at start.
    """
    return _core.set_simd_path(name)


RULES = ("mean", "krum", "multi_krum", "median", "trimmed_mean", "bulyan", "geometric_median", "centered_clipping")
