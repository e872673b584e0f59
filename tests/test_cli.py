"""The `zerotrustml` command line: the main job, plots and clear errors (never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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
        # Errors name the flags, not the Python fields behind them.
        (["--alpha", "0"], "Error: --alpha: must be > 0"),
        (["--alpha", "-1"], "Error: --alpha: must be > 0"),
        (["--nodes", "0"], "Error: --nodes: must be at least 1"),
        (["--byzantine-fraction", "1.5"], "Error: --byzantine-fraction: must be in [0, 1) (got 1.5)"),
        (["--byzantine-fraction", "0.9", "--nodes", "4"], "Error: --byzantine-fraction: leaves no honest node"),
        (["--local-steps", "0"], "Error: --local-steps: must be at least 1"),
        (["--attack-param", "epsilon"], "expected KEY=VALUE"),
        (["--attack", "ipm", "--attack-param", "epsilon=nan"], "Error: --attack-param epsilon: must be a finite"),
        (["--attack-param", "foo=1"], "Error: --attack-param: unknown parameter 'foo' for attack 'sign_flip'"),
        (["--dataset", "emnist"], "Error: --dataset-path: dataset 'emnist' is not bundled; pass --dataset-path"),
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


def test_a_run_file_sets_options_and_flags_win(tmp_path: Path) -> None:
    run_file = tmp_path / "run.toml"
    run_file.write_text(
        'dataset = "synthetic"\nnodes = 6\nrounds = 2\nlocal_steps = 1\nbyzantine-fraction = 0.34\n'
        'attack = "ipm"\n[attack-params]\nepsilon = 50\n'
    )
    out = tmp_path / "run.json"
    code, output = invoke(
        "run",
        "--config",
        str(run_file),
        "--rounds",
        "3",
        "--data-dir",
        str(tmp_path / "d"),
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0, output
    params = json.loads(out.read_text())["params"]
    assert (params["nodes"], params["rounds"], params["attack"]) == (6, 3, "ipm")  # --rounds beats the file
    assert params["attack_params"] == {"epsilon": 50.0} and params["byzantine_fraction"] == 0.34


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nodez = 3\n", "unknown key 'nodez'; the keys are the options of run"),
        ("nodes = [1, 2]\n", "nodes: a single value, got a list"),
        ("attack-params = 3\n", "attack-params: a table, e.g. [attack-params] epsilon = 100"),
        ("nodes = \n", "not a TOML file"),
        ("attack = 'nope'\n", "Invalid value for '--attack': 'nope' is not one of"),
        ("nodes = 0\n", "nodes: must be at least 1"),
    ],
)
def test_a_bad_run_file_is_named_with_its_key(tmp_path: Path, text: str, message: str) -> None:
    run_file = tmp_path / "run.toml"
    run_file.write_text(text)
    code, output = invoke("run", "--config", str(run_file), "--data-dir", str(tmp_path / "d"))
    assert code == 2 and message in " ".join(output.split()), output
    assert not (tmp_path / "d").exists()  # refused before any work
    code, output = invoke("run", "--config", str(tmp_path / "missing.toml"))
    assert code == 2 and "cannot read it" in output


def test_log_levels_and_piped_log_lines_stay_whole(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "zerotrustml"]
    run = ["run", *FAST, "--backend", "mock", "--quiet"]

    def stderr(*args: str, d: str) -> str:
        proc = subprocess.run(
            [*base, *args, *run, "--data-dir", str(tmp_path / d)], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stderr

    verbose = stderr("-v", d="a")
    debug = [line for line in verbose.splitlines() if " DEBUG zerotrustml.fl.simulation: round " in line]
    assert len(debug) == 2, verbose
    info = [line for line in verbose.splitlines() if " INFO zerotrustml.run: " in line]
    assert info and all(line[:2].isdigit() for line in verbose.splitlines() if line.strip())  # whole lines
    assert " DEBUG " not in stderr(d="b")
    assert stderr("--log-level", "warning", d="c") == ""


def test_piped_log_lines_are_not_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import logging

    from zerotrustml.cli import _configure_logging

    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    handler = _configure_logging(logging.INFO)
    try:
        logging.getLogger("zerotrustml.run").info("x" * 300)
    finally:
        logging.getLogger("zerotrustml").removeHandler(handler)
    [line] = piped.getvalue().splitlines()
    assert line.endswith("INFO zerotrustml.run: " + "x" * 300)


def test_a_byzantine_majority_needs_force_and_half_is_warned(tmp_path: Path) -> None:
    code, output = invoke("run", *FAST, "--byzantine-fraction", "0.6", "--data-dir", str(tmp_path / "a"))
    assert code == 2 and "5 of 8 nodes are Byzantine, a majority" in output and "--force" in output
    assert not (tmp_path / "a").exists()
    code, output = invoke(
        "run",
        *FAST,
        "--byzantine-fraction",
        "0.6",
        "--force",
        "--aggregator",
        "mean",
        "--data-dir",
        str(tmp_path / "b"),
        "--quiet",
    )
    assert code == 0, output
    code, output = invoke(
        "run",
        *FAST,
        "--byzantine-fraction",
        "0.5",
        "--aggregator",
        "mean",
        "--data-dir",
        str(tmp_path / "c"),
        "--quiet",
    )
    assert code == 0 and "warning: 4 of 8 nodes are Byzantine, exactly half" in output


def test_output_paths_are_checked_before_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for flag in ("--out", "--plot"):
        code, output = invoke("run", *FAST, "--data-dir", str(tmp_path / "d"), flag, str(blocker / "x" / "run.out"))
        assert code == 2 and f"{blocker} is a file, so {blocker / 'x' / 'run.out'} cannot be written" in output
        assert "Errno" not in output
    code, output = invoke("run", *FAST, "--data-dir", str(tmp_path / "d"), "--out", str(tmp_path))
    assert code == 2 and "is a directory" in output
    assert not (tmp_path / "d").exists()  # nothing ran


def test_more_rounds_extend_a_finished_run_and_a_refusal_names_what_differs(tmp_path: Path) -> None:
    short, straight = tmp_path / "short", tmp_path / "straight"
    assert invoke("run", *FAST, "--data-dir", str(short), "--quiet")[0] == 0
    code, output = invoke("run", *FAST, "--rounds", "4", "--data-dir", str(short))
    assert code == 0 and "resuming at round 3 of 4" in output and "the stored run had 2, now extended" in output
    assert invoke("run", *FAST, "--rounds", "4", "--data-dir", str(straight), "--quiet")[0] == 0

    def rows(d: Path) -> list[dict[str, object]]:
        lines = (d / "run.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if not k.endswith("_ms")} for x in lines]

    assert rows(short) == rows(straight)  # extended = run that long from the start
    code, output = invoke("run", *FAST, "--rounds", "3", "--nodes", "9", "--data-dir", str(short))
    assert code == 1 and "nodes 8 (this run: 9), rounds 4 (this run: 3)" in " ".join(output.split())


def test_plots_say_what_they_show(tmp_path: Path) -> None:
    from zerotrustml.plot import run_title

    args = ["--distribution", "dirichlet", "--alpha", "0.3", "--seed", "5", "--quiet"]
    png = tmp_path / "backdoor.png"
    code, output = invoke(
        "run", *FAST, *args, "--attack", "backdoor", "--data-dir", str(tmp_path / "b"), "--plot", str(png)
    )
    assert code == 0, output
    summary = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run_title(summary) == "synthetic dirichlet(alpha=0.3), softmax, 2/8 backdoor, pipeline, seed 5"

    def width(path: Path) -> int:  # PNG IHDR: the width is the big-endian u32 at byte 16
        return int.from_bytes(path.read_bytes()[16:20], "big")

    plain = tmp_path / "plain.png"
    assert invoke("run", *FAST, *args, "--data-dir", str(tmp_path / "p"), "--plot", str(plain))[0] == 0
    assert width(png) == 1500 and width(plain) == 1000  # the backdoor success rate has a panel of its own


def test_export_writes_the_trained_model(tmp_path: Path) -> None:
    from zerotrustml.export import load_model_npz
    from zerotrustml.fl.data import load_dataset
    from zerotrustml.fl.models import make_model

    d = tmp_path / "run"
    assert invoke("run", *FAST, "--model", "mlp", "--data-dir", str(d), "--quiet")[0] == 0
    code, output = invoke("export", str(d))
    assert code == 0 and output.strip() == str(d / "model.npz")
    flat, meta, parts = load_model_npz(d / "model.npz")
    assert meta["model"] == "mlp" and meta["round"] == 1 and meta["run"]["nodes"] == 8
    assert sorted(parts) == ["W1", "W2", "b1", "b2"] and flat.dtype == np.float32
    ds = load_dataset("synthetic", seed=0)
    model = make_model("mlp", ds.n_features, ds.n_classes)
    # The exported model is the run's final model: it scores the run's final accuracy on the test split.
    summary = json.loads((d / "run.json").read_text())
    accuracy = float(np.mean(model.predict(flat, ds.x_test) == ds.y_test))
    assert accuracy == pytest.approx(summary["final_accuracy"], abs=1e-9)
    assert np.array_equal(model.flatten(parts), flat)

    code, output = invoke("export", str(d), "--round", "0", "--out", str(tmp_path / "r0.npz"))
    assert code == 0 and load_model_npz(tmp_path / "r0.npz")[1]["round"] == 0
    code, output = invoke("export", str(d), "--round", "5")
    assert code == 1 and "round: the store holds rounds 0-1, got 5" in output
    code, output = invoke("export", str(tmp_path))
    assert code == 1 and "not a run's data directory" in output


def test_export_of_a_torch_model_loads_into_torch(tmp_path: Path) -> None:
    import torch  # the torch extra is part of make test (never skipped)

    d = tmp_path / "run"
    assert invoke("run", *FAST, "--model", "torch_mlp", "--data-dir", str(d), "--quiet")[0] == 0
    code, output = invoke("export", str(d))
    assert code == 0 and output.split() == [str(d / "model.npz"), str(d / "model.pt")]
    state = torch.load(d / "model.pt")
    assert sorted(state) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
