"""The simulator end to end on small scenarios: metrics, detection counts, resume, rejection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zerotrustml import defence
from zerotrustml.backends import StoreError
from zerotrustml.backends.embedded import EmbeddedStore
from zerotrustml.exceptions import ParameterError, PreconditionError
from zerotrustml.fl.simulation import STAGES, RunConfig, Simulation, run

SMALL = {"dataset": "synthetic", "nodes": 10, "rounds": 4, "local_steps": 2}


def small(**kw: Any) -> RunConfig:
    return RunConfig(**{**SMALL, **kw})


def test_summary_and_metrics_lines(tmp_path: Path) -> None:
    summary = run(small(), tmp_path / "d", metrics_path=tmp_path / "m.jsonl")
    for key in ("final_accuracy", "honest_only_accuracy", "tpr", "fpr", "rounds", "params", "attack_success_rate"):
        assert key in summary
    assert summary["rounds"] == 4 and summary["params"]["nodes"] == 10
    assert summary["n_byzantine"] == 3 and len(summary["byzantine_nodes"]) == 3
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    for r in rows:
        assert r["tp"] + r["fn"] == 3 and r["fp"] + r["tn"] == 7
        assert r["tpr"] == r["tp"] / 3 and r["fpr"] == r["fp"] / 7
        for stage in STAGES:
            assert r[f"{stage}_ms"] >= 0.0
    assert summary["tpr"] == pytest.approx(np.mean([r["tpr"] for r in rows]))


def test_clean_mean_run_matches_honest_only_averaging(tmp_path: Path) -> None:
    summary = run(small(byzantine_fraction=0.0, attack="none", aggregator="mean"), tmp_path)
    assert summary["tpr"] is None and summary["fpr"] == 0.0
    # Same seed, same nodes, same rule: the only difference is float32 vs float64 summation order.
    assert abs(summary["final_accuracy"] - summary["honest_only_accuracy"]) <= 0.01


def test_robust_rule_beats_the_mean_under_sign_flip(tmp_path: Path) -> None:
    cfg = {"attack": "scaled_sign_flip", "byzantine_fraction": 0.3, "rounds": 8, "nodes": 12}
    plain = run(small(aggregator="mean", **cfg), tmp_path / "mean")
    robust = run(small(aggregator="multi_krum", **cfg), tmp_path / "mk")
    assert robust["final_accuracy"] >= robust["honest_only_accuracy"] - 0.05
    assert plain["final_accuracy"] < robust["final_accuracy"] - 0.1
    # Multi-Krum keeps n - f updates; scaled sign flips are far from the honest cloud and are the ones dropped.
    assert robust["tpr"] == 1.0 and robust["fpr"] == 0.0


class _Stop(Exception):
    pass


def _cut_after_two_rounds_and_resume(cfg: RunConfig, data_dir: Path) -> dict[str, Any]:
    """Run ``cfg`` in ``data_dir``, stop it after its second round, resume it to the end; the resumed summary."""

    def stop_after_two(m: dict[str, Any]) -> None:
        if m["round"] == 1:
            raise _Stop

    with pytest.raises(_Stop):
        Simulation(cfg, data_dir, on_round=stop_after_two).run()
    return Simulation(cfg, data_dir).run()


def test_resume_continues_exactly(tmp_path: Path) -> None:
    cfg = small(rounds=5, attack="alie", aggregator="median", momentum=0.5)
    whole = run(cfg, tmp_path / "whole")
    resumed = _cut_after_two_rounds_and_resume(cfg, tmp_path / "cut")
    assert resumed["rounds"] == 5
    assert resumed["final_accuracy"] == whole["final_accuracy"]
    assert resumed["final_loss"] == whole["final_loss"]
    lines = (tmp_path / "cut" / "run.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == [0, 1, 2, 3, 4]


def test_other_parameters_in_the_same_store_are_refused(tmp_path: Path) -> None:
    run(small(rounds=1), tmp_path)
    with pytest.raises(StoreError, match="other parameters"):
        run(small(rounds=1, seed=9), tmp_path)


def test_rejected_submissions_are_flagged_and_the_run_goes_on(tmp_path: Path) -> None:
    # A norm bound the Gaussian attackers' updates break: the store rejects them, the rest aggregate.
    summary = run(small(attack="gaussian", aggregator="mean", max_norm=50.0, attack_params={"sigma": 1e3}), tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert all(r["rejected"] == 3 and r["tp"] == 3 for r in rows)
    assert summary["final_accuracy"] >= summary["honest_only_accuracy"] - 0.05

    async def held() -> int:
        async with EmbeddedStore(tmp_path) as store:
            return len(await store.get_round(0))

    import asyncio

    assert asyncio.run(held()) == 7


def test_backdoor_success_is_measured_with_the_training_trigger(tmp_path: Path) -> None:
    # Boosted backdoor updates own the plain mean; Multi-Krum drops them. Measured on triggered test inputs.
    cfg = {"dataset": "digits", "attack": "backdoor", "rounds": 6}
    plain = run(small(aggregator="mean", **cfg), tmp_path / "mean")
    robust = run(small(aggregator="multi_krum", **cfg), tmp_path / "mk")
    assert plain["attack_success_rate"] > 0.8 and robust["attack_success_rate"] < 0.2
    # A trigger value of our choosing is the one the test inputs carry too.
    custom = run(small(aggregator="mean", attack_params={"trigger_value": 0.5}, **cfg), tmp_path / "custom")
    assert custom["attack_success_rate"] > 0.8


def test_honest_only_reference_uses_the_same_optimiser(tmp_path: Path) -> None:
    summary = run(small(byzantine_fraction=0.0, attack="none", aggregator="mean", momentum=0.9), tmp_path)
    assert summary["final_loss"] == pytest.approx(summary["honest_only_loss"], rel=1e-3)


def test_resume_after_a_crash_inside_a_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = small(rounds=4, attack="mimic", aggregator="multi_krum", momentum=0.5)
    whole = run(cfg, tmp_path / "whole")
    real = EmbeddedStore.put_round_record

    async def crash_in_round_two(self: EmbeddedStore, record: Any, **kw: Any) -> None:
        if record.round == 2:
            raise OSError("power cut")  # the round's submissions are stored, its record is not
        await real(self, record, **kw)

    monkeypatch.setattr(EmbeddedStore, "put_round_record", crash_in_round_two)
    with pytest.raises(OSError, match="power cut"):
        run(cfg, tmp_path / "cut")
    monkeypatch.setattr(EmbeddedStore, "put_round_record", real)
    resumed = run(cfg, tmp_path / "cut")

    def rounds(path: Path) -> list[dict[str, Any]]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return [{k: v for k, v in r.items() if not k.endswith("_ms")} for r in rows]

    assert rounds(tmp_path / "cut" / "run.jsonl") == rounds(tmp_path / "whole" / "run.jsonl")
    assert resumed["final_accuracy"] == whole["final_accuracy"] and resumed["fpr"] == whole["fpr"]


def test_per_node_verdicts_are_written(tmp_path: Path) -> None:
    summary = run(small(rounds=1), tmp_path)
    row = json.loads((tmp_path / "run.jsonl").read_text().splitlines()[0])
    verdicts = row["verdicts"]
    assert sorted(verdicts) == [f"node-{i}" for i in range(10)]
    assert {n for n, v in verdicts.items() if v in ("TP", "FN")} == set(summary["byzantine_nodes"])
    assert sum(v == "TP" for v in verdicts.values()) == row["tp"]


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"nodes": 0}, ParameterError, "nodes"),
        ({"alpha": 0.0}, ParameterError, "alpha"),
        ({"byzantine_fraction": 1.0}, ParameterError, "byzantine_fraction"),
        ({"attack": "nope"}, ParameterError, "attack: unknown name 'nope'"),
        ({"aggregator": "nope"}, ParameterError, "aggregator: unknown name"),
        ({"aggregator": "bulyan", "nodes": 20, "byzantine_fraction": 0.3}, PreconditionError, "bulyan needs n >= 4f"),
        ({"aggregator": "krum", "nodes": 10, "byzantine_fraction": 0.4}, PreconditionError, "krum needs n >= 2f"),
        ({"lr": float("nan")}, ParameterError, "lr"),
        ({"momentum": 1.0}, ParameterError, "momentum"),
        ({"attack": "gaussian", "attack_params": {"sigma": -1.0}}, ParameterError, "gaussian.sigma"),
        ({"attack": "ipm", "attack_params": {"epsilon": float("inf")}}, ParameterError, "ipm.epsilon"),
        ({"attack": "ipm", "attack_params": {"nope": 1.0}}, ParameterError, "unknown parameter 'nope'"),
        ({"attack": "mimic", "attack_params": {"target_index": 100.0}}, ParameterError, "mimic.target_index"),
    ],
)
def test_impossible_parameters_fail_before_anything_runs(
    tmp_path: Path, change: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        run(small(**change), tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_defence_flags_per_its_definition() -> None:
    rng = np.random.default_rng(0)
    honest = rng.normal(0, 1, (9, 50)).astype(np.float32)
    updates = np.concatenate([honest, np.full((3, 50), 40.0, dtype=np.float32)])
    v = defence.apply("multi_krum", updates, 3)
    assert v.flagged[9:].all() and not v.flagged[:9].any()
    assert not defence.apply("median", updates, 3).flagged.any()
    gm = defence.apply("geometric_median", updates, 3)
    assert gm.flagged[9:].all() and not gm.flagged[:9].any()
    cc = defence.apply("centered_clipping", updates, 3)
    assert cc.flagged[9:].all()


def test_simulate_returns_the_summary_and_every_round(tmp_path: Path) -> None:
    import zerotrustml
    from zerotrustml.exceptions import ParameterError

    seen: list[int] = []
    result = zerotrustml.simulate(
        dataset="synthetic", nodes=6, rounds=3, local_steps=1, attack="alie", on_round=lambda m: seen.append(m["round"])
    )
    assert result.data_dir is None and seen == [0, 1, 2]
    assert [r["round"] for r in result.rounds] == [0, 1, 2]
    assert result.final_accuracy == result.rounds[-1]["accuracy"] == result.summary["final_accuracy"]
    assert result.tpr == result.summary["tpr"] and result.summary["params"]["attack"] == "alie"

    # A config plus options to change in it; a data directory keeps the store, and the same call again resumes it.
    config = zerotrustml.RunConfig(dataset="synthetic", nodes=6, rounds=2, local_steps=1)
    kept = zerotrustml.simulate(config, data_dir=tmp_path / "run", seed=4)
    assert kept.data_dir == tmp_path / "run" and (tmp_path / "run" / "run.jsonl").exists()
    again = zerotrustml.simulate(config, data_dir=tmp_path / "run", seed=4)

    def untimed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if not k.endswith("_ms")} for row in rows]

    assert untimed(again.rounds) == untimed(kept.rounds) and again.final_accuracy == kept.final_accuracy

    with pytest.raises(ParameterError, match=r"^node: not an option of simulate\(\); the options are nodes, "):
        zerotrustml.simulate(node=3)
    with pytest.raises(ParameterError, match=r"^nodes: must be at least 1"):
        zerotrustml.simulate(nodes=0)


def test_the_pipeline_never_assumes_the_true_byzantine_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13, item 9: without --assumed-f the pipeline's f is its configured share of the nodes, whatever the
    true fraction; a plain rule, whose precondition needs an f, keeps the true count; a named f always wins."""
    for fraction in (0.0, 0.3, 0.5):
        assert RunConfig(nodes=20, byzantine_fraction=fraction).f == 8  # 0.4 of 20, at any true fraction
    assert RunConfig(nodes=20, byzantine_fraction=0.3, aggregator="median").f == 6
    assert RunConfig(nodes=20, byzantine_fraction=0.3, assumed_f=2).f == 2
    monkeypatch.setenv("ZEROTRUSTML_ASSUMED_BYZANTINE_FRACTION", "0.25")
    assert RunConfig(nodes=20, byzantine_fraction=0.3).f == 5
    monkeypatch.setenv("ZEROTRUSTML_ASSUMED_BYZANTINE_FRACTION", "0.5")
    with pytest.raises(ParameterError, match="ASSUMED_BYZANTINE_FRACTION"):
        RunConfig(nodes=20).check()  # half or more cannot be tolerated by the shared view
    monkeypatch.delenv("ZEROTRUSTML_ASSUMED_BYZANTINE_FRACTION")
    summary = run(RunConfig(nodes=10, rounds=2, byzantine_fraction=0.3, seed=1), tmp_path)
    assert summary["assumed_f"] == 4 and summary["n_byzantine"] == 3


def test_the_personal_view_keeps_honest_agents_accurate_when_half_the_nodes_lie(tmp_path: Path) -> None:
    """Issue 13, item 4: at half the nodes sign-flipping (IID) the shared view falls to chance, and every honest
    agent's own model, stepped only with what its evidence (and agents it trusts) vouch for, stays close to
    honest-only averaging. Without the option nothing of it runs."""
    cfg = RunConfig(nodes=10, rounds=8, byzantine_fraction=0.5, attack="sign_flip", seed=1, personal_view=True)
    res = run(cfg, tmp_path / "pv")
    own = res["personal_accuracy"]
    assert res["final_accuracy"] < 0.3  # the shared view is lost: half the nodes mirror the other half
    assert own["min"] > res["honest_only_accuracy"] - 0.05
    assert own["min"] - 1e-9 <= own["mean"] <= own["max"] + 1e-9
    rows = [json.loads(line) for line in (tmp_path / "pv" / "run.jsonl").read_text().splitlines()]
    assert all("personal_accuracy" in r for r in rows)
    plain = run(RunConfig(nodes=10, rounds=2, seed=1), tmp_path / "plain")
    assert "personal_accuracy" not in plain and "personal_view" not in plain["params"]


def test_the_adaptive_attacker_searches_against_the_personal_view_when_it_is_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zerotrustml.defence import personal

    calls: list[tuple[int, int]] = []
    real = personal.predicted_vouching

    def spy(rows: Any, n_honest: int, min_trust: float = personal.MIN_TRUST) -> Any:
        mask = real(rows, n_honest, min_trust)
        calls.append((int(np.asarray(rows).shape[0]), n_honest))
        return mask

    monkeypatch.setattr(personal, "predicted_vouching", spy)
    cfg = small(rounds=2, attack="adaptive_steady", byzantine_fraction=0.5, personal_view=True)
    run(cfg, tmp_path / "personal")
    # Every candidate the attacker tried was checked against every honest agent's predicted vouching (the
    # oracle the attacker searches against when the personal view is on).
    assert calls and all(n == cfg.nodes and h == cfg.nodes - cfg.n_byzantine for n, h in calls)
    calls.clear()
    run(small(rounds=2, attack="adaptive_steady", byzantine_fraction=0.5), tmp_path / "shared")
    assert not calls  # without the personal view the oracle is the similarity stage alone


def test_the_personal_view_resumes_exactly(tmp_path: Path) -> None:
    cfg = small(rounds=4, attack="sign_flip", byzantine_fraction=0.5, personal_view=True)
    whole = run(cfg, tmp_path / "whole")
    resumed = _cut_after_two_rounds_and_resume(cfg, tmp_path / "cut")
    assert resumed["personal_accuracy"] == whole["personal_accuracy"]
    assert resumed["final_accuracy"] == whole["final_accuracy"]
