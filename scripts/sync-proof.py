#!/usr/bin/env python3
"""Prove that two Holochain conductors sync offline, with the ZeroTrustML DNA.

A thin user of the package's conductor client (``zerotrustml.holochain``):
starts a local bootstrap/signal server and two conductors on 127.0.0.1
(``LocalNetwork``), one agent on each, all under one fresh network seed, then

1. agent A calls ``submit_gradient`` with a payload of the DNA's ``dims``
   (stored as chunks); agent B polls ``get_round_submissions`` until it
   returns A's submission, reassembled from its chunks (bounded by
   ``--timeout``);
2. agent A submits a payload of the wrong length and one holding a NaN, and
   both calls must fail with the integrity zome's rules, as the package's
   typed error (``SubmissionRejected`` naming the field and the rule).

Prints the timings and exits 0 only when all three hold; every process is
stopped on exit (also on Ctrl-C / SIGTERM).

Usage:
    .venv/bin/python scripts/sync-proof.py [--timeout 120] [--keep]
        [--bin-dir DIR] [--happ PATH] [--direct]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import struct
import sys
import time
from typing import Any

from zerotrustml.exceptions import SubmissionRejected
from zerotrustml.holochain.network import LocalNetwork, NetworkError


def log(msg: str) -> None:
    print(f"[sync-proof {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def f32(values: list[float]) -> list[float]:
    """Values as the zome stores them (float32)."""
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


async def expect_rejection(call: Any, field: str, code: str, want: str) -> bool:
    try:
        await call
    except SubmissionRejected as e:
        if (e.field, e.code) != (field, code) or want not in str(e):
            log(f"FAIL: rejected, but not by the {code} rule: field={e.field} code={e.code}: {e}")
            return False
        log(f"rejected as expected: {e.code}: {e}")
        return True
    log(f"FAIL: the {code} rule did not refuse the submission")
    return False


async def prove(args: argparse.Namespace) -> int:
    t_all = time.monotonic()
    timings: dict[str, float] = {}
    net = LocalNetwork(2, 2, happ=args.happ, bin_dir=args.bin_dir, keep=args.keep, force_relay=not args.direct, log=log)
    async with net:
        timings["network_up_s"] = time.monotonic() - t_all
        a, b = net.agents
        props = a.properties
        dims = int(props["dims"])
        values = [round(0.125 * (i - dims / 2), 3) for i in range(dims)]
        submission = {"round": 7, "model_id": props["model_id"], "values": values, "example_count": 32}
        t0 = time.monotonic()
        action = await a.cell.call("submit_gradient", submission)
        timings["submit_s"] = time.monotonic() - t0
        log(f"A submitted round 7: action {bytes(action).hex()[:24]}... ({timings['submit_s']:.2f} s)")

        t0 = time.monotonic()
        seen, polls = None, 0
        while time.monotonic() - t0 < args.timeout and seen is None:
            polls += 1
            seen = next((o for o in await b.cell.call("get_round_submissions", 7) if o["action_hash"] == action), None)
            if seen is None:
                await asyncio.sleep(args.poll)
        if seen is None:
            log(f"FAIL: B did not see A's submission within {args.timeout:.0f} s ({polls} polls)")
            return 1
        timings["sync_s"] = time.monotonic() - t0
        chunks = len(seen["submission"]["chunk_hashes"])
        if bytes(seen["author"]) != a.agent_key or seen["values"] != f32(values):
            log(f"FAIL: B's copy does not match A's submission: {seen!r:.300}")
            return 1
        log(f"B sees A's entry after {timings['sync_s']:.2f} s ({polls} polls): dims={dims} in {chunks} chunks, intact")
        stats = await net.conductors[a.conductor].admin.request("dump_network_stats")  # type: ignore[union-attr]
        transport = (stats or {}).get("transport_stats", {})
        log(f"A's transport: backend={transport.get('backend')}, connections={len(transport.get('connections', []))}")

        ok = await expect_rejection(
            a.cell.call("submit_gradient", dict(submission, round=8, values=values[:4])),
            "dims",
            "dims_mismatch",
            f"dims: the model has {dims} parameters, got 4",
        )
        # A finite norm claim, so the payload rule (not the claim rule) fires.
        nan = dict(submission, round=8, values=[values[0], math.nan, *values[2:]], norm=1.0)
        ok = ok and await expect_rejection(
            a.cell.call("submit_gradient", nan), "values", "non_finite", "values: non-finite value NaN at index 1"
        )
        if not ok:
            return 1
        timings["total_s"] = time.monotonic() - t_all
        print(
            json.dumps(
                {
                    "result": "ok",
                    "force_relay": not args.direct,
                    "timings": {k: round(v, 3) for k, v in timings.items()},
                },
                indent=2,
            )
        )
        print("sync-proof: 3 passed, 0 failed")
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument(
        "--bin-dir", help="dir with holochain and kitsune2-bootstrap-srv (default: $HC_BIN_DIR or the cache)"
    )
    ap.add_argument("--happ", default=None, help="the packed hApp (default: workdir/zerotrustml.happ)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds B may take to see A's entry")
    ap.add_argument("--poll", type=float, default=0.5, help="seconds between B's reads")
    ap.add_argument(
        "--direct", action="store_true", help="try direct WebRTC between the conductors (default: the local relay)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the network's directory (logs, databases)")
    args = ap.parse_args()
    try:
        return asyncio.run(prove(args))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except NetworkError as e:
        log(f"FAIL: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
