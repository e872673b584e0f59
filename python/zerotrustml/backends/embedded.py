"""The embedded store: one SQLite file in a data directory (the default backend).

Layout of ``<data_dir>``:

``zerotrustml.sqlite``
    The database (WAL mode, so also ``-wal`` / ``-shm`` files while open).
``zerotrustml.lock``
    Holds an exclusive ``flock`` and the owner's pid while a store is open:
    one writer process at a time, and the kernel drops the lock when that
    process dies, so a crashed run never leaves the store locked.

Schema (version 1, in ``PRAGMA user_version``; ``PRAGMA application_id``
marks the file as ours so a foreign database is never mistaken for an
empty store)::

    model_spec  (id = 1, spec JSON)                       -- at most one row
    payloads    (hash BLOB PK, data BLOB)                 -- float32 LE bytes, content-addressed
    submissions (round, node_id, model_id, payload_hash -> payloads, example_count, norm,
                 proof JSON, created_at, PK (round, node_id))
    rounds      (round PK, rule, record JSON, aggregate_hash -> payloads, model_hash -> payloads)
    reputation  (node_id, round, score, PK (node_id, round))
    meta        (key PK, value JSON)

Every write is a single transaction, and every rule check happens before
it, so a rejected call changes nothing. Payloads are verified against their
hash whenever they are read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import dataclasses
import errno
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from zerotrustml.backends.base import (
    Backend,
    RoundRecord,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    SubmitCancelled,
    _node_id,
    _round_number,
    check_scores,
)
from zerotrustml.exceptions import ParameterError, ShapeError, SubmissionRejected
from zerotrustml.validation import ModelSpec, Submission, check_unique, payload_hash, validate

__all__ = ["EmbeddedStore", "DB_NAME", "LOCK_NAME", "SCHEMA_VERSION", "EXPORT_FORMAT", "EXPORT_VERSION"]

DB_NAME = "zerotrustml.sqlite"
LOCK_NAME = "zerotrustml.lock"
SCHEMA_VERSION = 1
# "ZTML": SQLite's own slot for saying which application a file belongs to.
APPLICATION_ID = 0x5A544D4C
EXPORT_FORMAT = "zerotrustml-export"
EXPORT_VERSION = 1

_TABLES = ("model_spec", "payloads", "submissions", "rounds", "reputation", "meta")

_SCHEMA = f"""
BEGIN;
CREATE TABLE model_spec (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    spec TEXT NOT NULL
);
CREATE TABLE payloads (
    hash BLOB PRIMARY KEY NOT NULL CHECK (length(hash) = 32),
    data BLOB NOT NULL
);
CREATE TABLE submissions (
    round INTEGER NOT NULL CHECK (round >= 0),
    node_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    payload_hash BLOB NOT NULL REFERENCES payloads (hash),
    example_count INTEGER NOT NULL,
    norm REAL NOT NULL,
    proof TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (round, node_id)
);
CREATE TABLE rounds (
    round INTEGER PRIMARY KEY CHECK (round >= 0),
    rule TEXT NOT NULL,
    record TEXT NOT NULL,
    aggregate_hash BLOB NOT NULL REFERENCES payloads (hash),
    model_hash BLOB NOT NULL REFERENCES payloads (hash)
);
CREATE TABLE reputation (
    node_id TEXT NOT NULL,
    round INTEGER NOT NULL CHECK (round >= 0),
    score REAL NOT NULL CHECK (score >= 0.0 AND score <= 1.0),
    PRIMARY KEY (node_id, round)
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""

_P = ParamSpec("_P")
_T = TypeVar("_T")


# ---------------------------------------------------------------- encoding


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays turn up in evidence and metrics all the time;
    # storing them as plain numbers beats making every caller convert.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _dumps(value: Any, what: str) -> str:
    """Canonical JSON (sorted keys, strict: no NaN/Inf, which other readers of an export reject)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{what}: must be a mapping, got {type(value).__name__}")
    try:
        return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"{what}: not JSON-serialisable ({err})") from None


def _to_bytes(values: npt.NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(values, dtype="<f4").tobytes()


def _from_bytes(data: bytes) -> npt.NDArray[np.float32]:
    # Read-only view of the stored bytes: a Submission is frozen, so its payload should be too.
    return np.frombuffer(data, dtype="<f4").astype(np.float32, copy=False)


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction; any exception rolls it back, so a failed call changes nothing."""
    # IMMEDIATE takes the write lock up front, so the checks made inside
    # (duplicates, conflicts) still hold when the rows are inserted.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# ---------------------------------------------------------------- dump parsing


class _DumpError(Exception):
    """A malformed dump; the store turns it into a StoreError naming its path."""


def _get(obj: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise _DumpError(f"{where}: missing {key!r}")
    value = obj[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise _DumpError(f"{where}.{key}: expected {types}, got {value!r}")
    if not isinstance(value, types):
        raise _DumpError(f"{where}.{key}: expected {types}, got {type(value).__name__}")
    return value


def _hash_from_hex(text: Any, where: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except (TypeError, ValueError):
        raise _DumpError(f"{where}: not a hex hash: {text!r}") from None
    if len(raw) != 32:
        raise _DumpError(f"{where}: a hash is 32 bytes, got {len(raw)}")
    return raw


def _list(dump: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = _get(dump, key, list, "dump")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise _DumpError(f"{key}[{i}]: expected an object, got {type(item).__name__}")
    return list(items)


@dataclass
class _SubmissionRow:
    sub: Submission
    proof: str
    created_at: str


@dataclass
class _RoundRow:
    record: RoundRecord
    body: str


@dataclass
class _Dump:
    spec: ModelSpec | None
    payloads: dict[bytes, bytes]
    submissions: list[_SubmissionRow]
    rounds: list[_RoundRow]
    reputation: list[tuple[str, int, float]]
    meta: dict[str, str]


def _record_body(record: RoundRecord) -> str:
    # Each part is encoded on its own first so that an error names the field.
    evidence = json.loads(_dumps(record.evidence, "evidence"))
    metrics = json.loads(_dumps(record.metrics, "metrics"))
    body = {
        "contributors": list(record.contributors),
        "flagged": list(record.flagged),
        "evidence": evidence,
        "metrics": metrics,
    }
    return _dumps(body, "record")


def _parse_dump(dump: Any) -> _Dump:
    """Check a dump's structure and every payload's hash; rules are applied later, against the store's spec."""
    if not isinstance(dump, Mapping):
        raise _DumpError(f"expected a mapping, got {type(dump).__name__}")
    if dump.get("format") != EXPORT_FORMAT:
        raise _DumpError(f"format: expected {EXPORT_FORMAT!r}, got {dump.get('format')!r}")
    if dump.get("version") != EXPORT_VERSION:
        raise _DumpError(f"version: this zerotrustml reads version {EXPORT_VERSION}, got {dump.get('version')!r}")

    spec: ModelSpec | None = None
    raw_spec = dump.get("model_spec")
    if raw_spec is not None:
        if not isinstance(raw_spec, Mapping):
            raise _DumpError("model_spec: expected an object or null")
        try:
            spec = ModelSpec.from_json(raw_spec)
            spec.check()
        except (KeyError, TypeError, ValueError) as err:
            raise _DumpError(f"model_spec: {err}") from None

    payloads: dict[bytes, bytes] = {}
    raw_payloads = _get(dump, "payloads", Mapping, "dump")
    for key, text in raw_payloads.items():
        where = f"payloads[{key!r}]"
        digest = _hash_from_hex(key, where)
        if not isinstance(text, str):
            raise _DumpError(f"{where}: expected base64 text")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise _DumpError(f"{where}: not valid base64") from None
        if not data or len(data) % 4:
            raise _DumpError(f"{where}: {len(data)} bytes is not a float32 payload")
        actual = payload_hash(_from_bytes(data))
        if actual != digest:
            raise _DumpError(f"{where}: the content hashes to {actual.hex()}; the dump was altered or damaged")
        payloads[digest] = data

    submissions: list[_SubmissionRow] = []
    for i, item in enumerate(_list(dump, "submissions")):
        where = f"submissions[{i}]"
        proof = _get(item, "proof", Mapping, where)
        try:
            proof_text = _dumps(proof, f"{where}.proof")
        except ParameterError as err:
            raise _DumpError(str(err)) from None
        digest = _hash_from_hex(_get(item, "payload_hash", str, where), f"{where}.payload_hash")
        sub = Submission(
            node_id=_get(item, "node_id", str, where),
            round=_get(item, "round", int, where),
            model_id=_get(item, "model_id", str, where),
            values=np.empty(0, dtype=np.float32),  # filled in once payloads are resolved
            example_count=_get(item, "example_count", int, where),
            norm=float(_get(item, "norm", (int, float), where)),
            payload_hash=digest,
            proof=json.loads(proof_text),
        )
        submissions.append(_SubmissionRow(sub, proof_text, _get(item, "created_at", str, where)))

    rounds: list[_RoundRow] = []
    for i, item in enumerate(_list(dump, "rounds")):
        where = f"rounds[{i}]"
        agg = _hash_from_hex(_get(item, "aggregate_hash", str, where), f"{where}.aggregate_hash")
        model = _hash_from_hex(_get(item, "model_hash", str, where), f"{where}.model_hash")
        for digest, name in ((agg, "aggregate_hash"), (model, "model_hash")):
            if digest not in payloads:
                raise _DumpError(f"{where}.{name}: payload {digest.hex()} is not in the dump")
        try:
            record = RoundRecord(
                round=_get(item, "round", int, where),
                rule=_get(item, "rule", str, where),
                contributors=tuple(_get(item, "contributors", list, where)),
                flagged=tuple(_get(item, "flagged", list, where)),
                aggregate=_from_bytes(payloads[agg]),
                model=_from_bytes(payloads[model]),
                evidence=_get(item, "evidence", Mapping, where),
                metrics=_get(item, "metrics", Mapping, where),
            )
            body = _record_body(record)
        except (TypeError, ValueError) as err:
            raise _DumpError(f"{where}: {err}") from None
        rounds.append(_RoundRow(record, body))

    reputation: list[tuple[str, int, float]] = []
    for i, item in enumerate(_list(dump, "reputation")):
        where = f"reputation[{i}]"
        node = _get(item, "node_id", str, where)
        rnd = _get(item, "round", int, where)
        try:
            _round_number(rnd, f"{where}.round")
            score = check_scores({node: _get(item, "score", (int, float), where)})[node]
        except ValueError as err:
            raise _DumpError(str(err)) from None
        reputation.append((node, rnd, score))

    meta: dict[str, str] = {}
    for key, value in _get(dump, "meta", Mapping, "dump").items():
        if not isinstance(key, str) or not key:
            raise _DumpError(f"meta: keys are non-empty strings, got {key!r}")
        try:
            meta[key] = _dumps(value, f"meta[{key!r}]")
        except (TypeError, ValueError) as err:
            raise _DumpError(str(err)) from None

    return _Dump(spec, payloads, submissions, rounds, reputation, meta)


# ---------------------------------------------------------------- the store


class EmbeddedStore(Backend):
    """SQLite store in a data directory; survives restarts; one writer process at a time.

    Parameters
    ----------
    data_dir
        Directory holding ``zerotrustml.sqlite`` and ``zerotrustml.lock``;
        created with its parents on :meth:`open`.
    durable
        ``True`` (default): ``synchronous=FULL``, see the notes. ``False``:
        ``synchronous=OFF``, no fsync at all, for a throwaway store (a matrix
        cell's temporary directory): an operating-system crash may lose or
        damage it, a process crash does not.

    Notes
    -----
    All calls share one connection, serialised by a lock and run in a
    worker thread (``asyncio.to_thread``), so the event loop never blocks on
    disk and two writes never interleave. ``synchronous=FULL``: a call
    returns only after its transaction is on disk, because a returned
    payload hash acknowledges a node's submission and a resumed run trusts
    ``last_completed_round``; the cost is one fsync per write, small next to
    a training round.
    """

    name = "embedded"

    def __init__(self, data_dir: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.durable = bool(durable)
        self.path = self.data_dir / DB_NAME
        self.lock_path = self.data_dir / LOCK_NAME
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._spec: ModelSpec | None = None
        # A threading lock, not an asyncio one: it is taken inside the worker
        # thread, and it does not tie the store to one event loop.
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"EmbeddedStore({str(self.data_dir)!r}, {state})"

    # ------------------------------------------------------------ plumbing

    def _error(self, reason: str) -> StoreError:
        return StoreError(f"store {self.path}: {reason}")

    def _corrupt(self, reason: str) -> StoreCorruptError:
        return StoreCorruptError(f"store {self.path}: {reason}")

    def _sqlite_error(self, err: sqlite3.Error) -> StoreError:
        code = getattr(err, "sqlite_errorcode", 0) & 0xFF
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return self._corrupt(f"the database is damaged ({err})")
        return self._error(f"sqlite: {err}")

    async def _call(
        self, fn: Callable[Concatenate[sqlite3.Connection, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        def job() -> _T:
            return self._run(fn, *args, **kwargs)

        return await asyncio.to_thread(job)

    def _run(self, fn: Callable[Concatenate[sqlite3.Connection, _P], _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        with self._mutex:
            if self._conn is None:
                raise self._error("not open (use 'async with' or call open() first)")
            try:
                return fn(self._conn, *args, **kwargs)
            except sqlite3.Error as err:
                raise self._sqlite_error(err) from err

    # ------------------------------------------------------------ open / close

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        with self._mutex:
            if self._conn is not None:
                return
            try:
                self.data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise self._error(f"cannot create the data directory ({err})") from err
            fd = self._acquire_lock()
            try:
                conn = self._connect()
                try:
                    spec = self._read_spec(conn)
                except BaseException:
                    conn.close()
                    raise
            except sqlite3.Error as err:
                self._release_lock(fd)
                raise self._sqlite_error(err) from err
            except BaseException:
                self._release_lock(fd)
                raise
            self._conn, self._lock_fd, self._spec = conn, fd, spec

    def _acquire_lock(self) -> int:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise self._error(f"cannot open the lock file {self.lock_path} ({err})") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreLockedError(f"store {self.path}: locked by another run (pid {holder})") from None
            raise self._error(f"cannot lock {self.lock_path} ({err})") from err
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return fd

    def _release_lock(self, fd: int) -> None:
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as err:
            raise self._error(f"cannot open ({err})") from err
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        # Look before touching: only reads until the file is known to be ours
        # (or empty), so a foreign or damaged file is left exactly as it was.
        # Even switching to WAL would rewrite a foreign file's header.
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if not str(row[0]).startswith("sqlite_")
            }
        except sqlite3.DatabaseError as err:
            raise self._corrupt(f"not a zerotrustml store: not a readable SQLite database ({err})") from None
        fresh = version == 0 and app_id == 0 and not tables
        if not fresh:
            if app_id != APPLICATION_ID:
                listed = ", ".join(sorted(tables)) or "none"
                raise self._corrupt(
                    f"not a zerotrustml store: a SQLite database of another application (tables: {listed}); "
                    "use another data directory"
                )
            if version != SCHEMA_VERSION:
                newer = " (written by a newer zerotrustml)" if version > SCHEMA_VERSION else ""
                raise self._corrupt(f"schema version {version}{newer}; this zerotrustml reads version {SCHEMA_VERSION}")
            missing = [t for t in _TABLES if t not in tables]
            if missing:
                raise self._corrupt(f"schema version {version} but tables are missing: {', '.join(missing)}")
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'OFF'}")
            conn.execute("PRAGMA foreign_keys = ON")
            if fresh:
                try:
                    conn.executescript(_SCHEMA)
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as err:
            raise self._sqlite_error(err) from err

    def _read_spec(self, conn: sqlite3.Connection) -> ModelSpec | None:
        row = conn.execute("SELECT spec FROM model_spec WHERE id = 1").fetchone()
        if row is None:
            return None
        try:
            return ModelSpec.from_json(json.loads(row[0]))
        except (KeyError, TypeError, ValueError) as err:
            raise self._corrupt(f"the stored model spec is unreadable ({err})") from None

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._mutex:
            conn, fd = self._conn, self._lock_fd
            self._conn = self._lock_fd = self._spec = None
            try:
                if conn is not None:
                    conn.close()
            finally:
                if fd is not None:
                    self._release_lock(fd)

    # ------------------------------------------------------------ payloads

    def _load_payload(self, conn: sqlite3.Connection, digest: bytes) -> npt.NDArray[np.float32]:
        row = conn.execute("SELECT data FROM payloads WHERE hash = ?", (digest,)).fetchone()
        if row is None:
            raise self._corrupt(f"payload {digest.hex()} is missing")
        data = row[0]
        if not isinstance(data, bytes) or not data or len(data) % 4:
            raise self._corrupt(f"payload {digest.hex()} is not a float32 payload")
        values = _from_bytes(data)
        actual = payload_hash(values)
        if actual != digest:
            raise self._corrupt(
                f"payload {digest.hex()} does not match its hash (the content hashes to {actual.hex()})"
            )
        return values

    @staticmethod
    def _store_payload(conn: sqlite3.Connection, digest: bytes, data: bytes) -> None:
        # Content-addressed: an identical payload (same hash) is kept once. Stored bytes that differ from a new
        # write of the same hash were damaged (only one of the two can hash to it): a write whose bytes do hash
        # to the key repairs them; one whose bytes do not changes nothing.
        row = conn.execute("SELECT data FROM payloads WHERE hash = ?", (digest,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO payloads (hash, data) VALUES (?, ?)", (digest, data))
        elif row[0] != data and len(data) % 4 == 0 and payload_hash(_from_bytes(data)) == digest:
            conn.execute("UPDATE payloads SET data = ? WHERE hash = ?", (data, digest))

    # ------------------------------------------------------------ model spec

    async def set_model_spec(self, spec: ModelSpec) -> None:
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"spec: must be a ModelSpec, got {type(spec).__name__}")
        spec.check()
        await self._call(self._set_model_spec, spec)

    def _set_model_spec(self, conn: sqlite3.Connection, spec: ModelSpec) -> None:
        if self._spec is not None:
            if self._spec.to_json() != spec.to_json():
                raise self._error(
                    f"model spec: the store holds a different spec ({self._spec.to_json()}, given {spec.to_json()})"
                )
            return
        with _transaction(conn):
            conn.execute("INSERT INTO model_spec (id, spec) VALUES (1, ?)", (_dumps(spec.to_json(), "spec"),))
        self._spec = ModelSpec.from_json(spec.to_json())

    async def get_model_spec(self) -> ModelSpec | None:
        return await self._call(lambda _conn: self._spec)

    async def extend_max_round(self, max_round: int) -> None:
        """Let the stored run go on to ``max_round``: the one change a held model spec takes.

        Everything stored stays valid (its rounds are below the old bound); a lower bound, or a store without a
        spec or with an unbounded one, is refused with a :class:`StoreError` and nothing changes.
        """
        await self._call(self._extend_max_round, max_round)

    def _extend_max_round(self, conn: sqlite3.Connection, max_round: int) -> None:
        if self._spec is None:
            raise self._error("model spec: none held yet, nothing to extend")
        old = self._spec.max_round
        if old is None or isinstance(max_round, bool) or not isinstance(max_round, int) or max_round < old:
            raise self._error(f"model spec: max_round can only grow (held {old}, given {max_round!r})")
        spec = ModelSpec.from_json({**self._spec.to_json(), "max_round": max_round})
        spec.check()
        with _transaction(conn):
            conn.execute("UPDATE model_spec SET spec = ? WHERE id = 1", (_dumps(spec.to_json(), "spec"),))
        self._spec = spec

    # ------------------------------------------------------------ submissions

    async def submit(self, sub: Submission) -> bytes:
        """Validate and store one submission; its bytes are snapshotted first, so what is checked is what is stored.

        Raises
        ------
        SubmitCancelled
            The awaiting task was cancelled while the write ran; the write finished, and the error says
            whether it committed.
        """
        if not isinstance(sub, Submission):
            raise TypeError(f"sub: must be a Submission, got {type(sub).__name__}")
        # The caller's array and proof stay the caller's: a change to them while the write runs in its thread
        # (a race, or a client that reuses its buffer) cannot reach the bytes after they were validated.
        snap = dataclasses.replace(
            sub,
            values=sub.values.copy() if isinstance(sub.values, np.ndarray) else copy.deepcopy(sub.values),
            proof=copy.deepcopy(dict(sub.proof)) if isinstance(sub.proof, Mapping) else sub.proof,
        )
        write = asyncio.ensure_future(self._call(self._submit, snap))
        try:
            return await asyncio.shield(write)
        except asyncio.CancelledError:
            if not write.done():
                # The thread cannot be stopped mid-transaction: let it finish, then say what it did.
                await asyncio.wait([write])
            if write.cancelled():
                raise
            err = write.exception()
            raise SubmitCancelled(
                int(snap.round),
                str(snap.node_id),
                committed=err is None,
                payload_hash=write.result() if err is None else None,
                reason="" if err is None else f"{type(err).__name__}: {err}",
            ) from None

    def _submit(self, conn: sqlite3.Connection, sub: Submission) -> bytes:
        if self._spec is None:
            raise self._error("no model spec yet; call set_model_spec() before submitting")
        validate(self._spec, sub)
        # A storage limit, not a rule: the rules allow any u64, SQLite stores i64.
        _round_number(sub.round)
        _round_number(sub.example_count, "example_count")
        proof = _dumps(sub.proof, "proof")
        rnd, node = int(sub.round), sub.node_id
        with _transaction(conn):
            (already,) = conn.execute(
                "SELECT COUNT(*) FROM submissions WHERE round = ? AND node_id = ?", (rnd, node)
            ).fetchone()
            check_unique(rnd, already)
            self._store_payload(conn, sub.payload_hash, _to_bytes(sub.values))
            try:
                conn.execute(
                    "INSERT INTO submissions (round, node_id, model_id, payload_hash, example_count, norm, proof,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (rnd, node, sub.model_id, sub.payload_hash, int(sub.example_count), float(sub.norm), proof, _now()),
                )
            except sqlite3.IntegrityError:
                # The primary key is the backstop for the count above; report it as the same rule.
                check_unique(rnd, 1)
                raise
        return bytes(sub.payload_hash)

    def _submission_from_row(self, conn: sqlite3.Connection, row: tuple[Any, ...]) -> Submission:
        rnd, node, model_id, digest, count, norm, proof = row
        values = self._load_payload(conn, digest)
        try:
            decoded = json.loads(proof)
            if not isinstance(decoded, dict):
                raise TypeError("proof is not an object")
        except (TypeError, ValueError) as err:
            raise self._corrupt(f"submission round {rnd} node {node!r}: unreadable proof ({err})") from None
        return Submission(
            node_id=node,
            round=rnd,
            model_id=model_id,
            values=values,
            example_count=count,
            norm=norm,
            payload_hash=digest,
            proof=decoded,
        )

    _SUBMISSION_COLUMNS = "round, node_id, model_id, payload_hash, example_count, norm, proof"

    async def get_submission(self, round: int, node_id: str) -> Submission | None:
        rnd = _round_number(round)
        return await self._call(self._get_submission, rnd, _node_id(node_id))

    def _get_submission(self, conn: sqlite3.Connection, rnd: int, node_id: str) -> Submission | None:
        row = conn.execute(
            f"SELECT {self._SUBMISSION_COLUMNS} FROM submissions WHERE round = ? AND node_id = ?", (rnd, node_id)
        ).fetchone()
        return None if row is None else self._submission_from_row(conn, row)

    async def get_round(self, round: int) -> list[Submission]:
        rnd = _round_number(round)
        return await self._call(self._get_round, rnd)

    def _get_round(self, conn: sqlite3.Connection, rnd: int) -> list[Submission]:
        # BINARY collation orders UTF-8 bytes, which is code point order: the same as sorted() on the ids.
        rows = conn.execute(
            f"SELECT {self._SUBMISSION_COLUMNS} FROM submissions WHERE round = ? ORDER BY node_id", (rnd,)
        ).fetchall()
        return [self._submission_from_row(conn, row) for row in rows]

    # ------------------------------------------------------------ round records

    def _check_record_dims(self, record: RoundRecord) -> None:
        if self._spec is None:
            return
        for name, vector in (("aggregate", record.aggregate), ("model", record.model)):
            if vector.shape[0] != self._spec.dims:
                raise ShapeError(f"{name}: the model has {self._spec.dims} parameters, got {vector.shape[0]}")

    async def put_round_record(self, record: RoundRecord, *, elsewhere: Collection[str] = ()) -> None:
        """Store a round's record; its contributors and flagged nodes must be nodes that submitted in the round.

        They are checked against the round's submissions in this store and ``elsewhere``: the nodes whose
        submissions for the round live in another store (the Holochain backend keeps its records here and
        its submissions on the DHT).
        """
        if not isinstance(record, RoundRecord):
            raise TypeError(f"record: must be a RoundRecord, got {type(record).__name__}")
        body = _record_body(record)
        await self._call(self._put_round_record, record, body, set(elsewhere))

    def _put_round_record(self, conn: sqlite3.Connection, record: RoundRecord, body: str, elsewhere: set[str]) -> None:
        self._check_record_dims(record)
        agg, model = payload_hash(record.aggregate), payload_hash(record.model)
        immutable = f"round {record.round} already has a record; round records are immutable"
        rows = conn.execute("SELECT node_id FROM submissions WHERE round = ?", (record.round,))
        submitters = {node for (node,) in rows} | elsewhere
        # A contributor submitted; a flagged node submitted, or its submission was refused and the record's
        # evidence says why ("rejected"); nobody is both.
        refused = record.evidence.get("rejected", {})
        refused = set(refused) if isinstance(refused, Mapping) else set()
        for name, nodes, allowed in (
            ("contributors", record.contributors, submitters),
            ("flagged", record.flagged, submitters | refused),
        ):
            strangers = sorted(set(nodes) - allowed)
            if strangers:
                raise ParameterError(
                    f"record.{name}: {', '.join(map(repr, strangers))} did not submit in round {record.round}"
                    + (" (nor is a rejected submission in its evidence)" if name == "flagged" else "")
                )
        both = sorted(set(record.contributors) & set(record.flagged))
        if both:
            raise ParameterError(f"record.flagged: {', '.join(map(repr, both))} also listed as contributors")
        with _transaction(conn):
            if conn.execute("SELECT 1 FROM rounds WHERE round = ?", (record.round,)).fetchone():
                raise self._error(immutable)
            self._store_payload(conn, agg, _to_bytes(record.aggregate))
            self._store_payload(conn, model, _to_bytes(record.model))
            try:
                conn.execute(
                    "INSERT INTO rounds (round, rule, record, aggregate_hash, model_hash) VALUES (?, ?, ?, ?, ?)",
                    (record.round, record.rule, body, agg, model),
                )
            except sqlite3.IntegrityError:
                raise self._error(immutable) from None

    async def get_round_record(self, round: int) -> RoundRecord | None:
        rnd = _round_number(round)
        return await self._call(self._get_round_record, rnd)

    def _get_round_record(self, conn: sqlite3.Connection, rnd: int) -> RoundRecord | None:
        row = conn.execute(
            "SELECT rule, record, aggregate_hash, model_hash FROM rounds WHERE round = ?", (rnd,)
        ).fetchone()
        if row is None:
            return None
        rule, body, agg, model = row
        aggregate, params = self._load_payload(conn, agg), self._load_payload(conn, model)
        try:
            fields = json.loads(body)
            return RoundRecord(
                round=rnd,
                rule=rule,
                contributors=tuple(fields["contributors"]),
                flagged=tuple(fields["flagged"]),
                aggregate=aggregate,
                model=params,
                evidence=fields["evidence"],
                metrics=fields["metrics"],
            )
        except (KeyError, TypeError, ValueError) as err:
            raise self._corrupt(f"round {rnd}: unreadable record ({err})") from None

    async def last_completed_round(self) -> int | None:
        return await self._call(self._last_completed_round)

    @staticmethod
    def _last_completed_round(conn: sqlite3.Connection) -> int | None:
        value = conn.execute("SELECT MAX(round) FROM rounds").fetchone()[0]
        return None if value is None else int(value)

    # ------------------------------------------------------------ reputation

    async def get_reputation(self, node_id: str) -> float | None:
        return await self._call(self._get_reputation, _node_id(node_id))

    @staticmethod
    def _get_reputation(conn: sqlite3.Connection, node_id: str) -> float | None:
        row = conn.execute(
            "SELECT score FROM reputation WHERE node_id = ? ORDER BY round DESC LIMIT 1", (node_id,)
        ).fetchone()
        return None if row is None else float(row[0])

    async def get_reputations(self) -> dict[str, float]:
        return await self._call(self._get_reputations)

    @staticmethod
    def _get_reputations(conn: sqlite3.Connection) -> dict[str, float]:
        # SQLite takes the bare column (score) from the row holding MAX(round).
        rows = conn.execute("SELECT node_id, score, MAX(round) FROM reputation GROUP BY node_id ORDER BY node_id")
        return {node: float(score) for node, score, _ in rows}

    async def put_reputations(self, round: int, scores: Mapping[str, float]) -> None:
        rnd = _round_number(round)
        checked = check_scores(scores)
        await self._call(self._put_reputations, rnd, checked)

    def _put_reputations(self, conn: sqlite3.Connection, rnd: int, scores: dict[str, float]) -> None:
        if not scores:
            return
        with _transaction(conn):
            # History is append-only: writing the same score again is a no-op (a re-run of an unfinished round
            # after a crash), a different score for a node and round already recorded is refused, whole.
            for node, score in sorted(scores.items()):
                have = conn.execute(
                    "SELECT score FROM reputation WHERE node_id = ? AND round = ?", (node, rnd)
                ).fetchone()
                if have is not None and float(have[0]) != score:
                    raise self._error(
                        f"reputation of {node!r} in round {rnd}: already {float(have[0])!r}, not {score!r}; "
                        "the reputation history is append-only"
                    )
            conn.executemany(
                "INSERT OR IGNORE INTO reputation (node_id, round, score) VALUES (?, ?, ?)",
                [(node, rnd, score) for node, score in scores.items()],
            )

    # ------------------------------------------------------------ meta

    async def put_meta(self, key: str, value: Mapping[str, Any]) -> None:
        if not isinstance(key, str) or not key:
            raise ParameterError(f"key: must be a non-empty string, got {key!r}")
        text = _dumps(value, f"meta[{key!r}]")
        await self._call(self._put_meta, key, text)

    def _put_meta(self, conn: sqlite3.Connection, key: str, text: str) -> None:
        with _transaction(conn):
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, text))

    async def get_meta(self, key: str) -> dict[str, Any] | None:
        return await self._call(self._get_meta, key)

    def _get_meta(self, conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else self._decode_meta(key, row[0])

    def _decode_meta(self, key: str, text: Any) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except (TypeError, ValueError) as err:
            raise self._corrupt(f"meta {key!r}: unreadable ({err})") from None
        if not isinstance(value, dict):
            raise self._corrupt(f"meta {key!r}: not an object")
        return value

    # ------------------------------------------------------------ export / import

    async def export(self) -> dict[str, Any]:
        return await self._call(self._export)

    def _export(self, conn: sqlite3.Connection) -> dict[str, Any]:
        # Every payload is verified on the way out, so a damaged store cannot spread into a new one.
        payloads: dict[str, str] = {}
        for (digest,) in conn.execute("SELECT hash FROM payloads ORDER BY hash").fetchall():
            payloads[bytes(digest).hex()] = base64.b64encode(_to_bytes(self._load_payload(conn, digest))).decode()
        submissions = []
        for rnd, node, model_id, digest, count, norm, proof, created in conn.execute(
            "SELECT round, node_id, model_id, payload_hash, example_count, norm, proof, created_at"
            " FROM submissions ORDER BY round, node_id"
        ):
            submissions.append(
                {
                    "round": rnd,
                    "node_id": node,
                    "model_id": model_id,
                    "payload_hash": bytes(digest).hex(),
                    "example_count": count,
                    "norm": norm,
                    "proof": self._decode_json(proof, f"submission round {rnd} node {node!r}"),
                    "created_at": created,
                }
            )
        rounds = []
        for rnd, rule, body, agg, model in conn.execute(
            "SELECT round, rule, record, aggregate_hash, model_hash FROM rounds ORDER BY round"
        ):
            fields = self._decode_json(body, f"round {rnd}")
            rounds.append(
                {
                    "round": rnd,
                    "rule": rule,
                    "contributors": fields.get("contributors"),
                    "flagged": fields.get("flagged"),
                    "aggregate_hash": bytes(agg).hex(),
                    "model_hash": bytes(model).hex(),
                    "evidence": fields.get("evidence"),
                    "metrics": fields.get("metrics"),
                }
            )
        reputation = [
            {"node_id": node, "round": rnd, "score": score}
            for node, rnd, score in conn.execute("SELECT node_id, round, score FROM reputation ORDER BY round, node_id")
        ]
        meta = {
            key: self._decode_meta(key, text) for key, text in conn.execute("SELECT key, value FROM meta ORDER BY key")
        }
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "model_spec": None if self._spec is None else self._spec.to_json(),
            "payloads": payloads,
            "submissions": submissions,
            "rounds": rounds,
            "reputation": reputation,
            "meta": meta,
        }

    def _decode_json(self, text: Any, what: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except (TypeError, ValueError) as err:
            raise self._corrupt(f"{what}: unreadable JSON ({err})") from None
        if not isinstance(value, dict):
            raise self._corrupt(f"{what}: not a JSON object")
        return value

    async def import_(self, dump: Mapping[str, Any]) -> int:
        try:
            parsed = await asyncio.to_thread(_parse_dump, dump)
        except _DumpError as err:
            raise self._error(f"import: {err}") from None
        return await self._call(self._import, parsed)

    def _import(self, conn: sqlite3.Connection, dump: _Dump) -> int:
        spec = self._spec
        if dump.spec is not None and spec is not None and dump.spec.to_json() != spec.to_json():
            raise self._error(
                f"import: model spec: the store holds a different spec ({spec.to_json()}, the dump has "
                f"{dump.spec.to_json()})"
            )
        spec = spec or dump.spec

        def payload(digest: bytes, where: str) -> npt.NDArray[np.float32]:
            if digest in dump.payloads:
                return _from_bytes(dump.payloads[digest])
            if conn.execute("SELECT 1 FROM payloads WHERE hash = ?", (digest,)).fetchone():
                return self._load_payload(conn, digest)
            raise self._error(f"import: {where}: payload {digest.hex()} is neither in the dump nor in the store")

        # Everything is checked before the transaction starts: rules, duplicates, payloads.
        if dump.submissions and spec is None:
            raise self._error("import: the dump has submissions but neither it nor the store has a model spec")
        seen_subs: set[tuple[int, str]] = set()
        subs: list[tuple[_SubmissionRow, npt.NDArray[np.float32]]] = []
        for row in dump.submissions:
            sub, where = row.sub, f"submission round {row.sub.round} node {row.sub.node_id!r}"
            if (sub.round, sub.node_id) in seen_subs:
                raise self._error(f"import: {where}: appears twice in the dump")
            seen_subs.add((sub.round, sub.node_id))
            values = payload(sub.payload_hash, where)
            full = Submission(
                node_id=sub.node_id,
                round=sub.round,
                model_id=sub.model_id,
                values=values,
                example_count=sub.example_count,
                norm=sub.norm,
                payload_hash=sub.payload_hash,
                proof=sub.proof,
            )
            assert spec is not None  # checked above whenever there are submissions
            try:
                validate(spec, full)
            except SubmissionRejected as err:
                raise self._error(f"import: {where}: rejected by rule {err.code} ({err})") from err
            try:
                _round_number(sub.round)
                _round_number(sub.example_count, "example_count")
            except ParameterError as err:
                raise self._error(f"import: {where}: {err}") from None
            subs.append((row, values))
        seen_rounds: set[int] = set()
        for rrow in dump.rounds:
            if rrow.record.round in seen_rounds:
                raise self._error(f"import: round {rrow.record.round}: appears twice in the dump")
            seen_rounds.add(rrow.record.round)
            if spec is not None and rrow.record.aggregate.shape[0] != spec.dims:
                raise self._error(
                    f"import: round {rrow.record.round}: aggregate has {rrow.record.aggregate.shape[0]} values, "
                    f"the model has {spec.dims}"
                )
        seen_rep: set[tuple[str, int]] = set()
        for node, rnd, _ in dump.reputation:
            if (node, rnd) in seen_rep:
                raise self._error(f"import: reputation of {node!r} in round {rnd}: appears twice in the dump")
            seen_rep.add((node, rnd))

        written = 0
        with _transaction(conn):
            if dump.spec is not None and self._spec is None:
                conn.execute("INSERT INTO model_spec (id, spec) VALUES (1, ?)", (_dumps(dump.spec.to_json(), "spec"),))
                written += 1
            for row, values in subs:
                sub = row.sub
                claims = (sub.model_id, sub.payload_hash, sub.example_count, float(sub.norm), row.proof)
                have = conn.execute(
                    "SELECT model_id, payload_hash, example_count, norm, proof FROM submissions"
                    " WHERE round = ? AND node_id = ?",
                    (sub.round, sub.node_id),
                ).fetchone()
                if have is not None:
                    # created_at is not compared: a submission written to two stores gets two times.
                    if tuple(have) != claims:
                        raise self._error(
                            f"import: submission round {sub.round} node {sub.node_id!r}: conflicts with the stored one"
                        )
                    continue
                self._store_payload(conn, sub.payload_hash, _to_bytes(values))
                conn.execute(
                    "INSERT INTO submissions (round, node_id, model_id, payload_hash, example_count, norm, proof,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (sub.round, sub.node_id, *claims, row.created_at),
                )
                written += 1
            for rrow in dump.rounds:
                rec = rrow.record
                agg, model = payload_hash(rec.aggregate), payload_hash(rec.model)
                have = conn.execute(
                    "SELECT rule, record, aggregate_hash, model_hash FROM rounds WHERE round = ?", (rec.round,)
                ).fetchone()
                if have is not None:
                    if tuple(have) != (rec.rule, rrow.body, agg, model):
                        raise self._error(f"import: round {rec.round}: conflicts with the stored record")
                    continue
                self._store_payload(conn, agg, _to_bytes(rec.aggregate))
                self._store_payload(conn, model, _to_bytes(rec.model))
                conn.execute(
                    "INSERT INTO rounds (round, rule, record, aggregate_hash, model_hash) VALUES (?, ?, ?, ?, ?)",
                    (rec.round, rec.rule, rrow.body, agg, model),
                )
                written += 1
            for node, rnd, score in dump.reputation:
                have = conn.execute(
                    "SELECT score FROM reputation WHERE node_id = ? AND round = ?", (node, rnd)
                ).fetchone()
                if have is not None:
                    if float(have[0]) != score:
                        raise self._error(f"import: reputation of {node!r} in round {rnd}: conflicts with the store")
                    continue
                conn.execute("INSERT INTO reputation (node_id, round, score) VALUES (?, ?, ?)", (node, rnd, score))
                written += 1
            for key, text in dump.meta.items():
                have = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
                if have is not None:
                    if have[0] != text:
                        raise self._error(f"import: meta {key!r}: conflicts with the stored value")
                    continue
                conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, text))
                written += 1
        if dump.spec is not None and self._spec is None:
            self._spec = dump.spec
        return written
