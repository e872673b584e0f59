"""How much the committee's data-based scores can tell, with and without lying members (tuning seeds only).

An analysis, not a defence: it uses the simulator's ground truth to measure how well each way of pooling
the members' quality scores separates honest from Byzantine updates, as the area under the ROC curve
(AUC: the chance that a random honest update scores above a random Byzantine one; 0.5 is a coin).
Every round of a pipeline run is re-scored by every node with :func:`zerotrustml.defence.pipeline.contributions`
on its own held-out data, then pooled five ways:

- ``pooled data``: one score on the honest nodes' held-out data pooled together (no deployment has this);
- ``honest mean`` / ``honest median``: the mean / median of the honest members' scores;
- ``one member``: a single honest member (the median over members of its AUC);
- ``committee median`` / ``committee trimmed``: ``COMMITTEE_SIZE`` members drawn at random each round,
  Byzantine members lying as the simulator's do (reject and score -1 every honest update, accept their
  accomplices); pooled by the median, or by a 20% trimmed mean after clipping each score to four times
  the round's typical magnitude;
- ``one member, by class`` / ``honest median, by class``: the own-data evidence of
  :mod:`zerotrustml.defence.owndata` (each update's worst robust z over the classes the member holds, from
  the gradients of the member's per-class loss on its own training data), for one member and pooled by the
  honest members' median;
- ``one member, by class, over rounds``: one member's by-class scores of each node summed over the rounds so
  far, over the square root of the number of rounds (evidence across rounds);
- ``committee, trust-weighted`` / ``everyone votes, trust-weighted``: the committee (or every node) with
  each voter weighted by its trust: how its past votes agreed with the other voters' (the correlation of its
  rank-normalised scores with the median of the others', kept positive, an average over the rounds it
  voted in with weight 0.3 on the newest; a new voter starts at 0.5). Liars whose votes go against the
  honest consensus lose their weight; nothing but the votes themselves is used;
- ``everyone votes, trust in agreement with one member``: every node votes; one honest member weighs each
  voter by how its past votes agreed with the member's own scores (the same average of correlations,
  anchored in the member's own evidence instead of the others' consensus), itself at weight 1.

    .venv/bin/python scripts/committee_evidence.py            # the scenarios below, seeds 1-2 (~5 min)
    .venv/bin/python scripts/committee_evidence.py label_flip # only the scenarios of these attacks
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SCENARIOS = (
    ("sign_flip", 0.3, "iid", 0.5),
    ("sign_flip", 0.3, "dirichlet", 0.1),
    ("sign_flip", 0.4, "dirichlet", 0.1),
    ("label_flip", 0.3, "dirichlet", 0.1),
    ("label_flip", 0.4, "dirichlet", 0.1),
    ("adaptive", 0.3, "dirichlet", 0.1),
    ("adaptive", 0.4, "dirichlet", 0.1),
)
SEEDS = (1, 2)
WAYS = (
    "pooled data",
    "honest mean",
    "honest median",
    "one member",
    "committee median",
    "committee trimmed",
    "one member, by class",
    "honest median, by class",
    "one member, by class, over rounds",
    "committee, trust-weighted",
    "everyone votes, trust-weighted",
    "everyone votes, trust in agreement with one member",
)
PER_MEMBER = (
    "one member",
    "one member, by class",
    "one member, by class, over rounds",
    "everyone votes, trust in agreement with one member",
)
F64 = npt.NDArray[np.float64]


def auc(honest: F64, byzantine: F64) -> float:
    """P(random honest score > random Byzantine score), ties counting half."""
    h, b = np.asarray(honest)[:, None], np.asarray(byzantine)[None, :]
    return float(np.mean((h > b) + 0.5 * (h == b)))


def _ranked(row: F64) -> F64:
    """A voter's scores as centred, scaled ranks (NaN kept): comparable across voters whatever their scale."""
    out = np.full(row.shape, np.nan)
    ok = ~np.isnan(row)
    if ok.sum() >= 2:
        r = np.argsort(np.argsort(row[ok], kind="stable"), kind="stable").astype(np.float64)
        out[ok] = (r - r.mean()) / max(float(r.std()), 1e-12)
    return out


def trust_pooled(votes: F64, voters: npt.NDArray[np.int64], trust: dict[int, float]) -> F64:
    """Pool one round's votes (rows: voters) weighted by trust, then update each voter's trust in place."""
    ranked = np.stack([_ranked(v) for v in votes])
    w = np.array([trust.get(int(m), 0.5) for m in voters])
    pooled = np.nansum(w[:, None] * ranked, axis=0) / np.maximum(np.sum(w[:, None] * ~np.isnan(ranked), axis=0), 1e-12)
    for i, m in enumerate(voters):
        others = np.nanmedian(np.delete(ranked, i, axis=0), axis=0) if len(voters) > 1 else ranked[i]
        ok = ~np.isnan(ranked[i]) & ~np.isnan(others)
        agree = float(np.corrcoef(ranked[i][ok], others[ok])[0, 1]) if ok.sum() >= 3 else 0.0
        agree = 0.0 if not np.isfinite(agree) else max(agree, 0.0)
        trust[int(m)] = 0.7 * trust.get(int(m), 0.5) + 0.3 * agree
    return pooled


def scenario(spec: tuple[str, float, str, float, int]) -> tuple[str, dict[str, float]]:
    """One run of the pipeline, every round re-scored by every node; AUC per way of pooling."""
    from zerotrustml import aggregators
    from zerotrustml.defence import owndata, pipeline
    from zerotrustml.fl import simulation

    attack, fraction, dist, alpha, seed = spec
    captured: dict[str, Any] = {}
    rounds: list[dict[str, Any]] = []

    class Probe(simulation.Simulation):
        def _setup(self) -> Any:
            captured["setup"] = super()._setup()
            return captured["setup"]

        def _votes(self, s: Any, r: int, theta: Any, members: Any, subs: Any) -> Any:
            rows = [np.asarray(sub.values, dtype=np.float64) for sub in subs]
            scores = np.full((len(s.node_ids), len(subs)), np.nan)
            by_class = np.full((len(s.node_ids), len(subs)), np.nan)
            floor = s.defence_config.similarity_mad_floor
            for i, (m, nd) in enumerate(zip(s.node_ids, s.nodes, strict=True)):
                scores[i] = pipeline.contributions(s.model, theta, rows, self.config.lr, nd.x_holdout, nd.y_holdout)
                by_class[i] = owndata.own_data_scores(s.model, theta, rows, nd.x_train, nd.y_train, mad_floor=floor)
                own = [j for j, sub in enumerate(subs) if sub.node_id == m]
                scores[i, own] = np.nan
                by_class[i, own] = np.nan
            honest = [i for i, nid in enumerate(s.node_ids) if nid not in s.byzantine]
            x = np.concatenate([s.nodes[i].x_holdout for i in honest])
            y = np.concatenate([s.nodes[i].y_holdout for i in honest])
            rounds.append(
                {
                    "round": r,
                    "scores": scores,
                    "by_class": by_class,
                    "pooled": pipeline.contributions(s.model, theta, rows, self.config.lr, x, y),
                    "byz": np.array([sub.node_id in s.byzantine for sub in subs]),
                    "member_byz": np.array([nid in s.byzantine for nid in s.node_ids]),
                }
            )
            return super()._votes(s, r, theta, members, subs)

    config = simulation.RunConfig(
        attack=attack, byzantine_fraction=fraction, distribution=dist, alpha=alpha, aggregator="pipeline", seed=seed,
        rounds=20,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        Probe(config, tmp, metrics_path=Path(tmp) / "m.jsonl").run()
    k = captured["setup"].defence_config.committee_size
    rng = np.random.default_rng(seed)
    got: dict[str, tuple[list[float], list[float]]] = {w: ([], []) for w in WAYS if w not in PER_MEMBER}
    per_member: dict[str, dict[int, tuple[list[float], list[float]]]] = {w: {} for w in PER_MEMBER}
    # Over rounds: each member's running sum of its by-class scores of each node, over sqrt(rounds seen).
    running = np.zeros_like(rounds[0]["by_class"])
    trust_cmte: dict[int, float] = {}
    trust_all: dict[int, float] = {}
    anchored: dict[int, dict[int, float]] = {}
    for t, rd in enumerate(rounds[1:], start=1):  # round 0 has no history; all rounds after it count
        q, byz, mbyz = rd["scores"], rd["byz"], rd["member_byz"]
        qc = rd["by_class"]
        running = running + np.nan_to_num(np.clip(qc, -10, 10))
        acc = np.where(np.isnan(qc), np.nan, running / np.sqrt(t))
        honest_rows = q[~mbyz]
        lied = np.where(byz, 0.05, -1.0)
        members = rng.choice(q.shape[0], size=min(k, q.shape[0]), replace=False)
        cmte = np.stack([np.where(np.isnan(q[m]), np.nan, lied) if mbyz[m] else q[m] for m in members])
        everyone = np.arange(q.shape[0])
        all_votes = np.stack([np.where(np.isnan(q[m]), np.nan, lied) if mbyz[m] else q[m] for m in everyone])
        typical = float(np.nanmedian(np.abs(cmte)))
        clipped = np.clip(cmte, -4 * typical, 4 * typical)
        ways = {
            "pooled data": rd["pooled"],
            "honest mean": np.nanmean(honest_rows, axis=0),
            "honest median": np.nanmedian(honest_rows, axis=0),
            "committee median": np.nanmedian(cmte, axis=0),
            # One column per update; trim 20% of its votes per side (the core rule; n > 2f always holds).
            "honest median, by class": np.nanmedian(qc[~mbyz], axis=0),
            "committee, trust-weighted": trust_pooled(cmte, members, trust_cmte),
            "everyone votes, trust-weighted": trust_pooled(all_votes, everyone, trust_all),
            "committee trimmed": np.array(
                [
                    aggregators.trimmed_mean(v[:, None], int(0.2 * v.size)).vector[0]
                    for v in (col[~np.isnan(col)] for col in clipped.T)
                ]
            ),
        }
        for w, v in ways.items():
            got[w][0].extend(v[~byz])
            got[w][1].extend(v[byz])
        ranked_all = np.stack([_ranked(v) for v in all_votes])
        own_view = np.full_like(q, np.nan)
        for a in np.flatnonzero(~mbyz):
            t_a = anchored.setdefault(int(a), {})
            w = np.array([1.0 if v == a else t_a.get(int(v), 0.5) for v in everyone])
            own_view[a] = np.nansum(w[:, None] * ranked_all, axis=0) / np.maximum(
                np.sum(w[:, None] * ~np.isnan(ranked_all), axis=0), 1e-12
            )
            own_view[a][np.isnan(q[a])] = np.nan
            for v in everyone:
                if v == a:
                    continue
                ok = ~np.isnan(ranked_all[v]) & ~np.isnan(ranked_all[a])
                c = float(np.corrcoef(ranked_all[v][ok], ranked_all[a][ok])[0, 1]) if ok.sum() >= 3 else 0.0
                t_a[int(v)] = 0.7 * t_a.get(int(v), 0.5) + 0.3 * (max(c, 0.0) if np.isfinite(c) else 0.0)
        for m in np.flatnonzero(~mbyz):
            for w, mat in zip(PER_MEMBER, (q, qc, acc, own_view), strict=True):
                ok = ~np.isnan(mat[m])
                h, b = per_member[w].setdefault(int(m), ([], []))
                h.extend(mat[m][ok & ~byz])
                b.extend(mat[m][ok & byz])
    out = {w: auc(np.array(h), np.array(b)) for w, (h, b) in got.items()}
    for w in PER_MEMBER:
        out[w] = float(np.median([auc(np.array(h), np.array(b)) for h, b in per_member[w].values()]))
    return f"{attack} @{fraction} {dist}" + (f"({alpha})" if dist == "dirichlet" else "") + f" seed {seed}", out


def main() -> None:
    chosen = [s for s in SCENARIOS if not sys.argv[1:] or s[0] in sys.argv[1:]]
    specs = [(*s, seed) for s, seed in itertools.product(chosen, SEEDS)]
    print("AUC (honest above Byzantine) by way of pooling the members' scores", file=sys.stderr)
    print("| scenario | " + " | ".join(WAYS) + " |")
    print("|---|" + "---|" * len(WAYS))
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for name, res in pool.map(scenario, specs):
            print(f"| {name} | " + " | ".join(f"{res[w]:.2f}" for w in WAYS) + " |", flush=True)


if __name__ == "__main__":
    main()
