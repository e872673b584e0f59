"""The storage interface every backend implements, and its errors.

A backend stores what a run produces: the model spec, the submissions of
each round (checked with the shared rules of :mod:`zerotrustml.validation`),
one immutable :class:`RoundRecord` per round, reputation scores per round,
and run metadata for resume. The embedded SQLite store implements it today;
the Holochain backend implements the same calls against a conductor, so a
run can move from one to the other through :meth:`Backend.export` and
:meth:`Backend.import_`.

Every method is a coroutine. Input errors raise the typed errors of
:mod:`zerotrustml.exceptions` (``SubmissionRejected`` for a broken rule,
``ParameterError`` / ``ShapeError`` / ``NonFiniteError`` for other bad
input, ``TypeError`` for a wrong dtype); problems of the store itself raise
:class:`StoreError` or one of its subclasses.
"""

from __future__ import annotations

import abc
import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt


# The errors come before the imports from zerotrustml: exceptions.py
# re-exports them, so whichever of the two modules Python imports first, the
# other finds these names already defined.
class StoreError(Exception):
    """The store cannot do what was asked; the message names the store and the reason."""


class StoreLockedError(StoreError):
    """Another run (process or open store object) holds the store."""


class StoreCorruptError(StoreError):
    """The store's file or one of its records is not what this version wrote."""


class SubmitCancelled(asyncio.CancelledError):
    """A submit was cancelled while its write was under way; the write ran to its end, and this says how.

    It is a ``CancelledError``, so cancellation propagates as usual. ``committed`` tells whether the
    submission is stored (``payload_hash`` is then its hash); when it is not, ``reason`` says why (the
    rule that refused it, or the store error).
    """

    def __init__(self, round: int, node_id: str, committed: bool, payload_hash: bytes | None, reason: str = ""):
        what = "committed" if committed else f"not committed ({reason})"
        super().__init__(f"submit of round {round} node {node_id!r} cancelled; the write {what}")
        self.round, self.node_id, self.committed = round, node_id, committed
        self.payload_hash, self.reason = payload_hash, reason


from zerotrustml.exceptions import NonFiniteError, ParameterError, ShapeError  # noqa: E402
from zerotrustml.validation import ModelSpec, Submission, payload_hash  # noqa: E402

__all__ = [
    "Backend",
    "RoundRecord",
    "StoreError",
    "StoreLockedError",
    "StoreCorruptError",
    "SubmitCancelled",
    "check_scores",
]


def _float32_vector(value: Any, name: str) -> npt.NDArray[np.float32]:
    arr = np.asarray(value)
    if arr.dtype != np.float32:
        raise TypeError(f"{name}: must be float32, got {arr.dtype}")
    if arr.ndim != 1:
        raise ShapeError(f"{name}: must be a flat vector, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ShapeError(f"{name}: must not be empty")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise NonFiniteError(f"{name}: non-finite value {arr[bad[0]]} at index {int(bad[0])}")
    return arr


def _node_ids(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name}: must be a sequence of node ids, got {type(value).__name__}")
    ids = tuple(value)
    for node in ids:
        if not isinstance(node, str) or not node:
            raise ParameterError(f"{name}: node ids are non-empty strings, got {node!r}")
    if len(set(ids)) != len(ids):
        raise ParameterError(f"{name}: node ids must be unique")
    return ids


# Rounds and counts are stored as signed 64-bit integers (SQLite's INTEGER).
MAX_INT = 2**63 - 1


def _round_number(value: Any, name: str = "round") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_INT:
        raise ParameterError(f"{name}: must be an integer in [0, 2**63 - 1], got {value!r}")
    return int(value)


def _node_id(value: Any, name: str = "node_id") -> str:
    if not isinstance(value, str) or not value:
        raise ParameterError(f"{name}: must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True, eq=False)
class RoundRecord:
    """The outcome of one round, stored once and never changed.

    Parameters
    ----------
    round
        The round number (non-negative).
    rule
        Name of the aggregator / defence that produced the aggregate.
    contributors
        Node ids whose updates were aggregated (kept).
    flagged
        Node ids the pipeline excluded or down-weighted.
    aggregate
        The round's aggregated update, float32 1-D, finite.
    model
        The global model parameters after the round, float32 1-D, finite;
        stored so that a run can resume from the last completed round.
    evidence
        JSON-able detail behind the verdicts: per-node scores, votes.
    metrics
        JSON-able measurements: accuracy, loss, timings.

    Notes
    -----
    Equality compares every field, arrays by value. ``evidence`` and
    ``metrics`` come back from a store JSON-decoded (tuples as lists,
    numpy scalars as Python numbers).
    """

    round: int
    rule: str
    contributors: tuple[str, ...]
    flagged: tuple[str, ...]
    aggregate: npt.NDArray[np.float32]
    model: npt.NDArray[np.float32]
    evidence: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked at construction so that a bad record fails where it is
        # built, not later inside a store's transaction.
        _round_number(self.round)
        if not isinstance(self.rule, str) or not self.rule:
            raise ParameterError(f"rule: must be a non-empty string, got {self.rule!r}")
        object.__setattr__(self, "contributors", _node_ids(self.contributors, "contributors"))
        object.__setattr__(self, "flagged", _node_ids(self.flagged, "flagged"))
        object.__setattr__(self, "aggregate", _float32_vector(self.aggregate, "aggregate"))
        object.__setattr__(self, "model", _float32_vector(self.model, "model"))
        for name in ("evidence", "metrics"):
            if not isinstance(getattr(self, name), Mapping):
                raise TypeError(f"{name}: must be a mapping, got {type(getattr(self, name)).__name__}")

    @property
    def result_hash(self) -> bytes:
        """SHA-256 of the aggregate (the payload hash of :mod:`zerotrustml.validation`)."""
        return payload_hash(self.aggregate)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RoundRecord):
            return NotImplemented
        return (
            self.round == other.round
            and self.rule == other.rule
            and self.contributors == other.contributors
            and self.flagged == other.flagged
            and self.aggregate.tobytes() == other.aggregate.tobytes()
            and self.model.tobytes() == other.model.tobytes()
            and dict(self.evidence) == dict(other.evidence)
            and dict(self.metrics) == dict(other.metrics)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-by-content arrays: not hashable


def check_scores(scores: Mapping[str, float]) -> dict[str, float]:
    """Check reputation scores: node ids non-empty strings, values finite in [0, 1].

    Raises
    ------
    ParameterError
        Naming the first bad node and its value.
    """
    if not isinstance(scores, Mapping):
        raise TypeError(f"scores: must be a mapping of node id to score, got {type(scores).__name__}")
    out: dict[str, float] = {}
    for node, score in scores.items():
        if not isinstance(node, str) or not node:
            raise ParameterError(f"scores: node ids are non-empty strings, got {node!r}")
        if isinstance(score, bool) or not isinstance(score, (int, float, np.integer, np.floating)):
            raise ParameterError(f"scores[{node!r}]: must be a number, got {score!r}")
        value = float(score)
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ParameterError(f"scores[{node!r}]: must be finite and in [0, 1], got {value!r}")
        out[node] = value
    return out


class Backend(abc.ABC):
    """One async storage interface, implemented by every backend.

    Use it as an async context manager (``async with backend: ...``), or
    call :meth:`open` and :meth:`close`.
    """

    name: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Open the store (idempotent); take whatever exclusive access it needs."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the store (idempotent). Everything written so far is durable."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def set_model_spec(self, spec: ModelSpec) -> None:
        """Store the run's model spec; once stored, a later call must pass an equal spec.

        Raises
        ------
        SubmissionRejected
            The spec is unusable (code ``bad_spec``).
        StoreError
            The store already holds a different spec.
        """

    @abc.abstractmethod
    async def get_model_spec(self) -> ModelSpec | None:
        """The stored model spec, or ``None`` before :meth:`set_model_spec`."""

    @abc.abstractmethod
    async def submit(self, sub: Submission) -> bytes:
        """Validate a submission against the stored spec and store it.

        Returns
        -------
        bytes
            The payload hash (32 bytes).

        Raises
        ------
        SubmissionRejected
            A rule is broken, including a second submission from the same
            node in the same round (code ``duplicate``). Nothing is written.
        StoreError
            No model spec is stored yet.
        """

    @abc.abstractmethod
    async def get_submission(self, round: int, node_id: str) -> Submission | None:
        """One node's submission for a round, or ``None``."""

    @abc.abstractmethod
    async def get_round(self, round: int) -> list[Submission]:
        """All submissions of a round, ordered by node id (empty for an unknown round)."""

    @abc.abstractmethod
    async def put_round_record(self, record: RoundRecord) -> None:
        """Store a round's record; records are immutable, so a second one for a round raises ``StoreError``."""

    @abc.abstractmethod
    async def get_round_record(self, round: int) -> RoundRecord | None:
        """The record of a round, or ``None``."""

    @abc.abstractmethod
    async def last_completed_round(self) -> int | None:
        """The highest round with a record (where a resumed run continues after), or ``None``."""

    @abc.abstractmethod
    async def get_reputation(self, node_id: str) -> float | None:
        """A node's latest reputation score, or ``None`` if it has none."""

    @abc.abstractmethod
    async def get_reputations(self) -> dict[str, float]:
        """The latest reputation score of every node."""

    @abc.abstractmethod
    async def put_reputations(self, round: int, scores: Mapping[str, float]) -> None:
        """Record the scores of a round; history is kept per round.

        Raises
        ------
        ParameterError
            A score is not finite or outside [0, 1]; the message names the node.
        """

    @abc.abstractmethod
    async def put_meta(self, key: str, value: Mapping[str, Any]) -> None:
        """Store a JSON-able mapping under a key (run configuration, for resume); replaces an earlier value."""

    @abc.abstractmethod
    async def get_meta(self, key: str) -> dict[str, Any] | None:
        """The mapping stored under a key, or ``None``."""

    @abc.abstractmethod
    async def export(self) -> dict[str, Any]:
        """Everything in the store as one JSON-serialisable mapping (payloads base64)."""

    @abc.abstractmethod
    async def import_(self, dump: Mapping[str, Any]) -> int:
        """Load an export into an empty or compatible store, in one transaction.

        Every payload is verified by hash and every submission by the rules
        before anything is written. Rows the store already holds unchanged
        are skipped; a row that differs is a conflict.

        Returns
        -------
        int
            The number of records written.

        Raises
        ------
        StoreError
            A payload does not match its hash, a submission breaks a rule,
            the dump is malformed or conflicts with the store. Nothing is
            written.
        """
