"""Claimed example counts weigh the mean only up to a cap (issue: one claim must not decide the mean)."""

from __future__ import annotations

import numpy as np
import pytest

from zerotrustml import aggregators
from zerotrustml.exceptions import ParameterError


def test_matches_the_numpy_formula_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 8, 31):
        counts = rng.integers(1, 10_000, size=n)
        counts[0] = 10**9  # one claim far above the rest
        want = np.minimum(counts.astype(np.float64), 10.0 * float(np.median(counts.astype(np.float64))))
        got = aggregators.example_weights(counts)
        assert got.tobytes() == want.tobytes()


def test_a_huge_claim_no_longer_decides_the_mean() -> None:
    rng = np.random.default_rng(4)
    honest = rng.normal(0.0, 1.0, size=(9, 50)).astype(np.float32)
    liar = np.full((1, 50), 100.0, dtype=np.float32)
    rows = np.vstack([honest, liar])
    counts = np.array([600] * 9 + [2**63 - 1])
    raw = aggregators.mean(rows, weights=counts.astype(np.float64)).vector
    capped = aggregators.mean(rows, weights=aggregators.example_weights(counts)).vector
    assert np.allclose(raw, 100.0)  # the attack, uncapped: the liar's row is the mean
    # Capped, the liar weighs 10 medians against 9: its pull is bounded by 10/19 of its offset.
    assert float(np.max(np.abs(capped - honest.mean(axis=0)))) < 100.0 * 10 / 19 + 1.0
    assert float(np.max(np.abs(capped))) < 60.0


def test_bad_cap_and_counts_are_named() -> None:
    for cap in (0.5, float("nan"), float("inf")):
        with pytest.raises(ParameterError, match="^cap: must be a finite number >= 1"):
            aggregators.example_weights([1, 2, 3], cap)
    for counts in ([1.5, 2.0], [-1, 2], [[1, 2]]):
        with pytest.raises(ParameterError, match="^counts: "):
            aggregators.example_weights(counts)
    assert aggregators.example_weights([]).shape == (0,)
