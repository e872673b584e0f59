"""Live hot swap: move a running system from one backend to another while writers keep submitting.

:class:`HotSwapBackend` is a :class:`Backend` that forwards every call to
its *active* backend (the embedded store, say). :meth:`HotSwapBackend.switch_to`
moves it to a target (the Holochain backend on real conductors, or the mock)
without stopping anyone:

1. **Dual write.** From the moment the swap starts, every new submission
   goes to the active backend (which stays authoritative: its answer is the
   caller's answer) and then to the target before the call returns.
2. **Copy by content hash.** Every submission the active backend holds is
   submitted to the target through its own node's agent, unless the target
   already holds the same node, round and payload hash (a write that raced
   the copy), so nothing is written twice. Round records, reputation history
   and metadata stay where they are when the target adopts the running
   embedded store as its local store (what the simulator does); otherwise
   they go to the target's local store by export/import (verified by hash
   there).
3. **Verify.** Every submission is read back through *another* agent than
   the one that wrote it and compared field by field, values bit for bit.
4. **Switch.** Reads and writes go to the target; the old backend is closed.

If any step fails (a conductor down, a record that does not read back the
same within the timeout), the swap rolls back: dual writes stop, the
target is closed, and the system keeps running on the old backend. The
swap's :class:`SwapReport` says what moved, how fast, and the longest pause
a writer saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import nacl.signing
import numpy as np

from zerotrustml.backends.base import Backend, RoundRecord, StoreError
from zerotrustml.backends.holochain import HolochainBackend
from zerotrustml.exceptions import SubmissionRejected
from zerotrustml.holochain.network import DEFAULT_COMMITTEE_SEED
from zerotrustml.validation import ModelSpec, Submission

__all__ = ["HotSwapBackend", "SwapError", "SwapReport"]


class SwapError(StoreError):
    """A swap failed and was rolled back; the system runs on the backend it ran on before."""


@dataclass
class SwapReport:
    """What a swap did."""

    ok: bool = False
    submissions_copied: int = 0
    submissions_already_there: int = 0
    submissions_verified: int = 0
    local_records: int = 0
    dual_writes: int = 0  # submissions written to both backends while the swap ran
    copy_s: float = 0.0
    verify_s: float = 0.0
    total_s: float = 0.0
    longest_writer_pause_ms: float = 0.0
    error: str | None = None
    rounds: list[int] = field(default_factory=list)

    @property
    def records_per_s(self) -> float:
        """Submissions that ended on the target, verified, per second of the whole swap."""
        return self.submissions_verified / self.total_s if self.total_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "submissions_copied": self.submissions_copied,
            "submissions_already_there": self.submissions_already_there,
            "submissions_verified": self.submissions_verified,
            "local_records": self.local_records,
            "dual_writes": self.dual_writes,
            "copy_s": self.copy_s,
            "verify_s": self.verify_s,
            "total_s": self.total_s,
            "records_per_s": self.records_per_s,
            "longest_writer_pause_ms": self.longest_writer_pause_ms,
            "rounds": self.rounds,
            "error": self.error,
        }


def _same(a: Submission, b: Submission) -> bool:
    return (
        a.node_id == b.node_id
        and a.round == b.round
        and a.model_id == b.model_id
        and a.example_count == b.example_count
        and bytes(a.payload_hash) == bytes(b.payload_hash)
        and np.asarray(a.values, dtype=np.float32).tobytes() == np.asarray(b.values, dtype=np.float32).tobytes()
        and dict(a.proof) == dict(b.proof)
    )


class HotSwapBackend(Backend):
    """A backend that can move, while running, to another (see the module docs).

    Parameters
    ----------
    active
        The backend to start on (opened and closed with this object).
    """

    def __init__(self, active: Backend) -> None:
        self.active = active
        self._target: HolochainBackend | None = None
        self._dual: list[asyncio.Task[Any]] = []
        self._dual_errors: list[str] = []
        self._pauses: list[float] = []
        self._swapping = False
        self._mirrored = 0
        self._lock = asyncio.Lock()
        self.reports: list[SwapReport] = []

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.active.name

    # -- the swap -----------------------------------------------------------------------------------------------
    async def switch_to(
        self,
        target: HolochainBackend,
        keys: Mapping[str, nacl.signing.SigningKey],
        *,
        verify_timeout: float = 120.0,
        committee_seed: str = DEFAULT_COMMITTEE_SEED,
        committee_rate: float = 1.0,
        authority: nacl.signing.SigningKey | None = None,
    ) -> SwapReport:
        """Move to ``target`` (not yet opened); ``keys`` are the nodes' signing keys (each gets an agent).

        ``committee_seed``, ``committee_rate`` and ``authority`` go to :meth:`HolochainBackend.add_nodes`.

        Returns the report of a successful swap.

        Raises
        ------
        SwapError
            The swap failed; it was rolled back and this backend still runs on the old one.
        """
        report = SwapReport()
        t0 = time.perf_counter()
        self._swapping, self._pauses, self._mirrored = True, [], 0
        try:
            spec = await self.active.get_model_spec()
            if spec is None:
                raise SwapError("hot swap: the active backend has no model spec yet")
            shared = target.local is self.active  # the running store stays the target's local store
            if not shared:
                await target.open()
            await target.set_model_spec(spec)
            await target.add_nodes(
                keys, committee_seed=committee_seed, committee_rate=committee_rate, history=True, authority=authority
            )
            # 1. From here on, every new submission also goes to the target.
            self._target = target
            # 2. Copy what the active backend holds.
            t1 = time.perf_counter()
            moved: list[Submission] = []
            rounds = await self._rounds_with_submissions(spec)
            report.rounds = rounds
            for r in rounds:
                for sub in await self.active.get_round(r):
                    if await self._copy(target, sub):
                        report.submissions_copied += 1
                    else:
                        report.submissions_already_there += 1
                    moved.append(sub)
            if not shared:
                dump = await self.active.export()
                if isinstance(self.active, HolochainBackend):
                    dump = await self.active.local.export()
                report.local_records = await target.local.import_(_local_part(dump))
            report.copy_s = time.perf_counter() - t1
            # Writes that raced the copy are in flight on the target: let them land before verifying.
            await self._drain()
            if self._dual_errors:
                raise SwapError(f"hot swap: a dual write failed: {self._dual_errors[0]}")
            # 3. Verify every submission through another agent than its writer: first what was copied, with
            #    writers running; then, holding writers for a moment, whatever they wrote since.
            t2 = time.perf_counter()
            await self._verify(target, moved, verify_timeout)
            verified = {(int(s.round), s.node_id) for s in moved}
            async with self._lock:
                await self._drain()
                if self._dual_errors:
                    raise SwapError(f"hot swap: a dual write failed: {self._dual_errors[0]}")
                late: list[Submission] = []
                for r in await self._rounds_with_submissions(spec):
                    late.extend(s for s in await self.active.get_round(r) if (int(s.round), s.node_id) not in verified)
                await self._verify(target, late, verify_timeout)
                report.dual_writes = self._mirrored
                report.submissions_verified = len(verified) + len(late)
                report.verify_s = time.perf_counter() - t2
                # 4. Switch.
                old, self.active, self._target = self.active, target, None
        except BaseException as e:
            await self._rollback(target)
            report.error = f"{type(e).__name__}: {e}"
            report.total_s = time.perf_counter() - t0
            self.reports.append(report)
            self._swapping = False
            if isinstance(e, SwapError) or not isinstance(e, Exception):
                raise  # a SwapError as it is; a cancellation or an interrupt after the rollback
            raise SwapError(f"hot swap rolled back: {report.error}") from e
        self._swapping = False
        if not shared:
            # The switch is done: a failure to close what was left behind does not undo it.
            with contextlib.suppress(Exception):
                await old.close()
        report.ok = True
        report.total_s = time.perf_counter() - t0
        report.longest_writer_pause_ms = max(self._pauses, default=0.0) * 1e3
        self.reports.append(report)
        return report

    async def _rounds_with_submissions(self, spec: ModelSpec) -> list[int]:
        """Rounds that hold submissions: every round up to the last completed one, then on until an empty round.

        Rounds run in order, so the first empty round after the last completed one ends the list.
        """
        last = await self.active.last_completed_round()
        rounds = []
        r = 0
        while spec.max_round is None or r <= spec.max_round:
            if await self.active.get_round(r):
                rounds.append(r)
            elif last is None or r > last:
                break
            r += 1
        return rounds

    async def _copy(self, target: HolochainBackend, sub: Submission) -> bool:
        """Submit ``sub`` to ``target`` unless it holds it already; True when written."""
        try:
            await target.submit(sub)
        except SubmissionRejected as e:
            if e.code != "duplicate":
                raise SwapError(f"hot swap: the target refuses round {sub.round} of {sub.node_id}: {e}") from None
            # The writer's own agent holds what it wrote: read it there, not where gossip may lag.
            there = next(
                (x for x in await target.view(sub.node_id).get_round(sub.round) if x.node_id == sub.node_id), None
            )
            if there is None or bytes(there.payload_hash) != bytes(sub.payload_hash):
                raise SwapError(
                    f"hot swap: the target holds another submission for round {sub.round} of {sub.node_id}"
                ) from None
            return False
        return True

    async def _verify(self, target: HolochainBackend, subs: Sequence[Submission], timeout: float) -> None:
        nodes = target.node_ids
        by_round: dict[int, list[Submission]] = {}
        for s in subs:
            by_round.setdefault(int(s.round), []).append(s)
        for r, want in sorted(by_round.items()):
            # Read through an agent that wrote none of them when there is one, else through the next agent.
            writers = {s.node_id for s in want}
            reader = next((n for n in nodes if n not in writers), nodes[(nodes.index(min(writers)) + 1) % len(nodes)])
            got, missing = await target.view(reader).await_round(r, writers, timeout)
            if missing:
                raise SwapError(f"hot swap: round {r}: {', '.join(missing)} not readable through {reader} in time")
            have = {s.node_id: s for s in got}
            for s in want:
                if not _same(s, have[s.node_id]):
                    raise SwapError(f"hot swap: round {r} of {s.node_id} reads back different through {reader}")

    async def _drain(self) -> None:
        while self._dual:
            pending, self._dual = self._dual, []
            await asyncio.gather(*pending, return_exceptions=True)

    async def _rollback(self, target: HolochainBackend) -> None:
        self._target = None
        with contextlib.suppress(Exception):
            await self._drain()
        self._dual_errors.clear()
        with contextlib.suppress(Exception):
            if target.local is self.active:
                # Stop the network only: the local store is the one the system keeps running on.
                if target.network is not None:
                    await target.network.stop()
                    target.network = None
            else:
                await target.close()

    # -- the Backend interface, forwarded ------------------------------------------------------------------------
    async def open(self) -> None:
        await self.active.open()

    async def close(self) -> None:
        await self._drain()
        await self.active.close()

    async def set_model_spec(self, spec: ModelSpec) -> None:
        await self.active.set_model_spec(spec)

    async def get_model_spec(self) -> ModelSpec | None:
        return await self.active.get_model_spec()

    async def submit(self, sub: Submission) -> bytes:
        t0, timed = time.perf_counter(), self._swapping
        async with self._lock:
            out = await self.active.submit(sub)
            target = self._target
            if target is not None:
                # Written to the target before the writer goes on: a writer feels the target's pace (no backlog
                # grows while the swap copies), and the pause it sees is the price of the swap, measured.
                self._mirrored += 1
                await self._mirror(target, sub)
        if timed:
            self._pauses.append(time.perf_counter() - t0)
        return out

    @property
    def swapping(self) -> bool:
        """Whether a swap is under way."""
        return self._swapping

    async def _mirror(self, target: HolochainBackend, sub: Submission) -> None:
        try:
            await self._copy(target, sub)
        except Exception as e:  # reported by the swap, which then rolls back
            self._dual_errors.append(f"round {sub.round} of {sub.node_id}: {e}")

    async def get_submission(self, round: int, node_id: str) -> Submission | None:
        return await self.active.get_submission(round, node_id)

    async def get_round(self, round: int) -> list[Submission]:
        return await self.active.get_round(round)

    async def put_round_record(self, record: RoundRecord) -> None:
        await self.active.put_round_record(record)

    async def get_round_record(self, round: int) -> RoundRecord | None:
        return await self.active.get_round_record(round)

    async def last_completed_round(self) -> int | None:
        return await self.active.last_completed_round()

    async def get_reputation(self, node_id: str) -> float | None:
        return await self.active.get_reputation(node_id)

    async def get_reputations(self) -> dict[str, float]:
        return await self.active.get_reputations()

    async def put_reputations(self, round: int, scores: Mapping[str, float]) -> None:
        await self.active.put_reputations(round, scores)

    async def put_meta(self, key: str, value: Mapping[str, Any]) -> None:
        await self.active.put_meta(key, value)

    async def get_meta(self, key: str) -> dict[str, Any] | None:
        return await self.active.get_meta(key)

    async def export(self) -> dict[str, Any]:
        return await self.active.export()

    async def import_(self, dump: Mapping[str, Any]) -> int:
        return await self.active.import_(dump)


def _local_part(dump: Mapping[str, Any]) -> dict[str, Any]:
    """An export without its submissions: those go to the DHT, the rest to the target's local store.

    Only the payloads the round records name (aggregates, models) stay.
    """
    out = dict(dump)
    out["submissions"] = []
    rounds = out.get("rounds") or []
    keep = {r.get(k) for r in rounds if isinstance(r, Mapping) for k in ("aggregate_hash", "model_hash")}
    payloads = out.get("payloads")
    if isinstance(payloads, Mapping):
        out["payloads"] = {k: v for k, v in payloads.items() if k in keep}
    return out
