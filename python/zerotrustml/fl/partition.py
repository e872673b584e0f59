"""Seeded partitions of a training set over federated nodes.

``partition_indices`` splits sample indices over ``n_nodes`` nodes by one of
three schemes (``PARTITIONS``); every index goes to exactly one node and the
result depends only on the inputs and ``seed``. ``split_nodes`` applies such a
partition to arrays and sets aside a small held-out part of each node's data.

Bad arguments raise :class:`~zerotrustml.exceptions.ParameterError` naming the
parameter; labels of the wrong rank raise
:class:`~zerotrustml.exceptions.ShapeError` and of a non-integer dtype
``TypeError``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from zerotrustml.exceptions import ParameterError, ShapeError

__all__ = ["PARTITIONS", "NodeData", "partition_indices", "split_nodes"]

PARTITIONS = ("iid", "dirichlet", "shards")
"""Partition schemes accepted by :func:`partition_indices` and :func:`split_nodes`."""

IndexArray = npt.NDArray[np.int64]

# Resampling budget for the Dirichlet minimum-size guarantee. An attempt costs
# O(n_classes * n_nodes) (sizes are checked before indices are built), so this
# bounds the failure path to well under a second.
_DIRICHLET_ATTEMPTS = 1000


@dataclass(frozen=True, eq=False)
class NodeData:
    """One node's share of the training set.

    ``eq=False``: equality and hashing are by identity, since comparing
    array fields element-wise has no single truth value.

    Attributes
    ----------
    x_train : ndarray, shape (n_train, ...)
        Samples the node trains on (a copy; same dtype as the input).
    y_train : ndarray, shape (n_train,)
        Their labels.
    x_holdout : ndarray, shape (n_holdout, ...)
        The node's held-out samples, disjoint from ``x_train`` (used for
        quality proofs).
    y_holdout : ndarray, shape (n_holdout,)
        Their labels.
    """

    x_train: npt.NDArray[Any]
    y_train: npt.NDArray[Any]
    x_holdout: npt.NDArray[Any]
    y_holdout: npt.NDArray[Any]


def _integer(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ParameterError(f"{name}: must be an integer >= {minimum} (got {value!r})")
    return int(value)


def _labels(y: npt.ArrayLike) -> npt.NDArray[np.integer[Any]]:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ShapeError(f"y: expected a 1-D array of labels, got {arr.ndim}-D shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise TypeError(f"y: labels must have an integer dtype, got {arr.dtype}")
    return arr


def _iid(n: int, n_nodes: int, rng: np.random.Generator) -> list[IndexArray]:
    return list(np.array_split(rng.permutation(n).astype(np.int64), n_nodes))


def _dirichlet(
    y: npt.NDArray[np.integer[Any]], n_nodes: int, alpha: float, min_size: int, rng: np.random.Generator
) -> list[IndexArray]:
    n = int(y.shape[0])
    if min_size * n_nodes > n:
        raise ParameterError(
            f"min_size: {n_nodes} nodes of at least {min_size} samples need {min_size * n_nodes}, "
            f"but there are only {n} samples"
        )
    classes, inverse = np.unique(y, return_inverse=True)
    class_sizes = np.bincount(inverse, minlength=classes.size)
    for _ in range(_DIRICHLET_ATTEMPTS):
        # cuts[c, j] = where node j's share of class c ends, in class c's shuffled order
        proportions = rng.dirichlet(np.full(n_nodes, alpha), size=classes.size)
        cuts = (np.cumsum(proportions, axis=1) * class_sizes[:, None]).astype(np.int64)
        cuts[:, -1] = class_sizes  # float rounding must not drop the last samples
        node_sizes = np.diff(cuts, axis=1, prepend=0).sum(axis=0)
        if node_sizes.min() >= min_size:
            break
    else:
        raise ParameterError(
            f"alpha: {_DIRICHLET_ATTEMPTS} Dirichlet(alpha={alpha!r}) draws never gave each of the {n_nodes} nodes "
            f"at least min_size={min_size} of the {n} samples; alpha or n_nodes is too extreme for the data size "
            "(raise alpha, or lower n_nodes or min_size)"
        )
    parts: list[list[IndexArray]] = [[] for _ in range(n_nodes)]
    for c in range(classes.size):
        members = rng.permutation(np.flatnonzero(inverse == c)).astype(np.int64)
        for j, chunk in enumerate(np.split(members, cuts[c, :-1])):
            parts[j].append(chunk)
    return [np.concatenate(p) for p in parts]


def _shards(
    y: npt.NDArray[np.integer[Any]], n_nodes: int, shards_per_node: int, rng: np.random.Generator
) -> list[IndexArray]:
    n = int(y.shape[0])
    n_shards = n_nodes * shards_per_node
    if n_shards > n:
        raise ParameterError(
            f"shards_per_node: {n_nodes} nodes x {shards_per_node} shards = {n_shards} shards, "
            f"more than the {n} samples"
        )
    # Shuffle first so the stable sort by label leaves a random order within each
    # class: a shard holds random samples of its label(s), not the first ones.
    shuffled = rng.permutation(n)
    by_label = shuffled[np.argsort(y[shuffled], kind="stable")].astype(np.int64)
    shards = np.array_split(by_label, n_shards)
    order = rng.permutation(n_shards)
    return [
        np.concatenate([shards[s] for s in order[j * shards_per_node : (j + 1) * shards_per_node]])
        for j in range(n_nodes)
    ]


def partition_indices(
    y: npt.ArrayLike,
    n_nodes: int,
    scheme: str,
    *,
    alpha: float = 0.5,
    shards_per_node: int = 2,
    seed: int = 0,
    min_size: int = 2,
) -> list[npt.NDArray[np.int64]]:
    """Split the sample indices ``0..len(y)-1`` over ``n_nodes`` nodes.

    Schemes:

    - ``"iid"``: a seeded permutation cut into ``n_nodes`` parts whose sizes
      differ by at most one.
    - ``"dirichlet"``: label skew after Hsu et al. (2019): for each class,
      node proportions are drawn from Dirichlet(``alpha`` * ones(n_nodes))
      and the class's shuffled samples are cut accordingly. Small ``alpha``
      gives each node few classes; large ``alpha`` approaches iid. Draws are
      repeated (at most 1000 times) until every node has at least
      ``min_size`` samples.
    - ``"shards"``: McMahan et al. (2017): the samples sorted by label are cut
      into ``n_nodes * shards_per_node`` near-equal shards and each node gets
      ``shards_per_node`` random ones, so it sees few labels.

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Labels (any integer values; only equality matters).
    n_nodes : int
        Number of nodes, in [1, n].
    scheme : {"iid", "dirichlet", "shards"}
        The partition scheme.
    alpha : float, default 0.5
        Dirichlet concentration (``"dirichlet"`` only), finite and > 0.
    shards_per_node : int, default 2
        Shards per node (``"shards"`` only), >= 1, with
        ``n_nodes * shards_per_node <= n``.
    seed : int, default 0
        Seed (>= 0) of all random choices.
    min_size : int, default 2
        Minimum samples per node (``"dirichlet"`` only), >= 0, with
        ``n_nodes * min_size <= n``. The other schemes give every node at
        least ``n // n_nodes`` or one shard's worth.

    Returns
    -------
    list of ndarray of int64
        One array per node of its sample indices, sorted ascending. Together
        they hold every index exactly once.

    Raises
    ------
    ParameterError
        For an unknown scheme, an out-of-range parameter, more nodes (or
        shards) than samples, or a Dirichlet draw that cannot meet
        ``min_size``.
    ShapeError
        When ``y`` is not 1-D.
    TypeError
        When ``y`` does not hold integers.
    """
    labels = _labels(y)
    n = int(labels.shape[0])
    n_nodes = _integer("n_nodes", n_nodes, 1)
    if scheme not in PARTITIONS:
        raise ParameterError(f"scheme: unknown partition {scheme!r}; choose one of {', '.join(PARTITIONS)}")
    # Every parameter is checked whatever the scheme, so a bad value is never silently ignored.
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha) or alpha <= 0:
        raise ParameterError(f"alpha: must be > 0 and finite (got {alpha!r})")
    shards_per_node = _integer("shards_per_node", shards_per_node, 1)
    seed = _integer("seed", seed, 0)
    min_size = _integer("min_size", min_size, 0)
    if n_nodes > n:
        raise ParameterError(f"n_nodes: {n_nodes} nodes but only {n} samples; every node needs at least one")
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = _iid(n, n_nodes, rng)
    elif scheme == "dirichlet":
        parts = _dirichlet(labels, n_nodes, float(alpha), min_size, rng)
    else:
        parts = _shards(labels, n_nodes, shards_per_node, rng)
    return [np.sort(p) for p in parts]


def _holdout_size(m: int, fraction: float) -> int:
    """Held-out samples for a node of m: round(fraction * m), at least 1 when m >= 2, at most m - 1."""
    if fraction == 0.0 or m < 2:
        return 0
    return min(m - 1, max(1, math.floor(fraction * m + 0.5)))


def split_nodes(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    n_nodes: int,
    scheme: str,
    *,
    alpha: float = 0.5,
    shards_per_node: int = 2,
    holdout_fraction: float = 0.1,
    seed: int = 0,
    min_size: int = 2,
) -> list[NodeData]:
    """Partition a training set over nodes, each keeping a small held-out part.

    The nodes' samples are those of :func:`partition_indices` with the same
    arguments. Each node then holds out a seeded random
    ``round(holdout_fraction * m)`` of its ``m`` samples, at least one when
    ``m >= 2`` and ``holdout_fraction > 0``, and never all of them.

    Parameters
    ----------
    x : array_like, shape (n, ...)
        Samples; rows are copied into the nodes, the dtype kept.
    y : array_like of int, shape (n,)
        Labels.
    n_nodes, scheme, alpha, shards_per_node, seed, min_size
        As for :func:`partition_indices`.
    holdout_fraction : float, default 0.1
        Fraction of each node's samples held out, in [0, 1).

    Returns
    -------
    list of NodeData
        One per node, in node order; arrays are fresh copies.

    Raises
    ------
    ParameterError
        As for :func:`partition_indices`, and for ``holdout_fraction``
        outside [0, 1).
    ShapeError
        When ``x`` has no sample axis or a different number of rows than
        ``y`` has labels.
    """
    xs = np.asarray(x)
    ys = _labels(y)
    if xs.ndim == 0 or xs.shape[0] != ys.shape[0]:
        raise ShapeError(f"x: expected {ys.shape[0]} rows (one per label in y), got shape {xs.shape}")
    if (
        isinstance(holdout_fraction, bool)
        or not isinstance(holdout_fraction, numbers.Real)
        or not 0.0 <= holdout_fraction < 1.0
    ):
        raise ParameterError(f"holdout_fraction: must be in [0, 1) (got {holdout_fraction!r})")
    parts = partition_indices(
        ys, n_nodes, scheme, alpha=alpha, shards_per_node=shards_per_node, seed=seed, min_size=min_size
    )
    # A child stream of the seed: the holdout choice never shifts the partition,
    # which stays identical to partition_indices(..., seed=seed).
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)).spawn(1)[0])
    nodes = []
    for idx in parts:
        n_hold = _holdout_size(idx.size, float(holdout_fraction))
        held = np.zeros(idx.size, dtype=bool)
        held[rng.choice(idx.size, size=n_hold, replace=False)] = True
        train_idx, hold_idx = idx[~held], idx[held]
        nodes.append(NodeData(xs[train_idx], ys[train_idx], xs[hold_idx], ys[hold_idx]))
    return nodes
