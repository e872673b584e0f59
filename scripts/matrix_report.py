"""Write the attack matrix's report figures into README.md, docs/GUIDE.md and docs/DETECTION.md.

Reads ``results/matrix`` (what ``zerotrustml matrix --out results/matrix`` wrote; summarised again here, so the
figures are those of its ``cells.jsonl``) and rewrites the blocks between the ``matrix-report`` markers (README
and GUIDE: the per-defence table and the targets) and the ``matrix-report-detail`` markers (DETECTION: where the
pipeline misses, per partition, and what knowing f would add). Nothing runs; the matrix itself is

    zerotrustml matrix --yes --out results/matrix --rounds 20
    .venv/bin/python scripts/matrix_report.py [--out results/matrix]
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from docblock import replace_block

from zerotrustml import matrix as mx

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- matrix-report:start -->", "<!-- matrix-report:end -->"
DETAIL_START, DETAIL_END = "<!-- matrix-report-detail:start -->", "<!-- matrix-report-detail:end -->"

#: How the docs name the matrix's defences.
NAMES = {
    mx.PIPELINE: "pipeline",
    mx.PIPELINE_KNOWN_F: "pipeline, knowing the true f",
    mx.PIPELINE_PERSONAL: "pipeline, personal view (shared model)",
    "multi_krum": "Multi-Krum",
    "centered_clipping": "centered clipping",
    "geometric_median": "geometric median",
    "trimmed_mean": "trimmed mean",
    "krum": "Krum",
    "bulyan": "Bulyan",
}


def _rate(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _attack_cells(cells: Iterable[Mapping[str, Any]], defence: str) -> list[Mapping[str, Any]]:
    return [c for c in cells if c["defence"] == defence and c["status"] == "ok" and c["attack"] != "none"]


def _in(c: Mapping[str, Any], dist: str, alpha: float | None) -> bool:
    return bool(c["distribution"] == dist and c["alpha"] == alpha)


def summary(doc: Mapping[str, Any]) -> str:
    """The README's and GUIDE's block: counts, the per-defence table, the targets marked met or missed."""
    c = doc["counts"]
    spec = doc["spec"]
    rows = sorted(doc["defences"], key=lambda r: (-(r["low_within"] + r["half_within"]), r["defence"]))
    lines = [
        f"`{doc['command']}`: {spec['dataset']}, {spec['model']}, {spec['nodes']} nodes, {spec['rounds']} rounds, "
        f"report seeds {', '.join(map(str, doc['report_seeds']))}; {c['total']:,} cells, {c['ok']:,} run, "
        f"{c['n/a']:,} n/a by precondition, {c['missing'] + c['error']:,} missing or failed; simulation time "
        f"{doc['elapsed_s'] / 3600:.1f} h summed over cells. Over each defence's attack cells that ran:",
        "",
        "| defence | mean TPR | mean FPR | <= 0.4: TPR / FPR | <= 0.4: cells within 3 pts | "
        "0.5 and 0.6: cells within 5 pts |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        half = f"{r['half_within']}/{r['half_cells']}" if r["half_cells"] else "n/a"
        lines.append(
            f"| {NAMES.get(r['defence'], r['defence'])} | {_rate(r['tpr'])} | {_rate(r['fpr'], 3)} "
            f"| {_rate(r['low_tpr'])} / {_rate(r['low_fpr'], 3)} | {r['low_within']}/{r['low_cells']} | {half} |"
        )
    lines += ["", "The targets (the pipeline's shared view; at 0.5 and 0.6 the personal view's own models):", ""]
    lines += ["| target | measured | bound | status |", "|---|---|---|---|"]
    for t in doc["targets"]:
        value = "–" if t["value"] is None else f"{t['value']:.3f}{t['unit']}"
        mark = {"PASS": "**met**", "MISS": "**missed**"}.get(t["status"], t["status"])
        detail = t["detail"].split(";")[0] if t["detail"].startswith("worst") else ""
        lines.append(
            f"| {t['name']} | {value}{f' ({detail})' if detail else ''} | {t['comparison']} {t['threshold']:g} "
            f"| {mark} |"
        )
    return "\n".join(lines) + "\n"


def detail(doc: Mapping[str, Any]) -> str:
    """DETECTION.md's block: the pipeline per partition and fraction, its misses, the personal view above 0.4."""
    cells = doc["cells"]
    pipe = _attack_cells(cells, mx.PIPELINE)
    known = {_cell_id(c): c for c in _attack_cells(cells, mx.PIPELINE_KNOWN_F)}
    own = _attack_cells(cells, mx.PIPELINE_PERSONAL)
    lines = [
        "The pipeline's shared view per partition and fraction (attack cells, mean over them; gap in points below "
        "honest-only averaging; **within** counts cells within 3 points at 0.3-0.4 and 5 above). "
        "The last columns: the same cells with the pipeline told the true f, and the personal view's own "
        "models (mean over honest agents; worst agent) at 0.5 and 0.6.",
        "",
        "| partition | fraction | cells | TPR | FPR | mean gap | within | knowing f: TPR / FPR / mean gap "
        "| own models: mean / worst agent, cells within 5 / 10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fractions = sorted({float(c["fraction"]) for c in pipe})
    for dist, alpha in doc["spec"]["distributions"]:  # the matrix's partitions, in its order
        label = mx.distribution_label((dist, alpha))
        for frac in fractions:
            group = [c for c in pipe if _in(c, dist, alpha) and c["fraction"] == frac]
            if not group:
                continue
            bound = mx.TARGET_GAP_UP_TO_04 if not mx._above_low(frac) else mx.TARGET_PERSONAL_MEAN_GAP
            kf = [known[_cell_id(c)] for c in group if _cell_id(c) in known]
            personal = [
                c
                for c in own
                if _in(c, dist, alpha) and c["fraction"] == frac and c.get("personal_gap_points") is not None
            ]
            own_text = "–"
            if personal and mx._above_low(frac):
                p_mean = mx._mean(c["personal_gap_points"] for c in personal)
                p_worst = mx._mean(c["personal_worst_gap_points"] for c in personal)
                within_mean = sum(c["personal_gap_points"] <= mx.TARGET_PERSONAL_MEAN_GAP for c in personal)
                within_worst = sum(c["personal_worst_gap_points"] <= mx.TARGET_PERSONAL_WORST_GAP for c in personal)
                own_text = (
                    f"{p_mean:+.1f} / {p_worst:+.1f}, {within_mean}/{len(personal)} / {within_worst}/{len(personal)}"
                )
            kf_text = "–"
            if kf:
                kf_text = (
                    f"{_rate(mx._mean(c['tpr'] for c in kf))} / {_rate(mx._mean(c['fpr'] for c in kf), 3)} / "
                    f"{mx._mean(c['gap_points'] for c in kf):+.1f}"
                )
            lines.append(
                f"| {label} | {frac:g} | {len(group)} | {_rate(mx._mean(c['tpr'] for c in group))} "
                f"| {_rate(mx._mean(c['fpr'] for c in group), 3)} | {mx._mean(c['gap_points'] for c in group):+.1f} "
                f"| {sum(c['gap_points'] <= bound for c in group)}/{len(group)} | {kf_text} | {own_text} |"
            )
    misses = sorted(
        (c for c in pipe if not mx._above_low(c["fraction"]) and c["gap_points"] > mx.TARGET_GAP_UP_TO_04),
        key=lambda c: -c["gap_points"],
    )
    lines += ["", f"The pipeline's cells at 0.3-0.4 more than {mx.TARGET_GAP_UP_TO_04:g} points below honest-only:"]
    lines.append("")
    if misses:
        lines.append(
            ", ".join(
                f"{c['attack_label']} @{c['fraction']:g} {mx.distribution_label((c['distribution'], c['alpha']))} "
                f"{c['gap_points']:+.1f} (TPR {c['tpr']:.2f})"
                for c in misses
            )
            + "."
        )
    else:
        lines.append("none.")
    return "\n".join(lines) + "\n"


def _cell_id(c: Mapping[str, Any]) -> tuple[Any, ...]:
    return (c["attack_label"], c["fraction"], c["distribution"], c["alpha"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "matrix", help="The matrix's directory.")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = args.out.resolve()
    if out.is_relative_to(ROOT):  # the report's command names the directory as a user in the clone types it
        os.chdir(ROOT)
        out = out.relative_to(ROOT)
    doc = mx.summarise(out)
    body, more = summary(doc), detail(doc)
    print(body)
    print(more)
    for path, start, end, text in (
        (ROOT / "README.md", START, END, body),
        (ROOT / "docs" / "GUIDE.md", START, END, body),
        (ROOT / "docs" / "DETECTION.md", DETAIL_START, DETAIL_END, more),
    ):
        if not replace_block(path, start, end, text):
            logging.warning("%s has no %s markers; the block is printed only", path.relative_to(ROOT), start)


if __name__ == "__main__":
    main()
