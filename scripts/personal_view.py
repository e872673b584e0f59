"""The personal view at half the nodes Byzantine and beyond (tuning seeds only).

Runs the pipeline with ``personal_view=True`` (every honest agent also keeps its own model, see
:mod:`zerotrustml.defence.personal`) on sign flips and both adaptive attackers (white-box: they search against
the similarity stage and the honest agents' predicted vouching) at 0.5 and 0.6, and with no attack, IID,
Dirichlet(0.5) and
Dirichlet(0.1), 20 rounds, and writes the honest agents' accuracy (mean, worst) beside honest-only averaging
and the shared view into ``results/personal_view.json`` and docs/DETECTION.md (between the
``personal-view`` markers).

    .venv/bin/python scripts/personal_view.py [--seeds 1 2] [--rounds 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from docblock import replace_block

ROOT = Path(__file__).resolve().parent.parent
CASES = tuple((a, f) for a in ("sign_flip", "adaptive", "adaptive_steady") for f in (0.5, 0.6)) + (("none", 0.0),)
PARTITIONS = (("iid", 0.5), ("dirichlet", 0.5), ("dirichlet", 0.1))
START, END = "<!-- personal-view:start -->", "<!-- personal-view:end -->"

log = logging.getLogger("personal_view")


def one(cell: dict[str, Any]) -> dict[str, Any]:
    from zerotrustml.fl.simulation import simulate

    res = simulate(personal_view=True, **cell)
    own = res.summary["personal_accuracy"]
    return {**cell, "honest_only": res.summary["honest_only_accuracy"], "shared": res.final_accuracy,
            "personal_mean": own["mean"], "personal_min": own["min"], "personal_max": own["max"]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cells = [
        {"attack": a, "byzantine_fraction": f, "distribution": d, "alpha": al, "rounds": args.rounds, "seed": s}
        for (a, f) in CASES for (d, al) in PARTITIONS for s in args.seeds
    ]  # fmt: skip
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(one, cells))
    wall = time.perf_counter() - t0
    (ROOT / "results" / "personal_view.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        f"Command: `.venv/bin/python scripts/personal_view.py --seeds {' '.join(map(str, args.seeds))} --rounds "
        f"{args.rounds}` (tuning seeds; {wall / 60:.1f} min). Accuracy in points below honest-only averaging.",
        "",
        "| attack | fraction | partition | seed | shared view | honest agents, mean | worst honest agent |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        part = "IID" if r["distribution"] == "iid" else f"Dirichlet({r['alpha']})"
        gaps = [f"{(r['honest_only'] - r[k]) * 100:+.1f}" for k in ("shared", "personal_mean", "personal_min")]
        lines.append(f"| {r['attack']} | {r['byzantine_fraction']} | {part} | {r['seed']} | " + " | ".join(gaps) + " |")
        log.info(lines[-1])
    replace_block(ROOT / "docs" / "DETECTION.md", START, END, "\n".join(lines) + "\n")
    log.info("wrote results/personal_view.json and docs/DETECTION.md in %.1f min", wall / 60)


if __name__ == "__main__":
    main()
