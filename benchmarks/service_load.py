#!/usr/bin/env python3
"""The HTTP service under load: concurrent signed clients submitting, round after round, on loopback.

``--clients`` nodes register with a real ``zerotrustml serve`` process (embedded store, median rule) and, each
round, all submit a signed update of ``--dims`` values at once, from one asyncio client each. The script
records every request's latency, the submissions acknowledged per second, and then opens the store and checks
that every acknowledged submission is there, byte for byte (a lost acknowledgement fails the run).

The floor in the same run: the same submissions written straight into an embedded store in this process
(validation and the SQLite commit, no HTTP, no JSON, no signature check), one after another.

Writes results/service_load.json and the service block of docs/BENCHMARKS.md.

    .venv/bin/python benchmarks/service_load.py [--clients 50] [--rounds 10] [--dims 7850]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from docblock import replace_block  # noqa: E402
from live_service import LiveService  # noqa: E402

from zerotrustml.backends import EmbeddedStore  # noqa: E402
from zerotrustml.service import protocol  # noqa: E402
from zerotrustml.validation import ModelSpec, Submission, payload_hash  # noqa: E402

START, END = "<!-- service:start -->", "<!-- service:end -->"


def log(msg: str) -> None:
    print(f"[service-load {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def load(svc: LiveService, clients: int, rounds: int, dims: int) -> dict[str, Any]:
    keys = {f"node-{i:02d}": nacl.signing.SigningKey(bytes([i + 1]) * 32) for i in range(clients)}
    rng = np.random.default_rng(0)
    latencies: list[float] = []
    acked: dict[tuple[str, int], str] = {}
    refused: dict[str, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=svc.url, timeout=120, limits=limits) as http:
        federation = (await http.get("/v1/health")).json()["federation"]
        for nid, key in keys.items():
            r = await http.post("/v1/nodes", json=protocol.registration_body(key, federation=federation, node_id=nid))
            r.raise_for_status()
        elapsed = 0.0
        for rnd in range(rounds):
            # Signed and encoded before the clock starts: what is timed is the service, not this script's JSON.
            bodies = {
                nid: json.dumps(
                    protocol.submission_body(
                        key,
                        federation=federation,
                        node_id=nid,
                        round=rnd,
                        model_id="model",
                        values=rng.normal(size=dims).astype(np.float32),
                        example_count=100,
                    )
                ).encode()
                for nid, key in keys.items()
            }

            async def submit(nid: str, body: bytes, rnd: int = rnd) -> None:
                t0 = time.perf_counter()
                r = await http.post("/v1/submissions", content=body, headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - t0)
                if r.status_code == 202:
                    acked[(nid, rnd)] = r.json()["payload_hash"]
                else:
                    code = r.json().get("code", str(r.status_code))
                    refused[code] = refused.get(code, 0) + 1

            t_round = time.perf_counter()
            await asyncio.gather(*(submit(nid, b) for nid, b in bodies.items()))
            elapsed += time.perf_counter() - t_round
            while (await http.get("/v1/health")).json()["round"] == rnd:  # every node submitted: the round closes
                await asyncio.sleep(0.01)
            log(f"round {rnd + 1}/{rounds}: {len(acked)} acknowledged")
    return {"latencies": latencies, "acked": acked, "refused": refused, "elapsed_s": elapsed}


async def stored(data_dir: Path, acked: dict[tuple[str, int], str]) -> int:
    """How many acknowledged submissions the store holds with the acknowledged payload hash."""
    found = 0
    async with EmbeddedStore(data_dir) as store:
        for (nid, rnd), digest in acked.items():
            sub = await store.get_submission(rnd, nid)
            if sub is not None and sub.hash_hex == digest and payload_hash(sub.values).hex() == digest:
                found += 1
    return found


async def floor(clients: int, rounds: int, dims: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        async with EmbeddedStore(d) as store:
            await store.set_model_spec(ModelSpec("model", dims=dims, max_norm=1e6))
            t0 = time.perf_counter()
            for rnd in range(rounds):
                for i in range(clients):
                    values = rng.normal(size=dims).astype(np.float32)
                    await store.submit(Submission.create(f"node-{i:02d}", rnd, "model", values, example_count=100))
            elapsed = time.perf_counter() - t0
    return {"elapsed_s": elapsed, "per_s": clients * rounds / elapsed}


def measure(clients: int, rounds: int, dims: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        data_dir = Path(d) / "service"
        args = ["--dims", str(dims), "--aggregator", "median", "--rounds", str(rounds)]
        args += ["--min-nodes", str(clients), "--round-deadline", "600"]
        with LiveService(data_dir, *args) as svc:
            log(f"{clients} clients x {rounds} rounds x {dims} values against {svc.url}")
            res = asyncio.run(load(svc, clients, rounds, dims))
        held = asyncio.run(stored(data_dir, res["acked"]))
    log("the floor: the same writes straight into an embedded store")
    fl = asyncio.run(floor(clients, rounds, dims))
    lat = res["latencies"]
    return {
        "clients": clients,
        "rounds": rounds,
        "dims": dims,
        "requests": len(lat),
        "acknowledged": len(res["acked"]),
        "refused": res["refused"],
        "lost": len(res["acked"]) - held,
        "submit_p50_ms": 1e3 * percentile(lat, 50),
        "submit_p95_ms": 1e3 * percentile(lat, 95),
        "submit_max_ms": 1e3 * max(lat),
        "acknowledged_per_s": len(res["acked"]) / res["elapsed_s"],
        "elapsed_s": res["elapsed_s"],
        "floor_per_s": fl["per_s"],
        "floor_elapsed_s": fl["elapsed_s"],
    }


def render(res: dict[str, Any], command: str, when: str) -> str:
    return f"""## The HTTP service under load

Measured {when} ({platform.machine()}, loopback, one `zerotrustml serve` process on the embedded store) by
`{command}`: {res["clients"]} registered clients, each round all of them submitting a signed
{res["dims"]}-value update at once ({res["requests"]:,} requests over {res["rounds"]} rounds; the round closes when
all have submitted).

| | submissions/s | submit p50 (ms) | submit p95 (ms) |
|---|---:|---:|---:|
| HTTP service, {res["clients"]} concurrent clients | {res["acknowledged_per_s"]:.0f} | {res["submit_p50_ms"]:.0f} \
| {res["submit_p95_ms"]:.0f} |
| floor: the same writes into the embedded store, in process | {res["floor_per_s"]:.0f} | | |

Acknowledged: {res["acknowledged"]:,} of {res["requests"]:,}; lost (acknowledged but not in the store, checked
payload hash by payload hash after the run): **{res["lost"]}**. The service checks each request's signature,
parses {res["dims"]:,} JSON numbers, validates and commits one submission at a time; the p95 is the wait of the
last of {res["clients"]} requests that arrive together.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--dims", type=int, default=7850, help="values per update (7,850: MNIST softmax regression)")
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "service_load.json")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = ap.parse_args(argv)
    res = measure(args.clients, args.rounds, args.dims)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    given = " ".join(sys.argv[1:] if argv is None else argv)
    command = f".venv/bin/python benchmarks/service_load.py{' ' + given if given else ''}"
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"measured": when, "command": command, **res}, indent=1) + "\n")
    if not replace_block(args.out, START, END, render(res, command, when)):
        log(f"no {START} / {END} markers in {args.out}; wrote {args.json} only")
    log(
        f"{res['acknowledged']}/{res['requests']} acknowledged, {res['lost']} lost; "
        f"p50 {res['submit_p50_ms']:.0f} ms, p95 {res['submit_p95_ms']:.0f} ms, "
        f"{res['acknowledged_per_s']:.0f}/s (floor {res['floor_per_s']:.0f}/s)"
    )
    return 1 if res["lost"] or res["acknowledged"] != res["requests"] else 0


if __name__ == "__main__":
    sys.exit(main())
