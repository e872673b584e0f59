"""Live hot swap from the embedded store to the Holochain backend (here on the mock conductor; the same
swap on real conductors is in tests/test_holochain_conductors.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nacl.signing
import numpy as np
import pytest
from dht_cases import SMALL_RUN, assert_same_run, run_on

from zerotrustml.backends.embedded import EmbeddedStore
from zerotrustml.backends.holochain import HolochainBackend, HolochainView
from zerotrustml.backends.hotswap import HotSwapBackend, SwapError
from zerotrustml.fl.simulation import RunConfig, Simulation
from zerotrustml.validation import ModelSpec, Submission


def _swap_run(tmp: Path, at: int, **kw: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    config = RunConfig(**{**SMALL_RUN, "backend": "embedded"})
    summary = Simulation(config, tmp, swap_at_round=at, swap_to="mock", swap_options=kw).run()
    return [json.loads(x) for x in (tmp / "run.jsonl").read_text().splitlines()], summary


def test_a_run_swapped_mid_way_is_bit_identical_to_one_that_never_moved(tmp_path: Path) -> None:
    plain = run_on("embedded", tmp_path / "e")
    rows, summary = _swap_run(tmp_path / "s", at=1, round_timeout=5.0)
    swap = summary["swap"]
    assert swap["ok"] and swap["error"] is None
    # Round 0's submissions were copied; round 1's arrived while the swap ran, by dual write or by the copy.
    assert swap["submissions_copied"] + swap["submissions_already_there"] >= SMALL_RUN["nodes"]
    assert swap["submissions_verified"] == 2 * SMALL_RUN["nodes"]
    # The running store became the target's local store: records, reputation and metadata did not move.
    assert swap["local_records"] == 0 and swap["records_per_s"] > 0
    # Rounds 1 and 2 were decided by every honest agent on the DHT path.
    assert "agreement_ms" not in rows[0] and "agreement_ms" in rows[1] and "agreement_ms" in rows[2]
    assert_same_run(tmp_path / "e", plain, tmp_path / "s", rows)


def test_a_failed_verification_rolls_back_and_the_run_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def never_visible(self: HolochainView, round: int, expected: Any, timeout: Any = None) -> Any:
        return [], sorted(expected)

    monkeypatch.setattr(HolochainView, "await_round", never_visible)
    plain = run_on("embedded", tmp_path / "e")
    rows, summary = _swap_run(tmp_path / "s", at=1, round_timeout=1.0)
    assert summary["swap"]["ok"] is False and "not readable" in summary["swap"]["error"]
    assert all("agreement_ms" not in r for r in rows)  # stayed on the embedded store
    assert_same_run(tmp_path / "e", plain, tmp_path / "s", rows)


SPEC = ModelSpec("swap-v1", dims=8, max_norm=100.0, max_round=99)


def test_writes_during_the_swap_are_neither_lost_nor_duplicated(tmp_path: Path) -> None:
    keys = {f"w{i}": nacl.signing.SigningKey(bytes([i + 1]) * 32) for i in range(4)}
    rng = np.random.default_rng(0)

    def sub(node: str, r: int) -> Submission:
        return Submission.create(node, r, SPEC.model_id, rng.normal(size=8).astype(np.float32), 3)

    async def go() -> None:
        swap = HotSwapBackend(EmbeddedStore(tmp_path / "e"))
        async with swap:
            await swap.set_model_spec(SPEC)
            for r in range(3):
                for n in keys:
                    await swap.submit(sub(n, r))
            target = HolochainBackend(tmp_path / "t", mode="mock", round_timeout=5.0, poll=0.01)
            written: list[Submission] = []

            async def writer() -> None:  # keeps submitting rounds 3.. while the swap runs
                r = 3
                while swap.swapping or r == 3:
                    for n in keys:
                        s = sub(n, r)
                        await swap.submit(s)
                        written.append(s)
                    r += 1
                    await asyncio.sleep(0)

            task = asyncio.create_task(writer())
            report = await swap.switch_to(target, keys)
            await task
            assert report.ok and report.dual_writes > 0
            assert swap.active is target
            # Everything written before, during and after the switch is on the target, once.
            top = max(s.round for s in written)
            for r in range(top + 1):
                held = await target.view("w3").get_round(r)
                assert sorted(s.node_id for s in held) == sorted(keys), r
            # Verified: all that was written before the switch (what came after went to the target alone).
            assert 4 * 3 + report.dual_writes <= report.submissions_verified <= 4 * (top + 1)
            assert report.submissions_copied + report.submissions_already_there >= 4 * 3

    asyncio.run(go())


def test_swap_refuses_a_target_that_holds_something_else(tmp_path: Path) -> None:
    keys = {"a": nacl.signing.SigningKey(b"\x01" * 32), "b": nacl.signing.SigningKey(b"\x02" * 32)}

    async def go() -> None:
        swap = HotSwapBackend(EmbeddedStore(tmp_path / "e"))
        async with swap:
            await swap.set_model_spec(SPEC)
            await swap.submit(Submission.create("a", 0, SPEC.model_id, np.ones(8, np.float32), 1))
            target = HolochainBackend(tmp_path / "t", mode="mock", round_timeout=2.0, poll=0.01)
            real_add = HolochainBackend.add_nodes

            async def add_and_conflict(self: HolochainBackend, k: Any, **kw: Any) -> None:
                await real_add(self, k, **kw)
                await self.submit(Submission.create("a", 0, SPEC.model_id, np.zeros(8, np.float32), 1))

            target.add_nodes = add_and_conflict.__get__(target)  # type: ignore[method-assign]
            with pytest.raises(SwapError, match="holds another submission"):
                await swap.switch_to(target, keys)
            assert isinstance(swap.active, EmbeddedStore)  # rolled back: still on the old store
            await swap.submit(Submission.create("b", 0, SPEC.model_id, np.ones(8, np.float32), 1))
            assert len(await swap.get_round(0)) == 2

    asyncio.run(go())
