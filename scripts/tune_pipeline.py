"""Tuning sweep of the full pipeline on the tuning seeds (1 and 2), never the report seeds.

Runs the pipeline against every attack at Byzantine fractions 0.3, 0.4 and 0.5 on IID and Dirichlet(0.1)
MNIST partitions (20 nodes, ROUNDS rounds, default 20) and prints TPR, FPR and the accuracy gap to
honest-only averaging per cell, averaged over the two seeds. Defence parameters come from the environment
(e.g. ``REPUTATION_REWARD=0.02``), as in every run.

    .venv/bin/python scripts/tune_pipeline.py [attack,attack,...]
"""

from __future__ import annotations

import collections
import itertools
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from zerotrustml.attacks import ATTACKS

FRACTIONS = (0.3, 0.4, 0.5)
PARTITIONS = (("iid", 0.5), ("dirichlet", 0.1))
TUNING_SEEDS = (1, 2)


def one(cell: tuple[str, float, tuple[str, float], int]) -> tuple[str, float, str, int, float, float, float]:
    from zerotrustml.simulation import RunConfig, run

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


def main() -> None:
    attacks = sys.argv[1].split(",") if len(sys.argv) > 1 else [a for a in ATTACKS if a != "none"]
    cells = list(itertools.product(attacks, FRACTIONS, PARTITIONS, TUNING_SEEDS))
    groups: dict[tuple[str, float, str], list[tuple[float, float, float]]] = collections.defaultdict(list)
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for attack, fraction, dist, _, tpr, fpr, gap in pool.map(one, cells):
            groups[(attack, fraction, dist)].append((tpr, fpr, gap))
    tprs, fprs = [], []
    for (attack, fraction, dist), rs in groups.items():
        tpr, fpr, gap = (sum(col) / len(col) for col in zip(*rs, strict=True))
        tprs.append(tpr)
        fprs.append(fpr)
        print(f"{attack:18s} {fraction} {dist:10s} TPR {tpr:.2f} FPR {fpr:.3f} gap {gap:+.1f}", flush=True)
    print("MEAN TPR", sum(tprs) / len(tprs), "FPR", sum(fprs) / len(fprs))


if __name__ == "__main__":
    main()
