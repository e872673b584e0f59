"""Hand-computed cases for every rule.

Each expected value is worked out in the comments next to it; the inputs are
small integers (or simple fractions) so float32 and float64 represent them
exactly and every SIMD path must return the same numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from zerotrustml import aggregators as agg

DTYPES = (np.float32, np.float64)


def arr(rows: list[list[float]], dtype: type) -> np.ndarray:
    return np.array(rows, dtype=dtype)


# ---------------------------------------------------------------------------
# mean


@pytest.mark.parametrize("dtype", DTYPES)
def test_mean_plain(dtype: type) -> None:
    x = arr([[1, 2], [3, 4], [5, 9]], dtype)
    r = agg.mean(x)
    # (1+3+5)/3 = 3, (2+4+9)/3 = 5
    assert_array_equal(r.vector, np.array([3, 5], dtype=dtype))
    assert r.vector.dtype == dtype
    assert r.rule == "mean"
    assert r.selected == ()
    assert r.scores.shape == (0,)
    assert r.iterations == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_mean_weighted(dtype: type) -> None:
    x = arr([[1, 2], [3, 4], [5, 9]], dtype)
    r = agg.mean(x, weights=[1, 1, 2])
    # (1*1 + 1*3 + 2*5)/4 = 14/4 = 3.5 ; (1*2 + 1*4 + 2*9)/4 = 24/4 = 6
    assert_array_equal(r.vector, np.array([3.5, 6], dtype=dtype))
    # A zero weight removes the row: (3+5)/2 = 4, (4+9)/2 = 6.5
    assert_array_equal(agg.mean(x, weights=[0, 1, 1]).vector, np.array([4, 6.5], dtype=dtype))
    # Only the ratios matter: weights (10, 10, 20) are the same as (1, 1, 2).
    assert_array_equal(agg.mean(x, weights=np.array([10.0, 10.0, 20.0])).vector, r.vector)


# ---------------------------------------------------------------------------
# krum / multi_krum

# Five points, f = 1, so k = n - f - 2 = 2 neighbours (byzfl: k = 3).
#   x0=(0,0) x1=(1,0) x2=(2,0) x3=(3,0) x4=(0,10)
# squared distances:
#   x0: 1, 4, 9, 100          k=2: 1+4 = 5     k=3: 14
#   x1: 1, 1, 4, 101          k=2: 1+1 = 2     k=3: 6
#   x2: 4, 1, 1, 104          k=2: 1+1 = 2     k=3: 6
#   x3: 9, 4, 1, 109          k=2: 1+4 = 5     k=3: 14
#   x4: 100, 101, 104, 109    k=2: 201         k=3: 305
# x1 and x2 tie at 2: ties go to the lowest index, so Krum picks x1.
LINE = [[0, 0], [1, 0], [2, 0], [3, 0], [0, 10]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_krum_line_with_outlier(dtype: type, simd: str) -> None:
    x = arr(LINE, dtype)
    r = agg.krum(x, f=1)
    assert r.rule == "krum"
    assert r.selected == (1,)
    assert_array_equal(r.vector, np.array([1, 0], dtype=dtype))
    assert r.vector.dtype == dtype
    assert_allclose(r.scores, [5, 2, 2, 5, 201], rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_krum_byzfl_scores_on_line(dtype: type) -> None:
    r = agg.krum(arr(LINE, dtype), f=1, variant="byzfl")
    assert_allclose(r.scores, [14, 6, 6, 14, 305], rtol=1e-12)
    assert r.selected == (1,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_krum_byzfl_variant_selects_differently(dtype: type) -> None:
    # 1-D points 0, 1, 5, 6, 7, f = 1.
    #        to:   0   1   5   6   7     k=2 (standard)   k=3 (byzfl)
    #   p0=0       -   1  25  36  49     1+25 = 26        1+25+36 = 62
    #   p1=1       1   -  16  25  36     1+16 = 17        1+16+25 = 42
    #   p2=5      25  16   -   1   4     1+4  = 5         1+4+16  = 21
    #   p3=6      36  25   1   -   1     1+1  = 2         1+1+25  = 27
    #   p4=7      49  36   4   1   -     1+4  = 5         1+4+36  = 41
    # standard picks p3 (=6), byzfl picks p2 (=5).
    x = arr([[0], [1], [5], [6], [7]], dtype)
    std = agg.krum(x, f=1)
    byz = agg.krum(x, f=1, variant="byzfl")
    assert_allclose(std.scores, [26, 17, 5, 2, 5], rtol=1e-12)
    assert_allclose(byz.scores, [62, 42, 21, 27, 41], rtol=1e-12)
    assert std.selected == (3,)
    assert byz.selected == (2,)
    assert_array_equal(std.vector, np.array([6], dtype=dtype))
    assert_array_equal(byz.vector, np.array([5], dtype=dtype))


# Duplicated vectors, f = 1, k = 2:
#   x0=(0,0) x1=(1,1) x2=(2,2) x3=(1,1) x4=(9,9)
#   x0: to x1 2, x2 8, x3 2, x4 162   -> 2+2 = 4
#   x1: to x0 2, x2 2, x3 0, x4 128   -> 0+2 = 2
#   x2: to x0 8, x1 2, x3 2, x4 98    -> 2+2 = 4
#   x3: to x0 2, x1 0, x2 2, x4 128   -> 0+2 = 2
#   x4: 162, 128, 98, 128             -> 98+128 = 226
DUPS = [[0, 0], [1, 1], [2, 2], [1, 1], [9, 9]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_krum_duplicate_tie_goes_to_lowest_index(dtype: type, simd: str) -> None:
    r = agg.krum(arr(DUPS, dtype), f=1)
    assert_allclose(r.scores, [4, 2, 4, 2, 226], rtol=1e-12)
    assert r.selected == (1,)  # x1 and x3 tie at 2; the lower index wins
    # The same data with the duplicate pair moved: now x0 and x4 tie.
    moved = arr([[1, 1], [0, 0], [2, 2], [9, 9], [1, 1]], dtype)
    assert agg.krum(moved, f=1).selected == (0,)


def test_krum_all_identical_picks_index_zero() -> None:
    # Every score is 0: the lowest index wins.
    x = np.ones((5, 3), dtype=np.float32)
    r = agg.krum(x, f=1)
    assert r.selected == (0,)
    assert_array_equal(r.scores, np.zeros(5))


@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_krum_hand(dtype: type) -> None:
    x = arr(LINE, dtype)
    # scores [5, 2, 2, 5, 201]: by score then index the order is x1, x2, x0, x3, x4.
    r2 = agg.multi_krum(x, f=1, m=2)
    assert r2.rule == "multi_krum"
    assert r2.selected == (1, 2)
    assert_array_equal(r2.vector, np.array([1.5, 0], dtype=dtype))  # ((1,0)+(2,0))/2
    r3 = agg.multi_krum(x, f=1, m=3)
    assert r3.selected == (1, 2, 0)
    assert_array_equal(r3.vector, np.array([1, 0], dtype=dtype))  # (0+1+2)/3 = 1
    # default m = n - f = 4: x1, x2, x0, x3 -> (0+1+2+3)/4 = 1.5
    r4 = agg.multi_krum(x, f=1)
    assert r4.selected == (1, 2, 0, 3)
    assert_array_equal(r4.vector, np.array([1.5, 0], dtype=dtype))
    assert_allclose(r4.scores, [5, 2, 2, 5, 201], rtol=1e-12)
    # m = 1 is Krum.
    assert agg.multi_krum(x, f=1, m=1).selected == agg.krum(x, f=1).selected


@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_krum_duplicates_equal_weights(dtype: type) -> None:
    x = arr(DUPS, dtype)
    # scores [4, 2, 4, 2, 226]: order x1, x3, x0, x2, x4.
    r = agg.multi_krum(x, f=1, m=3)
    assert r.selected == (1, 3, 0)
    # equal weights: ((1,1)+(1,1)+(0,0))/3 = (2/3, 2/3)
    assert_allclose(r.vector, [2 / 3, 2 / 3], rtol=1e-7 if dtype == np.float32 else 1e-15)
    r = agg.multi_krum(x, f=1, m=4)
    assert r.selected == (1, 3, 0, 2)
    assert_array_equal(r.vector, np.array([1, 1], dtype=dtype))  # (1+1+0+2)/4 = 1


# ---------------------------------------------------------------------------
# median


@pytest.mark.parametrize("dtype", DTYPES)
def test_median_odd(dtype: type, simd: str) -> None:
    x = arr([[3, -1], [1, 5], [2, 0]], dtype)
    # column 0 sorted: 1, 2, 3 -> 2 ; column 1 sorted: -1, 0, 5 -> 0
    r = agg.median(x)
    assert r.rule == "median"
    assert_array_equal(r.vector, np.array([2, 0], dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_median_even(dtype: type, simd: str) -> None:
    x = arr([[4, 1], [1, 7], [3, 3], [10, -2]], dtype)
    # column 0 sorted: 1, 3, 4, 10 -> (3+4)/2 = 3.5 ; column 1: -2, 1, 3, 7 -> (1+3)/2 = 2
    assert_array_equal(agg.median(x).vector, np.array([3.5, 2], dtype=dtype))


def test_median_single_row_and_two_rows() -> None:
    assert_array_equal(agg.median(np.array([[7.0, -3.0]])).vector, [7.0, -3.0])
    # n = 2: the mean of both values: (1+4)/2 = 2.5, (2+2)/2 = 2
    assert_array_equal(agg.median(np.array([[1.0, 2.0], [4.0, 2.0]])).vector, [2.5, 2.0])


def test_median_many_columns_crosses_tiles(simd: str) -> None:
    # 37 columns (more than two 16-wide tiles); column c holds c, c+1, c+2 in
    # scrambled row order, so the median is c+1.
    d = 37
    c = np.arange(d, dtype=np.float32)
    x = np.stack([c + 2, c, c + 1])
    assert_array_equal(agg.median(x).vector, c + 1)


# ---------------------------------------------------------------------------
# trimmed mean


@pytest.mark.parametrize("dtype", DTYPES)
def test_trimmed_mean_hand(dtype: type, simd: str) -> None:
    x = arr([[5, 0], [-100, 0], [1, 0], [2, 9], [3, 3]], dtype)
    # f = 1: column 0 sorted -100, 1, 2, 3, 5 -> drop -100 and 5 -> (1+2+3)/3 = 2
    #        column 1 sorted 0, 0, 0, 3, 9     -> drop one 0 and 9 -> (0+0+3)/3 = 1
    r = agg.trimmed_mean(x, f=1)
    assert r.rule == "trimmed_mean"
    assert_array_equal(r.vector, np.array([2, 1], dtype=dtype))
    # f = 2 keeps only the middle value: the median (2, 0)
    assert_array_equal(agg.trimmed_mean(x, f=2).vector, np.array([2, 0], dtype=dtype))
    # f = 0 is the plain mean: (5-100+1+2+3)/5 = -89/5 = -17.8 ; (0+0+0+9+3)/5 = 2.4
    assert_allclose(agg.trimmed_mean(x, f=0).vector, [-17.8, 2.4], rtol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_trimmed_mean_even_n(dtype: type) -> None:
    x = arr([[10], [1], [4], [2], [-7], [3]], dtype)
    # sorted -7, 1, 2, 3, 4, 10 ; f = 1 -> (1+2+3+4)/4 = 2.5 ; f = 2 -> (2+3)/2 = 2.5
    assert_array_equal(agg.trimmed_mean(x, f=1).vector, np.array([2.5], dtype=dtype))
    assert_array_equal(agg.trimmed_mean(x, f=2).vector, np.array([2.5], dtype=dtype))
    # a distinguishing case: sorted 0, 1, 2, 3, 100, 1000: f=1 -> (1+2+3+100)/4 = 26.5
    y = arr([[1000], [3], [0], [100], [2], [1]], dtype)
    assert_array_equal(agg.trimmed_mean(y, f=1).vector, np.array([26.5], dtype=dtype))


# ---------------------------------------------------------------------------
# bulyan

# n = 7, f = 1: theta = n - 2f = 5, beta = theta - 2f = 3.
# rows (1-D): idx0=5 idx1=9 idx2=1 idx3=3 idx4=2 idx5=1000 idx6=-1000
# Iterated Krum, k = max(1, |pool| - f - 2):
#  pool of 7, k=4 (the 4 nearest of a cluster point are the other cluster points):
#    5: 16+9+4+16 = 45   9: 64+49+36+16 = 165   1: 1+4+16+64 = 85
#    3: 4+1+4+36 = 45    2: 1+1+9+49 = 60       outliers: > 990^2
#    -> tie 45 between idx0 and idx3: idx0 (=5) wins, score 45
#  pool {9,1,3,2,+-1000}, k=3:
#    9: 36+49+64 = 149   1: 1+4+64 = 69   3: 1+4+36 = 41   2: 1+1+49 = 51
#    -> idx3 (=3), score 41
#  pool {9,1,2,+-1000}, k=2:
#    9: 49+64 = 113   1: 1+64 = 65   2: 1+49 = 50   -> idx4 (=2), score 50
#  pool {9,1,1000,-1000}, k=1:
#    9: 64 (to 1)   1: 64 (to 9)   1000: 991^2   -1000: 1001^2
#    -> tie idx1/idx2: idx1 (=9), score 64
#  pool {1,1000,-1000}, k=1:
#    1: min(999^2, 1001^2) = 998001   1000: 998001 (to 1)   -1000: 1002001
#    -> tie idx2/idx5: idx2 (=1), score 998001
# selected (0, 3, 4, 1, 2): values 5, 3, 2, 9, 1 -> sorted 1, 2, 3, 5, 9, median 3.
# The beta = 3 values closest to 3: 3 (distance 0), 2 (distance 1), then 1 and 5
# are both at distance 2: the lower value wins -> (1+2+3)/3 = 2.
# (Had the higher value won: (2+3+5)/3 = 10/3.)
BULYAN_ROWS = [[5], [9], [1], [3], [2], [1000], [-1000]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_bulyan_hand_with_ties(dtype: type, simd: str) -> None:
    r = agg.bulyan(arr(BULYAN_ROWS, dtype), f=1)
    assert r.rule == "bulyan"
    assert r.selected == (0, 3, 4, 1, 2)
    assert_allclose(r.scores, [45, 41, 50, 64, 998001], rtol=1e-12)
    assert_array_equal(r.vector, np.array([2], dtype=dtype))


def test_bulyan_f_zero_is_mean() -> None:
    # f = 0: theta = beta = n, every row is selected and averaged: (2, 4).
    x = np.array([[1.0, 4.0], [2.0, 0.0], [3.0, 8.0]])
    r = agg.bulyan(x, f=0)
    assert sorted(r.selected) == [0, 1, 2]
    assert_array_equal(r.vector, [2.0, 4.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_bulyan_second_column_lower_value_wins(dtype: type) -> None:
    # The rows above with a second column: cluster rows (v, -v), outliers
    # (1000, 1000) and (-1000, -1000). Cluster-cluster distances double, so
    # picks 1-4 are as above (scores 90, 82, 100, 128); a cluster point v is
    # at (1000-v)^2 + (1000+v)^2 = 2e6 + 2v^2 from either outlier, the
    # outliers at 8e6 from each other. Last pick, pool {1, +-1000}: all three
    # score 2e6 + 2 = 2000002, idx2 (=1) wins.
    # Column 1 of the selected rows: -5, -3, -2, -9, -1 -> sorted -9, -5, -3,
    # -2, -1, median -3: take -3 (0), -2 (1), then -5 and -1 tie at 2: the
    # lower value -5 wins -> (-5-3-2)/3 = -10/3 (higher would give -2).
    rows = [[v[0], -v[0]] for v in BULYAN_ROWS[:5]] + [[1000, 1000], [-1000, -1000]]
    r = agg.bulyan(arr(rows, dtype), f=1)
    assert r.selected == (0, 3, 4, 1, 2)
    assert_allclose(r.scores, [90, 82, 100, 128, 2000002], rtol=1e-12)
    assert_allclose(r.vector, [2, -10 / 3], rtol=1e-7 if dtype == np.float32 else 1e-15)


# ---------------------------------------------------------------------------
# geometric median


def test_geometric_median_collinear_is_middle_point() -> None:
    # Points on the line t * (0.6, 0.8), t = 0, 1, 2, 10, 100: the geometric
    # median of collinear points is their 1-D median, t = 2 -> (1.2, 1.6);
    # the mean, t = 22.6, is far from it.
    t = np.array([0.0, 1.0, 2.0, 10.0, 100.0])
    x = t[:, None] * np.array([0.6, 0.8])
    r = agg.geometric_median(x, max_iter=1000, tol=1e-12)
    assert r.rule == "geometric_median"
    assert_allclose(r.vector, [1.2, 1.6], atol=1e-6)
    assert 1 <= r.iterations <= 1000
    # scores are the normalised Weiszfeld weights: they sum to one, and the
    # point at the median dominates.
    assert math.isclose(float(r.scores.sum()), 1.0, rel_tol=1e-12)
    assert int(np.argmax(r.scores)) == 2
    assert r.selected == ()


def test_geometric_median_obtuse_triangle_vertex() -> None:
    # A triangle with an angle >= 120 degrees at a vertex has its Fermat point
    # at that vertex: (0,0) with neighbours (1,0) and (-1,0.1), angle ~174 deg.
    x = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.1]])
    r = agg.geometric_median(x, max_iter=1000, tol=1e-12)
    assert_allclose(r.vector, [0.0, 0.0], atol=1e-6)


def test_geometric_median_symmetric_square_is_centre() -> None:
    # Four corners of a square around (2, -1): by symmetry the geometric median
    # is the centre, which is also the starting mean: one iteration suffices.
    x = np.array([[1.0, -2.0], [3.0, -2.0], [3.0, 0.0], [1.0, 0.0]])
    r = agg.geometric_median(x)
    assert_allclose(r.vector, [2.0, -1.0], atol=1e-12)
    assert r.iterations == 1
    assert_allclose(r.scores, [0.25] * 4, rtol=1e-12)


def test_geometric_median_weighted_heavy_point() -> None:
    # On a line, points 0, 1, 10 with weights 1, 1, 3: the weighted geometric
    # median sits at 10 (3 >= 1 + 1, the weighted 1-D median); unweighted it is 1.
    x = np.array([[0.0], [1.0], [10.0]])
    assert_allclose(agg.geometric_median(x, weights=[1, 1, 3], max_iter=1000, tol=1e-12).vector, [10.0], atol=1e-6)
    assert_allclose(agg.geometric_median(x, max_iter=1000, tol=1e-12).vector, [1.0], atol=1e-6)


def test_geometric_median_iteration_cap() -> None:
    t = np.array([0.0, 1.0, 2.0, 10.0, 100.0])
    x = t[:, None] * np.array([0.6, 0.8])
    r = agg.geometric_median(x, max_iter=1, tol=0.0)
    assert r.iterations == 1
    # One Weiszfeld step from the mean (t = 22.6) on the line:
    # b_i = 1/|t_i - 22.6|: 1/22.6, 1/21.6, 1/20.6, 1/12.6, 1/77.4
    b = 1.0 / np.abs(t - 22.6)
    t1 = float(np.sum(b * t) / np.sum(b))  # ~ 6.57
    assert_allclose(r.vector, t1 * np.array([0.6, 0.8]), rtol=1e-12)


# ---------------------------------------------------------------------------
# centered clipping


@pytest.mark.parametrize("dtype", DTYPES)
def test_centered_clipping_one_iteration_from_zero(dtype: type) -> None:
    x = arr([[3, 4], [0, 1], [0, -0.5]], dtype)
    # centre v = 0, tau = 1: norms 5, 1, 0.5 -> factors min(1, tau/norm) = 0.2, 1, 1
    # clipped: (0.6, 0.8), (0, 1), (0, -0.5); v = sum/3 = (0.6/3, 1.3/3) = (0.2, 0.4333...)
    r = agg.centered_clipping(x, tau=1.0)
    assert r.rule == "centered_clipping"
    assert r.iterations == 1
    assert_allclose(r.scores, [0.2, 1.0, 1.0], rtol=1e-12)
    assert_allclose(r.vector, [0.2, 1.3 / 3], rtol=1e-7 if dtype == np.float32 else 1e-15)
    assert r.vector.dtype == dtype


def test_centered_clipping_one_iteration_from_centre() -> None:
    x = np.array([[3.0, 4.0], [0.0, 1.0], [0.0, -0.5]])
    # centre c = (0, 1), tau = 1:
    #   x0 - c = (3, 3),   norm 3*sqrt(2) -> factor 1/(3 sqrt 2); clipped (1/sqrt2, 1/sqrt2)
    #   x1 - c = (0, 0),   norm 0         -> factor 1
    #   x2 - c = (0,-1.5), norm 1.5       -> factor 2/3; clipped (0, -1)
    # v = c + ((1/sqrt2, 1/sqrt2) + (0,0) + (0,-1)) / 3
    #   = (0.70710678/3, 1 + (0.70710678 - 1)/3) = (0.23570226, 0.90236893)
    r = agg.centered_clipping(x, tau=1.0, center=[0.0, 1.0])
    s = 1 / math.sqrt(2)
    assert_allclose(r.scores, [1 / (3 * math.sqrt(2)), 1.0, 2 / 3], rtol=1e-12)
    assert_allclose(r.vector, [s / 3, 1 + (s - 1) / 3], rtol=1e-14)


def test_centered_clipping_iterations_compose() -> None:
    x = np.array([[3.0, 4.0], [0.0, 1.0], [0.0, -0.5], [-2.0, 0.25]])
    two = agg.centered_clipping(x, tau=0.7, iters=2)
    one = agg.centered_clipping(x, tau=0.7, iters=1)
    again = agg.centered_clipping(x, tau=0.7, iters=1, center=one.vector)
    assert two.iterations == 2
    assert_allclose(two.vector, again.vector, rtol=1e-14, atol=1e-15)
    assert_allclose(two.scores, again.scores, rtol=1e-14)


def test_centered_clipping_large_tau_is_mean() -> None:
    # No update is clipped: v + (1/n) sum (x_i - v) = mean(x) from any centre.
    x = np.array([[3.0, 4.0], [0.0, 1.0], [0.0, -0.5]])
    r = agg.centered_clipping(x, tau=100.0, center=[7.0, -7.0])
    assert_allclose(r.vector, [1.0, 4.5 / 3], rtol=1e-14)
    assert_array_equal(r.scores, [1.0, 1.0, 1.0])


# ---------------------------------------------------------------------------
# nearest-neighbour mixing


@pytest.mark.parametrize("dtype", DTYPES)
def test_nnm_hand(dtype: type, simd: str) -> None:
    x = arr([[0], [1], [3], [10]], dtype)
    # f = 1: each row becomes the mean of its n - f = 3 nearest (itself first):
    #   0: nearest 1 (1), 3 (3)    -> {0,1,2}  (0+1+3)/3  = 4/3
    #   1: nearest 0 (1), 3 (2)    -> {1,0,2}  4/3
    #   3: nearest 1 (2), 0 (3)    -> {2,1,0}  4/3
    #   10: nearest 3 (7), 1 (9)   -> {3,2,1}  (10+3+1)/3 = 14/3
    m = agg.nnm(x, f=1)
    assert m.groups == ((0, 1, 2), (1, 0, 2), (2, 1, 0), (3, 2, 1))
    assert m.updates.shape == (4, 1)
    assert m.updates.dtype == dtype
    tol = 1e-7 if dtype == np.float32 else 1e-15
    assert_allclose(m.updates[:, 0], [4 / 3, 4 / 3, 4 / 3, 14 / 3], rtol=tol)


def test_nnm_distance_ties_go_to_lowest_index(simd: str) -> None:
    x = np.array([[0.0], [-1.0], [1.0], [5.0]])
    # f = 2: n - f = 2 (itself and one neighbour)
    #   idx0 = 0:  -1 and 1 both at distance 1 -> idx1   -> mean -0.5
    #   idx1 = -1: 0 at 1                     -> idx0   -> -0.5
    #   idx2 = 1:  0 at 1                     -> idx0   -> 0.5
    #   idx3 = 5:  1 at 16                    -> idx2   -> 3
    m = agg.nnm(x, f=2)
    assert m.groups == ((0, 1), (1, 0), (2, 0), (3, 2))
    assert_array_equal(m.updates[:, 0], [-0.5, -0.5, 0.5, 3.0])


def test_nnm_self_first_with_duplicates_and_f_zero() -> None:
    x = np.array([[7.0], [7.0], [0.0]])
    # f = 1, 2 nearest: idx1's duplicate idx0 is at distance 0; itself comes first.
    assert agg.nnm(x, f=1).groups == ((0, 1), (1, 0), (2, 0))
    # f = 0: every row becomes the mean of all rows (14/3).
    m = agg.nnm(x, f=0)
    assert all(sorted(g) == [0, 1, 2] for g in m.groups)
    assert [g[0] for g in m.groups] == [0, 1, 2]
    assert_allclose(m.updates[:, 0], [14 / 3] * 3, rtol=1e-15)


# ---------------------------------------------------------------------------
# bucketing


def test_bucketing_partition_sizes_and_means(rng: np.random.Generator) -> None:
    n, d, s = 10, 3, 3
    x = rng.standard_normal((n, d))
    b = agg.bucketing(x, s=s, seed=7)
    # sizes: 10 = 3 + 3 + 3 + 1 (the last bucket is the remainder)
    assert [len(g) for g in b.groups] == [3, 3, 3, 1]
    flat = [i for g in b.groups for i in g]
    assert sorted(flat) == list(range(n))
    assert b.updates.shape == (4, d)
    for row, g in zip(b.updates, b.groups, strict=True):
        assert_allclose(row, x[list(g)].mean(axis=0), rtol=1e-14, atol=1e-15)


def test_bucketing_seeded() -> None:
    x = np.arange(24, dtype=np.float64).reshape(12, 2)
    a = agg.bucketing(x, s=4, seed=3)
    b = agg.bucketing(x, s=4, seed=3)
    assert a.groups == b.groups
    assert_array_equal(a.updates, b.updates)
    # Different seeds give different groupings (12!/(4!^3 3!) = 5775 ways to
    # cut 12 into three buckets of 4; nine other seeds all repeating seed 3's
    # grouping would mean the seed is ignored).
    others = {tuple(frozenset(g) for g in agg.bucketing(x, s=4, seed=s).groups) for s in range(10) if s != 3}
    assert len(others) > 1
    assert any(set(map(frozenset, a.groups)) != set(g) for g in others)


def test_bucketing_extremes() -> None:
    x = np.array([[1.0, 2.0], [3.0, 5.0], [8.0, -1.0]])
    # s >= n: one bucket, the mean (4, 2)
    one = agg.bucketing(x, s=5)
    assert len(one.groups) == 1
    assert sorted(one.groups[0]) == [0, 1, 2]
    assert_allclose(one.updates, [[4.0, 2.0]], rtol=1e-15)
    # s = 1: a permutation of the rows
    perm = agg.bucketing(x, s=1, seed=11)
    assert sorted(g[0] for g in perm.groups) == [0, 1, 2]
    assert_array_equal(perm.updates, x[[g[0] for g in perm.groups]])


def test_rules_tuple_lists_the_aggregating_rules() -> None:
    assert set(agg.RULES) == {
        "mean",
        "krum",
        "multi_krum",
        "median",
        "trimmed_mean",
        "bulyan",
        "geometric_median",
        "centered_clipping",
    }
    for name in agg.RULES:
        assert callable(getattr(agg, name))
