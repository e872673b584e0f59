#!/usr/bin/env python3
"""What the chain walks cost: submit latency against the length of the author's source chain.

Several integrity rules read the author's chain before the action being
validated (`must_get_agent_activity` from its `prev_action` back to genesis):
one submission per round, the chunk budget, no link written twice, one
aggregate or vote per round, opinions going forward. That read grows with
the chain. Here one agent on one real conductor submits one small update per
round for ``--rounds`` rounds; each `submit_gradient` call commits the chunks,
the submission and two links and validates them inline (the same validation
every authority runs again), so its latency as the chain grows is the walks'
cost plus a constant. The script fits a line through latency against chain
length and reports the slope per 1,000 actions.

Writes results/chain_walk.json and the chain-walk block of docs/BENCHMARKS.md.

    .venv/bin/python benchmarks/chain_walk.py [--rounds 400] [--dims 24]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from docblock import replace_block  # noqa: E402

from zerotrustml.holochain.network import LocalNetwork, dna_properties  # noqa: E402
from zerotrustml.validation import ModelSpec, l2_norm, payload_hash  # noqa: E402

START, END = "<!-- chainwalk:start -->", "<!-- chainwalk:end -->"


def log(msg: str) -> None:
    print(f"[chain-walk {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def chain_length(dump: dict[str, Any]) -> int:
    return len(dump["source_chain_dump"]["records"])


async def measure(rounds: int, dims: int, chunk_values: int) -> dict[str, Any]:
    spec = ModelSpec(model_id="chain-walk", dims=dims, max_norm=1e6, max_round=rounds + 1)
    props = dna_properties(spec, chunk_values=chunk_values)
    rows: list[dict[str, float]] = []
    async with LocalNetwork(1, 1, properties=props, log=log) as net:
        agent = net.agents[0]
        admin = net.conductors[0].admin
        assert admin is not None

        async def length() -> int:
            dump = await admin.request("dump_full_state", {"cell_id": agent.cell.cell_id, "dht_ops_cursor": None})
            return chain_length(dump)

        rng = np.random.default_rng(0)
        before = await length()
        per_submission: int | None = None
        t_start = time.monotonic()
        for r in range(rounds):
            v = rng.standard_normal(dims).astype(np.float32)
            sub = {
                "round": r,
                "model_id": spec.model_id,
                "values": [float(x) for x in v],
                "example_count": 32,
                "proof": None,
                "norm": l2_norm(v),
                "payload_hash": payload_hash(v),
            }
            t0 = time.perf_counter()
            await agent.cell.call("submit_gradient", sub, timeout=300)
            ms = (time.perf_counter() - t0) * 1e3
            if per_submission is None:
                per_submission = await length() - before
            rows.append({"round": r, "chain_before": before + r * per_submission, "ms": ms})
            if (r + 1) % max(1, rounds // 10) == 0:
                chain = before + (r + 1) * per_submission
                log(f"{r + 1}/{rounds} submissions, chain {chain} actions, last {ms:.0f} ms")
        final = await length()
        total_s = time.monotonic() - t_start
    assert per_submission is not None
    x = np.array([row["chain_before"] for row in rows], dtype=np.float64)
    y = np.array([row["ms"] for row in rows], dtype=np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    k = max(10, rounds // 10)
    return {
        "rounds": rounds,
        "dims": dims,
        "chunk_values": chunk_values,
        "actions_per_submission": per_submission,
        "chain_first": [int(x[0]), int(x[k - 1])],
        "chain_last": [int(x[-k]), final],
        "first_p50_ms": float(np.median(y[:k])),
        "last_p50_ms": float(np.median(y[-k:])),
        "window": k,
        "slope_ms_per_1000_actions": float(slope * 1000),
        "intercept_ms": float(intercept),
        "total_s": total_s,
        "rows": rows,
    }


def render(res: dict[str, Any], command: str, when: str) -> str:
    per = res["actions_per_submission"]
    lo, hi = res["chain_first"], res["chain_last"]
    slope = res["slope_ms_per_1000_actions"]
    at = [10_000, 100_000]
    extra = ", ".join(f"{n:,} actions: {res['intercept_ms'] + slope * n / 1000:,.0f} ms" for n in at)
    return f"""## Chain walks

Measured {when} ({platform.machine()}, one conductor, one agent) by `{command}`:
`submit_gradient` of a {res["dims"]}-value update ({per} actions per submission: chunks, the entry, two links),
once per round for {res["rounds"]} rounds; each call validates its actions inline, and the rules that read
the author's chain (one per round, chunk budget, no link twice) walk it from the new action back to genesis.

| chain length (actions) | submit p50 (ms) |
|---:|---:|
| {lo[0]:,}-{lo[1]:,} (first {res["window"]} calls) | {res["first_p50_ms"]:.0f} |
| {hi[0]:,}-{hi[1]:,} (last {res["window"]} calls) | {res["last_p50_ms"]:.0f} |

Least squares over all {res["rounds"]} calls: **{slope:.1f} ms per 1,000 actions of chain** on top of
{res["intercept_ms"]:.0f} ms. Extrapolated along that line (not measured): {extra}. The DNA bounds rounds
(`max_round`), not chain length, so this grows for as long as a federation runs; every authority of an action
pays it once per validated action.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=400)
    ap.add_argument("--dims", type=int, default=24)
    ap.add_argument("--chunk-values", type=int, default=10)
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "chain_walk.json")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = ap.parse_args()
    log(f"{args.rounds} submissions of {args.dims} values by one agent on one conductor")
    res = asyncio.run(measure(args.rounds, args.dims, args.chunk_values))
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    argv = " ".join(sys.argv[1:])
    command = f".venv/bin/python benchmarks/chain_walk.py{' ' + argv if argv else ''}"
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"measured": when, "command": command, **res}, indent=1) + "\n")
    if not replace_block(args.out, START, END, render(res, command, when)):
        log(f"no {START} / {END} markers in {args.out}; wrote {args.json} only")
    log(
        f"first {res['first_p50_ms']:.0f} ms, last {res['last_p50_ms']:.0f} ms at {res['chain_last'][1]} actions; "
        f"{res['slope_ms_per_1000_actions']:.1f} ms per 1,000 actions"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
