"""The personal view's rules: evidence from an agent's own data, trust flowing out from it, vetoes."""

from __future__ import annotations

import numpy as np
import pytest

from zerotrustml.defence import personal
from zerotrustml.exceptions import ParameterError
from zerotrustml.fl.models import SoftmaxRegression, local_update


def test_own_data_scores_honest_updates_up_and_negated_ones_down() -> None:
    rng = np.random.default_rng(0)
    model = SoftmaxRegression(6, 3)
    theta = model.init(0)
    centres = np.eye(3, 6) * 3
    x = np.concatenate([centres[c] + rng.normal(size=(40, 6)) for c in range(3)])
    y = np.repeat(np.arange(3), 40)
    rows = []
    for _ in range(4):
        part = rng.permutation(len(y))[:60]
        g, _ = local_update(model, theta, x[part], y[part], steps=2, lr=0.1, batch_size=None, rng=rng)
        rows.append(g)
    rows.append(-rows[0])  # a sign flip
    rows.append(rng.normal(size=model.dims).astype(np.float32) * float(np.linalg.norm(rows[0])))  # noise
    ids = ["a", "b", "c", "d", "flip", "noise"]
    s = personal.evidence_scores(ids, np.stack(rows), model=model, params=theta, x=x[:50], y=y[:50])
    assert min(s[i] for i in "abcd") > 0.3 and s["flip"] < -0.3 and abs(s["noise"]) < 0.3
    assert all(-personal.SCORE_CLIP <= v <= personal.SCORE_CLIP for v in s.values())
    with pytest.raises(ParameterError, match="updates"):
        personal.evidence_scores(ids[:2], np.stack(rows), model=model, params=theta, x=x, y=y)

    # Scaled by the agent's own update, the scores do not depend on what anyone else sends: a block of huge
    # updates (half the round) would lift the round's median norm and shrink every honest score below the bar.
    own = float(np.linalg.norm(rows[0]))
    mine = personal.evidence_scores(ids, np.stack(rows), model=model, params=theta, x=x[:50], y=y[:50], own_norm=own)
    huge = np.stack(rows + [1e3 * rows[5]] * 6)
    big_ids = ids + [f"huge{i}" for i in range(6)]
    with_huge = personal.evidence_scores(big_ids, huge, model=model, params=theta, x=x[:50], y=y[:50], own_norm=own)
    assert all(with_huge[i] == pytest.approx(mine[i]) for i in ids)
    by_median = personal.evidence_scores(big_ids, huge, model=model, params=theta, x=x[:50], y=y[:50])
    assert max(by_median[i] for i in "abcd") < personal.MIN_TRUST < min(mine[i] for i in "abcd")
    with pytest.raises(ParameterError, match="own_norm"):
        personal.evidence_scores(ids, np.stack(rows), model=model, params=theta, x=x, y=y, own_norm=float("nan"))


def test_colluders_vouching_for_each_other_are_never_reached() -> None:
    """The attack on the rule: 12 colluders out of 20 vouch for each other at the clip and distrust everyone
    else. The honest agents' evidence never vouches for them, so they stay outside every honest agent's view."""
    honest = [f"h{i}" for i in range(8)]
    byz = [f"b{i}" for i in range(12)]
    trust: dict[str, dict[str, float]] = {}
    for h in honest:
        trust[h] = {u: 0.4 for u in honest if u != h} | {b: -0.1 for b in byz}
    for b in byz:
        trust[b] = {u: 3.0 for u in byz if u != b} | {h: -3.0 for h in honest}
    for h in honest:
        assert personal.reach(h, trust, honest + byz) == honest


def test_trust_flows_out_through_vouchers_and_one_kept_veto_blocks() -> None:
    # me vouches for a1 and a2; they both vouch for c (which me has no evidence on), so c is reached; d has one
    # voucher only; e is vouched by both but c, kept, distrusts it far below its usual trust in its peers.
    peers = {f"p{i}": 0.1 + 0.01 * i for i in range(8)}  # c's ordinary trust in others, for its scale
    trust = {
        "me": {"a1": 0.5, "a2": 0.2},
        "a1": {"c": 0.3, "d": 0.3, "e": 0.4},
        "a2": {"c": 0.1, "e": 0.4},
        "c": {"e": -0.9, **peers},
    }
    present = ["me", "a1", "a2", "c", "d", "e", "stranger"]
    assert personal.reach("me", trust, present) == ["me", "a1", "a2", "c"]
    assert personal.reach("me", trust, present, min_vouchers=1) == ["me", "a1", "a2", "c", "d"]  # e: vetoed by c
    assert personal.reach("me", trust, present, veto_z=1e6) == ["me", "a1", "a2", "c", "e"]
    # Absent this round: neither kept nor a voucher.
    assert personal.reach("me", trust, ["me", "a1", "c", "e"]) == ["me", "a1"]


def test_distrust_is_relative_to_the_agents_own_spread_and_never_positive() -> None:
    ordinary = {f"p{i}": v for i, v in enumerate([-0.2, -0.1, 0.0, 0.1, 0.2, 0.3])}
    bar = personal.distrust_bar(ordinary)
    assert -1.5 < bar < -0.5  # median 0.05, MAD 0.15: 5 robust deviations below
    assert personal.distrust_bar({"a": 2.0, "b": 2.1, "c": 2.2}) == 0.0  # a positive bar is capped at zero
    assert personal.distrust_bar({}) == -np.inf


def test_trust_is_a_decaying_memory_and_round_trips() -> None:
    view = personal.PersonalView("me", decay=0.5)
    view.remember({"me": 3.0, "p": 1.0})
    view.remember({"p": -1.0, "q": 2.0})
    assert view.trust == {"p": pytest.approx(-0.25), "q": pytest.approx(1.0)}
    again = personal.PersonalView.from_state(view.state(), decay=0.5)
    assert again.trust == view.trust and again.me == "me"
    with pytest.raises(ParameterError, match="decay"):
        personal.PersonalView("me", decay=1.0)
    with pytest.raises(ParameterError, match="state.trust"):
        personal.PersonalView.from_state({"me": "x"})


def test_personal_aggregate_clips_and_weighs_by_capped_counts() -> None:
    rows = np.array([[1.0, 0.0], [0.0, 1.0], [100.0, 0.0]])
    out = personal.personal_aggregate(rows, [1, 1, 1], clip=2.0)
    assert out == pytest.approx(np.array([(1 + 1.0 * 2) / 3, 1 / 3]), rel=1e-6)  # the long row clipped to 2
    assert personal.personal_aggregate(np.zeros((0, 2)), [], clip=2.0).tolist() == [0.0, 0.0]
    # Against the agent's own update norm: kept long rows cannot raise the bound by being many.
    many = np.array([[1.0, 0.0], [100.0, 0.0], [100.0, 0.0]])
    assert personal.personal_aggregate(many, [1, 1, 1], clip=2.0)[0] == pytest.approx(100 * 2 / 3 + 1 / 3)
    assert personal.personal_aggregate(many, [1, 1, 1], clip=2.0, reference=1.0)[0] == pytest.approx(5 / 3)


def test_the_attackers_prediction_keeps_rows_every_honest_update_scores_above_min_trust() -> None:
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(50)
    honest = direction + 0.3 * rng.standard_normal((6, 50))
    other = rng.standard_normal(50)
    other -= (other @ direction) / (direction @ direction) * direction  # orthogonal to the honest direction
    candidates = np.stack(
        [
            0.5 * honest.mean(axis=0),  # a shrunken honest mean: every honest update scores it positive
            -honest.mean(axis=0),  # a sign flip: negative for everyone
            3 * np.linalg.norm(direction) * other / np.linalg.norm(other),  # noise the honest updates cannot see
            honest[0],  # a copy of one honest update
        ]
    )
    mask = personal.predicted_vouching(np.vstack([honest, candidates]), 6)
    assert mask[:6].all()  # honest rows: an agent keeps its own update
    assert mask[6:].tolist() == [True, False, False, True]
    # The same bar as the agents' own evidence: raising min_trust above the shrunken mean's scores drops it.
    # Each agent's scale is its own update's norm: the score is <row, h_i> / |h_i|^2.
    lowest = float((honest @ candidates[0] / (honest * honest).sum(axis=1)).min())
    assert not personal.predicted_vouching(np.vstack([honest, candidates]), 6, min_trust=lowest + 1e-6)[6]
    assert personal.predicted_vouching(np.vstack([honest, candidates]), 6, min_trust=lowest - 1e-6)[6]
    assert personal.predicted_vouching(honest, 6).all() and personal.predicted_vouching(candidates, 0).all()
    with pytest.raises(ParameterError, match="n_honest"):
        personal.predicted_vouching(honest, 7)
    with pytest.raises(ParameterError, match="rows"):
        personal.predicted_vouching(honest[0], 1)
