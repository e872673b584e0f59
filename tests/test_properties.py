"""Property tests (hypothesis) for the aggregation rules and the Gram distances.

Inputs are drawn as (shape, seed, scale, duplicated rows): numpy generates the
values from the seed, so the values are continuous and exact score ties only
come from duplicated rows (which then tie with identical vectors).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from references import exact_bulyan, exact_krum_index, exact_krum_scores, exact_sqdist, in_hull

from zerotrustml import aggregators as agg

EPS64 = np.finfo(np.float64).eps


@dataclass
class Case:
    x: np.ndarray
    scale: float

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def d(self) -> int:
        return int(self.x.shape[1])


@st.composite
def cases(
    draw: st.DrawFn,
    min_n: int = 1,
    max_n: int = 12,
    max_d: int = 6,
    dtypes: tuple[type, ...] = (np.float32, np.float64),
    duplicates: bool = True,
) -> Case:
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(1, max_d))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = 10.0 ** draw(st.integers(-3, 3))
    dtype = draw(st.sampled_from(dtypes))
    rng = np.random.default_rng(seed)
    x = scale * (rng.standard_normal((n, d)) + rng.standard_normal(d))
    if duplicates and n >= 2:
        for _ in range(draw(st.integers(0, n // 3))):
            a, b = rng.choice(n, size=2, replace=False)
            x[b] = x[a]
    return Case(x.astype(dtype), scale)


def with_f(case: Case, need: int, extra: int) -> int:
    """The largest f with n >= need * f + extra (0 if none)."""
    return max(0, (case.n - extra) // need)


def ident_group(x: np.ndarray, i: int) -> list[int]:
    """Indices of the rows identical to row i."""
    return [j for j in range(x.shape[0]) if np.array_equal(x[j], x[i])]


def tol64(case: Case, shift: float = 0.0) -> float:
    """An absolute tolerance for float64 results of a few roundings at this scale."""
    return 64 * EPS64 * (float(np.max(np.abs(case.x))) + abs(shift) + case.scale)


def atol_for(case: Case) -> float:
    if case.x.dtype == np.float32:
        return 4 * float(np.finfo(np.float32).eps) * (float(np.max(np.abs(case.x))) + case.scale)
    return tol64(case)


# ---------------------------------------------------------------------------
# permutation invariance


@given(cases(), st.data())
def test_permutation_invariance_mean_median_trimmed(case: Case, data: st.DataObject) -> None:
    perm = np.array(data.draw(st.permutations(range(case.n))))
    y = case.x[perm]
    assert_allclose(agg.mean(y).vector, agg.mean(case.x).vector, rtol=0, atol=atol_for(case))
    # order statistics do not depend on the order at all
    assert_array_equal(agg.median(y).vector, agg.median(case.x).vector)
    f = (case.n - 1) // 2
    assert_array_equal(agg.trimmed_mean(y, f).vector, agg.trimmed_mean(case.x, f).vector)
    w = np.arange(1, case.n + 1, dtype=np.float64)
    assert_allclose(
        agg.mean(y, weights=w[perm]).vector, agg.mean(case.x, weights=w).vector, rtol=0, atol=atol_for(case)
    )


def by_score(x: np.ndarray, f: int) -> list[int]:
    """Indices by exact Krum score, then index (the pinned order)."""
    exact = exact_krum_scores(x, f)
    return sorted(range(x.shape[0]), key=lambda i: (exact[i], i))


@given(cases(min_n=3), st.data())
def test_permutation_invariance_krum(case: Case, data: st.DataObject) -> None:
    f = with_f(case, 2, 3)
    perm = np.array(data.draw(st.permutations(range(case.n))))
    y = case.x[perm]
    r = agg.krum(case.x, f)
    rp = agg.krum(y, f)
    exact = exact_krum_scores(case.x, f)
    tied = [i for i in range(case.n) if exact[i] == exact.min()]
    # Exact ties: identical rows, or (k = 1) two mutual nearest neighbours.
    assert r.selected == (min(tied),)
    new_positions = sorted(int(np.where(perm == t)[0][0]) for t in tied)
    assert rp.selected == (new_positions[0],)
    if len(tied) == 1 or all(np.array_equal(case.x[t], case.x[tied[0]]) for t in tied):
        # the index maps through the permutation; the vector is the same
        assert_array_equal(rp.vector, r.vector)
    assert_array_equal(rp.vector, y[rp.selected[0]])
    # scores permute with the rows, within the Gram-form error bound (k times
    # the largest distance error of the row; refined scores are exact)
    _, err = agg.gram_distances(y)
    k = case.n - f - 2
    assert np.all(np.abs(rp.scores - exact[perm]) <= k * err.max(axis=1) + 1e-12 * exact[perm])


@given(cases(min_n=3), st.data())
def test_permutation_invariance_multi_krum(case: Case, data: st.DataObject) -> None:
    f = with_f(case, 2, 3)
    m = data.draw(st.integers(1, case.n))
    perm = np.array(data.draw(st.permutations(range(case.n))))
    y = case.x[perm]
    r = agg.multi_krum(case.x, f, m=m)
    rp = agg.multi_krum(y, f, m=m)
    # m lowest scores, by score then index, in both orders
    assert list(r.selected) == by_score(case.x, f)[:m]
    assert list(rp.selected) == by_score(y, f)[:m]
    a = np.sort(case.x[list(r.selected)], axis=0)
    b = np.sort(y[list(rp.selected)], axis=0)
    if np.array_equal(a, b):  # no tie between different vectors at the cut
        assert_allclose(rp.vector, r.vector, rtol=0, atol=atol_for(case))
    else:
        exact = exact_krum_scores(case.x, f)
        cut = np.sort(exact)[m - 1]
        assert np.sum(exact == cut) > 1


@given(cases(min_n=3), st.data())
def test_permutation_invariance_bulyan(case: Case, data: st.DataObject) -> None:
    f = with_f(case, 4, 3)
    perm = np.array(data.draw(st.permutations(range(case.n))))
    y = case.x[perm]
    r = agg.bulyan(case.x, f)
    rp = agg.bulyan(y, f)
    sel, vec = exact_bulyan(case.x, f)
    selp, vecp = exact_bulyan(y, f)
    assert list(r.selected) == sel
    assert list(rp.selected) == selp
    assert_allclose(r.vector, vec, rtol=0, atol=atol_for(case))
    assert_allclose(rp.vector, vecp, rtol=0, atol=atol_for(case))
    if np.array_equal(np.sort(case.x[sel], axis=0), np.sort(y[selp], axis=0)):
        # the same selected vectors (always, unless an exact Krum tie between
        # different vectors in some round went to a different index)
        assert_allclose(rp.vector, r.vector, rtol=0, atol=atol_for(case))


@given(cases(max_n=8, dtypes=(np.float64,)), st.data())
def test_permutation_invariance_iterative_rules(case: Case, data: st.DataObject) -> None:
    perm = np.array(data.draw(st.permutations(range(case.n))))
    y = case.x[perm]
    g = agg.geometric_median(case.x, tol=1e-13, max_iter=2000)
    gp = agg.geometric_median(y, tol=1e-13, max_iter=2000)
    spread = float(np.max(np.ptp(case.x, axis=0))) + case.scale
    assert_allclose(gp.vector, g.vector, rtol=0, atol=1e-6 * spread)
    c = agg.centered_clipping(case.x, tau=case.scale, iters=3)
    cp = agg.centered_clipping(y, tau=case.scale, iters=3)
    assert_allclose(cp.vector, c.vector, rtol=0, atol=tol64(case))
    assert_allclose(cp.scores, c.scores[perm], rtol=1e-12, atol=1e-15)
    # NNM: row i of the permuted input is row perm[i] of the original
    f = data.draw(st.integers(0, case.n - 1))
    assert_allclose(agg.nnm(y, f).updates, agg.nnm(case.x, f).updates[perm], rtol=0, atol=tol64(case))


# ---------------------------------------------------------------------------
# translation equivariance (float64: x + c rounds once per value)


def krum_gap(x: np.ndarray, f: int) -> float:
    s = np.unique(exact_krum_scores(x, f))  # identical rows tie exactly: one value
    return 1.0 if len(s) < 2 else float((s[1] - s[0]) / s[1])


@given(cases(min_n=3, dtypes=(np.float64,)), st.data())
def test_translation_equivariance(case: Case, data: st.DataObject) -> None:
    seed = data.draw(st.integers(0, 2**32 - 1))
    c = case.scale * 100 * np.random.default_rng(seed).uniform(-1, 1, case.d)
    shift = float(np.max(np.abs(c)))
    x, y = case.x, case.x + c
    tol = tol64(case, shift)
    n = case.n
    assert_allclose(agg.mean(y).vector, agg.mean(x).vector + c, rtol=0, atol=tol)
    assert_allclose(agg.median(y).vector, agg.median(x).vector + c, rtol=0, atol=tol)
    f = (n - 1) // 2
    assert_allclose(agg.trimmed_mean(y, f).vector, agg.trimmed_mean(x, f).vector + c, rtol=0, atol=tol)
    fk = with_f(case, 2, 3)
    # Rounding x + c perturbs distances by ~1e-13 relative: the selection is
    # only pinned when the exact scores are further apart than that.
    if krum_gap(x, fk) > 1e-9:
        rk, rky = agg.krum(x, fk), agg.krum(y, fk)
        assert rky.selected == rk.selected
        assert_allclose(rky.vector, rk.vector + c, rtol=0, atol=tol)
        mk, mky = agg.multi_krum(x, fk), agg.multi_krum(y, fk)
        assert_allclose(mky.vector, mk.vector + c, rtol=0, atol=tol)
    fb = with_f(case, 4, 3)
    if krum_gap(x, fb) > 1e-9:
        b, by = agg.bulyan(x, fb), agg.bulyan(y, fb)
        if by.selected == b.selected:  # later Bulyan rounds could still meet a near-tie
            assert_allclose(by.vector, b.vector + c, rtol=0, atol=tol)
    g = agg.geometric_median(x, tol=1e-13, max_iter=2000)
    gy = agg.geometric_median(y, tol=1e-13, max_iter=2000)
    spread = float(np.max(np.ptp(x, axis=0))) + case.scale
    assert_allclose(gy.vector, g.vector + c, rtol=0, atol=1e-6 * spread + tol)
    # centered clipping is equivariant when the centre moves with the data
    v0 = np.zeros(case.d)
    cc = agg.centered_clipping(x, tau=case.scale, iters=2, center=v0)
    ccy = agg.centered_clipping(y, tau=case.scale, iters=2, center=v0 + c)
    assert_allclose(ccy.vector, cc.vector + c, rtol=0, atol=tol)
    assert_allclose(agg.nnm(y, fk).updates, agg.nnm(x, fk).updates + c, rtol=0, atol=tol)
    assert_allclose(agg.bucketing(y, 2, seed=5).updates, agg.bucketing(x, 2, seed=5).updates + c, rtol=0, atol=tol)


# ---------------------------------------------------------------------------
# outputs inside the coordinate-wise hull of what was kept


@given(cases(min_n=3))
def test_outputs_inside_hulls(case: Case) -> None:
    x = case.x
    n = case.n
    atol = tol64(case) if x.dtype == np.float64 else 0.0
    assert in_hull(agg.mean(x).vector, x, atol)
    # median: between the two middle order statistics
    srt = np.sort(x, axis=0)
    med = agg.median(x).vector
    assert np.all(med >= srt[(n - 1) // 2]) and np.all(med <= srt[n // 2])
    # trimmed mean: between the smallest and largest kept value of each column
    for f in range((n + 1) // 2):
        tm = agg.trimmed_mean(x, f).vector
        assert np.all(tm >= srt[f] - atol) and np.all(tm <= srt[n - 1 - f] + atol)
    fk = with_f(case, 2, 3)
    k = agg.krum(x, fk)
    assert_array_equal(k.vector, x[k.selected[0]])
    assert k.selected == (exact_krum_index(x, fk),)
    for m in (1, max(1, n - fk), n):
        mk = agg.multi_krum(x, fk, m=m)
        assert len(mk.selected) == m and len(set(mk.selected)) == m
        assert in_hull(mk.vector, x[list(mk.selected)], atol)
    fb = with_f(case, 4, 3)
    b = agg.bulyan(x, fb)
    assert len(b.selected) == n - 2 * fb and len(set(b.selected)) == n - 2 * fb
    assert in_hull(b.vector, x[list(b.selected)], atol)
    g = agg.geometric_median(x)
    assert in_hull(g.vector, x, atol)  # the Weiszfeld iterates are convex combinations
    cc = agg.centered_clipping(x, tau=case.scale)
    assert in_hull(cc.vector, np.vstack([x, np.zeros((1, case.d), dtype=x.dtype)]), atol)
    for mixed in (agg.nnm(x, fk), agg.bucketing(x, 3)):
        for row in mixed.updates:
            assert in_hull(row, x, atol)


@given(cases(min_n=7, max_n=14, dtypes=(np.float32,), duplicates=False))
def test_bulyan_matches_reference(case: Case) -> None:
    f = with_f(case, 4, 3)
    ref_sel, ref_vec = exact_bulyan(case.x, f)
    r = agg.bulyan(case.x, f)
    assert list(r.selected) == ref_sel
    assert_allclose(r.vector, ref_vec, rtol=0, atol=atol_for(case))


# ---------------------------------------------------------------------------
# robustness: f huge updates


@st.composite
def attacked(draw: st.DrawFn, need: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(x, honest mask, f) with n >= need * f + 3 and f >= 1 huge rows."""
    f = draw(st.integers(1, 3))
    n = draw(st.integers(need * f + 3, need * f + 6))
    d = draw(st.integers(1, 5))
    dtype = draw(st.sampled_from((np.float32, np.float64)))
    seed = draw(st.integers(0, 2**32 - 1))
    collude = draw(st.booleans())
    rng = np.random.default_rng(seed)
    scale = 10.0 ** draw(st.integers(-2, 2))
    x = scale * (rng.standard_normal((n, d)) + 1.0)
    bad = rng.choice(n, size=f, replace=False)
    huge = 1e6 * scale * rng.choice([-1.0, 1.0], size=(f, d)) * rng.uniform(1, 2, size=(f, d))
    if collude:
        huge[:] = huge[0]
    x[bad] = huge
    honest = np.ones(n, dtype=bool)
    honest[bad] = False
    return x.astype(dtype), honest, f


@given(attacked(need=2))
def test_robust_rules_stay_in_honest_hull(args: tuple[np.ndarray, np.ndarray, int]) -> None:
    x, honest, f = args
    h = x[honest]
    assert in_hull(agg.median(x).vector, h)
    assert in_hull(agg.trimmed_mean(x, f).vector, h)
    k = agg.krum(x, f)
    assert honest[k.selected[0]]
    assert in_hull(k.vector, h)
    mk = agg.multi_krum(x, f)
    assert all(honest[i] for i in mk.selected)
    assert in_hull(mk.vector, h, atol=1e-12 * float(np.max(np.abs(h))))
    # ... while the mean is dragged out of the honest hull by the huge rows
    assert not in_hull(agg.mean(x).vector, h)


@given(attacked(need=4))
def test_bulyan_and_geometric_median_resist(args: tuple[np.ndarray, np.ndarray, int]) -> None:
    x, honest, f = args
    h = x[honest].astype(np.float64)
    b = agg.bulyan(x, f)
    assert in_hull(b.vector, h, atol=1e-12 * float(np.max(np.abs(h))))
    assert not in_hull(agg.mean(x).vector, h)
    # The geometric median need not stay in the honest box, but it moves at
    # most C * (honest radius) with C = 2(1-a)/(1-2a), a = f/n (breakdown 1/2).
    n = x.shape[0]
    a = f / n
    centre = h.mean(axis=0)
    radius = float(np.max(np.linalg.norm(h - centre, axis=1)))
    g = agg.geometric_median(x, tol=1e-12, max_iter=1000).vector.astype(np.float64)
    assert np.linalg.norm(g - centre) <= 1.01 * 2 * (1 - a) / (1 - 2 * a) * radius + 1e-9 * radius


# ---------------------------------------------------------------------------
# Gram distances and exact selection, on every SIMD path


@st.composite
def gram_cases(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(2, 10))
    d = draw(st.sampled_from((1, 3, 8, 15, 16, 17, 33, 100, 1030)))
    dtype = draw(st.sampled_from((np.float32, np.float64)))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(("plain", "offset", "near_duplicates")))
    scale = 10.0 ** draw(st.integers(-6, 6))
    rng = np.random.default_rng(seed)
    if kind == "plain":
        x = scale * rng.standard_normal((n, d))
    elif kind == "offset":
        # a large common offset: the Gram form cancels badly
        x = scale * (1000.0 + 1e-3 * rng.standard_normal((n, d)))
    else:
        base = rng.standard_normal(d)
        x = scale * (base + 1e-6 * rng.standard_normal((n, d)))
    return x.astype(dtype)


@given(gram_cases())
def test_gram_distances_within_bound(simd: str, x: np.ndarray) -> None:
    dist, err = agg.gram_distances(x)
    exact = exact_sqdist(x)
    n = x.shape[0]
    assert dist.shape == err.shape == (n, n)
    assert dist.dtype == err.dtype == np.float64
    assert np.all(dist >= 0)
    assert np.all(np.diag(dist) == 0)
    assert_array_equal(dist, dist.T)
    viol = np.abs(dist - exact) > err
    assert not viol.any(), (simd, np.argwhere(viol)[:3], (dist - exact)[viol][:3], err[viol][:3])


@given(gram_cases())
def test_krum_selection_exact_on_every_path(simd: str, x: np.ndarray) -> None:
    n = x.shape[0]
    if n < 3:
        x = np.vstack([x, x[:1] + x[:1], x[:1] * 3]).astype(x.dtype)
        n = x.shape[0]
    f = (n - 3) // 2
    r = agg.krum(x, f)
    assert r.selected == (exact_krum_index(x, f),)
    exact = exact_krum_scores(x, f)
    # reported scores: exact where refined, Gram-form otherwise, within the bound
    dist, err = agg.gram_distances(x)
    k = n - f - 2
    bound = k * err.max(axis=1)
    assert np.all(np.abs(r.scores - exact) <= bound + 1e-12 * np.abs(exact))
    m = max(1, n - f)
    assert sorted(agg.multi_krum(x, f, m=m).selected) == sorted(sorted(range(n), key=lambda i: (exact[i], i))[:m])


def test_krum_exact_at_near_duplicates_with_offset(simd: str) -> None:
    # x = 1000 + 1e-3 * noise in float32: distances ~1e-5 against squared norms
    # ~1e6 * d; the Gram form alone cannot rank these, the exact re-decision must.
    for seed in range(10):
        rng = np.random.default_rng(seed)
        for d in (7, 64, 1100):
            x = (1000.0 + 1e-3 * rng.standard_normal((9, d))).astype(np.float32)
            dist, err = agg.gram_distances(x)
            exact = exact_sqdist(x)
            assert np.all(np.abs(dist - exact) <= err)
            for f in (1, 2, 3):
                assert agg.krum(x, f).selected == (exact_krum_index(x, f),)
            if d < 100:  # the reference's per-column loop is slow for wide inputs
                ref_sel, ref_vec = exact_bulyan(x, 1)
                b = agg.bulyan(x, 1)
                assert list(b.selected) == ref_sel
                assert_allclose(b.vector, ref_vec, rtol=1e-7)


@pytest.mark.parametrize("exponent", [-60, -84, -88, -90])
def test_gram_bound_holds_for_tiny_float32(simd: str, exponent: int) -> None:
    # Float32 values up to 2^16 * 2^exponent (1e-13 for -60; 1e-21 .. 1e-23 for
    # the others): from -84 on their products fall in the float32 subnormal
    # range (below 2^-126), where a relative error bound on a float32
    # accumulation no longer holds. The documented guarantee |D - exact| <= E
    # is for every finite input.
    rng = np.random.default_rng(1)
    ints = rng.integers(-(2**16), 2**16, size=(6, 24))
    x = np.ldexp(ints.astype(np.float64), exponent).astype(np.float32)
    assert_array_equal(x.astype(np.float64), np.ldexp(ints.astype(np.float64), exponent))
    dist, err = agg.gram_distances(x)
    exact = exact_sqdist(x)
    bad = np.abs(dist - exact) > err
    assert not bad.any(), (
        f"{simd}: {int(bad.sum())} pairs outside the bound, e.g. D={dist[bad][0]!r} exact={exact[bad][0]!r}"
    )


def test_krum_exact_selection_for_tiny_float32(simd: str) -> None:
    # Found by search, pinned as integers times 2^-88 (exact in float32, values
    # ~1e-22). Exact Krum (f=1, k=2) picks row 3 with a 1.5 % margin; the same
    # integers unscaled pick row 3 on every path too.
    ints = np.array(
        [
            [-19241, -48660, 3458, 48037, -43458, 39365, -4877, 7164],
            [-53612, 36002, 7925, 3682, -28523, -38342, 14025, 62717],
            [43194, 5623, -40068, -57611, 55866, -48462, 28941, -16567],
            [-31120, 35346, -62667, 48358, -25014, 64852, -24751, 21474],
            [-42238, 49773, -32864, 20851, 9469, 55928, 44077, 62268],
        ],
        dtype=np.float64,
    )
    big = ints.astype(np.float32)
    tiny = np.ldexp(ints, -88).astype(np.float32)
    assert exact_krum_index(big, 1) == exact_krum_index(tiny, 1) == 3
    s = np.sort(exact_krum_scores(tiny, 1))
    assert (s[1] - s[0]) / s[0] > 0.01
    assert agg.krum(big, 1).selected == (3,)
    assert agg.krum(tiny, 1).selected == (3,), f"{simd} path selects {agg.krum(tiny, 1).selected}"


def test_huge_float32_overflowing_the_simd_accumulators(simd: str) -> None:
    # Squares of 1e20 overflow float32; the Gram computation must fall back to
    # float64 and stay within its bound.
    rng = np.random.default_rng(3)
    x = (1e20 * rng.standard_normal((7, 40))).astype(np.float32)
    dist, err = agg.gram_distances(x)
    assert np.all(np.isfinite(dist))
    assert np.all(np.abs(dist - exact_sqdist(x)) <= err)
    assert agg.krum(x, 2).selected == (exact_krum_index(x, 2),)


@given(cases(min_n=5, max_n=9, max_d=40, dtypes=(np.float32,)))
def test_results_identical_on_every_path(case: Case) -> None:
    # "Results are identical on every path except the reported Gram-form scores."
    original = agg.simd_path()
    outs = []
    try:
        for p in ("scalar", "avx2", "avx512"):
            agg.set_simd_path(p)
            f = with_f(case, 4, 3)
            outs.append(
                (
                    agg.krum(case.x, f),
                    agg.multi_krum(case.x, f),
                    agg.median(case.x),
                    agg.trimmed_mean(case.x, f),
                    agg.bulyan(case.x, f),
                    agg.nnm(case.x, f),
                )
            )
    finally:
        agg.set_simd_path(original)
    first = outs[0]
    for other in outs[1:]:
        for a, b in zip(first[:5], other[:5], strict=True):
            assert a.selected == b.selected
            assert_array_equal(a.vector, b.vector)
        assert first[5].groups == other[5].groups
        assert_array_equal(first[5].updates, other[5].updates)
