"""The attack matrix: cells, resume, n/a cells, the summary files and the `zerotrustml matrix` command.

Runs the small preset (synthetic data, 8 nodes, 2 rounds, 9 cells of which 7
are runs and 2 are n/a) with one worker process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from zerotrustml import cli as cli_mod
from zerotrustml import defence
from zerotrustml import matrix as mx
from zerotrustml.cli import main
from zerotrustml.exceptions import ParameterError
from zerotrustml.fl import attacks
from zerotrustml.fl.simulation import RunConfig, run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, mx.MatrixRun, list[mx.CellProgress]]:
    out = tmp_path_factory.mktemp("matrix")
    events: list[mx.CellProgress] = []
    result = mx.run_matrix(mx.MatrixSpec.small(), out, workers=1, progress=events.append)
    return out, result, events


# -- the specification --------------------------------------------------------------------------------------------
def test_default_spec_sweeps_every_attack_fraction_distribution_defence_and_three_report_seeds() -> None:
    spec = mx.MatrixSpec()
    labels = [a.label for a in spec.attacks]
    assert "none" not in labels and "ipm(eps=0.1)" in labels and "ipm(eps=100)" in labels
    assert {a.name for a in spec.attacks} == set(attacks.ATTACKS) - {"none"}
    assert spec.fractions == (0.3, 0.4, 0.5, 0.6)
    assert spec.distributions == (("iid", None), ("dirichlet", 0.5), ("dirichlet", 0.1))
    assert set(defence.DEFENCES) <= set(spec.defences) and mx.PIPELINE in spec.defences
    assert spec.seeds == mx.REPORT_SEEDS and not set(spec.seeds) & set(mx.TUNING_SEEDS)
    assert (spec.nodes, spec.dataset, spec.model) == (20, "mnist", "softmax")
    n_scenarios = len(spec.distributions) * (len(spec.attacks) * len(spec.fractions) + 1)  # +1: the clean row
    assert len(spec.cells()) == n_scenarios * len(spec.defences) * len(spec.seeds)
    spec.validate()


def test_spec_round_trips_through_json_and_keys_are_stable_and_distinct() -> None:
    spec = mx.MatrixSpec.small()
    again = mx.MatrixSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec
    keys = [spec.key(c) for c in spec.cells()]
    assert keys == [again.key(c) for c in again.cells()]
    assert len(set(keys)) == len(keys)
    # The base configuration is part of the key: more rounds is another cell.
    assert spec.key(spec.cells()[0]) != mx.MatrixSpec.small(rounds=3).key(spec.cells()[0])


def test_parsers_read_the_labels_tables_show_and_reject_bad_names() -> None:
    assert [a.label for a in mx.parse_attack("ipm")] == ["ipm(eps=0.1)", "ipm(eps=100)"]
    assert mx.parse_attacks("alie, ipm(eps=100),ipm(epsilon=100)") == (
        mx.AttackCase("alie"),
        mx.AttackCase("ipm", (("epsilon", 100.0),)),
    )
    assert mx.parse_distributions("iid,dirichlet:0.5,dirichlet(0.1)") == (
        ("iid", None),
        ("dirichlet", 0.5),
        ("dirichlet", 0.1),
    )
    assert mx.parse_fractions("0.3, 0.5") == (0.3, 0.5)
    for parse, text in (
        (mx.parse_attacks, "nope"),
        (mx.parse_attacks, "ipm(bogus=1)"),
        (mx.parse_defences, "krum,nope"),
        (mx.parse_distributions, "dirichlet:0"),
        (mx.parse_distributions, "gaussian"),
        (mx.parse_fractions, "1.5"),
    ):
        with pytest.raises(ParameterError):
            parse(text)


def test_pipeline_known_f_is_the_pipeline_given_the_true_count() -> None:
    assert mx.PIPELINE_KNOWN_F in mx.available_defences() and mx.PIPELINE_KNOWN_F in mx.MatrixSpec().defences
    assert mx.parse_defences("pipeline,pipeline_known_f") == (mx.PIPELINE, mx.PIPELINE_KNOWN_F)
    spec = mx.MatrixSpec.small(defences=(mx.PIPELINE, mx.PIPELINE_KNOWN_F))
    spec.validate()
    settings = mx.defence_settings(spec.defence_config)
    assumed = math.floor(0.4 * spec.nodes)  # 3 of 8, whatever the fraction
    seen = set()
    for dist, attack, frac in spec.scenarios():
        pipe_cell, known_cell = (mx.Cell(attack, frac, dist[0], dist[1], d, 101) for d in spec.defences)
        pipe, known = spec.config(pipe_cell), spec.config(known_cell)
        assert pipe.aggregator == known.aggregator == "pipeline"
        assert pipe.assumed_f is None and pipe.f == assumed
        assert known.assumed_f == known.f == known.n_byzantine == round(frac * spec.nodes)
        assert dataclasses.replace(known, assumed_f=None) == pipe  # nothing else differs
        seen.add(known.f)
        assert spec.key(pipe_cell) != spec.key(known_cell)
        assert spec.key(pipe_cell, settings) != spec.key(known_cell, settings)
    assert seen == {0, 2}  # the clean row and 0.3 of 8 nodes: neither is the 3 the pipeline assumes
    # The pipeline's keys are what they were before the variant existed: its configuration alone.
    cell = mx.Cell(mx.AttackCase("sign_flip"), 0.3, "iid", None, mx.PIPELINE, 101)
    blob = json.dumps(spec.config(cell).to_json(), sort_keys=True, separators=(",", ":"))
    assert spec.key(cell) == hashlib.sha256(blob.encode()).hexdigest()[:24]


# -- running ------------------------------------------------------------------------------------------------------
def test_run_matrix_records_every_cell_with_preconditions_as_na(
    small_run: tuple[Path, mx.MatrixRun, list[mx.CellProgress]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    out, result, events = small_run
    spec = mx.MatrixSpec.small()
    records = lines(out / mx.CELLS_FILE)
    assert len(records) == len(spec.cells()) == 9
    assert (result.total, result.ran, result.not_applicable, result.failed, result.reused) == (9, 7, 2, 0, 0)
    settings = mx.defence_settings(spec.defence_config)
    assert {r["key"] for r in records} == {spec.key(c, settings) for c in spec.cells()}
    na = [r for r in records if r["status"] == "n/a"]
    # Bulyan needs n >= 4f + 3: 8 nodes with 2 Byzantine break it; with no attack (f = 0) it runs.
    assert {(r["defence"], r["fraction"]) for r in na} == {("bulyan", 0.3)}
    assert all("4f + 3" in r["reason"] for r in na)
    ok = [r for r in records if r["status"] == "ok"]
    for r in ok:
        assert 0.0 <= r["final_accuracy"] <= 1.0 and r["rounds"] == spec.rounds
        assert len(r["tpr_per_round"]) == spec.rounds
        assert (r["tpr"] is None) == all(t is None for t in r["tpr_per_round"])  # no Byzantine node: no TPR
        assert r["accuracy_gap"] == pytest.approx(r["honest_only_accuracy"] - r["final_accuracy"])
    # The callback: one start call, then one per cell, counting up to the total.
    assert events[0].status == "start" and events[0].done == 0
    assert [e.done for e in events[1:]] == list(range(1, 10)) and all(e.total == 9 for e in events)
    assert not (out / mx.ERRORS_FILE).exists()
    # A cell runs on a throwaway store without fsyncs: its results are those of a durable run of its configuration.
    pipe = next(r for r in ok if r["defence"] == mx.PIPELINE and r["attack"] == "sign_flip")
    summary = run(RunConfig(**pipe["config"]), tmp_path_factory.mktemp("durable"))
    for k in ("final_accuracy", "honest_only_accuracy", "tpr", "fpr"):
        assert summary[k] == pipe[k], k


def test_a_second_run_resumes_and_runs_nothing(small_run: tuple[Path, mx.MatrixRun, list[mx.CellProgress]]) -> None:
    out, _, _ = small_run
    before = (out / mx.CELLS_FILE).read_text()
    events: list[mx.CellProgress] = []
    result = mx.run_matrix(mx.MatrixSpec.small(), out, workers=1, progress=events.append)
    assert (result.ran, result.not_applicable, result.failed, result.reused) == (0, 0, 0, 9)
    assert [e.status for e in events] == ["start"] and events[0].done == 9
    assert (out / mx.CELLS_FILE).read_text() == before


def test_an_interrupted_matrix_reruns_only_the_missing_cells(
    small_run: tuple[Path, mx.MatrixRun, list[mx.CellProgress]], tmp_path: Path
) -> None:
    out = tmp_path / "copy"
    shutil.copytree(small_run[0], out)
    cells_path = out / mx.CELLS_FILE
    records = lines(cells_path)
    lost = next(r for r in records if r["status"] == "ok")
    kept = [r for r in records if r is not lost]
    # As a crash leaves it: a line cut short, with no newline.
    cells_path.write_text("".join(json.dumps(r) + "\n" for r in kept) + json.dumps(lost)[:40])
    result = mx.run_matrix(mx.MatrixSpec.small(), out, workers=1)
    assert (result.ran, result.reused) == (1, 8)
    # The cut line stays on its own line (skipped when read); every other line is a whole record.
    text = cells_path.read_text().splitlines()
    assert text.count(json.dumps(lost)[:40]) == 1
    valid = [json.loads(line) for line in text if line != json.dumps(lost)[:40]]
    assert sorted(r["key"] for r in valid) == sorted(r["key"] for r in records)


def test_cells_that_fail_are_logged_apart_and_retried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A defence the matrix lists but the aggregator does not know: each cell fails its check, in the parent.
    monkeypatch.setattr(mx, "available_defences", lambda: (*defence.DEFENCES, "not_yet"))
    spec = mx.MatrixSpec.small(defences=("not_yet",))
    first = mx.run_matrix(spec, tmp_path, workers=1)
    assert (first.ran, first.failed) == (0, 3)
    assert not (tmp_path / mx.CELLS_FILE).exists()
    assert len(lines(tmp_path / mx.ERRORS_FILE)) == 3
    second = mx.run_matrix(spec, tmp_path, workers=1)
    assert (second.reused, second.failed) == (0, 3)
    doc = mx.summarise(tmp_path)
    assert {c["status"] for c in doc["cells"]} == {"error"} and doc["counts"]["error"] == 3


def test_a_bad_spec_raises_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="defences"):
        mx.run_matrix(mx.MatrixSpec.small(defences=("nope",)), tmp_path / "x")
    with pytest.raises(ParameterError, match="nodes"):
        mx.run_matrix(mx.MatrixSpec.small(nodes=0), tmp_path / "x")
    assert not (tmp_path / "x").exists()


# -- summarising --------------------------------------------------------------------------------------------------
def test_summarise_writes_json_markdown_and_png(small_run: tuple[Path, mx.MatrixRun, list[mx.CellProgress]]) -> None:
    out, _, _ = small_run
    doc = mx.summarise(out)
    spec = mx.MatrixSpec.small()
    saved = json.loads((out / mx.JSON_FILE).read_text())
    assert (
        saved["counts"]
        == doc["counts"]
        == {
            "total": 9,
            "ok": 7,
            "n/a": 2,
            "error": 0,
            "missing": 0,
            "groups": 9,
            "groups_complete": 9,
        }
    )
    cells = {(c["attack_label"], c["defence"]): c for c in saved["cells"]}
    assert cells[("ipm(eps=100)", "bulyan")]["status"] == "n/a"
    flip = cells[("sign_flip", "multi_krum")]
    assert flip["status"] == "ok" and flip["n_seeds"] == 1 and flip["seeds"] == list(spec.seeds)
    for key in ("accuracy", "honest_only_accuracy", "gap_points", "tpr", "fpr"):
        assert flip[key] is not None
    assert flip["gap_points"] == pytest.approx(100 * (flip["honest_only_accuracy"] - flip["accuracy"]))
    assert cells[("none", "multi_krum")]["tpr"] is None  # no Byzantine node to find
    assert saved["report_seeds"] == list(spec.seeds) and saved["tuning_seeds"] == list(mx.TUNING_SEEDS)
    # The preset has a pipeline column, so its targets over attack cells have data (met or not); the
    # Dirichlet(0.1) one has none, as the preset is IID only.
    status = {t["name"]: t["status"] for t in saved["targets"]}
    assert status["mean TPR over attack cells at fractions <= 0.4"] in ("PASS", "MISS")
    assert status["Dirichlet(0.1) no attack: accuracy below plain mean"] == "NO DATA"

    md = (out / mx.MARKDOWN_FILE).read_text()
    assert "| attack | fraction | multi_krum | bulyan | pipeline |" in md
    assert "| ipm(eps=100) | 0.3 |" in md and "n/a" in md
    assert "## Targets for `pipeline`" in md and "mean TPR over attack cells" in md
    assert [e["defence"] for e in saved["defences"]] == list(spec.defences)
    assert "## Per defence" in md and "| multi_krum | 2 | 0 |" in md and "| bulyan | 0 | 2 | – | – | – | – |" in md
    assert "zerotrustml matrix --out" in md and "--small" in md
    png = (out / mx.PNG_FILE).read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 5000


def test_targets_pass_and_miss_on_the_pipeline_cells() -> None:
    spec = mx.MatrixSpec.small(
        distributions=(("dirichlet", 0.1),),
        fractions=(0.3, 0.5),
        defences=("mean", mx.PIPELINE, mx.PIPELINE_PERSONAL),
    )

    def row(
        attack: str, frac: float, d: str, acc: float, tpr: float | None, fpr: float, own: tuple[float, float] | None
    ) -> dict[str, Any]:
        return {
            "attack": attack,
            "attack_label": attack,
            "fraction": frac,
            "distribution": "dirichlet",
            "alpha": 0.1,
            "defence": d,
            "n_seeds": 1,
            "accuracy": acc,
            "gap_points": 100 * (0.9 - acc),
            "tpr": tpr,
            "fpr": fpr,
            "personal_gap_points": None if own is None else own[0],
            "personal_worst_gap_points": None if own is None else own[1],
        }

    rows = [
        row("none", 0.0, "mean", 0.90, None, 0.0, None),
        row("none", 0.0, mx.PIPELINE, 0.895, None, 0.01, None),
        row("alie", 0.3, mx.PIPELINE, 0.88, 1.0, 0.02, None),
        row("gaussian", 0.3, mx.PIPELINE, 0.90, 0.9, 0.0, None),
        # At 0.5 the shared view's TPR and gap count for no target: the personal view's own models do.
        row("alie", 0.5, mx.PIPELINE, 0.10, 0.0, 1.0, None),
        row("alie", 0.5, mx.PIPELINE_PERSONAL, 0.10, 0.0, 1.0, (4.0, 12.0)),
        row("alie", 0.3, mx.PIPELINE_PERSONAL, 0.88, 1.0, 0.0, (30.0, 50.0)),  # below 0.5: not a personal target
    ]
    targets = {t["name"].split(" (")[0]: t for t in mx._targets(spec, rows, mx.PIPELINE)}
    tpr, fpr = (
        targets["mean TPR over attack cells at fractions <= 0.4"],
        targets["mean FPR over attack cells at fractions <= 0.4"],
    )
    assert tpr["value"] == pytest.approx(0.95) and tpr["status"] == "PASS"
    assert fpr["value"] == pytest.approx(0.01) and fpr["status"] == "PASS"
    assert tpr["detail"] == "2 of 2 attack cells at fractions <= 0.4 measured"
    low = targets["worst accuracy gap at fractions <= 0.4"]
    assert low["value"] == pytest.approx(2.0) and low["status"] == "PASS" and "alie @0.3" in low["detail"]
    own = targets["fractions > 0.4: worst cell, honest agents' own models"]
    assert own["value"] == pytest.approx(4.0) and own["status"] == "PASS"
    worst = targets["fractions > 0.4: worst cell, worst honest agent's own model below honest-only"]
    assert worst["value"] == pytest.approx(12.0) and worst["status"] == "MISS"  # 12 points > 10
    dirichlet = targets["Dirichlet(0.1) no attack: accuracy below plain mean"]
    assert dirichlet["value"] == pytest.approx(0.5) and dirichlet["status"] == "PASS"

    # FPR above 0.02 misses; without a personal column the personal targets have no data and say why.
    rows2 = [r for r in rows if r["defence"] != mx.PIPELINE_PERSONAL] + [
        row("zero", 0.3, mx.PIPELINE, 0.9, 1.0, 0.1, None)
    ]
    spec2 = dataclasses.replace(spec, defences=("mean", mx.PIPELINE))
    targets2 = {t["name"].split(" (")[0]: t for t in mx._targets(spec2, rows2, mx.PIPELINE)}
    assert targets2["mean FPR over attack cells at fractions <= 0.4"]["status"] == "MISS"
    no_own = targets2["fractions > 0.4: worst cell, honest agents' own models"]
    assert no_own["status"] == "NO DATA" and mx.PIPELINE_PERSONAL in no_own["detail"]

    rows = [{**r, "status": "ok"} for r in rows] + [{**row("alie", 0.5, "mean", 0.9, 0.0, 0.0, None), "status": "n/a"}]
    per = {e["defence"]: e for e in mx._per_defence(spec, rows)}
    pipe = per[mx.PIPELINE]
    assert pipe["cells"] == 3 and pipe["n/a"] == 0  # the no-attack cell is not an attack cell
    assert pipe["low_cells"] == 2 and pipe["low_worst_gap"] == pytest.approx(2.0) and pipe["low_within"] == 2
    assert pipe["low_tpr"] == pytest.approx(0.95) and pipe["half_tpr"] == pytest.approx(0.0)
    assert pipe["half_cells"] == 1 and pipe["half_mean_gap"] == pytest.approx(80.0) and pipe["half_within"] == 0
    assert per["mean"]["cells"] == 0 and per["mean"]["n/a"] == 1 and per["mean"]["tpr"] is None


def test_personal_cells_run_the_personal_view_and_report_the_own_models(tmp_path: Path) -> None:
    spec = mx.MatrixSpec.small(
        attacks=(mx.AttackCase("sign_flip"),),
        fractions=(0.5,),
        defences=(mx.PIPELINE_PERSONAL, mx.PIPELINE),
        include_clean=False,
    )
    cell = spec.cells()[0]
    assert cell.defence == mx.PIPELINE_PERSONAL
    config = spec.config(cell)
    assert config.aggregator == mx.PIPELINE and config.personal_view
    assert not spec.config(spec.cells()[1]).personal_view
    # Same run configuration but the personal view: different keys.
    assert spec.key(cell) != spec.key(spec.cells()[1])
    mx.run_matrix(spec, tmp_path, workers=1)
    doc = mx.summarise(tmp_path)
    rows = {r["defence"]: r for r in doc["cells"]}
    mine, plain = rows[mx.PIPELINE_PERSONAL], rows[mx.PIPELINE]
    assert plain["personal_gap_points"] is None
    record = next(r for r in mx._read_jsonl(tmp_path / mx.CELLS_FILE) if r["defence"] == mx.PIPELINE_PERSONAL)
    own = record["personal_accuracy"]
    assert own["min"] <= own["mean"] <= own["max"]
    assert mine["personal_gap_points"] == pytest.approx(100 * (record["honest_only_accuracy"] - own["mean"]))
    assert mine["personal_worst_gap_points"] == pytest.approx(100 * (record["honest_only_accuracy"] - own["min"]))
    md = (tmp_path / mx.MARKDOWN_FILE).read_text()
    assert f"own {mine['personal_gap_points']:+.1f}, worst {mine['personal_worst_gap_points']:+.1f}" in md


# -- the command --------------------------------------------------------------------------------------------------
def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    # A clean failure is SystemExit from click; anything else is a traceback the user would see.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_cli_small_matrix_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "m"
    code, output = invoke("matrix", "--small", "--out", str(out), "--workers", "1")
    assert code == 0, output
    assert len(lines(out / mx.CELLS_FILE)) == 9
    for name in (mx.JSON_FILE, mx.MARKDOWN_FILE, mx.PNG_FILE):
        assert (out / name).exists() and str(out / name) in output.replace("\n", "")
    # Resume and summarise-only: nothing new runs, the summary is rewritten from the cells.
    code, output = invoke("matrix", "--small", "--out", str(out), "--workers", "1")
    assert code == 0 and "0 run, 0 n/a, 9 reused" in output
    (out / mx.JSON_FILE).unlink()
    code, output = invoke("matrix", "--summarise-only", "--out", str(out))
    assert code == 0, output
    assert json.loads((out / mx.JSON_FILE).read_text())["counts"]["ok"] == 7


def test_cli_matrix_runs_another_model_and_says_so_in_its_command(tmp_path: Path) -> None:
    out = tmp_path / "m"
    code, output = invoke(
        "matrix", "--small", "--out", str(out), "--workers", "1", "--model", "mlp", "--defences", "pipeline"
    )
    assert code == 0, output
    records = lines(out / mx.CELLS_FILE)
    assert records and {r["config"]["model"] for r in records} == {"mlp"}
    assert "--model mlp" in (out / mx.MARKDOWN_FILE).read_text()
    assert mx.MatrixSpec.from_json(json.loads((out / mx.SPEC_FILE).read_text())).model == "mlp"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--defences", "multi_krum,nope", "unknown name 'nope'"),
        ("--attacks", "sign_flip,nope", "unknown name 'nope'"),
        ("--attacks", "ipm(bogus=1)", "bogus"),
        ("--distributions", "iid,dirichlet:-1", "alpha must be > 0"),
        ("--fractions", "0.3,2", "[0, 1)"),
        ("--dataset", "nope", "nope"),
        ("--model", "nope", "nope"),
    ],
)
def test_cli_bad_names_exit_2_with_a_message(tmp_path: Path, option: str, value: str, message: str) -> None:
    code, output = invoke("matrix", "--small", "--out", str(tmp_path / "m"), option, value)
    assert code == 2 and message in output, output
    assert not (tmp_path / "m").exists()


def test_cli_matrix_reports_pipeline_known_f_beside_the_pipeline(
    small_run: tuple[Path, mx.MatrixRun, list[mx.CellProgress]], tmp_path: Path
) -> None:
    # The preset's cells, the pipeline's among them: only pipeline_known_f's two cells are new.
    out = tmp_path / "m"
    out.mkdir()
    shutil.copy(small_run[0] / mx.CELLS_FILE, out / mx.CELLS_FILE)
    args = ("matrix", "--small", "--attacks", "sign_flip", "--defences", "pipeline,pipeline_known_f")
    code, output = invoke(*args, "--out", str(out), "--workers", "1")
    assert code == 0 and "2 run, 0 n/a, 2 reused" in output, output
    spec = mx.MatrixSpec.small(attacks=(mx.AttackCase("sign_flip"),), defences=(mx.PIPELINE, mx.PIPELINE_KNOWN_F))
    records = {(r["defence"], r["attack"]): r for r in lines(out / mx.CELLS_FILE) if r["defence"] == "pipeline_known_f"}
    assert set(records) == {("pipeline_known_f", "none"), ("pipeline_known_f", "sign_flip")}
    for r in records.values():
        assert r["status"] == "ok" and r["config"]["aggregator"] == "pipeline"
        assert r["config"]["assumed_f"] == round(r["fraction"] * spec.nodes)
    doc = json.loads((out / mx.JSON_FILE).read_text())
    cells = {(c["attack"], c["defence"]): c for c in doc["cells"]}
    assert cells[("sign_flip", "pipeline")]["status"] == cells[("sign_flip", "pipeline_known_f")]["status"] == "ok"
    assert cells[("sign_flip", "pipeline_known_f")]["tpr"] is not None
    assert [e["defence"] for e in doc["defences"]] == ["pipeline", "pipeline_known_f"]
    assert doc["target_defence"] == "pipeline"
    assert doc["targets"][0]["detail"] == "1 of 1 attack cells at fractions <= 0.4 measured"

    md = (out / mx.MARKDOWN_FILE).read_text()
    assert "| attack | fraction | pipeline | pipeline_known_f |" in md
    row = next(line for line in md.splitlines() if line.startswith("| sign_flip | 0.3 |"))
    assert row.count("|") == 5 and "—" not in row and "error" not in row  # both columns measured
    assert "| pipeline | 1 | 0 |" in md and "| pipeline_known_f | 1 | 0 |" in md
    assert "## Targets for `pipeline`" in md
    assert "`pipeline` assumes f = 3 of the 8 nodes" in md and "what knowing f would add" in md
    assert "--defences pipeline,pipeline_known_f" in md  # the command that reruns it


def test_cli_summarise_only_without_a_matrix_is_a_clean_error(tmp_path: Path) -> None:
    code, output = invoke("matrix", "--summarise-only", "--out", str(tmp_path / "none"))
    assert code == 1 and "spec.json" in output


def test_defence_settings_from_the_environment_are_part_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = mx.MatrixSpec.small()
    cell = spec.cells()[0]
    before = mx.defence_settings(None)
    monkeypatch.setenv("BEHAVIOR_RECOVERY_BONUS", "0.2")
    after = mx.defence_settings(None)
    assert after != before
    assert spec.key(cell, before) != spec.key(cell, after)


def test_a_new_results_version_runs_every_cell_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Code that changes what a run produces bumps RESULTS_VERSION; cells recorded under the old one are not reused."""
    spec = mx.MatrixSpec.small(defences=("mean",))
    first = mx.run_matrix(spec, tmp_path, workers=1)
    assert first.ran == first.total > 0 and first.failed == 0
    assert mx.run_matrix(spec, tmp_path, workers=1).reused == first.total  # same version: nothing runs again
    monkeypatch.setattr(mx, "RESULTS_VERSION", mx.RESULTS_VERSION + 1)
    assert mx.pending_cells(spec, tmp_path) == first.total
    again = mx.run_matrix(spec, tmp_path, workers=1)
    assert (again.reused, again.ran) == (0, first.total)
    assert mx.summarise(tmp_path)["results_version"] == mx.RESULTS_VERSION


def test_another_configuration_keeps_its_report_apart(
    small_run: tuple[Path, mx.MatrixRun, list[mx.CellProgress]], tmp_path: Path
) -> None:
    out = tmp_path / "copy"
    shutil.copytree(small_run[0], out)
    before = (out / mx.MARKDOWN_FILE).read_text()
    with pytest.raises(ParameterError, match=r"holds the report of another matrix \(rounds: 2 there, 3 here\)"):
        mx.run_matrix(mx.MatrixSpec.small(rounds=3), out, workers=1)
    with pytest.raises(ParameterError, match="another --out"):
        mx.summarise(out, spec=mx.MatrixSpec.small(defences=("multi_krum",)))
    assert (out / mx.MARKDOWN_FILE).read_text() == before  # nothing replaced
    code, output = invoke("matrix", "--small", "--rounds", "3", "--out", str(out), "--workers", "1")
    assert code == 1 and "holds the report of another matrix" in output
    assert mx.pending_cells(mx.MatrixSpec.small(), out) == 0
    assert mx.pending_cells(mx.MatrixSpec.small(rounds=3), tmp_path / "empty") == 9


def test_a_large_matrix_asks_first(tmp_path: Path) -> None:
    # The default matrix has thousands of cells: piped (no terminal to ask on), it wants --yes, and starts nothing.
    code, output = invoke("matrix", "--out", str(tmp_path / "m"))
    assert code == 2 and "cells are to run" in output and "pass --yes" in output
    assert not (tmp_path / "m").exists()
    spec = mx.MatrixSpec()
    assert mx.pending_cells(spec, tmp_path / "m") == len(spec.cells()) > cli_mod.MATRIX_ASK_ABOVE
