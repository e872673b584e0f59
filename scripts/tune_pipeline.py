"""Tuning sweep of the full pipeline on the tuning seeds (1 and 2), never the report seeds.

Runs the pipeline against every attack at Byzantine fractions 0.3, 0.4 and 0.5 on IID and Dirichlet(0.1)
MNIST partitions (20 nodes, ROUNDS rounds, default 20) and prints TPR, FPR and the accuracy gap to
honest-only averaging per cell, averaged over the two seeds. Defence parameters come from the environment
(e.g. ``REPUTATION_REWARD=0.02``), as in every run.

    .venv/bin/python scripts/tune_pipeline.py [attack,attack,...] [--write]

``--write`` (with every attack) replaces the tuning table in docs/DETECTION.md with this run's.
"""

from __future__ import annotations

import collections
import datetime
import itertools
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from docblock import replace_block

from zerotrustml.fl.attacks import ATTACKS

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- tuning:start -->", "<!-- tuning:end -->"
FRACTIONS = (0.3, 0.4, 0.5)
PARTITIONS = (("iid", 0.5), ("dirichlet", 0.1))
TUNING_SEEDS = (1, 2)


def one(cell: tuple[str, float, tuple[str, float], int]) -> tuple[str, float, str, int, float, float, float]:
    from zerotrustml.fl.simulation import RunConfig, run

    attack, fraction, (dist, alpha), seed = cell
    config = RunConfig(
        attack=attack,
        byzantine_fraction=fraction,
        distribution=dist,
        alpha=alpha,
        aggregator="pipeline",
        seed=seed,
        rounds=int(os.environ.get("ROUNDS", "20")),
    )
    with tempfile.TemporaryDirectory() as tmp:
        s = run(config, tmp, metrics_path=Path(tmp) / "m.jsonl")
    return attack, fraction, dist, seed, s["tpr"], s["fpr"], 100 * s["accuracy_gap"]


def write_table(rows: list[tuple[str, float, str, float, float, float]], rounds: int) -> None:
    """Replace the tuning block of docs/DETECTION.md with these rows."""
    names = {"iid": "IID", "dirichlet": "Dirichlet(0.1)"}
    mean_tpr = sum(r[3] for r in rows) / len(rows)
    mean_fpr = sum(r[4] for r in rows) / len(rows)
    lines = [
        f"Command: `.venv/bin/python scripts/tune_pipeline.py --write` (seeds 1-2, the pipeline only, {rounds} "
        f"rounds; run {datetime.date.today().isoformat()}). Mean over these cells: TPR {mean_tpr:.2f}, "
        f"FPR {mean_fpr:.3f}.",
        "",
        "| attack | fraction | partition | TPR | FPR | accuracy gap (points) |",
        "|---|---|---|---|---|---|",
        *(f"| {a} | {f} | {names[d]} | {t:.2f} | {p:.3f} | {g:+.1f} |" for a, f, d, t, p, g in rows),
    ]
    path = ROOT / "docs" / "DETECTION.md"
    if not replace_block(path, START, END, "\n".join(lines) + "\n"):
        sys.exit(f"{path}: no {START} ... {END} block to replace")


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--write"]
    write = "--write" in sys.argv[1:]
    attacks = args[0].split(",") if args else [a for a in ATTACKS if a != "none"]
    if write and args:
        sys.exit("--write needs every attack (no attack list)")
    cells = list(itertools.product(attacks, FRACTIONS, PARTITIONS, TUNING_SEEDS))
    groups: dict[tuple[str, float, str], list[tuple[float, float, float]]] = collections.defaultdict(list)
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for attack, fraction, dist, _, tpr, fpr, gap in pool.map(one, cells):
            groups[(attack, fraction, dist)].append((tpr, fpr, gap))
    rows = []
    for (attack, fraction, dist), rs in groups.items():
        tpr, fpr, gap = (sum(col) / len(col) for col in zip(*rs, strict=True))
        rows.append((attack, fraction, dist, tpr, fpr, gap))
        print(f"{attack:18s} {fraction} {dist:10s} TPR {tpr:.2f} FPR {fpr:.3f} gap {gap:+.1f}", flush=True)
    print("MEAN TPR", sum(r[3] for r in rows) / len(rows), "FPR", sum(r[4] for r in rows) / len(rows))
    if write:
        write_table(rows, int(os.environ.get("ROUNDS", "20")))


if __name__ == "__main__":
    main()
