"""Bad input raises the documented, typed errors naming the parameter; good
input of every accepted form gives the same answer and is never mutated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from zerotrustml import aggregators as agg
from zerotrustml.exceptions import (
    EmptyInputError,
    NonFiniteError,
    ParameterError,
    PreconditionError,
    ShapeError,
    ValidationError,
)

# Every rule with valid parameters for n = 7 updates (Bulyan's 4f+3 with f=1).
RULES: dict[str, Callable[[Any], Any]] = {
    "mean": lambda x: agg.mean(x),
    "weighted_mean": lambda x: agg.mean(x, weights=np.arange(1.0, len(x) + 1)),
    "krum": lambda x: agg.krum(x, 1),
    "krum_byzfl": lambda x: agg.krum(x, 1, variant="byzfl"),
    "multi_krum": lambda x: agg.multi_krum(x, 1, m=3),
    "median": lambda x: agg.median(x),
    "trimmed_mean": lambda x: agg.trimmed_mean(x, 2),
    "bulyan": lambda x: agg.bulyan(x, 1),
    "geometric_median": lambda x: agg.geometric_median(x),
    "weighted_geometric_median": lambda x: agg.geometric_median(x, weights=np.arange(1.0, len(x) + 1)),
    "centered_clipping": lambda x: agg.centered_clipping(x, tau=1.0, iters=2),
    "nnm": lambda x: agg.nnm(x, 2),
    "bucketing": lambda x: agg.bucketing(x, 3, seed=1),
    "gram_distances": lambda x: agg.gram_distances(x),
}
N, D = 7, 20  # D > 16: two column tiles, the second one partial


def outputs(result: Any) -> list[np.ndarray]:
    """The arrays a rule returns, for comparisons."""
    if isinstance(result, agg.AggregationResult):
        return [result.vector, result.scores, np.array(result.selected), np.array([result.iterations])]
    if isinstance(result, agg.MixedUpdates):
        return [
            result.updates,
            np.array([i for g in result.groups for i in g]),
            np.array([len(g) for g in result.groups]),
        ]
    dist, err = result
    return [dist, err]


def assert_same(a: Any, b: Any) -> None:
    for u, v in zip(outputs(a), outputs(b), strict=True):
        assert u.dtype == v.dtype
        assert_array_equal(u, v)


def sample(dtype: type = np.float64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, D)).astype(dtype)


def test_exceptions_are_value_errors() -> None:
    for cls in (EmptyInputError, ShapeError, NonFiniteError, PreconditionError, ParameterError):
        assert issubclass(cls, ValidationError)
        assert issubclass(cls, ValueError)
    assert issubclass(ValidationError, ValueError)
    from zerotrustml import exceptions

    assert set(exceptions.__all__) == {
        "ValidationError",
        "EmptyInputError",
        "ShapeError",
        "NonFiniteError",
        "PreconditionError",
        "ParameterError",
        "SubmissionRejected",
        "StoreError",
        "StoreLockedError",
        "StoreCorruptError",
        "SubmitCancelled",
    }
    import asyncio

    assert issubclass(exceptions.SubmitCancelled, asyncio.CancelledError)  # cancellation still propagates
    assert issubclass(exceptions.SubmissionRejected, ValidationError)
    assert issubclass(exceptions.StoreLockedError, exceptions.StoreError)
    assert issubclass(exceptions.StoreCorruptError, exceptions.StoreError)
    with pytest.raises(ValueError):
        agg.krum(np.zeros((2, 2)), 1)


# ---------------------------------------------------------------------------
# non-finite values


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("bad", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize(("row", "col"), ((2, 3), (6, 17), (0, 0)))
def test_non_finite_updates(rule: str, dtype: type, bad: float, row: int, col: int) -> None:
    x = sample(dtype)
    x[row, col] = bad
    with pytest.raises(NonFiniteError, match=rf"updates.*row {row}, column {col}"):
        RULES[rule](x)
    # the same through a list of rows
    with pytest.raises(NonFiniteError, match=rf"updates.*row {row}, column {col}"):
        RULES[rule](list(x))


def test_non_finite_in_simd_paths(simd: str) -> None:
    x = sample(np.float32)
    x[4, 19] = np.nan
    for name in ("krum", "bulyan", "nnm", "median", "gram_distances"):
        with pytest.raises(NonFiniteError, match=r"updates.*row 4, column 19"):
            RULES[name](x)


# ---------------------------------------------------------------------------
# empty, ragged, wrong rank and dtype


@pytest.mark.parametrize("rule", RULES)
def test_empty_inputs(rule: str) -> None:
    call = RULES[rule]
    for empty in ([], (), np.empty((0, 5)), np.empty((0, 5), dtype=np.float32)):
        with pytest.raises(EmptyInputError, match="updates"):
            call(empty)
    for no_columns in (np.empty((N, 0)), [np.empty(0)] * N):
        with pytest.raises(EmptyInputError, match="updates"):
            call(no_columns)


@pytest.mark.parametrize("rule", RULES)
def test_ragged_list(rule: str) -> None:
    rows = list(sample())
    rows[4] = rows[4][:-1]
    with pytest.raises(ShapeError, match=r"updates.*index 4.*expected length 20, got 19"):
        RULES[rule](rows)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", (np.int64, np.int32, np.float16, np.complex128, np.bool_, object))
def test_wrong_dtype(rule: str, dtype: type) -> None:
    x = np.ones((N, D)).astype(dtype)
    with pytest.raises(TypeError, match="updates"):
        RULES[rule](x)
    with pytest.raises(TypeError, match=r"updates\[0\]"):
        RULES[rule](list(x))


@pytest.mark.parametrize("rule", RULES)
def test_mixed_dtypes_in_list(rule: str) -> None:
    rows: list[np.ndarray] = list(sample())
    rows[3] = rows[3].astype(np.float32)
    with pytest.raises(TypeError, match="updates.*same dtype"):
        RULES[rule](rows)


@pytest.mark.parametrize("rule", RULES)
def test_wrong_rank(rule: str) -> None:
    with pytest.raises(ShapeError, match=r"updates.*2-D.*1-D"):
        RULES[rule](np.ones(D))
    with pytest.raises(ShapeError, match=r"updates.*2-D.*3-D"):
        RULES[rule](np.ones((N, D, 2)))
    with pytest.raises(ShapeError, match=r"updates\[1\].*1-D"):
        RULES[rule]([np.ones(D), np.ones((D, 1)), np.ones(D)])


@pytest.mark.parametrize("rule", RULES)
def test_wrong_container(rule: str) -> None:
    with pytest.raises(TypeError, match="updates"):
        RULES[rule]("not updates")
    with pytest.raises(TypeError, match="updates"):
        RULES[rule]({0: np.ones(D)})


# ---------------------------------------------------------------------------
# preconditions on n and f


def test_krum_precondition() -> None:
    x = np.ones((4, 3))  # n = 4 < 2*1 + 3
    for call in (lambda: agg.krum(x, 1), lambda: agg.multi_krum(x, 1), lambda: agg.multi_krum(x, 1, m=1)):
        with pytest.raises(PreconditionError, match=r"krum needs n >= 2f\+3 \(got n=4, f=1\)"):
            call()
    with pytest.raises(PreconditionError, match=r"krum needs n >= 2f\+3 \(got n=2, f=0\)"):
        agg.krum(np.ones((2, 3)), 0)
    with pytest.raises(PreconditionError, match=r"krum.*n >= 2f\+3"):
        agg.krum(np.ones((4, 3)), 1, variant="byzfl")
    # the boundary is accepted
    assert agg.krum(np.ones((5, 3)), 1).selected == (0,)
    assert agg.krum(np.ones((3, 3)), 0).selected == (0,)


def test_bulyan_precondition() -> None:
    with pytest.raises(PreconditionError, match=r"bulyan needs n >= 4f\+3 \(got n=6, f=1\)"):
        agg.bulyan(np.ones((6, 2)), 1)
    with pytest.raises(PreconditionError, match=r"bulyan needs n >= 4f\+3 \(got n=10, f=2\)"):
        agg.bulyan(np.ones((10, 2)), 2)
    assert len(agg.bulyan(np.ones((11, 2)), 2).selected) == 7


def test_trimmed_mean_precondition() -> None:
    with pytest.raises(PreconditionError, match=r"trimmed_mean needs n > 2f \(got n=4, f=2\)"):
        agg.trimmed_mean(np.ones((4, 2)), 2)
    with pytest.raises(PreconditionError, match=r"trimmed_mean needs n > 2f \(got n=1, f=1\)"):
        agg.trimmed_mean(np.ones((1, 2)), 1)
    assert_array_equal(agg.trimmed_mean(np.ones((5, 2)), 2).vector, [1.0, 1.0])


def test_nnm_precondition() -> None:
    with pytest.raises(PreconditionError, match=r"nnm needs n > f \(got n=3, f=3\)"):
        agg.nnm(np.ones((3, 2)), 3)
    assert agg.nnm(np.ones((3, 2)), 2).groups == ((0,), (1,), (2,))


# ---------------------------------------------------------------------------
# parameters


F_RULES: dict[str, Callable[[np.ndarray, Any], Any]] = {
    "krum": lambda x, f: agg.krum(x, f),
    "multi_krum": lambda x, f: agg.multi_krum(x, f, m=2),
    "trimmed_mean": lambda x, f: agg.trimmed_mean(x, f),
    "bulyan": lambda x, f: agg.bulyan(x, f),
    "nnm": lambda x, f: agg.nnm(x, f),
}


@pytest.mark.parametrize("rule", F_RULES)
@pytest.mark.parametrize("f", (-1, -100, 1.0, 1.5, True, "1", None))
def test_bad_f(rule: str, f: Any) -> None:
    with pytest.raises(ParameterError, match=r"^f: must be an integer in \[0, 18446744073709551615\], got "):
        F_RULES[rule](sample(), f)


def test_numpy_integer_f_is_accepted() -> None:
    x = sample()
    assert agg.krum(x, np.int64(1)).selected == agg.krum(x, 1).selected


@pytest.mark.parametrize("m", (0, -1, N + 1, 100, 2.0, True))
def test_bad_m(m: Any) -> None:
    with pytest.raises(ParameterError, match=r"^m: "):
        agg.multi_krum(sample(), 1, m=m)


def test_m_bounds_accepted() -> None:
    x = sample()
    assert len(agg.multi_krum(x, 1, m=1).selected) == 1
    assert sorted(agg.multi_krum(x, 1, m=N).selected) == list(range(N))


@pytest.mark.parametrize("call", ("mean", "geometric_median"))
def test_bad_weights(call: str) -> None:
    fn = getattr(agg, call)
    x = sample()
    w = np.ones(N)
    neg = w.copy()
    neg[3] = -0.5
    with pytest.raises(ParameterError, match=r"weights: weight 3 is negative"):
        fn(x, weights=neg)
    with pytest.raises(ParameterError, match=r"weights: .*all be zero"):
        fn(x, weights=np.zeros(N))
    with pytest.raises(ShapeError, match=r"weights.*expected length 7, got 6"):
        fn(x, weights=w[:-1])
    with pytest.raises(ShapeError, match=r"weights.*expected length 7, got 8"):
        fn(x, weights=np.ones(N + 1))
    for bad in (np.nan, np.inf):
        nan = w.copy()
        nan[5] = bad
        with pytest.raises(NonFiniteError, match=r"weights.*row 5"):
            fn(x, weights=nan)
    with pytest.raises(ShapeError, match="weights"):
        fn(x, weights=np.ones((N, 1)))
    with pytest.raises(ShapeError, match="weights"):
        fn(x, weights=2.0)


@pytest.mark.parametrize("tau", (0.0, -1.0, np.nan, np.inf, -np.inf, "1", None, True))
def test_bad_tau(tau: Any) -> None:
    with pytest.raises(ParameterError, match=r"^tau: "):
        agg.centered_clipping(sample(), tau=tau)


def test_bad_clipping_iters_and_center() -> None:
    x = sample()
    for iters in (0, -1, 1.5):
        with pytest.raises(ParameterError, match=r"^iters: "):
            agg.centered_clipping(x, tau=1.0, iters=iters)
    with pytest.raises(ShapeError, match=r"center.*expected length 20, got 19"):
        agg.centered_clipping(x, tau=1.0, center=np.zeros(D - 1))
    for dtype in (np.float32, np.float64):
        c = np.zeros(D)
        c[7] = np.nan
        with pytest.raises(NonFiniteError, match=r"center.*column 7"):
            agg.centered_clipping(x.astype(dtype), tau=1.0, center=c)


@pytest.mark.parametrize("nu", (0.0, -1e-6, np.inf, np.nan, "x", None))
def test_bad_nu(nu: Any) -> None:
    with pytest.raises(ParameterError, match=r"^nu: "):
        agg.geometric_median(sample(), nu=nu)


@pytest.mark.parametrize("tol", (-1e-9, np.inf, np.nan, None))
def test_bad_tol(tol: Any) -> None:
    with pytest.raises(ParameterError, match=r"^tol: "):
        agg.geometric_median(sample(), tol=tol)


@pytest.mark.parametrize("max_iter", (0, -5, 10.0, None, True))
def test_bad_max_iter(max_iter: Any) -> None:
    with pytest.raises(ParameterError, match=r"^max_iter: "):
        agg.geometric_median(sample(), max_iter=max_iter)


def test_geometric_median_tol_zero_is_valid() -> None:
    assert agg.geometric_median(sample(), tol=0.0, max_iter=3).iterations <= 3


@pytest.mark.parametrize("variant", ("Standard", "byz", "", "n-f-1"))
def test_bad_variant(variant: str) -> None:
    with pytest.raises(ParameterError, match=r"^variant: expected 'standard' or 'byzfl'"):
        agg.krum(sample(), 1, variant=variant)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match=r"^variant: "):
        agg.multi_krum(sample(), 1, variant=variant)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ("sse", "AVX2", "", "neon"))
def test_bad_simd_path(name: str) -> None:
    before = agg.simd_path()
    with pytest.raises(ParameterError, match=r"^name: expected 'scalar', 'avx2' or 'avx512'"):
        agg.set_simd_path(name)  # type: ignore[arg-type]
    assert agg.simd_path() == before


def test_simd_fixture_switches_paths(simd: str) -> None:
    assert agg.simd_path() == simd
    assert simd in ("scalar", "avx2", "avx512")


def test_set_simd_path_returns_the_path_taken() -> None:
    before = agg.simd_path()
    try:
        assert agg.set_simd_path("scalar") == "scalar"
        assert agg.simd_path() == "scalar"
        taken = agg.set_simd_path("avx512")
        assert taken in ("scalar", "avx2", "avx512")
        assert agg.simd_path() == taken
    finally:
        agg.set_simd_path(before)  # type: ignore[arg-type]


@pytest.mark.parametrize("s", (0, -1, 1.5, None))
def test_bad_bucket_size(s: Any) -> None:
    with pytest.raises(ParameterError, match=r"^s: "):
        agg.bucketing(sample(), s)


@pytest.mark.parametrize("seed", (-1, 0.5, None))
def test_bad_bucket_seed(seed: Any) -> None:
    with pytest.raises(ParameterError, match=r"^seed: "):
        agg.bucketing(sample(), 2, seed=seed)


# ---------------------------------------------------------------------------
# accepted forms of good input


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_inputs_are_not_mutated(rule: str, dtype: type) -> None:
    x = sample(dtype)
    keep = x.copy()
    RULES[rule](x)
    assert_array_equal(x, keep)
    rows = [r.copy() for r in x]
    RULES[rule](rows)
    for r, k in zip(rows, keep, strict=True):
        assert_array_equal(r, k)


def test_parameters_are_not_mutated() -> None:
    x = sample()
    w = np.arange(1.0, N + 1)
    wk = w.copy()
    c = np.linspace(-1, 1, D)
    ck = c.copy()
    agg.mean(x, weights=w)
    agg.geometric_median(x, weights=w)
    agg.centered_clipping(x, tau=0.5, center=c, iters=3)
    assert_array_equal(w, wk)
    assert_array_equal(c, ck)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_non_contiguous_inputs(rule: str, dtype: type) -> None:
    call = RULES[rule]
    wide = np.random.default_rng(5).standard_normal((N, 2 * D)).astype(dtype)
    views = {
        "strided columns": wide[:, ::2],
        "fortran order": np.asfortranarray(wide[:, :D]),
        "transposed copy": wide[:, :D].T.copy().T,
        "reversed rows": wide[::-1, :D],
    }
    for name, v in views.items():
        assert not v.flags.c_contiguous, name
        assert_same(call(v), call(np.ascontiguousarray(v)))
    # a list of strided 1-D views
    rows = [wide[i, ::2] for i in range(N)]
    assert not rows[0].flags.c_contiguous
    assert_same(call(rows), call(np.ascontiguousarray(wide[:, ::2])))


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_output_dtype_follows_input(rule: str, dtype: type) -> None:
    out = RULES[rule](sample(dtype))
    if isinstance(out, agg.AggregationResult):
        assert out.vector.dtype == dtype
        assert out.vector.shape == (D,)
        assert out.scores.dtype == np.float64
        assert np.asarray(out).dtype == dtype  # __array__
    elif isinstance(out, agg.MixedUpdates):
        assert out.updates.dtype == dtype
        assert out.updates.shape[1] == D
    else:
        dist, err = out
        assert dist.dtype == err.dtype == np.float64
        assert dist.shape == (N, N)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_list_of_rows_equals_stacked_array(rule: str, dtype: type) -> None:
    x = sample(dtype, seed=9)
    stacked = RULES[rule](x)
    assert_same(RULES[rule](list(x)), stacked)
    assert_same(RULES[rule](tuple(x)), stacked)
    assert_same(RULES[rule]([r.copy() for r in x]), stacked)


def test_list_of_python_lists_is_float64() -> None:
    rows = [[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]]
    r = agg.mean(rows)
    assert r.vector.dtype == np.float64
    assert_array_equal(r.vector, [3.0, 5.0])


# ---------------------------------------------------------------------------
# integers and floats at the edge of their ranges: a typed error or a correct
# answer, never a wrong answer, a non-finite aggregate or a Rust panic
# (pyo3's PanicException is a BaseException and escapes `except Exception`)


@pytest.mark.parametrize("rule", F_RULES)
@pytest.mark.parametrize("f", (2**31, 2**62, 2**63 - 1, 2**63, 2**64 - 1))
def test_huge_f_violates_the_precondition(rule: str, f: int) -> None:
    # n = 7 updates can never satisfy n >= 2f+3, n >= 4f+3, n > 2f or n > f
    # for such f; unchecked arithmetic on 2f or 4f must not wrap around.
    with pytest.raises(PreconditionError, match=rf"f={f}\)"):
        F_RULES[rule](sample(), f)


@pytest.mark.parametrize("rule", F_RULES)
def test_f_beyond_64_bits_is_a_validation_error(rule: str) -> None:
    with pytest.raises(ValidationError, match=r"\bf\b"):
        F_RULES[rule](sample(), 2**64)


def test_integer_parameters_beyond_64_bits() -> None:
    x = sample()
    with pytest.raises(ValidationError, match=r"^m: "):
        agg.multi_krum(x, 1, m=2**64)
    # a seed outside the generator's 64 bits: a ParameterError naming it
    with pytest.raises(ValidationError, match=r"^seed: "):
        agg.bucketing(x, 2, seed=2**64)
    with pytest.raises(ValidationError, match=r"^s: "):
        agg.bucketing(x, 2**64)


def near_max_rows() -> np.ndarray:
    # finite float64 values between 1.0e308 and 1.7e308 (max is ~1.798e308)
    return 1e308 * (1.0 + 0.1 * np.array([[0, 7], [1, 6], [2, 5], [3, 4], [4, 3], [5, 2], [6, 1], [7, 0]], float))


NEAR_MAX_RULES = (
    "mean",
    "krum",
    "multi_krum",
    "median",
    "trimmed_mean",
    "bulyan",
    "geometric_median",
    "nnm",
    "bucketing",
)


@pytest.mark.parametrize("rule", NEAR_MAX_RULES)
def test_float64_near_max_gives_a_finite_aggregate_or_a_typed_error(rule: str) -> None:
    x = near_max_rows()
    calls: dict[str, Callable[[], Any]] = {
        "mean": lambda: agg.mean(x),
        "krum": lambda: agg.krum(x, 1),
        "multi_krum": lambda: agg.multi_krum(x, 1),
        "median": lambda: agg.median(x),
        "trimmed_mean": lambda: agg.trimmed_mean(x, 2),
        "bulyan": lambda: agg.bulyan(x, 1),
        "geometric_median": lambda: agg.geometric_median(x),
        "nnm": lambda: agg.nnm(x, 1),
        "bucketing": lambda: agg.bucketing(x, 3),
    }
    try:
        out = calls[rule]()
    except ValidationError as e:
        assert "updates" in str(e)
        return
    rows = out.updates if isinstance(out, agg.MixedUpdates) else out.vector[None, :]
    assert np.all(np.isfinite(rows)), f"{rule} returned {rows} for finite inputs"
    for r in rows:
        assert np.all(r >= x.min(axis=0)) and np.all(r <= x.max(axis=0))


def test_median_of_two_values_near_max() -> None:
    # (1.0e308 + 1.7e308) / 2 = 1.35e308 is representable; only the sum is not.
    x = np.array([[1.0e308], [1.7e308]])
    try:
        r = agg.median(x)
    except ValidationError:
        return
    np.testing.assert_allclose(r.vector, [1.35e308], rtol=1e-15)


def test_centered_clipping_with_huge_distances() -> None:
    # Every update is farther than tau from the centre 0, so each is clipped
    # to norm tau: the result is tau = 1e300. Squaring 1.5e308 overflows; that
    # must not turn the clipping factor tau / ||x|| into 0.
    x = np.array([[1.5e308], [1.6e308]])
    try:
        r = agg.centered_clipping(x, tau=1e300)
    except ValidationError:
        return
    np.testing.assert_allclose(r.vector, [1e300], rtol=1e-12)


def test_krum_with_overflowing_squared_distances_does_not_panic() -> None:
    # 1-D: rows 0 and 2 at +1e300, rows 1 and 3 at -1e300, row 4 at 0. f = 1,
    # k = 2: rows 0-3 score 0 + (1e300)^2, row 4 scores 2 (1e300)^2; row 0 wins.
    # The squares overflow float64.
    x = np.array([[1e300], [-1e300], [1e300], [-1e300], [0.0]])
    try:
        r = agg.krum(x, 1)
    except ValidationError:
        return
    assert r.selected == (0,)
