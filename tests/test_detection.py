"""Similarity detection on synthetic rounds: generic outliers, label skew, honest-only rounds.

The honest updates are a common direction plus noise (IID), or one of a few
class directions plus noise (label skew). The outliers are generic kinds,
not one attack: large-norm noise, a reversed direction, and a cluster of
identical copies. The detector is never told which rows are which.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import numpy.typing as npt
import pytest
from references import exact_krum_scores

from zerotrustml import aggregators
from zerotrustml.defence.config import DefenceConfig
from zerotrustml.defence.detection import COMPONENTS, MAD_TO_SIGMA, Evidence, flag, robust_z, similarity_evidence
from zerotrustml.exceptions import NonFiniteError, ParameterError, PreconditionError, ShapeError

CONFIG = DefenceConfig()
D = 2000
F32 = npt.NDArray[np.float32]


def unit(rng: np.random.Generator, d: int = D) -> npt.NDArray[np.float64]:
    v = rng.standard_normal(d)
    return v / np.linalg.norm(v)


def iid_honest(rng: np.random.Generator, n: int, noise: float = 0.7) -> tuple[F32, npt.NDArray[np.float64]]:
    """n honest updates: a unit common direction plus isotropic noise of norm about ``noise``."""
    mu = unit(rng)
    return (mu + noise * rng.standard_normal((n, D)) / np.sqrt(D)).astype(np.float32), mu


def with_outliers(rng: np.random.Generator, n_honest: int = 14) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Honest rows, then large-norm noise x2, reversed direction x2, three identical copies."""
    honest, mu = iid_honest(rng, n_honest)
    noise = (5.0 * rng.standard_normal((2, D)) / np.sqrt(D)).astype(np.float32)
    reversed_ = -iid_honest(rng, 2)[0] - mu.astype(np.float32)
    copy = (mu + 0.7 * rng.standard_normal(D) / np.sqrt(D)).astype(np.float32)
    copies = np.repeat(copy[None, :], 3, axis=0)
    x = np.vstack([honest, noise, reversed_, copies]).astype(np.float32)
    byz = np.zeros(x.shape[0], dtype=bool)
    byz[n_honest:] = True
    return x, byz


def label_skew_honest(rng: np.random.Generator, sizes: tuple[int, ...], noise: float = 0.3) -> F32:
    """Honest nodes under strong label skew: each trains on one class, so its update follows that class's direction.

    Magnitudes vary between nodes (different data sizes), as real gradients do.
    """
    common = unit(rng)
    classes = np.stack([unit(rng) for _ in sizes])
    rows = []
    for k, size in enumerate(sizes):
        for _ in range(size):
            scale = rng.uniform(0.7, 1.4)
            rows.append(scale * (0.2 * common + classes[k] + noise * rng.standard_normal(D) / np.sqrt(D)))
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_generic_outliers_flagged_and_no_honest(seed: int, dtype: type[np.floating]) -> None:
    x, byz = with_outliers(np.random.default_rng(seed))
    x = x.astype(dtype)
    f = int(byz.sum())
    verdict = flag(similarity_evidence(x, None, f, CONFIG), CONFIG)
    assert np.all(verdict.flagged[byz]), f"missed outliers: {np.flatnonzero(byz & ~verdict.flagged)}"
    assert not np.any(verdict.flagged[~byz]), f"honest flagged: {np.flatnonzero(~byz & verdict.flagged)}"


def test_each_outlier_kind_is_flagged_for_its_own_reason() -> None:
    x, byz = with_outliers(np.random.default_rng(7))
    ev = similarity_evidence(x, None, int(byz.sum()), CONFIG)
    verdict = flag(ev, CONFIG)
    n_honest = int((~byz).sum())
    noise, reversed_, copies = range(n_honest, n_honest + 2), range(n_honest + 2, n_honest + 4), range(n_honest + 4, 21)
    for i in noise:
        assert any("distance to the median" in r for r in verdict.reasons[i])
    for i in reversed_:
        assert any("cosine to the median" in r for r in verdict.reasons[i])
        assert ev.cos_median[i] < CONFIG.label_skew_cos_min
    assert ev.clusters == (tuple(copies),)
    for i in copies:
        assert any("near-duplicate" in r for r in verdict.reasons[i])
    for i in range(n_honest):
        assert verdict.reasons[i] == ()
        assert verdict.suspicion[i] == 0.0


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("sizes", [(10, 6, 4), (8, 5, 3, 2, 2), (12, 4, 2, 2), (15, 3, 2)])
def test_label_skew_flags_no_honest_node(seed: int, sizes: tuple[int, ...]) -> None:
    x = label_skew_honest(np.random.default_rng(seed), sizes)
    ev = similarity_evidence(x, None, 3, CONFIG)
    # The round really is skewed: cosines spread widely, all inside the tolerated band.
    assert ev.cos_median.max() - ev.cos_median.min() > 0.3
    assert np.all(ev.cos_median >= CONFIG.label_skew_cos_min)
    verdict = flag(ev, CONFIG)
    assert not verdict.flagged.any(), [r for r in verdict.reasons if r]


def test_label_skew_band_is_what_tolerates_it() -> None:
    """A band narrower than the honest spread would flag honest skewed nodes; the configured band does not."""
    x = label_skew_honest(np.random.default_rng(3), (10, 6, 4))
    narrow = DefenceConfig(label_skew_cos_min=0.6)
    assert flag(similarity_evidence(x, None, 3, narrow), narrow).flagged.any()
    assert not flag(similarity_evidence(x, None, 3, CONFIG), CONFIG).flagged.any()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("n", "noise"), [(5, 0.7), (20, 0.7), (40, 2.0), (20, 0.05)])
def test_all_honest_no_flags(seed: int, n: int, noise: float) -> None:
    x, _ = iid_honest(np.random.default_rng(seed), n, noise)
    ev = similarity_evidence(x, None, max(0, (n - 3) // 2), CONFIG)
    verdict = flag(ev, CONFIG)
    assert not verdict.flagged.any(), [r for r in verdict.reasons if r]
    # High signal-to-noise (noise 0.05): honest pairs have cosine > 0.99, yet are not near-duplicates.
    assert ev.clusters == ()


def test_near_duplicates_need_tiny_relative_distance() -> None:
    rng = np.random.default_rng(11)
    x, mu = iid_honest(rng, 15, noise=0.05)  # honest pairwise cosine above SYBIL_COS_THRESHOLD
    base = x[0].astype(np.float64)
    near = base + 1e-4 * rng.standard_normal((3, D)) / np.sqrt(D)  # copies with a little noise added
    x = np.vstack([x, near.astype(np.float32)])
    pair = x[1].astype(np.float64) @ x[2] / np.linalg.norm(x[1]) / np.linalg.norm(x[2])
    assert pair > CONFIG.sybil_cos_threshold
    ev = similarity_evidence(x, None, 4, CONFIG)
    assert ev.clusters == ((0, 15, 16, 17),)
    verdict = flag(ev, CONFIG)
    assert set(np.flatnonzero(verdict.flagged)) == {0, 15, 16, 17}


def test_copies_stay_duplicates_despite_a_large_common_component() -> None:
    """Gram-form distances lose precision when every update shares a large offset; pairs in doubt are re-measured."""
    rng = np.random.default_rng(5)
    x, _ = iid_honest(rng, 12, noise=0.7)
    x = x + np.float32(300.0) * unit(rng).astype(np.float32)
    x = np.vstack([x, np.repeat(x[:1], 2, axis=0)])
    ev = similarity_evidence(x, None, 3, CONFIG)
    assert ev.clusters == ((0, 12, 13),)


def test_majority_of_identical_updates_is_consensus_not_collusion() -> None:
    x = np.zeros((9, 50), dtype=np.float32)  # a converged model: every gradient zero
    ev = similarity_evidence(x, None, 3, CONFIG)
    assert ev.clusters == (tuple(range(9)),)
    verdict = flag(ev, CONFIG)
    assert not verdict.flagged.any()
    assert np.all(ev.cos_median == 0.0)


def test_deterministic_and_inputs_untouched() -> None:
    x, byz = with_outliers(np.random.default_rng(3))
    ref = x[:14].mean(axis=0)
    before, ref_before = x.copy(), ref.copy()
    a = similarity_evidence(x, ref, 7, CONFIG)
    b = similarity_evidence(x, ref, 7, CONFIG)
    assert json.dumps(a.to_json()) == json.dumps(b.to_json())
    assert json.dumps(flag(a, CONFIG).to_json()) == json.dumps(flag(b, CONFIG).to_json())
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(ref, ref_before)


def test_evidence_fields() -> None:
    x, byz = with_outliers(np.random.default_rng(2))
    n, f = x.shape[0], int(byz.sum())
    ev = similarity_evidence(x, None, f, CONFIG)
    assert list(ev.cluster_of()) == [-1] * 18 + [0, 0, 0]
    # The statistics take one row per cluster: the 18 singletons and the cluster's first copy.
    distinct = list(range(19))
    m = len(distinct)
    assert ev.n == n and ev.f == f and ev.krum_k == m - f - 2
    for name in ("norms", "norm_z", "cos_median", "dist_median", "dist_z", "krum_scores", "krum_z", "nn_distance"):
        arr = getattr(ev, name)
        assert arr.shape == (n,) and arr.dtype == np.float64, name
    assert ev.cos_reference is None and ev.reference_agreement is None
    x64 = x.astype(np.float64)
    med = np.asarray(aggregators.median(x[distinct]).vector, dtype=np.float64)
    np.testing.assert_allclose(ev.norms, np.linalg.norm(x64, axis=1), rtol=1e-5)
    np.testing.assert_allclose(ev.dist_median, np.linalg.norm(x64 - med, axis=1), rtol=1e-5)
    cos = x64 @ med / np.linalg.norm(x64, axis=1) / np.linalg.norm(med)
    np.testing.assert_allclose(ev.cos_median, cos, atol=1e-6)
    scores = exact_krum_scores(x[distinct], f)
    np.testing.assert_allclose(ev.krum_scores, np.concatenate([scores, [scores[-1]] * 2]), rtol=1e-4, atol=1e-5)
    floor = CONFIG.similarity_mad_floor
    np.testing.assert_allclose(ev.dist_z, robust_z(ev.dist_median, floor, among=distinct))
    np.testing.assert_allclose(ev.norm_z, robust_z(ev.norms, floor, among=distinct))
    # Krum scores are standardised on the m - f lowest distinct scores (the core an honest majority contains).
    expected = robust_z(np.sqrt(ev.krum_scores / ev.krum_k), floor, core=m - f, among=distinct)
    np.testing.assert_allclose(ev.krum_z, expected)
    json.dumps(ev.to_json())
    verdict = flag(ev, CONFIG)
    assert verdict.suspicion.shape == (n,) and verdict.flagged.dtype == np.bool_
    assert len(verdict.reasons) == n
    assert set(verdict.components) == set(COMPONENTS)
    assert np.all((verdict.suspicion >= 0) & (verdict.suspicion <= 1))
    np.testing.assert_array_equal(verdict.flagged, verdict.suspicion >= CONFIG.suspicion_threshold)
    json.dumps(verdict.to_json())


def test_precomputed_distances_give_the_same_evidence() -> None:
    x, byz = with_outliers(np.random.default_rng(4))
    a = similarity_evidence(x, None, 7, CONFIG)
    b = similarity_evidence(x, None, 7, CONFIG, distances=aggregators.gram_distances(x))
    assert a.to_json() == b.to_json()


def reference_round(rng: np.random.Generator) -> tuple[F32, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Honest rows a + noise; a reference r = a + c (c orthogonal to a); one last row y = 0.5a - c.

    y lies inside the band with respect to the median (about a) and is no
    outlier in distance, but points against the reference.
    """
    a = unit(rng)
    c = rng.standard_normal(D)
    c -= (c @ a) * a
    c *= 1.5 / np.linalg.norm(c)
    honest = a + 1.6 * rng.standard_normal((15, D)) / np.sqrt(D)
    y = 0.5 * a - c
    return np.vstack([honest, y]).astype(np.float32), a + c, a


def test_reference_cosine_used_when_given() -> None:
    x, ref, a = reference_round(np.random.default_rng(9))
    without = similarity_evidence(x, None, 3, CONFIG)
    assert not flag(without, CONFIG).flagged.any()
    ev = similarity_evidence(x, ref, 3, CONFIG)
    assert ev.cos_reference is not None and ev.reference_agreement is not None
    x64 = x.astype(np.float64)
    expected = x64 @ ref / np.linalg.norm(x64, axis=1) / np.linalg.norm(ref)
    np.testing.assert_allclose(ev.cos_reference, expected, atol=1e-6)
    assert ev.reference_agreement == pytest.approx(float(np.median(expected)), abs=1e-6)
    verdict = flag(ev, CONFIG)
    assert list(np.flatnonzero(verdict.flagged)) == [15]
    assert any("previous aggregate" in r for r in verdict.reasons[15])


def test_stale_reference_is_ignored() -> None:
    """A reference the round as a whole disagrees with (training turned) flags no one."""
    x, _, a = reference_round(np.random.default_rng(9))
    ev = similarity_evidence(x[:15], -a, 3, CONFIG)
    assert ev.cos_reference is not None and np.all(ev.cos_reference < CONFIG.label_skew_cos_min)
    assert ev.reference_agreement is not None and ev.reference_agreement < CONFIG.reference_agreement_min
    assert not flag(ev, CONFIG).flagged.any()


def _evidence(n: int = 6, **changes: object) -> Evidence:
    zeros = np.zeros(n)
    base = Evidence(
        f=1,
        krum_k=n - 3,
        norms=np.ones(n),
        norm_z=zeros.copy(),
        cos_median=np.full(n, 0.5),
        dist_median=np.ones(n),
        dist_z=zeros.copy(),
        cos_reference=None,
        reference_agreement=None,
        krum_scores=np.ones(n),
        krum_z=zeros.copy(),
        nn_distance=np.ones(n),
        duplicate_scale=0.1,
        clusters=(),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_suspicion_formula() -> None:
    cos = np.array([-0.5, -0.5001, -1.0, 0.99, 0.5, 0.5, 0.5, -0.9])
    dist_z = np.array([0, 0, 0, 0, 3.5, 7.0, 7.0, 7.0])
    norm_z = np.array([0, 0, 0, 0, 3.6, 3.6, 0.0, 0.0])
    ev = _evidence(n=8, cos_median=cos, dist_z=dist_z, norm_z=norm_z, krum_z=dist_z)
    v = flag(ev, CONFIG)
    assert v.components["direction"][0] == 0.0  # the band is inclusive
    assert v.components["direction"][1] == pytest.approx(0.5, abs=1e-3)
    assert v.components["direction"][2] == 1.0
    assert v.suspicion[3] == 0.0  # above the band alone is not suspicious
    assert v.components["distance"][4] == 0.0  # z at the threshold is not above it
    assert v.components["distance"][5] == 1.0 and v.components["krum"][5] == 1.0
    # Far only because it points elsewhere (in the band, ordinary norm): what label skew does, so tolerated.
    assert v.suspicion[6] == 0.0
    # Outside the band the distance counts whatever the norm.
    assert v.components["distance"][7] == 1.0
    assert list(v.flagged) == [False, True, True, False, False, True, False, True]
    assert v.suspicion[1] == pytest.approx(0.5, abs=1e-3)
    assert v.reasons[6] == () and len(v.reasons[7]) == 3


def test_sybil_scores_above_and_inside_the_band() -> None:
    cos = np.array([0.99, 0.99, 0.5, 0.5, 0.3, 0.3])
    v = flag(_evidence(cos_median=cos, clusters=((0, 1), (2, 3))), CONFIG)
    assert list(v.components["sybil"]) == [1.0, 1.0, 0.5, 0.5, 0.0, 0.0]
    assert "LABEL_SKEW_COS_MAX" in v.reasons[0][0]
    # A stricter threshold keeps flagging copies that hug the consensus, not the others.
    strict = DefenceConfig(suspicion_threshold=0.75)
    assert (
        list(flag(_evidence(cos_median=cos, clusters=((0, 1), (2, 3))), strict).flagged) == [True, True] + [False] * 4
    )
    # A strict majority of copies is still copies; only a round in which every update agrees is a consensus.
    assert list(flag(_evidence(cos_median=cos, clusters=((0, 1, 2, 3),)), CONFIG).flagged) == [True] * 4 + [False] * 2
    assert not flag(_evidence(cos_median=cos, clusters=(tuple(range(6)),)), CONFIG).flagged.any()


def test_robust_z_floor() -> None:
    v = np.array([10.0, 10.0, 10.0, 10.0, 10.5, 20.0])
    z = robust_z(v, 0.1)
    assert z[4] == pytest.approx(0.5)  # MAD is 0: the floor 0.1 * 10 sets the scale
    assert z[5] == pytest.approx(10.0)
    assert np.all(robust_z(np.zeros(4), 0.1) == 0.0)
    w = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    assert robust_z(w, 0.0)[4] == pytest.approx((100 - 3) / (1.4826 * 1.0))


def test_bad_input() -> None:
    x = np.random.default_rng(0).standard_normal((6, 10)).astype(np.float32)
    with pytest.raises(PreconditionError, match="n >= 3"):
        similarity_evidence(x[:2], None, 0, CONFIG)
    with pytest.raises(ParameterError, match="f: must be"):
        similarity_evidence(x, None, 6, CONFIG)
    with pytest.raises(ParameterError, match="f: must be"):
        similarity_evidence(x, None, True, CONFIG)
    with pytest.raises(ShapeError, match="updates"):
        similarity_evidence(x[0], None, 0, CONFIG)
    with pytest.raises(TypeError, match="dtype"):
        similarity_evidence(x.astype(np.int32), None, 0, CONFIG)
    with pytest.raises(ShapeError, match="reference"):
        similarity_evidence(x, np.zeros(9), 0, CONFIG)
    bad_ref = np.zeros(10)
    bad_ref[3] = np.inf
    with pytest.raises(NonFiniteError, match="reference"):
        similarity_evidence(x, bad_ref, 0, CONFIG)
    y = x.copy()
    y[2, 4] = np.nan
    with pytest.raises(NonFiniteError):
        similarity_evidence(y, None, 0, CONFIG)
    with pytest.raises(ShapeError, match="distances"):
        similarity_evidence(x, None, 0, CONFIG, distances=(np.zeros((2, 2)), np.zeros((2, 2))))


def test_noise_at_half_the_nodes_is_found_by_the_krum_core() -> None:
    # At f = n/2 the plain median of Krum scores sits between the honest and the noisy ones; the n - f
    # lowest scores are the honest ones, so the noise stands out against them.
    rng = np.random.default_rng(5)
    honest = (rng.normal(0, 1, (10, 400)) * 0.1 + rng.normal(0, 1, 400)).astype(np.float32)
    noise = rng.normal(0, 3, (10, 400)).astype(np.float32)
    ev = similarity_evidence(np.concatenate([honest, noise]), None, 10, CONFIG)
    assert (ev.krum_z[10:] > CONFIG.similarity_z_threshold).all()
    assert (ev.krum_z[:10] <= CONFIG.similarity_z_threshold).all()
    core = robust_z(np.array([1.0, 1.1, 0.9, 50.0, 60.0]), 0.2, core=3)
    assert core[3] > 100 and abs(core[0]) < 1


def test_relative_direction_scores_only_opposed_outliers() -> None:
    """Inside the band, a cosine counts when it is negative and far below the round's typical cosine."""
    cos = np.array([-0.2, 0.05, -0.6, 0.5, 0.52, 0.48, 0.51, 0.49])
    v = flag(_evidence(n=8, cos_median=cos), CONFIG)
    # Row 2 is below the band, so it does not help set what is typical: median 0.49 over the others,
    # MAD 0.02, so the floor 0.2 * 0.49 sets the scale.
    z = (cos - 0.49) / (0.2 * 0.49)
    assert v.components["direction"][0] == pytest.approx(min(1.0, 0.5 * -z[0] / 3.5))  # opposed: z -7.0
    assert v.components["direction"][1] == 0.0  # z -4.5 but positive: elsewhere, as label skew is
    assert v.components["direction"][2] == 1.0  # below the band and opposed
    assert list(v.flagged) == [True, False, True] + [False] * 5
    assert "robust z -7.0" in v.reasons[0][0] and "LABEL_SKEW_COS_MIN" not in v.reasons[0][0]


def test_rows_other_tests_catch_do_not_set_the_typical_cosine() -> None:
    """Noise rows (cosine ~0, far away) would shrink the cosine spread until skewed honest rows look opposed."""
    honest = np.array([0.3, -0.1, 0.2, 0.1, 0.4, 0.0, 0.25, 0.15])
    noise = np.array([0.001, -0.001, 0.0005, -0.0005, 0.0, 0.0002, -0.0002, 0.0003, -0.0003])
    cos = np.concatenate([honest, noise])
    far = np.concatenate([np.zeros(8), np.full(9, 10.0)])
    v = flag(_evidence(n=17, cos_median=cos, dist_z=far, norm_z=far, krum_z=far), CONFIG)
    assert list(np.flatnonzero(v.flagged)) == list(range(8, 17))
    # Judged among all rows, the honest -0.1 would have been an opposed outlier.
    assert robust_z(cos, CONFIG.similarity_mad_floor)[1] < -CONFIG.similarity_z_threshold


def test_contrary_direction_inside_the_band_is_flagged_without_skew() -> None:
    """Honest updates that agree (no label skew): a reversed one scaled into the band stands out."""
    rng = np.random.default_rng(3)
    g = rng.standard_normal(D)
    honest = [g + 1.2 * rng.standard_normal(D) for _ in range(14)]
    # Cosine to the median about -0.3: inside the band, far from the honest ones (about +0.6).
    contrary = [-0.5 * g + 1.2 * rng.standard_normal(D) for _ in range(6)]
    x = np.asarray(honest + contrary, dtype=np.float32)
    ev = similarity_evidence(x, None, 6, CONFIG)
    assert np.all(ev.cos_median[14:] > CONFIG.label_skew_cos_min) and np.all(ev.cos_median[14:] < 0)
    v = flag(ev, CONFIG)
    assert list(np.flatnonzero(v.flagged)) == list(range(14, 20)), [r for r in v.reasons if r]


def test_copies_count_once_in_every_statistic() -> None:
    """A round with three copies of an update scores its other rows exactly as the round with one copy."""
    x, _ = with_outliers(np.random.default_rng(4))
    ev = similarity_evidence(x, None, 4, CONFIG)
    (cluster,) = ev.clusters
    assert len(cluster) == 3
    among = [i for i in range(ev.n) if i not in cluster[1:]]
    alone = similarity_evidence(x[among], None, 4, CONFIG)
    assert alone.clusters == () and alone.krum_k == ev.krum_k
    for name in ("cos_median", "dist_median", "dist_z", "norm_z", "krum_scores", "krum_z"):
        np.testing.assert_allclose(getattr(ev, name)[among], getattr(alone, name), rtol=1e-6, err_msg=name)
    a, b = flag(ev, CONFIG), flag(alone, CONFIG)
    np.testing.assert_allclose(a.components["direction"][among], b.components["direction"])
    # The copies share their first member's values.
    assert np.all(ev.krum_scores[list(cluster)] == ev.krum_scores[cluster[0]])


def test_robust_z_among_sets_location_and_scale_only() -> None:
    v = np.array([1.0, 2.0, 3.0, 100.0, 100.0, 100.0])
    z = robust_z(v, 0.0, among=[0, 1, 2])
    np.testing.assert_allclose(z, (v - 2.0) / (MAD_TO_SIGMA * 1.0))


@pytest.mark.parametrize("seed", range(4))
def test_copies_of_one_honest_update_are_flagged_even_as_a_majority(seed: int) -> None:
    """A mimic block: ten copies of one honest update beside nine other honest ones (11 of 20 identical)."""
    rng = np.random.default_rng(seed)
    honest = label_skew_honest(rng, (4, 3, 3))
    x = np.vstack([honest, np.repeat(honest[:1], 10, axis=0)])
    ev = similarity_evidence(x, None, 10, CONFIG)
    assert ev.clusters == ((0, *range(10, 20)),)
    v = flag(ev, CONFIG)
    assert list(np.flatnonzero(v.flagged)) == [0, *range(10, 20)], [r for r in v.reasons if r]
    # The copies count once, so the median is the honest rows': every honest cosine stays in the band.
    assert np.all(ev.cos_median[1:10] > CONFIG.label_skew_cos_min)
