"""Plots of a run: accuracy per round (with the honest-only reference) and TPR/FPR per round."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_NEEDED = ("round", "accuracy", "honest_only_accuracy")


def load_rounds(metrics_path: Path) -> list[dict[str, Any]]:
    """The per-round JSON lines of a run; ``ValueError`` naming the line when one is not JSON."""
    rows = []
    for i, line in enumerate(metrics_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{metrics_path}:{i}: not a JSON line ({e.msg})") from None
        if not isinstance(row, dict) or not all(k in row for k in _NEEDED):
            raise ValueError(f"{metrics_path}:{i}: not a round of a run (needs {', '.join(_NEEDED)})")
        rows.append(row)
    if not rows:
        raise ValueError(f"{metrics_path}: no rounds recorded")
    return rows


def locate(run_path: Path) -> tuple[Path, dict[str, Any] | None]:
    """Find a run's JSON lines and summary from a summary file, a JSON-lines file or a data directory."""
    if run_path.is_dir():
        summary_path = run_path / "run.json"
        if not summary_path.exists():
            raise ValueError(f"{run_path}: no run.json in this directory")
        run_path = summary_path
    if run_path.suffix == ".jsonl":
        summary_path = run_path.with_suffix(".json")
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        return run_path, summary
    try:
        summary = json.loads(run_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{run_path}: not a summary JSON ({e.msg})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("metrics_path"), str):
        raise ValueError(f"{run_path}: not a ZeroTrustML run summary (no metrics_path)")
    metrics = Path(summary["metrics_path"])
    if not metrics.is_absolute() and not metrics.exists():
        metrics = run_path.with_suffix(".jsonl")
    return metrics, summary


def plot_run(metrics_path: Path, out: Path, *, title: str = "") -> Path:
    """Write a two-panel PNG of the run in ``metrics_path`` to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = load_rounds(metrics_path)
    rounds = [r["round"] + 1 for r in rows]
    fig, (acc_ax, det_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    acc_ax.plot(rounds, [r["accuracy"] for r in rows], label="defended model")
    acc_ax.plot(rounds, [r["honest_only_accuracy"] for r in rows], "--", label="honest-only averaging")
    if any(r.get("attack_success_rate") is not None for r in rows):
        acc_ax.plot(rounds, [r.get("attack_success_rate") or 0.0 for r in rows], ":", label="backdoor success")
    acc_ax.set(xlabel="round", ylabel="test accuracy", ylim=(0, 1), title="accuracy")
    acc_ax.legend(loc="lower right")
    for key, style in (("tpr", "-"), ("fpr", "--")):
        values = [r.get(key) for r in rows]
        if any(v is not None for v in values):
            det_ax.plot(rounds, [float("nan") if v is None else v for v in values], style, label=key.upper())
    det_ax.set(xlabel="round", ylabel="rate", ylim=(-0.02, 1.02), title="detection")
    det_ax.legend(loc="center right")
    if title:
        fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
