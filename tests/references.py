"""Reference helpers for the aggregation-rule suites.

The references here are deliberately naive (O(n^2 d) loops over float64
differences): they are the "exact" side the Rust rules are compared with.
A plain module (not conftest.py): the repository root has a conftest.py of
its own (the docs tests), so importing helpers from "conftest" would be
ambiguous.
"""

from __future__ import annotations

import numpy as np


def flower_results(x: np.ndarray, counts: np.ndarray | list[int] | None = None) -> list[tuple[list[np.ndarray], int]]:
    """An (n, d) array as Flower's ``results``: one layer per client, an example count each."""
    n = x.shape[0]
    if counts is None:
        counts = [1] * n
    return [([np.array(x[i], copy=True)], int(counts[i])) for i in range(n)]


def exact_sqdist(x: np.ndarray) -> np.ndarray:
    """Pairwise squared L2 distances from float64 differences (the exact reference)."""
    x64 = np.asarray(x, dtype=np.float64)
    diff = x64[:, None, :] - x64[None, :, :]
    return np.sum(diff * diff, axis=2)


def exact_krum_scores(x: np.ndarray, f: int, k: int | None = None) -> np.ndarray:
    """Krum scores from exact distances: sum of the k smallest distances to the others."""
    n = x.shape[0]
    k = n - f - 2 if k is None else k
    dist = exact_sqdist(x)
    scores = np.empty(n, dtype=np.float64)
    for i in range(n):
        others = np.sort(np.delete(dist[i], i))
        scores[i] = float(np.sum(others[:k]))
    return scores


def exact_krum_index(x: np.ndarray, f: int, k: int | None = None) -> int:
    """Index Krum selects with exact distances (np.argmin: ties to the lowest index)."""
    return int(np.argmin(exact_krum_scores(x, f, k)))


def exact_multi_krum(x: np.ndarray, f: int, m: int) -> list[int]:
    """The m lowest exact Krum scores, ordered by score then index."""
    scores = exact_krum_scores(x, f)
    order = sorted(range(x.shape[0]), key=lambda i: (scores[i], i))
    return order[:m]


def exact_bulyan(x: np.ndarray, f: int) -> tuple[list[int], np.ndarray]:
    """Reference Bulyan as pinned: iterated exact Krum (k = max(1, |pool|-f-2)), then per
    coordinate the mean of the beta values closest to the median, the lower value winning ties."""
    n, d = x.shape
    theta = n - 2 * f
    beta = theta - 2 * f
    dist = exact_sqdist(x)
    pool = list(range(n))
    selected: list[int] = []
    while len(selected) < theta:
        k = max(1, len(pool) - f - 2)
        best, best_score = -1, np.inf
        for i in pool:
            others = sorted(dist[i, j] for j in pool if j != i)
            s = float(sum(others[:k]))
            if s < best_score:
                best, best_score = i, s
        selected.append(best)
        pool.remove(best)
    chosen = np.asarray(x, dtype=np.float64)[selected]
    out = np.empty(d, dtype=np.float64)
    for c in range(d):
        col = np.sort(chosen[:, c])
        med = float(np.median(col))
        # Stable sort by |v - med| on the sorted column: equal distances keep
        # the lower value first.
        order = sorted(range(theta), key=lambda t: (abs(col[t] - med), col[t]))
        out[c] = float(np.mean(col[order[:beta]]))
    return selected, out


def in_hull(v: np.ndarray, rows: np.ndarray, atol: float = 0.0) -> bool:
    """True when v lies inside the coordinate-wise [min, max] box of rows (within atol)."""
    lo = np.min(rows, axis=0)
    hi = np.max(rows, axis=0)
    return bool(np.all(v >= lo - atol) and np.all(v <= hi + atol))
