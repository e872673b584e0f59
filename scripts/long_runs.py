"""Long runs: does a node that keeps attacking stay caught for 100 rounds? (tuning seeds only)

Runs the pipeline for 100 rounds on a few scenarios, with the defaults and with reputation probation
switched off (``REPUTATION_PROBATION=0``, the rule before issue 13), and writes per-round TPR and FPR to
``results/long_runs.json``, a plot to ``docs/img/long_runs.png`` and a table into docs/DETECTION.md
(between the ``long-runs`` markers).

    .venv/bin/python scripts/long_runs.py [--rounds 100] [--seeds 1] [--workers 2]
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
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cells = [
        {"attack": a, "fraction": f, "distribution": d, "alpha": al, "rounds": args.rounds, "seed": s, "variant": v,
         "env": env}
        for (a, f, d, al) in SCENARIOS for s in args.seeds for v, env in VARIANTS
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


if __name__ == "__main__":
    main()
