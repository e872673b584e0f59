"""Every scheme partitions the indices (each exactly once), deterministically per
seed; Dirichlet skew follows alpha, shards limit the labels per node, holdouts
are disjoint and sized as documented, and bad arguments name the parameter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from zerotrustml.exceptions import ParameterError, ShapeError
from zerotrustml.fl.partition import PARTITIONS, NodeData, partition_indices, split_nodes

BALANCED = np.repeat(np.arange(10), 100)  # 1,000 samples, 10 classes of 100


def unbalanced_labels() -> np.ndarray:
    rng = np.random.default_rng(11)
    return rng.choice(np.array([3, 7, 8, 42, -1]), size=523, p=[0.5, 0.2, 0.15, 0.1, 0.05])


def assert_partition(parts: list[np.ndarray], n: int, n_nodes: int) -> None:
    assert len(parts) == n_nodes
    for p in parts:
        assert p.dtype == np.int64 and p.ndim == 1
        assert np.all(np.diff(p) > 0)  # sorted, no repeats within a node
    assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))


def mean_max_class_share(y: np.ndarray, parts: list[np.ndarray]) -> float:
    """Average over nodes of the share of a node's samples in its most frequent class."""
    return float(np.mean([np.unique(y[p], return_counts=True)[1].max() / p.size for p in parts]))


@pytest.mark.parametrize("scheme", PARTITIONS)
@pytest.mark.parametrize(("y", "n_nodes"), [(BALANCED, 10), (unbalanced_labels(), 7), (np.arange(5) % 2, 2)])
def test_every_index_exactly_once(scheme: str, y: np.ndarray, n_nodes: int) -> None:
    parts = partition_indices(y, n_nodes, scheme, seed=3, shards_per_node=2, min_size=1)
    assert_partition(parts, y.size, n_nodes)
    assert all(p.size >= 1 for p in parts)


@pytest.mark.parametrize("scheme", PARTITIONS)
def test_deterministic_per_seed_and_different_across_seeds(scheme: str) -> None:
    y = unbalanced_labels()
    a = partition_indices(y, 6, scheme, seed=5)
    b = partition_indices(list(y), 6, scheme, seed=5)  # any array-like gives the same answer
    c = partition_indices(y, 6, scheme, seed=6)
    for pa, pb in zip(a, b, strict=True):
        assert_array_equal(pa, pb)
    assert any(not np.array_equal(pa, pc) for pa, pc in zip(a, c, strict=True))


def test_iid_sizes_differ_by_at_most_one() -> None:
    parts = partition_indices(np.zeros(103, dtype=np.int64), 10, "iid", seed=1)
    sizes = [p.size for p in parts]
    assert sum(sizes) == 103 and max(sizes) - min(sizes) <= 1
    assert mean_max_class_share(BALANCED, partition_indices(BALANCED, 10, "iid")) < 0.25


def test_single_node_gets_everything() -> None:
    for scheme in PARTITIONS:
        (only,) = partition_indices(BALANCED, 1, scheme, shards_per_node=1)
        assert_array_equal(only, np.arange(BALANCED.size))


def test_dirichlet_skew_follows_alpha() -> None:
    seeds = range(4)

    def share(scheme: str, alpha: float = 0.5) -> float:
        return float(
            np.mean(
                [
                    mean_max_class_share(BALANCED, partition_indices(BALANCED, 10, scheme, alpha=alpha, seed=s))
                    for s in seeds
                ]
            )
        )

    iid, skewed, near_iid = share("iid"), share("dirichlet", 0.1), share("dirichlet", 100.0)
    assert skewed > 0.45 and skewed > 3 * iid
    assert abs(near_iid - iid) < 0.08
    # with alpha = 100 every node sees every class
    for s in seeds:
        for p in partition_indices(BALANCED, 10, "dirichlet", alpha=100.0, seed=s):
            assert np.unique(BALANCED[p]).size == 10


def test_dirichlet_min_size_is_guaranteed() -> None:
    # A single draw meets min_size=10 for 20 nodes at alpha=0.2 only ~40% of the time here.
    for seed in range(5):
        parts = partition_indices(BALANCED, 20, "dirichlet", alpha=0.2, min_size=10, seed=seed)
        assert_partition(parts, BALANCED.size, 20)
        assert min(p.size for p in parts) >= 10


def test_dirichlet_too_extreme_is_a_clear_error() -> None:
    y = np.repeat([0, 1], 10)  # 2 classes, each going almost whole to one node at tiny alpha
    with pytest.raises(ParameterError, match=r"alpha: .*too extreme for the data size"):
        partition_indices(y, 10, "dirichlet", alpha=1e-3, min_size=2)


def test_dirichlet_min_size_impossible_up_front() -> None:
    with pytest.raises(ParameterError, match="min_size: 10 nodes of at least 3 samples need 30, .* only 20"):
        partition_indices(np.zeros(20, dtype=np.int64), 10, "dirichlet", min_size=3)


def test_shards_limit_labels_per_node() -> None:
    y = np.repeat(np.arange(10), 20)  # 20 shards of 10 align with the classes
    for seed in range(5):
        parts = partition_indices(y, 10, "shards", shards_per_node=2, seed=seed)
        assert_partition(parts, y.size, 10)
        assert all(p.size == 20 for p in parts)
        assert all(np.unique(y[p]).size <= 2 for p in parts)
    # which shards a node gets depends on the seed
    a = partition_indices(y, 10, "shards", seed=0)
    b = partition_indices(y, 10, "shards", seed=1)
    assert any(not np.array_equal(pa, pb) for pa, pb in zip(a, b, strict=True))
    one = partition_indices(y, 20, "shards", shards_per_node=1, seed=2)
    assert all(np.unique(y[p]).size == 1 for p in one)


def test_shards_with_shuffled_label_order() -> None:
    rng = np.random.default_rng(0)
    y = rng.permutation(np.repeat(np.arange(5), 30))
    parts = partition_indices(y, 5, "shards", shards_per_node=3, seed=4)
    assert_partition(parts, y.size, 5)
    assert all(np.unique(y[p]).size <= 3 for p in parts)


# ---------------------------------------------------------------------------
# split_nodes and the holdout
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", PARTITIONS)
def test_split_nodes_holdout_disjoint_and_matches_partition(scheme: str) -> None:
    y = unbalanced_labels()
    x = np.stack([np.arange(y.size), y], axis=1).astype(np.float32)  # column 0: the row's own index
    nodes = split_nodes(x, y, 6, scheme, holdout_fraction=0.2, seed=9)
    parts = partition_indices(y, 6, scheme, seed=9)
    assert len(nodes) == 6
    for node, part in zip(nodes, parts, strict=True):
        assert isinstance(node, NodeData)
        train_idx = node.x_train[:, 0].astype(np.int64)
        hold_idx = node.x_holdout[:, 0].astype(np.int64)
        assert not set(train_idx) & set(hold_idx)
        assert_array_equal(np.sort(np.concatenate([train_idx, hold_idx])), part)
        assert_array_equal(node.y_train, y[train_idx])
        assert_array_equal(node.y_holdout, y[hold_idx])
        assert hold_idx.size == max(1, int(np.floor(0.2 * part.size + 0.5)))
        assert node.x_train.dtype == np.float32 and node.x_train.shape[1] == 2


@pytest.mark.parametrize(
    ("n", "n_nodes", "fraction", "holdout"),
    [
        (100, 2, 0.1, 5),  # 10% of 50
        (6, 2, 0.1, 1),  # 0.3 rounds to 0, but a node of >= 2 keeps at least one
        (3, 3, 0.5, 0),  # a node of 1 keeps its sample for training
        (4, 2, 0.5, 1),  # half of 2
        (20, 2, 0.99, 9),  # never all of a node's samples
        (100, 2, 0.0, 0),  # no holdout asked for
        (30, 1, 0.25, 8),  # 7.5 rounds half up
    ],
)
def test_holdout_size(n: int, n_nodes: int, fraction: float, holdout: int) -> None:
    y = np.zeros(n, dtype=np.int64)
    nodes = split_nodes(np.zeros((n, 3)), y, n_nodes, "iid", holdout_fraction=fraction)
    for node in nodes:
        assert node.y_holdout.size == holdout
        assert node.x_holdout.shape == (holdout, 3)
        assert node.y_train.size + holdout == n // n_nodes


def test_split_nodes_deterministic_and_copies() -> None:
    x = np.arange(200.0).reshape(100, 2)
    y = np.arange(100) % 4
    a = split_nodes(x, y, 4, "dirichlet", seed=2)
    b = split_nodes(x, y, 4, "dirichlet", seed=2)
    c = split_nodes(x, y, 4, "dirichlet", seed=3)
    for na, nb in zip(a, b, strict=True):
        assert_array_equal(na.x_train, nb.x_train)
        assert_array_equal(na.x_holdout, nb.x_holdout)
    assert any(not np.array_equal(na.x_train, nc.x_train) for na, nc in zip(a, c, strict=True))
    a[0].x_train[:] = -5.0
    assert x.min() == 0.0  # nodes own copies
    assert b[0].x_train.min() >= 0.0


def test_split_nodes_images_keep_their_shape() -> None:
    x = np.zeros((40, 1, 4, 4), dtype=np.float32)
    nodes = split_nodes(x, np.arange(40) % 2, 4, "iid")
    assert nodes[0].x_train.shape[1:] == (1, 4, 4) and nodes[0].x_holdout.shape[1:] == (1, 4, 4)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_nodes": 0}, r"n_nodes: must be an integer >= 1 \(got 0\)"),
        ({"n_nodes": -3}, "n_nodes: must be an integer >= 1"),
        ({"n_nodes": 2.5}, "n_nodes: must be an integer"),
        ({"n_nodes": True}, "n_nodes: must be an integer"),
        ({"n_nodes": 1001}, "n_nodes: 1001 nodes but only 1000 samples"),
        ({"scheme": "pathological"}, "scheme: unknown partition 'pathological'; choose one of iid, dirichlet, shards"),
        ({"alpha": -1.0}, r"alpha: must be > 0 and finite \(got -1.0\)"),
        ({"alpha": 0.0}, "alpha: must be > 0"),
        ({"alpha": float("inf")}, "alpha: must be > 0 and finite"),
        ({"alpha": float("nan")}, "alpha: must be > 0 and finite"),
        ({"alpha": "0.5"}, "alpha: must be > 0"),
        ({"alpha": -1.0, "scheme": "iid"}, "alpha: must be > 0"),  # checked whatever the scheme
        ({"shards_per_node": 0, "scheme": "shards"}, r"shards_per_node: must be an integer >= 1 \(got 0\)"),
        ({"shards_per_node": 101, "scheme": "shards"}, "shards_per_node: 10 nodes x 101 shards = 1010 shards, more"),
        ({"seed": -1}, "seed: must be an integer >= 0"),
        ({"seed": 1.0}, "seed: must be an integer >= 0"),
        ({"min_size": -1}, "min_size: must be an integer >= 0"),
    ],
)
def test_parameter_errors(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"n_nodes": 10, "scheme": "dirichlet"} | kwargs
    n_nodes, scheme = args.pop("n_nodes"), args.pop("scheme")
    with pytest.raises(ParameterError, match=match):
        partition_indices(BALANCED, n_nodes, scheme, **args)
    with pytest.raises(ParameterError, match=match):
        split_nodes(np.zeros((BALANCED.size, 2)), BALANCED, n_nodes, scheme, **args)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2.0, float("nan"), "0.1", True])
def test_holdout_fraction_out_of_range(fraction: Any) -> None:
    with pytest.raises(ParameterError, match="holdout_fraction: must be in"):
        split_nodes(np.zeros((10, 2)), np.zeros(10, dtype=np.int64), 2, "iid", holdout_fraction=fraction)


def test_label_and_shape_errors() -> None:
    with pytest.raises(ShapeError, match="y: expected a 1-D array of labels"):
        partition_indices(np.zeros((10, 2), dtype=np.int64), 2, "iid")
    with pytest.raises(TypeError, match="y: labels must have an integer dtype, got float64"):
        partition_indices(np.zeros(10), 2, "iid")
    with pytest.raises(ParameterError, match="n_nodes: 1 nodes but only 0 samples"):
        partition_indices(np.zeros(0, dtype=np.int64), 1, "iid")
    with pytest.raises(ShapeError, match=r"x: expected 10 rows .* got shape \(9, 2\)"):
        split_nodes(np.zeros((9, 2)), np.zeros(10, dtype=np.int64), 2, "iid")
    with pytest.raises(ShapeError, match="x: expected 10 rows"):
        split_nodes(np.float64(1.0), np.zeros(10, dtype=np.int64), 2, "iid")
