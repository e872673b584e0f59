"""The service's federation: registered nodes, the open round, and how a round closes.

:class:`Federation` holds no state of its own that a restart could lose: node keys, submissions, round
records (with the model, the aggregate and the reputation ledger) and the federation id all live in the
backend, and every acknowledged write is committed there before the service answers. After a SIGKILL the
service reopens the store and goes on with the round it was in.

A round is open until every registered node has submitted, or its deadline passes with at least
``min_submissions`` stored, either only once ``min_nodes`` have registered (a node that never answers is
reported missing, it does not hold the round up), or the operator closes it. Closing decides the round with
the same :func:`~zerotrustml.defence.decision.decide_round` as the simulator, steps the global model
(``theta -= server_lr * aggregate``), and writes the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from zerotrustml.backends import Backend, RoundRecord
from zerotrustml.defence import decision, pipeline
from zerotrustml.defence.config import DefenceConfig
from zerotrustml.exceptions import ParameterError, SubmissionRejected
from zerotrustml.service import protocol
from zerotrustml.validation import ModelSpec, Submission, payload_hash

__all__ = ["Federation", "ServiceConfig", "ServiceError"]

log = logging.getLogger("zerotrustml.service")

F32 = npt.NDArray[np.float32]
NODE_KEYS = "service/nodes"
FEDERATION = "service/federation"


class ServiceError(Exception):
    """A request the service refuses: HTTP ``status``, a stable ``code`` and the request ``field`` at fault."""

    def __init__(self, status: int, code: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.field = status, code, detail, field


@dataclass(frozen=True)
class ServiceConfig:
    """How the service decides rounds (``zerotrustml serve``'s options, one to one)."""

    aggregator: str = "pipeline"
    assumed_f: int | None = None  # None: the pipeline's configured share of the round, 0 for a plain rule
    seed: int = 0
    server_lr: float = 0.1
    rounds: int | None = None
    round_deadline: float = 30.0
    min_submissions: int = 1
    min_nodes: int = 1  # no round closes before this many nodes have registered
    admission_key: bytes | None = None  # None: an open federation
    defence_config: str | None = None
    max_nodes: int = 10_000

    def check(self) -> None:
        def bad(option: str, reason: str) -> ParameterError:
            return ParameterError(f"{option}: {reason}")

        if not (math.isfinite(self.server_lr) and self.server_lr > 0):
            raise bad("server_lr", f"must be a finite number > 0 (got {self.server_lr})")
        if not (math.isfinite(self.round_deadline) and self.round_deadline > 0):
            raise bad("round_deadline", f"must be a finite number of seconds > 0 (got {self.round_deadline})")
        if self.min_nodes < 1:
            raise bad("min_nodes", f"must be at least 1 (got {self.min_nodes})")
        if self.min_submissions < 1:
            raise bad("min_submissions", f"must be at least 1 (got {self.min_submissions})")
        if self.rounds is not None and self.rounds < 1:
            raise bad("rounds", f"must be at least 1 (got {self.rounds})")
        if self.assumed_f is not None and self.assumed_f < 0:
            raise bad("assumed_f", f"must be >= 0 (got {self.assumed_f})")
        if self.admission_key is not None and len(self.admission_key) != 32:
            raise bad("admission_key", f"must be a 32-byte Ed25519 public key (got {len(self.admission_key)} bytes)")
        if self.aggregator not in (*defence_names(), "pipeline"):
            raise bad("aggregator", f"unknown name {self.aggregator!r}; choose one of {', '.join(defence_names())}")


def defence_names() -> tuple[str, ...]:
    from zerotrustml.defence import defence_names as names

    return tuple(names())


@dataclass
class _Open:
    round: int
    opened: float  # monotonic
    deadline: float  # wall clock, for clients


@dataclass
class Federation:
    """The service's state machine over a backend (see the module docstring).

    ``evaluate``, when given, scores each new global model (``{"accuracy": ..., "loss": ...}``) for the round
    record and the live events; it runs in a worker thread. ``read_only`` opens a store to look at (a finished
    run of ``zerotrustml run`` or of a cluster): nothing is written, every write is refused (409 ``read_only``),
    and no round is open.
    """

    backend: Backend
    spec: ModelSpec
    config: ServiceConfig = field(default_factory=ServiceConfig)
    init: F32 | None = None
    evaluate: Callable[[F32], Mapping[str, float]] | None = None
    read_only: bool = False

    def __post_init__(self) -> None:
        self.config.check()
        self.defence_config = DefenceConfig.load(self.config.defence_config)
        self.federation = ""
        self.keys: dict[str, bytes] = {}
        self.theta = np.zeros(self.spec.dims, np.float32) if self.init is None else np.asarray(self.init, np.float32)
        if self.theta.shape != (self.spec.dims,):
            raise ParameterError(f"init: must have {self.spec.dims} values, got shape {self.theta.shape}")
        self.previous: F32 | None = None
        self.ledger: dict[str, Any] | None = None
        self.open: _Open | None = None
        self.submitters: set[str] = set()
        self.finished = False
        self.nonces: dict[tuple[str, int], bytes] = {}
        self._lock = asyncio.Lock()
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._timer: asyncio.Task[None] | None = None
        self.on_event: Callable[[dict[str, Any]], None] | None = None

    # -- life --------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the backend and the federation: the stored one if the backend holds it, a new one otherwise."""
        await self.backend.open()
        if self.read_only:
            await self._start_read_only()
            return
        await self.backend.set_model_spec(self.spec)
        meta = await self.backend.get_meta(FEDERATION)
        if meta is None:
            meta = {"id": os.urandom(16).hex(), "spec": self.spec.to_json()}
            await self.backend.put_meta(FEDERATION, meta)
        self.federation = str(meta["id"])
        self.keys = {k: bytes.fromhex(v) for k, v in ((await self.backend.get_meta(NODE_KEYS)) or {}).items()}
        last = await self.backend.last_completed_round()
        start = 0
        if last is not None:
            rec = await self.backend.get_round_record(last)
            if rec is not None:
                self.theta = np.asarray(rec.model, np.float32)
                self.previous = np.asarray(rec.aggregate, np.float32)
                state = rec.evidence.get("service", {})
                self.ledger = state.get("ledger") if isinstance(state, Mapping) else None
            start = last + 1
        if self.config.rounds is not None and start >= self.config.rounds:
            self.finished = True
        else:
            self._open(start, {sub.node_id for sub in await self.backend.get_round(start)})
        self._timer = asyncio.create_task(self._deadlines())
        log.info("federation %s: round %s open, %d nodes registered", self.federation, start, len(self.keys))

    async def _start_read_only(self) -> None:
        meta = await self.backend.get_meta(FEDERATION)
        self.federation = "read-only" if meta is None else str(meta["id"])
        held = await self.backend.get_meta(NODE_KEYS)
        self.keys = {k: bytes.fromhex(v) for k, v in (held or {}).items()}
        last = await self.backend.last_completed_round()
        rec = None if last is None else await self.backend.get_round_record(last)
        if last is not None and rec is not None:
            self.theta = np.asarray(rec.model, np.float32)
            if not self.keys:  # a simulator's store: its nodes are the round's submitters
                self.keys = {s.node_id: b"" for s in await self.backend.get_round(last)}
        self.open, self.finished = None, True

    def _writable(self) -> None:
        if self.read_only:
            raise ServiceError(409, "read_only", "this service shows a store read-only; it takes no writes", None)

    async def stop(self) -> None:
        """Stop the deadline timer and close the backend (after a round that is closing has closed)."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        async with self._lock:
            await self.backend.close()

    def _open(self, r: int, held: set[str] | None = None) -> None:
        self.submitters = set() if held is None else held  # who submitted for the open round (the store agrees)
        now = time.monotonic()
        self.open = _Open(r, now, time.time() + self.config.round_deadline)
        self._emit({"type": "round_opened", "round": r, "deadline": self.open.deadline})

    async def _deadlines(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            o = self.open
            if o is None or time.monotonic() - o.opened < self.config.round_deadline:
                continue
            try:
                held = len(self.submitters)
                if held >= self.config.min_submissions and len(self.keys) >= self.config.min_nodes:
                    await self.close(o.round, reason="deadline")
            except Exception:  # the timer must outlive one failed close; the next tick tries again
                log.exception("round %d: closing at the deadline failed", o.round)

    # -- events ------------------------------------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(q)

    def _emit(self, event: dict[str, Any]) -> None:
        event = {**event, "time": time.time()}
        for q in list(self._subscribers):
            if q.full():  # a slow reader loses its oldest events, never the service its memory
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(event)
        if self.on_event is not None:
            self.on_event(event)

    # -- nodes -------------------------------------------------------------------------------------------------
    async def register(self, node_id: str, public_key: bytes, signature: bytes, admission: bytes | None) -> bool:
        """Register a node's key; True if new, False if the same key was registered already."""
        self._writable()
        if not protocol.verifies(
            public_key, protocol.register_message(self.federation, node_id, public_key), signature
        ):
            raise ServiceError(
                401, "bad_signature", "the node's signature over its registration does not verify", "signature"
            )
        if self.config.admission_key is not None:
            if admission is None:
                raise ServiceError(
                    403, "not_admitted", "this federation is closed: an admission signature is required", "admission"
                )
            message = protocol.admission_message(self.federation, node_id, public_key)
            if not protocol.verifies(self.config.admission_key, message, admission):
                raise ServiceError(
                    403,
                    "not_admitted",
                    "the admission signature does not verify with the federation's admission key",
                    "admission",
                )
        async with self._lock:
            held = self.keys.get(node_id)
            if held == public_key:
                return False
            if held is not None:
                raise ServiceError(
                    409, "key_conflict", f"node {node_id!r} is registered with another key", "public_key"
                )
            if len(self.keys) >= self.config.max_nodes:
                raise ServiceError(
                    409,
                    "federation_full",
                    f"the federation holds its maximum of {self.config.max_nodes} nodes",
                    "node_id",
                )
            keys = {**self.keys, node_id: public_key}
            await self.backend.put_meta(NODE_KEYS, {k: v.hex() for k, v in keys.items()})
            self.keys = keys
        self._emit({"type": "node_registered", "node_id": node_id})
        return True

    # -- submissions -------------------------------------------------------------------------------------------
    async def submit(
        self,
        *,
        node_id: str,
        round: int,
        model_id: str,
        values: F32,
        example_count: int,
        nonce: bytes,
        signature: bytes,
        proof: Mapping[str, Any] | None,
    ) -> bytes:
        """Check the request's signature and round, store the submission through the backend's rules."""
        self._writable()
        key = self.keys.get(node_id)
        if key is None:
            raise ServiceError(403, "unknown_node", f"node {node_id!r} is not registered", "node_id")
        digest = payload_hash(values)
        message = protocol.submit_message(self.federation, node_id, round, model_id, digest, example_count, nonce)
        if not protocol.verifies(key, message, signature):
            raise ServiceError(
                401, "bad_signature", "the signature does not verify with the node's registered key", "signature"
            )
        async with self._lock:
            o = self.open
            if self.nonces.get((node_id, round)) == nonce:
                raise ServiceError(409, "replayed", "this request was received before", "nonce")
            if o is None or round < o.round:
                raise ServiceError(
                    409,
                    "round_closed",
                    f"round {round} is closed (the run is finished)"
                    if o is None
                    else f"round {round} is closed; round {o.round} is open",
                    "round",
                )
            if round > o.round:
                raise ServiceError(409, "round_not_open", f"round {round} is not open yet; round {o.round} is", "round")
            if node_id in self.submitters:
                raise ServiceError(409, "duplicate", f"node {node_id!r} already submitted for round {round}", "node_id")
            sub = Submission.create(
                node_id, round, model_id, values, example_count=example_count, proof=dict(proof or {})
            )
            try:
                stored = await self.backend.submit(sub)
            except SubmissionRejected as e:
                # The service computes dims, norm and hash from the request's values: those rules are about them.
                where = "values" if e.field in ("dims", "norm", "payload_hash") else e.field
                raise ServiceError(422, e.code or "rejected", str(e), where) from None
            self.nonces[(node_id, round)] = nonce
            self.submitters.add(node_id)
            held = set(self.submitters)
        self._emit({"type": "submission", "round": round, "node_id": node_id, "payload_hash": stored.hex()})
        if len(self.keys) >= self.config.min_nodes and set(self.keys) <= held:
            await self.close(round, reason="complete")
        return stored

    # -- rounds ------------------------------------------------------------------------------------------------
    async def close(self, r: int, *, reason: str) -> RoundRecord:
        """Decide round ``r`` (the open one), step the model, write the record, open the next round."""
        self._writable()
        async with self._lock:
            o = self.open
            if o is None or o.round != r:
                rec = await self.backend.get_round_record(r)
                if rec is not None:
                    return rec
                raise ServiceError(409, "round_not_open", f"round {r} is not the open round", "round")
            t0 = time.perf_counter()
            stored = await self.backend.get_round(r)
            d = self.decide(r, stored)
            theta = (self.theta - self.config.server_lr * d.aggregate).astype(np.float32)
            metrics: dict[str, Any] = {"round": r, "submissions": len(stored), "round_s": time.monotonic() - o.opened}
            if self.evaluate is not None:
                metrics.update(await asyncio.to_thread(self.evaluate, theta))
            missing = sorted(set(self.keys) - {s.node_id for s in stored})
            record = RoundRecord(
                round=r,
                rule=self.config.aggregator,
                contributors=tuple(d.kept),
                flagged=tuple(sorted(d.flagged)),
                aggregate=d.aggregate,
                model=theta,
                evidence={**d.evidence, "missing": missing, "closed_by": reason, "service": {"ledger": d.ledger}},
                metrics=metrics,
            )
            await self.backend.put_round_record(record)
            if self.config.aggregator == "pipeline" and d.ledger is not None:
                await self.backend.put_reputations(r, d.ledger["scores"])
            self.theta, self.previous, self.ledger = theta, d.aggregate, d.ledger
            self.nonces = {k: v for k, v in self.nonces.items() if k[1] > r}
            metrics["decide_ms"] = (time.perf_counter() - t0) * 1e3
            self._emit(
                {
                    "type": "round_closed",
                    "round": r,
                    "reason": reason,
                    "kept": list(d.kept),
                    "flagged": sorted(d.flagged),
                    "missing": missing,
                    "reasons": d.evidence.get("reasons", {}),
                    "reputation": dict((d.ledger or {}).get("scores", {})),
                    "metrics": metrics,
                }
            )
            if self.config.rounds is not None and r + 1 >= self.config.rounds:
                self.open, self.finished = None, True
                self._emit({"type": "finished", "round": r})
            else:
                self._open(r + 1)
            return record

    def _assumed_f(self, n: int) -> int:
        """``--assumed-f`` when given; else the pipeline's configured share of the round (0 for a plain rule)."""
        if self.config.assumed_f is not None:
            return self.config.assumed_f
        return pipeline.assumed_f(self.defence_config, n) if self.config.aggregator == "pipeline" else 0

    def decide(self, r: int, stored: list[Submission]) -> decision.RoundDecision:
        """The decision over ``stored`` (node-id order, as the backend returns it), given the state so far."""
        return decision.decide_round(
            r,
            stored,
            {},
            aggregator=self.config.aggregator,
            f=self._assumed_f(len(stored)),
            seed=self.config.seed,
            dims=self.spec.dims,
            defence_config=self.defence_config,
            keys=self.keys,
            ledger=self.ledger,
            previous=self.previous,
            votes=decision.no_votes,
            federation_size=max(len(self.keys), 1),
            committee=False,  # the service's nodes cast no votes: no committee, rather than silent members
        )
