"""`zerotrustml cluster`: the service and one process per node on loopback, as a user starts it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def processes_under(path: Path) -> list[str]:
    """Command lines of live processes that name ``path`` (the cluster's service and nodes do)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmd and "zerotrustml" in cmd:
            found.append(f"{pid}: {cmd}")
    return found


def cluster(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "zerotrustml", "cluster", "--data-dir", str(data_dir), "--quiet", *args]


def test_a_cluster_runs_its_rounds_scores_them_and_goes_on_without_a_crashed_node(tmp_path: Path) -> None:
    data_dir = tmp_path / "cluster"
    out = tmp_path / "results" / "cluster.json"
    args = ("--nodes", "6", "--rounds", "4", "--byzantine-fraction", "0.34", "--round-deadline", "8")
    run = subprocess.run(
        cluster(data_dir, *args, "--crash", "node-3@2", "--out", str(out)), capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == str(out)
    summary = json.loads(out.read_text())
    assert summary == json.loads((data_dir / "run.json").read_text())
    assert summary["rounds"] == 4 and summary["n_byzantine"] == 2 and summary["crashed_nodes"] == ["node-3"]
    rows = [json.loads(line) for line in (data_dir / "run.jsonl").read_text().splitlines()]
    assert [row["round"] for row in rows] == [0, 1, 2, 3]
    # Every node answers the first two rounds. The killed node is gone by round 3 (it dies when the cluster sees
    # round 2 open, which may be just after it submitted for round 2), and the rounds close without it.
    missing = [row["missing"] for row in rows]
    assert missing[:2] == [[], []] and missing[2] in ([], ["node-3"]) and missing[3] == ["node-3"]
    assert [row["submissions"] for row in rows] == [6 - len(m) for m in missing]
    assert all(row["tp"] + row["fn"] == 2 and row["fp"] + row["tn"] == 4 for row in rows)
    # The service's own evaluation of the model it published, and the honest-only model beside it.
    assert 0.5 < summary["final_accuracy"] <= 1.0 and 0.5 < summary["honest_only_accuracy"] <= 1.0
    assert processes_under(data_dir) == []
    logs = sorted(p.name for p in (data_dir / "logs").iterdir())
    assert logs == ["node-0.log", "node-1.log", "node-2.log", "node-3.log", "node-4.log", "node-5.log", "service.log"]


def test_ctrl_c_stops_the_cluster_and_every_process_it_started(tmp_path: Path) -> None:
    data_dir = tmp_path / "cluster"
    proc = subprocess.Popen(
        cluster(data_dir, "--nodes", "4", "--rounds", "500", "--round-deadline", "3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines = data_dir / "run.jsonl"
    deadline = time.monotonic() + 300
    while not (lines.exists() and lines.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no round closed within 300 s"
        time.sleep(0.2)
    assert len(processes_under(data_dir)) >= 5  # the cluster, its service and four nodes
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    time.sleep(0.5)
    assert processes_under(data_dir) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--crash", "node-9@1"), "--crash: unknown nodes ['node-9']"),
        (("--crash", "node-1"), "expected NODE_ID@ROUND"),
        (("--byzantine-fraction", "1.5"), "--byzantine-fraction: must be in [0, 1)"),
    ],
)
def test_bad_cluster_options_are_named_before_anything_starts(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    run = subprocess.run(cluster(tmp_path / "c", "--nodes", "4", *args), capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert not (tmp_path / "c").exists()
