"""Attacks: each one against its definition, plus knowledge modes, shapes and errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pytest

from zerotrustml import aggregators
from zerotrustml.exceptions import NonFiniteError, ParameterError, ShapeError
from zerotrustml.fl.attacks import (
    ATTACKS,
    BACKDOOR_TARGET,
    DATA_ATTACKS,
    DEFAULT_PARAMS,
    IMAGE_TRIGGER_VALUE,
    TABULAR_TRIGGER_VALUE,
    AttackContext,
    add_trigger,
    alie_z,
    craft,
    poison_data,
)

N, NB, D = 20, 4, 300


@pytest.fixture
def updates() -> tuple[np.ndarray, np.ndarray]:
    """(honest, own): 16 honest and 4 Byzantine float32 updates around a common direction."""
    g = np.random.default_rng(7)
    base = g.normal(size=D)
    honest = (base + 0.8 * g.normal(size=(N - NB, D))).astype(np.float32)
    own = (base + 0.8 * g.normal(size=(NB, D))).astype(np.float32)
    return honest, own


def ctx(
    updates: tuple[np.ndarray, np.ndarray],
    *,
    omniscient: bool = True,
    seed: int = 0,
    params: Mapping[str, float | str] | None = None,
    **kw: object,
) -> AttackContext:
    honest, own = updates
    return AttackContext(
        own=own,
        honest=honest if omniscient else None,
        n_nodes=N,
        n_byzantine=NB,
        rng=np.random.default_rng(seed),
        params=dict(params or {}),
        **kw,  # type: ignore[arg-type]
    )


def stats(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = rows.astype(np.float64)
    return r.mean(axis=0), r.std(axis=0, ddof=1)


def test_every_attack_has_documented_defaults() -> None:
    assert set(DEFAULT_PARAMS) == set(ATTACKS)
    assert set(DATA_ATTACKS) <= set(ATTACKS)


# --------------------------------------------------------------------------- simple attacks


def test_none_zero_and_sign_flips(updates: tuple[np.ndarray, np.ndarray]) -> None:
    own = updates[1]
    np.testing.assert_array_equal(craft("none", ctx(updates)), own)
    np.testing.assert_array_equal(craft("zero", ctx(updates)), np.zeros_like(own))
    np.testing.assert_array_equal(craft("sign_flip", ctx(updates)), -own)
    np.testing.assert_allclose(craft("scaled_sign_flip", ctx(updates)), -4.0 * own, rtol=1e-7)
    np.testing.assert_allclose(craft("scaled_sign_flip", ctx(updates, params={"scale": 2.5})), -2.5 * own, rtol=1e-7)


def test_gaussian_is_zero_mean_noise_at_ten_times_the_honest_rms(updates: tuple[np.ndarray, np.ndarray]) -> None:
    honest = updates[0].astype(np.float64)
    rms = np.sqrt(np.mean(honest**2))
    out = craft("gaussian", ctx(updates, seed=3))
    assert out.dtype == np.float32 and out.shape == (NB, D)
    assert abs(out.mean()) < 0.05 * 10 * rms
    assert out.std() == pytest.approx(10 * rms, rel=0.05)
    assert not np.array_equal(out[0], out[1])  # independent per node
    np.testing.assert_array_equal(out, craft("gaussian", ctx(updates, seed=3)))
    assert not np.array_equal(out, craft("gaussian", ctx(updates, seed=4)))
    absolute = craft("gaussian", ctx(updates, params={"sigma": 0.5}))
    assert absolute.std() == pytest.approx(0.5, rel=0.05)


def test_random_is_uniform_within_ten_times_the_honest_rms(updates: tuple[np.ndarray, np.ndarray]) -> None:
    honest = updates[0].astype(np.float64)
    r = 10 * np.sqrt(np.mean(honest**2))
    out = craft("random", ctx(updates, seed=3))
    assert np.abs(out).max() <= r * (1 + 1e-6)
    assert np.abs(out).max() > 0.99 * r
    assert abs(out.mean()) < 0.05 * r
    assert out.std() == pytest.approx(r / np.sqrt(3), rel=0.05)
    np.testing.assert_array_equal(out, craft("random", ctx(updates, seed=3)))
    assert np.abs(craft("random", ctx(updates, params={"r": 2.0}))).max() <= 2.0


# --------------------------------------------------------------------------- data attacks


def test_label_flip_data_and_update(updates: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> None:
    x = rng.random((30, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=30)
    x2, y2 = poison_data("label_flip", x, y, n_classes=10, image_shape=(1, 8, 8), rng=rng)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, 9 - y)
    np.testing.assert_array_equal(craft("label_flip", ctx(updates)), updates[1])  # trained honestly on flipped data


def test_other_attacks_leave_the_data_alone(rng: np.random.Generator) -> None:
    x = rng.random((5, 4))
    y = np.arange(5) % 2
    for attack in set(ATTACKS) - set(DATA_ATTACKS):
        x2, y2 = poison_data(attack, x, y, n_classes=2, image_shape=None, rng=rng)
        np.testing.assert_array_equal(x2, x)
        np.testing.assert_array_equal(y2, y)


def test_backdoor_poisons_half_the_samples(rng: np.random.Generator) -> None:
    x = rng.random((40, 64)).astype(np.float32) * 0.5
    y = rng.integers(1, 10, size=40)
    x2, y2 = poison_data("backdoor", x, y, n_classes=10, image_shape=(1, 8, 8), rng=np.random.default_rng(1))
    changed = np.any(x2 != x, axis=1)
    assert changed.sum() == 20
    np.testing.assert_array_equal(y2[changed], BACKDOOR_TARGET)
    np.testing.assert_array_equal(y2[~changed], y[~changed])
    np.testing.assert_array_equal(x2[changed], add_trigger(x[changed], (1, 8, 8)))
    again = poison_data("backdoor", x, y, n_classes=10, image_shape=(1, 8, 8), rng=np.random.default_rng(1))
    np.testing.assert_array_equal(again[0], x2)
    x3, y3 = poison_data(
        "backdoor",
        x,
        y,
        n_classes=10,
        image_shape=(1, 8, 8),
        rng=rng,
        params={"fraction": 0.25, "target": 7.0, "boost": 3},  # craft-only keys are accepted too
    )
    assert np.any(x3 != x, axis=1).sum() == 10 and np.sum(y3 != y) <= 10 and np.sum(y3 == 7) >= 10


def test_backdoor_update_is_boosted_by_model_replacement_factor(updates: tuple[np.ndarray, np.ndarray]) -> None:
    own = updates[1]
    np.testing.assert_allclose(craft("backdoor", ctx(updates)), (N / NB) * own, rtol=1e-6)
    np.testing.assert_allclose(craft("backdoor", ctx(updates, params={"boost": 2.0})), 2 * own, rtol=1e-6)
    capped = AttackContext(own=own[:1], honest=None, n_nodes=100, n_byzantine=1, rng=np.random.default_rng(0))
    np.testing.assert_allclose(craft("backdoor", capped), 10.0 * own[:1], rtol=1e-6)


def test_add_trigger_touches_only_the_bottom_right_patch(rng: np.random.Generator) -> None:
    x = rng.random((4, 3 * 5 * 6)).astype(np.float32) * 0.5
    out = add_trigger(x, (3, 5, 6))
    assert out.dtype == x.dtype and not np.shares_memory(out, x)
    img = out.reshape(4, 3, 5, 6)
    patch = np.zeros((3, 5, 6), dtype=bool)
    patch[:, 2:, 3:] = True
    assert np.all(img[:, patch] == IMAGE_TRIGGER_VALUE)
    np.testing.assert_array_equal(img[:, ~patch], x.reshape(4, 3, 5, 6)[:, ~patch])
    assert np.all(x < 0.5)  # input untouched
    grey = add_trigger(x[:, :30], (5, 6), value=0.25).reshape(4, 5, 6)
    assert np.all(grey[:, 2:, 3:] == 0.25)


def test_add_trigger_on_tabular_sets_the_last_features(rng: np.random.Generator) -> None:
    x = rng.normal(size=(6, 30))
    out = add_trigger(x, None)
    np.testing.assert_array_equal(out[:, :27], x[:, :27])
    assert np.all(out[:, 27:] == TABULAR_TRIGGER_VALUE)
    with pytest.raises(ShapeError, match="image_shape"):
        add_trigger(x, (1, 5, 5))


# --------------------------------------------------------------------------- ALIE, IPM


def test_alie_z_from_the_paper_formula() -> None:
    # n = 20, f = 4: s = floor(11) - 4 = 7, Phi^{-1}(13/20) = Phi^{-1}(0.65) = 0.385320...
    assert alie_z(20, 4) == pytest.approx(0.3853204664, abs=1e-9)
    # n = 50, f = 24: s = 26 - 24 = 2, Phi^{-1}(48/50) = Phi^{-1}(0.96) = 1.750686...
    assert alie_z(50, 24) == pytest.approx(1.7506860713, abs=1e-9)
    assert np.isfinite(alie_z(10, 9)) and np.isfinite(alie_z(2, 0))


def test_alie_is_mean_minus_z_std(updates: tuple[np.ndarray, np.ndarray]) -> None:
    mu, sd = stats(updates[0])
    out = craft("alie", ctx(updates))
    np.testing.assert_allclose(out, np.tile(mu - alie_z(N, NB) * sd, (NB, 1)), rtol=1e-6, atol=1e-6)
    z2 = craft("alie", ctx(updates, params={"z": 1.5}))
    np.testing.assert_allclose(z2[0], mu - 1.5 * sd, rtol=1e-6, atol=1e-6)


def test_ipm_is_minus_epsilon_mean(updates: tuple[np.ndarray, np.ndarray]) -> None:
    mu, _ = stats(updates[0])
    np.testing.assert_allclose(craft("ipm", ctx(updates)), np.tile(-0.1 * mu, (NB, 1)), rtol=1e-6, atol=1e-7)
    big = craft("ipm", ctx(updates, params={"epsilon": 100}))
    np.testing.assert_allclose(big[2], -100 * mu, rtol=1e-6, atol=1e-5)


# --------------------------------------------------------------------------- min-max, min-sum


def _objective(kind: str, honest: np.ndarray, m: np.ndarray) -> tuple[float, float]:
    """(value, threshold) of the Shejwalkar-Houmansadr constraint, in squared distances."""
    x = honest.astype(np.float64)
    to_m = np.sum((x - m) ** 2, axis=1)
    pair = np.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=2)
    if kind == "min_max":
        return float(to_m.max()), float(pair.max())
    return float(to_m.sum()), float(pair.sum(axis=1).max())


@pytest.mark.parametrize("kind", ["min_max", "min_sum"])
@pytest.mark.parametrize("perturbation", ["std", "unit_vec", "sign"])
def test_min_max_sum_gamma_is_maximal(kind: str, perturbation: str, updates: tuple[np.ndarray, np.ndarray]) -> None:
    honest = updates[0]
    mu, sd = stats(honest)
    p = {"std": -sd, "unit_vec": -mu / np.linalg.norm(mu), "sign": -np.sign(mu)}[perturbation]
    out = craft(kind, ctx(updates, params={"perturbation": perturbation}))
    assert np.all(out == out[0])  # one vector for all colluders
    m = out[0].astype(np.float64)
    gamma = float(np.dot(m - mu, p) / np.dot(p, p))
    assert gamma > 0.01
    np.testing.assert_allclose(m, mu + gamma * p, rtol=1e-5, atol=1e-5)
    value, threshold = _objective(kind, honest, m)
    assert value <= threshold
    value_up, _ = _objective(kind, honest, mu + 1.1 * gamma * p)
    assert value_up > threshold


# --------------------------------------------------------------------------- mimic


def test_mimic_copies_the_honest_row_most_extreme_along_the_top_direction(
    updates: tuple[np.ndarray, np.ndarray],
) -> None:
    honest = updates[0]
    out = craft("mimic", ctx(updates))
    centred = honest.astype(np.float64) - honest.astype(np.float64).mean(axis=0)
    z = np.linalg.svd(centred, full_matrices=False)[2][0]
    target = int(np.argmax(np.abs(centred @ z)))
    for row in out:
        np.testing.assert_array_equal(row, honest[target])
    np.testing.assert_array_equal(craft("mimic", ctx(updates, params={"target_index": 3}))[1], honest[3])


# --------------------------------------------------------------------------- adaptive


def test_adaptive_beats_alie_against_krum_and_is_still_selected(updates: tuple[np.ndarray, np.ndarray]) -> None:
    honest = updates[0]
    mu, _ = stats(honest)
    results = {}
    for attack in ("adaptive", "alie"):
        sent = craft(attack, ctx(updates, aggregator="krum", f=NB))
        res = aggregators.krum(np.vstack([honest, sent]), NB)
        results[attack] = (res.selected[0], float(np.linalg.norm(res.vector.astype(np.float64) - mu)))
    assert results["adaptive"][0] >= N - NB  # a Byzantine row is the one Krum picks
    assert results["adaptive"][1] >= results["alie"][1]


def test_adaptive_against_bulyan_and_multi_krum_keeps_every_byzantine_row(
    updates: tuple[np.ndarray, np.ndarray],
) -> None:
    honest = updates[0]
    for rule, f, fn in (("multi_krum", NB, aggregators.multi_krum), ("bulyan", 4, aggregators.bulyan)):
        sent = craft("adaptive", ctx(updates, aggregator=rule, f=f))
        selected = set(fn(np.vstack([honest, sent]), f).selected)
        assert set(range(N - NB, N)) <= selected, rule


def _near_mean(honest: np.ndarray) -> tuple[np.ndarray, float, Callable[[np.ndarray], np.ndarray]]:
    """The honest mean, a bound, and an oracle keeping rows within the bound of the mean (handed to the attacker)."""
    mu, _ = stats(honest)
    bound = 1.5 * float(np.linalg.norm(honest.astype(np.float64) - mu, axis=1).max())

    def near_mean(x: np.ndarray) -> np.ndarray:
        keep: np.ndarray = np.linalg.norm(x.astype(np.float64) - mu, axis=1) <= bound
        return keep

    return mu, bound, near_mean


def test_adaptive_finds_the_edge_of_a_custom_defence(updates: tuple[np.ndarray, np.ndarray]) -> None:
    mu, bound, near_mean = _near_mean(updates[0])

    out = craft("adaptive", ctx(updates, defence=near_mean))
    dist = np.linalg.norm(out.astype(np.float64) - mu, axis=1)
    assert np.all(dist <= bound)
    assert np.all(dist >= 0.99 * bound)  # pushed to the edge of what is accepted


def test_adaptive_falls_back_to_alie_when_nothing_is_accepted(updates: tuple[np.ndarray, np.ndarray]) -> None:
    def reject_all(x: np.ndarray) -> np.ndarray:
        return np.zeros(x.shape[0], dtype=bool)

    np.testing.assert_array_equal(craft("adaptive", ctx(updates, defence=reject_all)), craft("alie", ctx(updates)))


@pytest.mark.parametrize("rule", ["mean", "median", "trimmed_mean", "geometric_median", "centered_clipping"])
def test_adaptive_proxy_rules_stay_within_the_honest_distance_range(
    rule: str, updates: tuple[np.ndarray, np.ndarray]
) -> None:
    honest = updates[0]
    mu, _ = stats(honest)
    sent = craft("adaptive", ctx(updates, aggregator=rule, f=NB))
    assert np.all(np.isfinite(sent)) and np.linalg.norm(sent[0] - mu) > 0
    x = np.vstack([honest, sent])
    agg = {
        "mean": lambda: aggregators.mean(x),
        "median": lambda: aggregators.median(x),
        "trimmed_mean": lambda: aggregators.trimmed_mean(x, NB),
        "geometric_median": lambda: aggregators.geometric_median(x),
    }
    if rule in agg:
        d = np.linalg.norm(x.astype(np.float64) - agg[rule]().vector, axis=1)
        assert d[N - NB :].max() <= d[: N - NB].max() * (1 + 1e-6)


# --------------------------------------------------------------------------- knowledge modes and shapes


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize(("omniscient", "colluding"), [(True, False), (False, True), (False, False)])
def test_other_knowledge_modes_give_finite_updates(
    attack: str, omniscient: bool, colluding: bool, updates: tuple[np.ndarray, np.ndarray]
) -> None:
    out = craft(attack, ctx(updates, omniscient=omniscient, colluding=colluding, aggregator="krum", f=NB))
    assert out.dtype == np.float32 and out.shape == (NB, D)
    assert np.all(np.isfinite(out))


def test_non_colluding_model_attacks_degenerate_to_own_row(updates: tuple[np.ndarray, np.ndarray]) -> None:
    own = updates[1]
    for attack in ("alie", "min_max", "mimic"):
        np.testing.assert_array_equal(craft(attack, ctx(updates, colluding=False)), own, err_msg=attack)
    np.testing.assert_allclose(craft("ipm", ctx(updates, colluding=False)), -0.1 * own, rtol=1e-6)


def test_non_omniscient_uses_own_updates_as_reference(updates: tuple[np.ndarray, np.ndarray]) -> None:
    mu, sd = stats(updates[1])
    out = craft("alie", ctx(updates, omniscient=False))
    np.testing.assert_allclose(out[0], mu - alie_z(N, NB) * sd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("attack", ATTACKS)
def test_no_byzantine_nodes_gives_an_empty_batch(attack: str) -> None:
    c = AttackContext(
        own=np.zeros((0, 7), np.float32),
        honest=np.ones((5, 7), np.float32),
        n_nodes=5,
        n_byzantine=0,
        rng=np.random.default_rng(0),
    )
    out = craft(attack, c)
    assert out.shape == (0, 7) and out.dtype == np.float32


# --------------------------------------------------------------------------- errors


def test_unknown_names(updates: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> None:
    with pytest.raises(ParameterError, match="attack: unknown name 'nope'; choose one of none, gaussian"):
        craft("nope", ctx(updates))
    with pytest.raises(ParameterError, match="attack: unknown name 'nope'"):
        poison_data("nope", np.zeros((2, 2)), np.zeros(2, int), n_classes=2, image_shape=None, rng=rng)
    with pytest.raises(ParameterError, match="unknown parameter 'epsilon' for attack 'alie'"):
        craft("alie", ctx(updates, params={"epsilon": 1.0}))
    with pytest.raises(ParameterError, match="aggregator: unknown rule 'fedavg'"):
        craft("adaptive", ctx(updates, aggregator="fedavg"))


@pytest.mark.parametrize(
    ("attack", "params", "match"),
    [
        ("ipm", {"epsilon": 0.0}, "ipm.epsilon"),
        ("ipm", {"epsilon": -1.0}, "ipm.epsilon"),
        ("ipm", {"epsilon": float("nan")}, "ipm.epsilon"),
        ("scaled_sign_flip", {"scale": -4.0}, "scaled_sign_flip.scale"),
        ("gaussian", {"sigma": float("inf")}, "gaussian.sigma"),
        ("random", {"r_scale": 0.0}, "random.r_scale"),
        ("alie", {"z": -1.0}, "alie.z"),
        ("min_max", {"perturbation": "diagonal"}, "min_max.perturbation"),
        ("min_sum", {"gamma_init": 0.0}, "min_sum.gamma_init"),
        ("backdoor", {"boost": 0.0}, "backdoor.boost"),
        ("backdoor", {"fraction": 1.5}, "backdoor.fraction"),
        ("mimic", {"target_index": 2.5}, "mimic.target_index"),
        ("mimic", {"target_index": 99}, "mimic.target_index"),
        ("adaptive", {"rtol": 1.0}, "adaptive.rtol"),
        ("adaptive", {"gamma_min": 4096.0}, "adaptive.gamma_min"),
    ],
)
def test_bad_parameters_are_named(
    attack: str, params: dict[str, float | str], match: str, updates: tuple[np.ndarray, np.ndarray]
) -> None:
    with pytest.raises(ParameterError, match=match):
        craft(attack, ctx(updates, params=params))


def test_bad_context(updates: tuple[np.ndarray, np.ndarray]) -> None:
    honest, own = updates
    with pytest.raises(ShapeError, match="own"):
        craft("alie", AttackContext(own=own[:2], honest=honest, n_nodes=N, n_byzantine=NB, rng=np.random.default_rng()))
    with pytest.raises(ShapeError, match="honest"):
        craft("alie", AttackContext(own=own, honest=honest[:3], n_nodes=N, n_byzantine=NB, rng=np.random.default_rng()))
    bad = own.copy()
    bad[0, 0] = np.nan
    with pytest.raises(NonFiniteError, match="own"):
        craft("none", AttackContext(own=bad, honest=None, n_nodes=N, n_byzantine=NB, rng=np.random.default_rng()))
    with pytest.raises(ParameterError, match="n_nodes"):
        craft("none", AttackContext(own=own, honest=None, n_nodes=2, n_byzantine=NB, rng=np.random.default_rng()))
    with pytest.raises(ParameterError, match="overflows float32"):
        craft("scaled_sign_flip", ctx(updates, params={"scale": 1e300}))


def test_poison_data_errors(rng: np.random.Generator) -> None:
    x = rng.random((6, 16))
    y = np.arange(6) % 3
    with pytest.raises(ParameterError, match="backdoor.target"):
        poison_data("backdoor", x, y, n_classes=3, image_shape=(4, 4), rng=rng, params={"target": 3})
    with pytest.raises(ParameterError, match="y: labels"):
        poison_data("label_flip", x, y + 3, n_classes=3, image_shape=None, rng=rng)
    with pytest.raises(ShapeError, match="image_shape"):
        poison_data("backdoor", x, y, n_classes=3, image_shape=(3, 3), rng=rng)


def test_adaptive_spreads_its_rows_when_copies_are_caught(updates: tuple[np.ndarray, np.ndarray]) -> None:
    honest = updates[0]

    def no_copies(x: np.ndarray) -> np.ndarray:
        """Rejects every row that has an exact duplicate (a near-duplicate check at its simplest)."""
        _, inverse, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
        keep: np.ndarray = counts[inverse.ravel()] == 1
        return keep

    sent = craft("adaptive", ctx(updates, defence=no_copies))
    assert len({row.tobytes() for row in sent}) == sent.shape[0]  # no two rows alike
    assert no_copies(np.vstack([honest, sent]))[honest.shape[0] :].all()
    # With the spread switched off, only copies are left, and the fallback is ALIE's single point.
    flat = craft("adaptive", ctx(updates, defence=no_copies, params={"jitter": 0.0}))
    assert len({row.tobytes() for row in flat}) == 1


def test_adaptive_steady_keeps_one_direction_inside_a_margin(updates: tuple[np.ndarray, np.ndarray]) -> None:
    """The history-aware adaptive attacker (issue 13, item 5): along -mu only, at margin x the largest accepted
    step, every row accepted; with nothing accepted it sends the honest mean, never ALIE."""
    mu, bound, near_mean = _near_mean(updates[0])
    c = ctx(updates, defence=near_mean)
    c.params = {"jitter": 0.0}
    out = craft("adaptive_steady", c).astype(np.float64)
    dist = np.linalg.norm(out - mu, axis=1)
    assert np.all(dist <= 0.8 * bound * 1.01) and np.all(dist >= 0.8 * bound * 0.99)
    cos = (out - mu) @ -mu / (np.linalg.norm(out - mu, axis=1) * np.linalg.norm(mu))
    assert np.all(cos > 0.999)  # one direction: against the honest mean
    full = craft("adaptive", ctx(updates, defence=near_mean)).astype(np.float64)
    assert np.linalg.norm(full - mu, axis=1).max() > dist.max()  # the plain adaptive goes to the edge

    def reject_all(x: np.ndarray) -> np.ndarray:
        return np.zeros(x.shape[0], dtype=bool)

    low = ctx(updates, defence=reject_all)
    low.params = {"jitter": 0.0}
    lying_low = craft("adaptive_steady", low)
    np.testing.assert_allclose(lying_low, np.tile(mu, (low.n_byzantine, 1)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ParameterError, match="adaptive_steady.margin"):
        low.params = {"margin": 1.5}
        craft("adaptive_steady", low)
