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


def locate(run_path: Path) -> tuple[Path | list[dict[str, Any]], dict[str, Any] | None]:
    """A run's rounds and summary from a summary file, a JSON-lines file or a data directory.

    The rounds come as the JSON-lines path, or, for a data directory whose summary and JSON lines were
    written elsewhere (``--out``) or never (an interrupted run), as the rows its store's round records hold.
    """
    if run_path.is_dir():
        for name in ("run.json", "run.jsonl"):
            if (run_path / name).exists():
                return locate(run_path / name)
        return rounds_from_store(run_path)
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


def rounds_from_store(data_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The per-round metrics in a run's store (one row per stored round record) and a summary of its parameters."""
    import asyncio

    from zerotrustml.backends.embedded import DB_NAME, EmbeddedStore

    if not (data_dir / DB_NAME).exists():
        raise ValueError(f"{data_dir}: neither a run's data directory (no {DB_NAME}) nor one with run.json")

    async def read() -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        async with EmbeddedStore(data_dir) as store:
            last = await store.last_completed_round()
            rows = []
            for r in range(0 if last is None else last + 1):
                record = await store.get_round_record(r)
                if record is not None:
                    rows.append(dict(record.metrics))
            return rows, await store.get_meta("run")

    rows, params = asyncio.run(read())
    if not rows:
        raise ValueError(f"{data_dir}: no rounds recorded yet")
    if params is None:
        return rows, None
    from zerotrustml.fl.simulation import RunConfig

    try:
        n_byzantine = RunConfig(**params).n_byzantine
    except (TypeError, ValueError):  # parameters of another version: plot without a title
        return rows, None
    return rows, {"params": params, "n_byzantine": n_byzantine}


def run_title(summary: dict[str, Any]) -> str:
    """What a run was, in one line: data and split (alpha for Dirichlet), model, attack, defence, seed."""
    try:
        p = summary["params"]
        split = f"dirichlet(alpha={p['alpha']:g})" if p["distribution"] == "dirichlet" else p["distribution"]
        return (
            f"{p['dataset']} {split}, {p['model']}, {summary['n_byzantine']}/{p['nodes']} {p['attack']}, "
            f"{p['aggregator']}, seed {p['seed']}"
        )
    except (KeyError, TypeError, ValueError):
        return ""  # a summary from elsewhere: plot without a title


def plot_run(metrics: Path | list[dict[str, Any]], out: Path, *, title: str = "") -> Path:
    """Write a PNG of the run's rounds (a JSON-lines path, or the rows themselves) to ``out``.

    Panels: test accuracy of the defended model against honest-only averaging; detection (TPR, FPR); and,
    for a backdoor run, the backdoor success rate on its own axis. Curves that coincide stay visible: each
    has its own marker and width, the defended model drawn over the reference.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = load_rounds(metrics) if isinstance(metrics, Path) else metrics
    rounds = [r["round"] + 1 for r in rows]
    asr = [r.get("attack_success_rate") for r in rows]
    panels = 3 if any(v is not None for v in asr) else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), constrained_layout=True)
    acc_ax, det_ax = axes[0], axes[1]
    every = max(1, len(rounds) // 12)
    acc_ax.plot(
        rounds,
        [r["honest_only_accuracy"] for r in rows],
        "--",
        color="tab:gray",
        linewidth=3,
        alpha=0.6,
        label="honest-only averaging",
        zorder=1,
    )
    acc_ax.plot(
        rounds,
        [r["accuracy"] for r in rows],
        "-o",
        color="tab:blue",
        linewidth=1.5,
        markersize=4,
        markevery=every,
        label="defended model",
        zorder=2,
    )
    acc_ax.set(xlabel="round", ylabel="test accuracy", ylim=(0, 1), title="accuracy")
    acc_ax.legend(loc="lower right")
    for key, style, colour in (("tpr", "-o", "tab:green"), ("fpr", "--s", "tab:red")):
        values = [r.get(key) for r in rows]
        if any(v is not None for v in values):
            det_ax.plot(
                rounds,
                [float("nan") if v is None else v for v in values],
                style,
                color=colour,
                markersize=4,
                markevery=every,
                label=key.upper(),
            )
    det_ax.set(xlabel="round", ylabel="rate", ylim=(-0.02, 1.02), title="detection (TPR, FPR)")
    det_ax.legend(loc="center right")
    if panels == 3:
        asr_ax = axes[2]
        asr_ax.plot(
            rounds,
            [float("nan") if v is None else v for v in asr],
            "-^",
            color="tab:purple",
            markersize=4,
            markevery=every,
        )
        asr_ax.set(xlabel="round", ylabel="backdoor success rate", ylim=(-0.02, 1.02), title="backdoor")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
    if title:
        fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
