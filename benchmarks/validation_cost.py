#!/usr/bin/env python3
"""The worst validation work within the DNA bounds: the aggregate recompute, in wasm, as validators run it.

A validator of a RoundAggregate whose ``contributors x dims <= recompute_limit`` fetches every contributor's
payload and reruns the rule; ``max_contributors`` bounds n whatever the dims (the Krum Gram matrix is n x n).
This script builds ``benchmarks/validation-cost`` (the integrity zome's own ``recompute``, compiled to wasm32
exactly like the zomes: opt-level z, panic=abort) and runs it in Node's WebAssembly engine at the corners of the
default bounds (max_contributors 1000, recompute_limit 10^6 values): per rule the wall time of one recompute and
the module's linear memory afterwards (wasm memory only grows, so that is the peak). Beside it, in the same run,
the same rule natively through the Python package (the same core, all cores, SIMD). The conductor's wasm engine
(wasmer) is not Node's V8; both compile wasm to machine code, so the figures bound the order of magnitude.

Writes results/validation_cost.json and the validation block of docs/BENCHMARKS.md.

    .venv/bin/python benchmarks/validation_cost.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from docblock import replace_block  # noqa: E402

from zerotrustml import aggregators  # noqa: E402

START, END = "<!-- validation:start -->", "<!-- validation:end -->"
WASM = ROOT / "target" / "wasm" / "wasm32-unknown-unknown" / "release" / "validation_cost.wasm"
RULES = ("mean", "krum", "multi_krum", "median", "trimmed_mean")
# (rule, n, dims, f): the corners of max_contributors = 1000 and recompute_limit = 10^6 values.
CASES = [
    ("krum", 1000, 1000, 498),
    ("multi_krum", 1000, 1000, 498),
    ("mean", 1000, 1000, 0),
    ("median", 1000, 1000, 0),
    ("trimmed_mean", 1000, 1000, 499),
    ("krum", 10, 100_000, 3),
    ("median", 10, 100_000, 0),
]

NODE_RUNNER = r"""
const fs = require("fs");
const [wasmPath, casesJson, repeat] = process.argv.slice(2);
const wasmModule = new WebAssembly.Module(fs.readFileSync(wasmPath));
// The zome's host functions are imports; recompute never calls them.
const imports = {};
for (const imp of WebAssembly.Module.imports(wasmModule)) {
  imports[imp.module] = imports[imp.module] || {};
  imports[imp.module][imp.name] = () => { throw new Error(`host function ${imp.name} called`); };
}
const out = [];
for (const [rule, n, d, f] of JSON.parse(casesJson)) {
  const times = [];
  let flagged = null, memory = 0;
  for (let r = 0; r < Number(repeat); r++) {
    const instance = new WebAssembly.Instance(wasmModule, imports);  // fresh memory per run
    const t0 = process.hrtime.bigint();
    flagged = instance.exports.bench(rule, n, d, f);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    memory = Math.max(memory, instance.exports.memory.buffer.byteLength);
  }
  out.push({ times_ms: times, flagged, memory_bytes: memory });
}
process.stdout.write(JSON.stringify(out));
"""


def log(msg: str) -> None:
    print(f"[validation-cost {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rows(n: int, d: int) -> np.ndarray:
    """The same rows the wasm module builds (xorshift64, top 24 bits, centred)."""
    out = np.empty(n * d, dtype=np.float32)
    state = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    for i in range(n * d):
        state ^= (state << 13) & mask
        state ^= state >> 7
        state ^= (state << 17) & mask
        out[i] = np.float32((state >> 40) / float(1 << 24)) - np.float32(0.5)
    return out.reshape(n, d)


def native(rule: str, x: np.ndarray, f: int) -> tuple[float, int]:
    n = x.shape[0]
    t0 = time.perf_counter()
    if rule == "mean":
        aggregators.mean(x, weights=aggregators.example_weights([100] * n))
        flagged = 0
    elif rule == "krum":
        flagged = n - 1
        aggregators.krum(x, f)
    elif rule == "multi_krum":
        aggregators.multi_krum(x, f, n - f)
        flagged = f
    elif rule == "median":
        aggregators.median(x)
        flagged = 0
    else:
        aggregators.trimmed_mean(x, f)
        flagged = 0
    return (time.perf_counter() - t0) * 1e3, flagged


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "validation_cost.json")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = ap.parse_args()
    node = shutil.which("node")
    if node is None:
        log("node not found (Node 20 runs the wasm)")
        return 1
    log("building validation_cost.wasm like the zomes (scripts/build-happ.sh --wasm-only --with-bench)")
    subprocess.run(["bash", str(ROOT / "scripts" / "build-happ.sh"), "--wasm-only", "--with-bench"], check=True)
    wasm_cases = [[RULES.index(r), n, d, f] for r, n, d, f in CASES]
    node_version = subprocess.check_output([node, "--version"], text=True).strip()
    with tempfile.NamedTemporaryFile("w", suffix=".cjs", delete=False) as fh:
        fh.write(NODE_RUNNER)
        runner = fh.name
    log(f"running {len(CASES)} cases x {args.repeat} in {node_version}")
    wasm = json.loads(
        subprocess.check_output([node, runner, str(WASM), json.dumps(wasm_cases), str(args.repeat)], text=True)
    )
    Path(runner).unlink()
    results: list[dict[str, Any]] = []
    for (rule, n, d, f), w in zip(CASES, wasm, strict=True):
        x = rows(n, d)
        native_ms = []
        native_flagged = 0
        for _ in range(args.repeat):
            ms, native_flagged = native(rule, x, f)
            native_ms.append(ms)
        if w["flagged"] != native_flagged:
            log(f"MISMATCH {rule} n={n} d={d}: wasm flagged {w['flagged']}, native {native_flagged}")
            return 1
        row = {
            "rule": rule,
            "n": n,
            "dims": d,
            "f": f,
            "wasm_ms": min(w["times_ms"]),
            "wasm_memory_mib": w["memory_bytes"] / 2**20,
            "native_ms": min(native_ms),
            "input_mib": n * d * 4 / 2**20,
        }
        results.append(row)
        log(
            f"{rule:>12} n={n:>5} d={d:>6}: wasm {row['wasm_ms']:8.1f} ms, {row['wasm_memory_mib']:6.1f} MiB; "
            f"native {row['native_ms']:7.1f} ms"
        )
    worst = max(results, key=lambda r: r["wasm_ms"])
    report = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {platform.python_version()}, {node_version}",
        "bounds": {"max_contributors": 1000, "recompute_limit": 1_000_000},
        "cases": results,
        "worst": worst,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        "## Validation cost within the DNA bounds",
        "",
        f"Measured {report['date']} ({report['machine']}) by `.venv/bin/python benchmarks/validation_cost.py`:",
        "the integrity zome's `recompute` built for wasm32 like the zomes, run in Node's WebAssembly engine, at",
        "the corners of the default bounds (`max_contributors` 1000, `recompute_limit` 10^6 values); native is the",
        "same rule through the Python package in the same run (the same core, both cores, SIMD). Best of "
        f"{args.repeat}.",
        "",
        "| rule | n | dims | f | wasm (ms) | wasm memory (MiB) | native (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['rule']} | {r['n']} | {r['dims']} | {r['f']} | {r['wasm_ms']:.0f} | {r['wasm_memory_mib']:.0f} "
            f"| {r['native_ms']:.1f} |"
        )
    lines += [
        "",
        f"Worst: {worst['rule']} over {worst['n']} x {worst['dims']}, {worst['wasm_ms'] / 1e3:.1f} s and "
        f"{worst['wasm_memory_mib']:.0f} MiB of wasm memory per validation (every validator holding the aggregate",
        "runs it once). Above the recompute bound validators only check structure, preconditions and the result",
        "norm; the input fetch (4 MiB of payload at the bound) is not timed here.",
        "",
    ]
    if not replace_block(args.out, START, END, "\n".join(lines)):
        log(f"{args.out}: no {START} block; wrote {args.json} only")
    log(f"wrote {args.json} and the validation block of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
