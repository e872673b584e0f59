"""ReputationLedger: the update rule, recovery bonus, exclusion, weights, state, and persistence."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from zerotrustml.backends.embedded import EmbeddedStore
from zerotrustml.defence.config import DefenceConfig
from zerotrustml.defence.reputation import STATE_KEY, STATE_VERSION, ReputationLedger, load_ledger, save_ledger
from zerotrustml.exceptions import ParameterError, PreconditionError

# The RB-BFT rule alone (penalty 0.3, reward 0.05, bonus 0.12 after 2 good rounds, initial 0.7, exclusion 0.3);
# probation, which delays the reward after flags, has tests of its own below.
CONFIG = DefenceConfig(reputation_probation=0)
PROBATION = DefenceConfig()  # the defaults: probation 2


def run(ledger: ReputationLedger, verdicts: list[bool], node: str = "a", start: int = 0) -> list[float]:
    """Apply one verdict per round to a single node; return its score after each."""
    return [ledger.update(start + r, {node: bad})[node] for r, bad in enumerate(verdicts)]


def test_new_nodes_start_at_initial() -> None:
    ledger = ReputationLedger(CONFIG)
    assert ledger.score("new") == CONFIG.reputation_initial == 0.7
    assert not ledger.excluded("new")
    assert ledger.streak("new") == 0 and not ledger.recovering("new")


def test_penalty_is_multiplicative_and_resets_streak() -> None:
    ledger = ReputationLedger(CONFIG, {"a": 0.8}, {"a": 5})
    assert ledger.update(0, {"a": True}) == {"a": pytest.approx(0.8 * 0.7)}
    assert ledger.streak("a") == 0 and ledger.recovering("a")
    assert ledger.update(1, {"a": True})["a"] == pytest.approx(0.8 * 0.7 * 0.7)


def test_reward_is_additive_and_streak_grows() -> None:
    ledger = ReputationLedger(CONFIG)
    scores = run(ledger, [False, False, False])
    assert scores == pytest.approx([0.75, 0.80, 0.85])
    assert ledger.streak("a") == 3
    assert not ledger.recovering("a")  # never penalised: no bonus to earn


def test_clamped_to_unit_interval() -> None:
    ledger = ReputationLedger(CONFIG, {"a": 0.99, "b": 0.0})
    assert ledger.update(0, {"a": False, "b": True}) == {"a": 1.0, "b": 0.0}
    harsh = ReputationLedger(DefenceConfig(reputation_penalty=1.0, reputation_probation=0), {"a": 0.9})
    assert harsh.update(0, {"a": True})["a"] == 0.0
    assert harsh.update(1, {"a": False})["a"] == pytest.approx(0.05)  # additive reward lifts even zero
    # Recovery bonus near the top is clamped as well.
    top = ReputationLedger(CONFIG, {"a": 0.99})
    assert max(run(top, [True, False, False, False])) <= 1.0


def test_recovery_bonus_exactly_after_threshold_good_rounds() -> None:
    assert (CONFIG.behavior_recovery_threshold, CONFIG.behavior_recovery_bonus) == (2, 0.12)
    ledger = ReputationLedger(CONFIG)
    scores = run(ledger, [True, False, False, False])
    # 0.7 -> flagged 0.49 -> good 0.54 -> second good round: 0.59 + bonus 0.12 = 0.71 -> 0.76 (no second bonus)
    assert scores == pytest.approx([0.49, 0.54, 0.71, 0.76])
    assert not ledger.recovering("a")


def test_bonus_needs_consecutive_good_rounds() -> None:
    ledger = ReputationLedger(CONFIG)
    scores = run(ledger, [True, False, True, False, False])
    # The second flag resets the streak: no bonus after the 1-round streak, then the bonus after two.
    expected = [0.49]
    expected.append(expected[-1] + 0.05)
    expected.append(expected[-1] * 0.7)
    expected.append(expected[-1] + 0.05)
    expected.append(expected[-1] + 0.05 + 0.12)
    assert scores == pytest.approx(expected)


def test_bonus_triggers_again_only_after_another_penalty() -> None:
    ledger = ReputationLedger(CONFIG, {"a": 0.5})
    first = run(ledger, [True, False, False, False, False])
    gains = np.diff(first)
    assert gains == pytest.approx([0.05, 0.17, 0.05, 0.05])
    second = run(ledger, [True, False, False], start=5)
    assert second[2] - second[1] == pytest.approx(0.17)


def test_bonus_threshold_is_configurable() -> None:
    config = DefenceConfig(behavior_recovery_threshold=3, behavior_recovery_bonus=0.2, reputation_probation=0)
    ledger = ReputationLedger(config, {"a": 0.5})
    gains = np.diff([0.5, *run(ledger, [True, False, False, False])])
    assert gains[1:] == pytest.approx([0.05, 0.05, 0.25])


def test_absent_nodes_unchanged() -> None:
    ledger = ReputationLedger(CONFIG)
    ledger.update(0, {"a": True, "b": False})
    ledger.update(1, {"a": False})
    assert ledger.score("b") == pytest.approx(0.75) and ledger.streak("b") == 1
    ledger.update(2, {"b": True})  # a's streak survives a round it missed
    assert ledger.update(3, {"a": False})["a"] == pytest.approx(0.49 + 0.05 + 0.05 + 0.12)


def test_exclusion_threshold() -> None:
    ledger = ReputationLedger(CONFIG)
    scores = run(ledger, [True, True, True])
    assert scores == pytest.approx([0.49, 0.343, 0.2401])
    assert ledger.excluded("a")  # three flags in a row: 0.24 < 0.3
    assert not ReputationLedger(CONFIG, {"b": 0.3}).excluded("b")  # the threshold itself is not excluded
    # Still scored while excluded, so it can climb back.
    run(ledger, [False, False], start=3)
    assert not ledger.excluded("a")


def test_weights_normalised_zero_for_excluded() -> None:
    ledger = ReputationLedger(CONFIG, {"a": 0.9, "b": 0.6, "c": 0.1})
    w = ledger.weights(["a", "b", "c", "new"])
    assert w.dtype == np.float64 and w.shape == (4,)
    assert w.sum() == pytest.approx(1.0)
    assert w[2] == 0.0
    assert w == pytest.approx(np.array([0.9, 0.6, 0.0, 0.7]) / 2.2)
    assert ledger.weights([]).shape == (0,)
    with pytest.raises(PreconditionError, match="REPUTATION_EXCLUSION_THRESHOLD"):
        ledger.weights(["c"])


def test_state_round_trip() -> None:
    ledger = ReputationLedger(CONFIG)
    ledger.update(0, {"a": True, "b": False, "c": True})
    ledger.update(1, {"a": False, "b": False})
    state = json.loads(json.dumps(ledger.state()))
    again = ReputationLedger.from_state(CONFIG, state)
    assert again.state() == ledger.state()
    assert again.last_round == 1
    assert again.streak("a") == 1 and again.recovering("a") and again.recovering("c")
    # The restored ledger continues exactly as the original does.
    assert again.update(2, {"a": False, "c": False}) == ledger.update(2, {"a": False, "c": False})


def test_bad_input() -> None:
    with pytest.raises(ParameterError, match="scores"):
        ReputationLedger(CONFIG, {"a": 1.5})
    with pytest.raises(ParameterError, match="streaks"):
        ReputationLedger(CONFIG, streaks={"a": -1})
    ledger = ReputationLedger(CONFIG)
    ledger.update(3, {"a": False})
    with pytest.raises(ParameterError, match="not after the last round"):
        ledger.update(3, {"a": False})  # applying a round twice would count it twice
    with pytest.raises(ParameterError, match="round"):
        ledger.update(-1, {"a": False})
    with pytest.raises(ParameterError, match="must be a bool"):
        ledger.update(4, {"a": 1})  # type: ignore[dict-item]
    with pytest.raises(ParameterError, match="node ids"):
        ledger.update(4, {"": False})
    with pytest.raises(ParameterError, match="version"):
        ReputationLedger.from_state(CONFIG, {"scores": {}})
    with pytest.raises(ParameterError, match="state.streaks"):
        ReputationLedger.from_state(CONFIG, {"version": 1, "scores": {}, "streaks": 3, "recovering": []})


def test_persistence_through_embedded_store_restart(tmp_path: Path) -> None:
    async def first_run() -> dict[str, object]:
        async with EmbeddedStore(tmp_path) as store:
            ledger = await load_ledger(store, CONFIG)
            assert ledger.scores == {}
            ledger.update(0, {"a": True, "b": False})
            await save_ledger(store, ledger, 0)
            ledger.update(1, {"a": False, "b": False})
            await save_ledger(store, ledger, 1)
            return ledger.state()

    async def second_run() -> tuple[ReputationLedger, dict[str, float], float | None]:
        async with EmbeddedStore(tmp_path) as store:
            ledger = await load_ledger(store, CONFIG)
            return ledger, await store.get_reputations(), await store.get_reputation("a")

    saved = asyncio.run(first_run())
    ledger, stored, a = asyncio.run(second_run())
    assert ledger.state() == saved
    assert stored == ledger.scores and a == pytest.approx(0.54)
    # The streak survived the restart: the next good round pays a's recovery bonus.
    assert ledger.update(2, {"a": False})["a"] == pytest.approx(0.54 + 0.05 + 0.12)


def test_load_from_scores_without_state(tmp_path: Path) -> None:
    async def scenario() -> ReputationLedger:
        async with EmbeddedStore(tmp_path) as store:
            await store.put_reputations(4, {"a": 0.4, "b": 0.9})
            assert await store.get_meta(STATE_KEY) is None
            return await load_ledger(store, CONFIG)

    ledger = asyncio.run(scenario())
    assert ledger.scores == {"a": 0.4, "b": 0.9}
    assert ledger.streak("a") == 0 and ledger.last_round is None


# -- probation: the record is repaid before reputation grows -----------------------------------------------------


def test_probation_default_is_two_rounds_per_repeated_flag() -> None:
    assert PROBATION.reputation_probation == 2


def test_a_run_of_m_flags_owes_probation_times_m_m_minus_1_over_2() -> None:
    for m in (1, 2, 3, 10, 40):
        ledger = ReputationLedger(PROBATION)
        run(ledger, [True] * m)
        assert ledger.debt("a") == 2 * m * (m - 1) // 2, m


def test_persistent_offender_cannot_earn_its_way_back_quietly() -> None:
    """The attack on the rule: flagged 40 rounds running, then invisible. It stays where its record put it."""
    ledger = ReputationLedger(PROBATION)
    flagged = run(ledger, [True] * 40)
    low = flagged[-1]
    assert ledger.excluded("a") and ledger.debt("a") == 40 * 39
    quiet = run(ledger, [False] * 500, start=40)
    assert quiet == [low] * 500  # no reward and no bonus while it repays, 500 rounds later still
    assert ledger.excluded("a") and ledger.debt("a") == 40 * 39 - 500
    assert ledger.streak("a") == 500  # the good rounds still count as a streak
    # A debt in proportion to the run (the rule before) let a node flagged 24 rounds back in by round 72: not now.
    short = ReputationLedger(PROBATION)
    run(short, [True] * 24)
    assert run(short, [False] * 100, start=24)[-1] == pytest.approx(0.7 * 0.7**24)
    # Without probation the same node is back in ten rounds: what the rule prevents.
    amnesty = ReputationLedger(CONFIG)
    run(amnesty, [True] * 40)
    back = run(amnesty, [False] * 10, start=40)
    assert not amnesty.excluded("a") and back[-1] >= CONFIG.reputation_exclusion_threshold


def test_a_good_round_ends_the_run() -> None:
    ledger = ReputationLedger(PROBATION)
    run(ledger, [True, True, False, True, True])  # two runs of two: 2 + 2, not a run of four (12)
    assert ledger.debt("a") == 4 - 1  # the good round between repaid one
    assert ledger.state()["runs"] == {"a": 2}


def test_an_isolated_flag_costs_no_probation() -> None:
    """Flagged once by mistake (or now and then, never twice running): the RB-BFT recovery, bonus included."""
    ledger = ReputationLedger(PROBATION)
    scores = run(ledger, [True, False, False, False])
    assert scores == pytest.approx([0.49, 0.54, 0.54 + 0.05 + 0.12, 0.76])
    assert ledger.debt("a") == 0
    # Isolated flags one round in four: never a debt, the node stays in.
    sometimes = ReputationLedger(PROBATION)
    tail = run(sometimes, [True, False, False, False] * 25)
    assert sometimes.debt("a") == 0 and min(tail[-8:]) >= PROBATION.reputation_exclusion_threshold
    # One round in two: no run, so no debt, but the penalty outweighs the reward and the node sinks below the
    # exclusion threshold (the RB-BFT fixed point): an intermittent attacker stays out without probation's help.
    alternating = ReputationLedger(PROBATION)
    run(alternating, [True, False] * 30)
    assert alternating.debt("a") == 0 and alternating.excluded("a")


def test_a_run_of_flags_is_repaid_before_the_recovery_bonus() -> None:
    ledger = ReputationLedger(PROBATION)
    scores = run(ledger, [True, True, True, False, False, False, False, False, False, False])
    assert ledger.debt("a") == 0
    low = 0.7 * 0.7**3
    # Six rounds repay the run of three (2 + 4); the seventh is the first reward, with the bonus (streak past 2).
    assert scores[3:9] == pytest.approx([low] * 6)
    assert scores[9] == pytest.approx(low + 0.05 + 0.12)


def test_probation_state_round_trip_and_older_versions() -> None:
    ledger = ReputationLedger(PROBATION)
    run(ledger, [True, True, True, False])
    run(ledger, [True, True], start=4)
    state = ledger.state()
    assert state["version"] == STATE_VERSION == 3 and state["debts"] == {"a": 5 + 2} and state["runs"] == {"a": 2}
    again = ReputationLedger.from_state(PROBATION, json.loads(json.dumps(state)))
    assert again.debt("a") == 7 and again.state() == state
    # A store written before runs were kept (version 2) resumes with no run under way: the next flag starts one.
    v2 = {k: v for k, v in state.items() if k != "runs"} | {"version": 2}
    older = ReputationLedger.from_state(PROBATION, v2)
    assert older.debt("a") == 7
    run(older, [True], start=6)
    assert older.debt("a") == 7  # a first flag of a run owes nothing
    # A store written before probation (version 1, no debts) still resumes, with nothing owed.
    old = {k: v for k, v in state.items() if k not in ("debts", "runs")} | {"version": 1}
    assert ReputationLedger.from_state(PROBATION, old).debt("a") == 0
    with pytest.raises(ParameterError, match="state.runs"):
        ReputationLedger.from_state(PROBATION, {**state, "runs": [1]})
    with pytest.raises(ParameterError, match=r"runs\['a'\]"):
        ReputationLedger(PROBATION, runs={"a": -1})
    with pytest.raises(ParameterError, match="state.debts"):
        ReputationLedger.from_state(PROBATION, {**state, "debts": [1]})
    with pytest.raises(ParameterError, match=r"debts\['a'\]"):
        ReputationLedger(PROBATION, debts={"a": -1})
    with pytest.raises(ParameterError, match="state.version"):
        ReputationLedger.from_state(PROBATION, {**state, "version": 4})
