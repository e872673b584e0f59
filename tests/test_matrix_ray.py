"""`zerotrustml matrix` on Ray: the local pool's records, resuming, failing cells, the CLI and its flags.

Runs the small preset (9 cells: 7 runs, 2 n/a) with 2 CPUs. Ray starts twice in this module, a few seconds
each: inside :func:`run_matrix`, which starts and stops its own local instance, and here, as a stand-in cluster
that :func:`run_matrix` and the CLI (in a subprocess) connect to.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import ray
from click.testing import CliRunner

from zerotrustml import matrix as mx
from zerotrustml.cli import main
from zerotrustml.exceptions import ParameterError

# Ray leaves files and processes to its own threads and warns about its GPU settings; neither is ours, and the
# suite turns warnings into errors (as in test_flower_strategy.py).
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

SPEC = mx.MatrixSpec.small()
CPUS = 2


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def results(out: Path) -> dict[str, dict[str, Any]]:
    """The cells of ``out`` by key, without their timing (the only field that depends on the machine's load)."""
    return {r["key"]: {k: v for k, v in r.items() if k != "elapsed_s"} for r in lines(out / mx.CELLS_FILE)}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    result = mx.run_matrix(SPEC, out, workers=CPUS)
    assert (result.ran, result.not_applicable, result.failed) == (7, 2, 0)
    return out


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, mx.MatrixRun, list[mx.CellProgress]]:
    assert not ray.is_initialized()  # so run_matrix starts (and stops) a local instance of its own
    out = tmp_path_factory.mktemp("ray")
    events: list[mx.CellProgress] = []
    result = mx.run_matrix(SPEC, out, workers=CPUS, progress=events.append, executor="ray")
    return out, result, events


@pytest.fixture(scope="module")
def cluster(ray_run: Any) -> Iterator[str]:
    """A local Ray instance this process is connected to; yields its address (requested after ``ray_run``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
        ray.init(address="local", num_cpus=CPUS, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    # A clean failure is SystemExit from click; anything else is a traceback the user would see.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


# -- the library ----------------------------------------------------------------------------------------------------
def test_ray_records_every_cell_as_the_local_pool_does(
    local_run: Path, ray_run: tuple[Path, mx.MatrixRun, list[mx.CellProgress]]
) -> None:
    out, result, events = ray_run
    assert (result.total, result.ran, result.not_applicable, result.failed, result.reused) == (9, 7, 2, 0, 0)
    # The same cells, keys, statuses, reasons and figures: a cell is a deterministic run of its seed.
    ours, local = results(out), results(local_run)
    assert len(ours) == 9 and ours == local
    assert {r["status"] for r in ours.values()} == {"ok", "n/a"}
    assert all(r["elapsed_s"] > 0 for r in lines(out / mx.CELLS_FILE) if r["status"] == "ok")
    # The progress callback as locally: one start call, then one per cell, counting up to the total.
    assert events[0].status == "start" and events[0].done == 0
    assert [e.done for e in events[1:]] == list(range(1, 10)) and all(e.total == 9 for e in events)
    assert sorted(e.status for e in events[1:]) == sorted(r["status"] for r in ours.values())
    assert not (out / mx.ERRORS_FILE).exists()
    assert not ray.is_initialized()  # the instance it started is shut down


def test_a_second_ray_run_reuses_every_cell(ray_run: tuple[Path, mx.MatrixRun, list[mx.CellProgress]]) -> None:
    out, _, _ = ray_run
    before = (out / mx.CELLS_FILE).read_text()
    events: list[mx.CellProgress] = []
    result = mx.run_matrix(SPEC, out, workers=CPUS, progress=events.append, executor="ray")
    assert (result.total, result.ran, result.not_applicable, result.failed, result.reused) == (9, 0, 0, 0, 9)
    assert [e.status for e in events] == ["start"] and events[0].done == 9
    assert (out / mx.CELLS_FILE).read_text() == before


def test_an_interrupted_matrix_resumes_on_a_running_ray(
    ray_run: tuple[Path, mx.MatrixRun, list[mx.CellProgress]], cluster: str, tmp_path: Path
) -> None:
    out = tmp_path / "copy"
    shutil.copytree(ray_run[0], out)
    records = lines(out / mx.CELLS_FILE)
    lost = [r for r in records if r["status"] == "ok"][:2]
    (out / mx.CELLS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records if r not in lost))
    # This process is connected to Ray already: the cells run there, and the connection stays open.
    result = mx.run_matrix(SPEC, out, executor="ray")
    assert (result.ran, result.reused, result.failed) == (2, 7, 0)
    assert results(out) == results(ray_run[0])
    assert ray.is_initialized()
    with pytest.raises(ParameterError, match="ray_address: this process is already connected to Ray"):
        mx.run_matrix(SPEC, tmp_path / "other", executor="ray", ray_address="local")
    assert not (tmp_path / "other").exists()


def test_a_task_that_raises_or_whose_worker_dies_is_an_error_record(
    cluster: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = mx.MatrixSpec.small(defences=("multi_krum",))  # 3 cells: no attack, sign flip, IPM

    def flaky(config_json: dict[str, Any]) -> dict[str, Any]:
        # Runs in a Ray worker (shipped by value), where zerotrustml.matrix is not patched.
        if config_json["attack"] == "ipm":
            raise RuntimeError("boom in the task")
        if config_json["attack"] == "sign_flip":
            os._exit(3)  # the worker dies mid-cell
        return mx._run_cell(config_json)

    monkeypatch.setattr(mx, "_run_cell", flaky)
    events: list[mx.CellProgress] = []
    first = mx.run_matrix(spec, tmp_path, executor="ray", progress=events.append)
    assert (first.ran, first.failed, first.reused) == (1, 2, 0)
    [ok] = lines(tmp_path / mx.CELLS_FILE)
    assert ok["attack"] == "none" and ok["status"] == "ok"
    errors = {r["attack"]: r for r in lines(tmp_path / mx.ERRORS_FILE)}
    assert set(errors) == {"ipm", "sign_flip"} and all(r["status"] == "error" for r in errors.values())
    assert errors["ipm"]["reason"] == "RuntimeError: boom in the task"
    assert errors["sign_flip"]["reason"].startswith("WorkerCrashedError: The worker died unexpectedly")
    assert sorted(e.status for e in events[1:]) == ["error", "error", "ok"]
    # As locally, failed cells are not finished: the next call retries them (and they pass now).
    monkeypatch.undo()
    second = mx.run_matrix(spec, tmp_path, executor="ray")
    assert (second.ran, second.failed, second.reused) == (2, 0, 1)
    assert {r["status"] for r in lines(tmp_path / mx.CELLS_FILE)} == {"ok"}
    assert len(lines(tmp_path / mx.CELLS_FILE)) == 3


def test_without_ray_the_ray_executor_names_the_option_and_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as where it is not installed
    with pytest.raises(ParameterError, match=r"executor: 'ray' needs Ray.*pip install 'zerotrustml\[ray\]'"):
        mx.run_matrix(SPEC, tmp_path / "m", executor="ray")
    code, output = invoke("matrix", "--small", "--out", str(tmp_path / "m"), "--executor", "ray")
    assert code == 2 and "--executor" in output and "pip install 'zerotrustml[ray]'" in output, output
    assert not (tmp_path / "m").exists()
    mx.check_executor("local")  # the default needs no Ray


def test_bad_executor_arguments_raise_before_anything_runs(tmp_path: Path) -> None:
    for kwargs, match in (
        ({"executor": "dask"}, r"executor: unknown name 'dask'; choose one of local, ray"),
        ({"ray_address": "auto"}, r"ray_address: only with executor='ray'"),
        ({"executor": "ray", "ray_address": " "}, r"ray_address: must not be empty"),
    ):
        with pytest.raises(ParameterError, match=match):
            mx.run_matrix(SPEC, tmp_path / "m", **kwargs)
    assert not (tmp_path / "m").exists()


# -- the command line -----------------------------------------------------------------------------------------------
def test_cli_runs_on_a_ray_cluster_and_leaves_it_running(cluster: str, local_run: Path, tmp_path: Path) -> None:
    # A second driver, as on a cluster: the command connects to the instance this process started.
    out = tmp_path / "m"
    argv = ["matrix", "--small", "--out", str(out), "--executor", "ray", "--ray-address", cluster, "--workers", "2"]
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "zerotrustml"), *argv], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = " ".join(proc.stdout.split())  # as wide as the lines Rich wrapped
    assert f"on Ray ({cluster})" in text and "7 run, 2 n/a, 0 reused, 0 failed" in text, text
    assert results(out) == results(local_run)
    assert (out / mx.MARKDOWN_FILE).exists()
    # It closed its connection only: the cluster still runs tasks.
    assert ray.get(ray.remote(lambda: 42).remote()) == 42 and ray.cluster_resources()["CPU"] == CPUS


@pytest.mark.parametrize(
    ("args", "flag", "message"),
    [
        (["--ray-address", "auto"], "--ray-address", "needs --executor ray (got --executor local)"),
        (["--executor", "local", "--ray-address", "ray://head:10001"], "--ray-address", "needs --executor ray"),
        (["--executor", "dask"], "--executor", "'dask' is not one of 'local', 'ray'"),
        (["--executor", "ray", "--ray-address", ""], "--ray-address", "must not be empty"),
    ],
)
def test_cli_bad_executor_flags_are_usage_errors(tmp_path: Path, args: list[str], flag: str, message: str) -> None:
    code, output = invoke("matrix", "--small", "--out", str(tmp_path / "m"), *args)
    assert code == 2 and flag in output and message in output, output
    assert not (tmp_path / "m").exists()


def test_cli_offers_the_executors_the_library_has() -> None:
    [option] = [p for p in main.commands["matrix"].params if p.name == "executor"]
    assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == mx.EXECUTORS
