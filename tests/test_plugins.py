"""Plug-ins: one of each kind registered from Python and through an entry point, run by the simulator and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import zerotrustml
from zerotrustml import plugins
from zerotrustml.exceptions import NonFiniteError, ParameterError, PreconditionError, ShapeError
from zerotrustml.fl.data import Dataset, load_dataset
from zerotrustml.fl.models import make_model

SMALL = {"nodes": 8, "rounds": 2, "local_steps": 1}


@pytest.fixture
def clean() -> Iterator[None]:
    before = {p.kind: set(plugins.names(p.kind)) for p in plugins.registered()}
    yield
    for p in plugins.registered():
        if p.name not in before.get(p.kind, set()):
            plugins.unregister(p.kind, p.name)


def test_one_of_each_kind_runs_in_the_simulator(clean: None) -> None:
    calls: dict[str, int] = {"attack": 0, "aggregator": 0, "model": 0, "dataset": 0}

    @plugins.attack("scaled_negation", params={"scale": 5.0})
    def scaled_negation(ctx: Any, params: dict[str, Any]) -> np.ndarray:
        """Negate the honest direction, scaled."""
        calls["attack"] += 1
        return -params["scale"] * ctx.own

    @plugins.aggregator("norm_filter", precondition=lambda n, f: None if n > 2 * f else "needs n > 2f")
    def norm_filter(updates: np.ndarray, f: int) -> tuple[np.ndarray, list[int]]:
        """Average the n - f shortest updates."""
        calls["aggregator"] += 1
        keep = np.argsort(np.linalg.norm(updates, axis=1))[: len(updates) - f]
        return updates[keep].mean(axis=0), keep.tolist()

    @plugins.model("tiny_softmax")
    def tiny_softmax(n_features: int, n_classes: int, **kw: Any) -> Any:
        calls["model"] += 1
        return make_model("softmax", n_features, n_classes, l2=1e-3)

    @plugins.dataset("digits_small")
    def digits_small(seed: int) -> Dataset:
        calls["dataset"] += 1
        ds = load_dataset("digits", seed=seed)
        return Dataset("digits_small", ds.x_train[:400], ds.y_train[:400], ds.x_test, ds.y_test, ds.n_classes, None)

    result = zerotrustml.simulate(
        **SMALL,
        dataset="digits_small",
        model="tiny_softmax",
        attack="scaled_negation",
        attack_params={"scale": 3.0},
        aggregator="norm_filter",
    )
    assert calls == {"attack": 2, "aggregator": 2, "model": 1, "dataset": 1}
    # The scaled negation is the longest update: the norm filter drops every attacker in every round.
    assert result.tpr == 1.0 and result.fpr == 0.0
    assert result.summary["params"]["attack_params"] == {"scale": 3.0}
    names = {(p.kind, p.name) for p in plugins.registered()}
    assert {("attack", "scaled_negation"), ("aggregator", "norm_filter")} <= names
    assert plugins.get("aggregator", "norm_filter").description == "Average the n - f shortest updates."  # type: ignore[union-attr]

    # The precondition and unknown parameters are refused before the run starts.
    with pytest.raises(PreconditionError, match="norm_filter: needs n > 2f"):
        zerotrustml.simulate(**SMALL, dataset="digits_small", aggregator="norm_filter", byzantine_fraction=0.5)
    with pytest.raises(ParameterError, match="unknown parameter 'epsilon' for attack 'scaled_negation'; known: scale"):
        zerotrustml.simulate(**SMALL, dataset="synthetic", attack="scaled_negation", attack_params={"epsilon": 1.0})


def test_what_a_plugin_returns_is_checked(clean: None) -> None:
    @plugins.attack("wrong_shape")
    def wrong_shape(ctx: Any, params: dict[str, Any]) -> np.ndarray:
        return ctx.own[:, :-1]

    @plugins.attack("nan_attack")
    def nan_attack(ctx: Any, params: dict[str, Any]) -> np.ndarray:
        return np.full_like(ctx.own, np.nan)

    @plugins.aggregator("bad_rule")
    def bad_rule(updates: np.ndarray, f: int) -> tuple[np.ndarray, list[int]]:
        return updates.mean(axis=0), [len(updates)]  # a row that does not exist

    with pytest.raises(ShapeError, match="attack plug-in 'wrong_shape': must return shape"):
        zerotrustml.simulate(**SMALL, dataset="synthetic", attack="wrong_shape")
    with pytest.raises(NonFiniteError, match="attack plug-in 'nan_attack': returned non-finite values"):
        zerotrustml.simulate(**SMALL, dataset="synthetic", attack="nan_attack")
    with pytest.raises(ParameterError, match=r"aggregator plug-in 'bad_rule': kept row 8 is not in \[0, 8\)"):
        zerotrustml.simulate(**SMALL, dataset="synthetic", aggregator="bad_rule")


def test_names_are_checked_when_registering(clean: None) -> None:
    with pytest.raises(ParameterError, match="a built-in attack has that name"):
        plugins.attack("alie")(lambda ctx, params: ctx.own)
    with pytest.raises(ParameterError, match="lower-case letters"):
        plugins.model("My Model")(lambda n_features, n_classes: None)
    plugins.dataset("twice")(lambda seed: None)
    with pytest.raises(ParameterError, match="already registered"):
        plugins.dataset("twice")(lambda seed: None)
    with pytest.raises(ParameterError, match="params\\['k'\\] must be a number or a string"):
        plugins.attack("bad_params", params={"k": [1]})  # type: ignore[dict-item]


def test_an_entry_point_plugin_is_listed_and_run_by_the_cli(tmp_path: Path) -> None:
    # A package installed the usual way: a module and a dist-info naming it in the zerotrustml.plugins group.
    site = tmp_path / "site"
    (site / "my_ztml_plugins").mkdir(parents=True)
    (site / "my_ztml_plugins" / "__init__.py").write_text(
        textwrap.dedent(
            '''
            from zerotrustml import plugins

            @plugins.attack("tiny_noise", params={"sigma": 0.01})
            def tiny_noise(ctx, params):
                """Honest update plus a little noise."""
                return ctx.own + params["sigma"]
            '''
        )
    )
    dist = site / "my_ztml_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-ztml-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[zerotrustml.plugins]\nmine = my_ztml_plugins\n")
    env = {"PYTHONPATH": str(site), "PATH": str(Path(sys.executable).parent)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "zerotrustml", *args], capture_output=True, text=True, env=env, timeout=300
        )

    listing = cli("plugins")
    assert listing.returncode == 0, listing.stderr
    assert "attack" in listing.stdout and "tiny_noise" in listing.stdout and "my_ztml_plugins" in listing.stdout
    assert "tiny_noise" in cli("run", "--help").stdout
    out = tmp_path / "run.json"
    ran = cli(
        "run",
        "--dataset",
        "synthetic",
        "--nodes",
        "6",
        "--rounds",
        "2",
        "--attack",
        "tiny_noise",
        "--attack-param",
        "sigma=0.5",
        "--data-dir",
        str(tmp_path / "d"),
        "--out",
        str(out),
        "--quiet",
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(out.read_text())["params"]["attack_params"] == {"sigma": 0.5}

    broken = tmp_path / "broken"
    (broken / "b-1.0.dist-info").mkdir(parents=True)
    (broken / "b-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: b\nVersion: 1.0\n")
    (broken / "b-1.0.dist-info" / "entry_points.txt").write_text("[zerotrustml.plugins]\nbroken = no_such_module\n")
    env["PYTHONPATH"] = str(broken)
    failed = cli("plugins")
    assert failed.returncode != 0
    assert "plug-in entry point 'broken' (no_such_module): ModuleNotFoundError" in failed.stderr
    assert "Traceback" not in failed.stderr
