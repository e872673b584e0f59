"""Long runs: does a node that keeps attacking stay caught for 100 rounds?

Tuning (default): runs the pipeline for 100 rounds on a few scenarios, with the defaults and with reputation
probation switched off (``REPUTATION_PROBATION=0``, the rule before issue 13), on tuning seeds, and writes
per-round TPR and FPR to ``results/long_runs.json``, a plot to ``docs/img/long_runs.png`` and a table into
docs/DETECTION.md (between the ``long-runs`` markers).

Report (``--report``): the defaults only, on the report seeds (101-103), on the attacks and partitions of the
100-round matrix slice (``scripts/matrix_slices.py``) at 0.4; writes ``results/long_runs_report.json``, the
per-round TPR (mean over seeds, per scenario) to ``docs/img/long_runs_report.png`` and a table between the
``long-runs-report`` markers.

    .venv/bin/python scripts/long_runs.py [--rounds 100] [--seeds 1] [--workers 2] [--report]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from docblock import replace_block

ROOT = Path(__file__).resolve().parent.parent
#: (attack, fraction, distribution, alpha): the default scenario, a milder label skew, and no attack under strong skew.
SCENARIOS = (("sign_flip", 0.3, "iid", 0.5), ("sign_flip", 0.3, "dirichlet", 0.5), ("none", 0.0, "dirichlet", 0.1))
VARIANTS = (("defaults", {}), ("probation off", {"ZEROTRUSTML_REPUTATION_PROBATION": "0"}))
START, END = "<!-- long-runs:start -->", "<!-- long-runs:end -->"
REPORT_SCENARIOS = tuple(
    (a, 0.4, d, al)
    for a in ("sign_flip", "label_flip", "alie", "adaptive_steady")
    for d, al in (("iid", 0.5), ("dirichlet", 0.5), ("dirichlet", 0.1))
)
REPORT_START, REPORT_END = "<!-- long-runs-report:start -->", "<!-- long-runs-report:end -->"

log = logging.getLogger("long_runs")


def one(cell: dict[str, Any]) -> dict[str, Any]:
    os.environ.update(cell["env"])
    from zerotrustml.fl.simulation import simulate

    t0 = time.perf_counter()
    res = simulate(
        attack=cell["attack"],
        byzantine_fraction=cell["fraction"],
        distribution=cell["distribution"],
        alpha=cell["alpha"],
        rounds=cell["rounds"],
        seed=cell["seed"],
    )
    return {
        **{k: v for k, v in cell.items() if k != "env"},
        "tpr_per_round": [r["tpr"] for r in res.rounds],
        "fpr_per_round": [r["fpr"] for r in res.rounds],
        "tpr": res.tpr,
        "fpr": res.fpr,
        "accuracy_gap": res.summary["accuracy_gap"],
        "elapsed_s": time.perf_counter() - t0,
    }


def label(r: dict[str, Any]) -> str:
    dist = "IID" if r["distribution"] == "iid" else f"Dirichlet({r['alpha']})"
    return f"{r['attack']} {r['fraction']} {dist}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="[default: 1; with --report 101 102 103]")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--report", action="store_true", help="The report run: defaults only, report seeds.")
    args = ap.parse_args()
    if args.seeds is None:
        args.seeds = [101, 102, 103] if args.report else [1]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    scenarios, variants = (REPORT_SCENARIOS, VARIANTS[:1]) if args.report else (SCENARIOS, VARIANTS)
    cells = [
        {"attack": a, "fraction": f, "distribution": d, "alpha": al, "rounds": args.rounds, "seed": s, "variant": v,
         "env": env}
        for (a, f, d, al) in scenarios for s in args.seeds for v, env in variants
    ]  # fmt: skip
    t0 = time.perf_counter()
    out: list[dict[str, Any]] = []
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(one, c) for c in cells]
        for i, fut in enumerate(as_completed(futures), 1):
            r = fut.result()
            out.append(r)
            log.info("[%d/%d] %s, %s, seed %d: TPR %s FPR %.3f", i, len(cells), label(r), r["variant"], r["seed"],
                     "n/a" if r["tpr"] is None else f"{r['tpr']:.2f}", r["fpr"])  # fmt: skip
    out.sort(key=lambda r: (label(r), r["seed"], r["variant"]))
    wall = time.perf_counter() - t0
    if args.report:
        report(args, out, wall)
        return
    (ROOT / "results" / "long_runs.json").write_text(json.dumps({"rounds": args.rounds, "cells": out}, indent=1) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attacked = [r for r in out if r["tpr"] is not None]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for r in attacked:
        style = "-" if r["variant"] == "defaults" else ":"
        ax.plot(range(1, len(r["tpr_per_round"]) + 1), r["tpr_per_round"], style,
                label=f"{label(r)}, seed {r['seed']} ({r['variant']})")  # fmt: skip
    ax.set_xlabel("round")
    ax.set_ylabel("TPR (share of Byzantine nodes flagged)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"Per-round TPR over {args.rounds} rounds: pipeline with and without probation (tuning seeds)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "img" / "long_runs.png", dpi=110)

    def mean_last(values: list[float | None], k: int = 20) -> str:
        vals = [v for v in values[-k:] if v is not None]
        return f"{sum(vals) / len(vals):.2f}" if vals else "n/a"

    lines = [
        f"Command: `.venv/bin/python scripts/long_runs.py --rounds {args.rounds} --seeds "
        f"{' '.join(map(str, args.seeds))}` (tuning seeds; {wall / 60:.1f} min on this machine). "
        "Plot: `docs/img/long_runs.png`.",
        "",
        "| scenario | seed | reputation | TPR | TPR, last 20 rounds | FPR | accuracy gap (points) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in out:
        tpr = "n/a" if r["tpr"] is None else f"{r['tpr']:.2f}"
        lines.append(
            f"| {label(r)} | {r['seed']} | {r['variant']} | {tpr} | {mean_last(r['tpr_per_round'])} | "
            f"{r['fpr']:.3f} | {r['accuracy_gap'] * 100:+.1f} |"
        )
    replace_block(ROOT / "docs" / "DETECTION.md", START, END, "\n".join(lines) + "\n")
    log.info("wrote results/long_runs.json, docs/img/long_runs.png and docs/DETECTION.md in %.1f min", wall / 60)


def report(args: argparse.Namespace, out: list[dict[str, Any]], wall: float) -> None:
    """The report run's outputs: JSON, the per-round TPR plot (mean over seeds) and the DETECTION.md table."""
    (ROOT / "results" / "long_runs_report.json").write_text(
        json.dumps({"rounds": args.rounds, "seeds": args.seeds, "cells": out}, indent=1) + "\n"
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[dict[str, Any]]] = {}
    for r in out:
        groups.setdefault(label(r), []).append(r)
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, runs in groups.items():
        per_round = [
            sum(v for v in vals if v is not None) / max(1, sum(v is not None for v in vals))
            for vals in zip(*(r["tpr_per_round"] for r in runs), strict=True)
        ]
        first = runs[0]  # one colour per attack, one line style per partition
        style = "-" if first["distribution"] == "iid" else ("--" if first["alpha"] >= 0.5 else ":")
        colour = f"C{[a for a, *_ in REPORT_SCENARIOS].index(first['attack']) // 3}"
        ax.plot(range(1, len(per_round) + 1), per_round, style, color=colour, label=name)
    ax.set_xlabel("round")
    ax.set_ylabel("TPR (share of Byzantine nodes flagged)")
    ax.set_ylim(-0.05, 1.05)
    seeds = ", ".join(map(str, args.seeds))
    ax.set_title(f"Per-round TPR over {args.rounds} rounds, mean over report seeds {seeds}")
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "img" / "long_runs_report.png", dpi=110)

    def mean(values: list[float | None]) -> float | None:
        vals = [v for v in values if v is not None]
        return sum(vals) / len(vals) if vals else None

    def fmt(v: float | None, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    lines = [
        f"Command: `.venv/bin/python scripts/long_runs.py --report --rounds {args.rounds}` (report seeds {seeds}; "
        f"{wall / 60:.1f} min on this machine). Plot: `docs/img/long_runs_report.png`. Mean over seeds; the last "
        "20 rounds' TPR is what says whether an attacker that keeps attacking stays caught.",
        "",
        "| scenario | TPR | TPR, rounds 1-20 | TPR, last 20 rounds | FPR | accuracy gap (points) |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in groups.items():
        first = mean([mean(r["tpr_per_round"][:20]) for r in runs])
        last = mean([mean(r["tpr_per_round"][-20:]) for r in runs])
        lines.append(
            f"| {name} | {fmt(mean([r['tpr'] for r in runs]), '.2f')} | {fmt(first, '.2f')} | {fmt(last, '.2f')} "
            f"| {fmt(mean([r['fpr'] for r in runs]), '.3f')} "
            f"| {fmt(mean([r['accuracy_gap'] * 100 for r in runs]), '+.1f')} |"
        )
    replace_block(ROOT / "docs" / "DETECTION.md", REPORT_START, REPORT_END, "\n".join(lines) + "\n")
    log.info("wrote results/long_runs_report.json, docs/img/long_runs_report.png and DETECTION.md in %.1f min",
             wall / 60)  # fmt: skip


if __name__ == "__main__":
    main()
