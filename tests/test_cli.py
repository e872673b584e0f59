"""The `zerotrustml` command line: the main job, plots and clear errors (never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from zerotrustml.cli import main
from zerotrustml.fl.simulation import RunConfig

FAST = ["--dataset", "synthetic", "--nodes", "8", "--rounds", "2", "--local-steps", "1"]


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    # A clean failure is SystemExit from click; anything else is a traceback the user would see.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_defaults_are_the_documented_scenario() -> None:
    c = RunConfig()
    assert (c.nodes, c.byzantine_fraction, c.attack, c.dataset, c.aggregator, c.backend) == (
        20,
        0.3,
        "sign_flip",
        "mnist",
        "pipeline",
        "embedded",
    )


def test_run_writes_summary_metrics_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "out" / "run.json"
    code, output = invoke(
        "run", *FAST, "--data-dir", str(tmp_path / "d"), "--out", str(out), "--plot", str(tmp_path / "p.png")
    )
    assert code == 0, output
    summary = json.loads(out.read_text())
    for key in ("final_accuracy", "honest_only_accuracy", "tpr", "fpr", "rounds", "params"):
        assert key in summary
    assert summary["params"]["attack"] == "sign_flip" and summary["rounds"] == 2
    assert len((tmp_path / "out" / "run.jsonl").read_text().splitlines()) == 2
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, output = invoke("plot", str(out), "--out", str(tmp_path / "again.png"))
    assert code == 0 and (tmp_path / "again.png").stat().st_size > 1000


def test_default_mnist_scenario_runs_from_the_module(tmp_path: Path) -> None:
    # The README's main command with fewer rounds: the real MNIST digits, the pipeline, 30% sign flip.
    proc = subprocess.run(
        [sys.executable, "-m", "zerotrustml", "run", "--rounds", "3", "--quiet", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(Path(proc.stdout.strip()).read_text())
    assert summary["params"]["dataset"] == "mnist" and summary["params"]["aggregator"] == "pipeline"
    assert summary["final_accuracy"] > 0.5


def test_unknown_names_and_impossible_parameters(tmp_path: Path) -> None:
    d = str(tmp_path / "d")
    cases = [
        (["--attack", "nope"], "Invalid value for '--attack'"),
        (["--aggregator", "nope"], "Invalid value for '--aggregator'"),
        (["--aggregator", "bulyan", "--nodes", "20"], "bulyan needs n >= 4f + 3"),
        (["--alpha", "0"], "alpha: must be > 0"),
        (["--alpha", "-1"], "alpha: must be > 0"),
        (["--nodes", "0"], "nodes: must be at least 1"),
        (["--byzantine-fraction", "1.5"], "byzantine_fraction"),
        (["--attack-param", "epsilon"], "expected KEY=VALUE"),
    ]
    for args, message in cases:
        code, output = invoke("run", *FAST, "--data-dir", d, *args)
        assert code == 2, (args, output)
        assert message in output, (args, output)
    assert not Path(d).exists()


def test_corrupt_store_is_reported_and_left_alone(tmp_path: Path) -> None:
    tmp_path.joinpath("zerotrustml.sqlite").write_bytes(b"not a database" * 100)
    before = tmp_path.joinpath("zerotrustml.sqlite").read_bytes()
    code, output = invoke("run", *FAST, "--data-dir", str(tmp_path))
    assert code == 1 and "Error:" in output and "zerotrustml.sqlite" in output
    assert tmp_path.joinpath("zerotrustml.sqlite").read_bytes() == before


def test_locked_store_is_reported(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio, sys, time\n"
            "from zerotrustml.backends.embedded import EmbeddedStore\n"
            "async def main():\n"
            f"    async with EmbeddedStore({str(tmp_path)!r}):\n"
            "        print('open', flush=True); time.sleep(30)\n"
            "asyncio.run(main())\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        code, output = invoke("run", *FAST, "--data-dir", str(tmp_path))
        assert code == 1 and "locked" in output
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_plot_errors_are_clean(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    code, output = invoke("plot", str(bad))
    assert code == 1 and "not a JSON line" in output


def test_conductor_not_running_is_one_line_naming_the_url() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(main, ["conductor", "--admin-port", str(port), "--timeout", "3"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"conductor at ws://127.0.0.1:{port}: cannot connect" in lines[0]


def test_ctrl_c_exits_130_with_the_resume_command_and_the_run_resumes(tmp_path: Path) -> None:
    import shlex
    import signal
    import time

    store, out, metrics = tmp_path / "d", tmp_path / "run.json", tmp_path / "run.jsonl"
    fast = ["--dataset", "synthetic", "--nodes", "8", "--local-steps", "1"]
    args = ["run", *fast, "--rounds", "200", "--out", str(out), "--data-dir", str(store)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "zerotrustml", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Aborted!" not in err
    resume = shlex.split(err.split("Resume with:\n", 1)[1].strip().splitlines()[0])
    assert resume == ["zerotrustml", *args]  # --data-dir last, as given
    done = len(metrics.read_text().splitlines())
    assert 2 <= done < 200
    # The printed command (run as the module) picks the run up where it stopped, and says so.
    again = subprocess.run(
        [sys.executable, "-m", "zerotrustml", *resume[1:]], capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr
    # The store may hold one round more than the JSON lines showed (SIGINT between the record and its line).
    import re

    said = re.search(
        rf"^resuming at round (\d+) of 200 \(rounds 1-(\d+) are in {re.escape(str(store))}\)$",
        again.stdout,
        re.MULTILINE,
    )
    assert said is not None, again.stdout
    assert int(said.group(1)) == int(said.group(2)) + 1 and done <= int(said.group(2)) <= done + 1
    assert len(metrics.read_text().splitlines()) == 200
    # Once more: nothing to run, and it says so instead of "resuming at round 201 of 200".
    done_again = subprocess.run(
        [sys.executable, "-m", "zerotrustml", *resume[1:]], capture_output=True, text=True, timeout=600
    )
    assert done_again.returncode == 0, done_again.stderr
    assert f"all 200 rounds are already in {store}; writing the summary" in done_again.stdout.splitlines()


def test_the_resume_command_points_at_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    from zerotrustml.cli import _resume_command

    monkeypatch.setattr(sys, "argv", ["zerotrustml", "run", "--data-dir=old", "--rounds", "5", "--data-dir", "x"])
    assert _resume_command(Path("runs/a b")) == "zerotrustml run --rounds 5 --data-dir 'runs/a b'"


def test_run_help_names_the_files_a_run_writes() -> None:
    code, output = invoke("run", "--help")
    assert code == 0 and "summary.json" not in output
    assert "<data-dir>/run.json" in " ".join(output.split())


def test_plot_reads_a_data_directory_whose_summary_is_elsewhere(tmp_path: Path) -> None:
    # `run --data-dir D --out elsewhere.json`, then `plot D`: the store's round records have every round.
    store = tmp_path / "d"
    code, output = invoke("run", *FAST, "--data-dir", str(store), "--out", str(tmp_path / "r" / "x.json"))
    assert code == 0, output
    assert not (store / "run.json").exists()
    code, output = invoke("plot", str(store))
    assert code == 0, output
    png = store / "run.png"
    assert output.strip() == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, output = invoke("plot", str(tmp_path / "r"))  # a directory that is neither
    assert code != 0 and "neither a run's data directory" in output


def test_a_torch_model_without_torch_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from zerotrustml.fl import models

    monkeypatch.setattr(models, "available_models", lambda: models.MODELS)
    code, output = invoke("run", *FAST, "--model", "torch_cnn")
    assert code == 2
    assert "--model torch_cnn: needs the torch extra" in output and "pip install 'zerotrustml[torch]'" in output
