"""The backend interface through the embedded SQLite store.

Every rule is rejected through the store with its field and code, and a
rejected call leaves the store's full export unchanged. Also: exact round
trips, content addressing, immutability, restart and resume, export/import,
damaged and foreign files, the single-writer lock (in process and across
processes), and concurrent writers.

There is no pytest-asyncio here: each test is a coroutine run by
``asyncio.run`` through the ``async_test`` decorator.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import nacl.signing
import numpy as np
import pytest

from zerotrustml import exceptions
from zerotrustml.backends import (
    BACKENDS,
    Backend,
    EmbeddedStore,
    HolochainBackend,
    RoundRecord,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    open_backend,
)
from zerotrustml.backends.embedded import DB_NAME
from zerotrustml.defence.proofs import sign_claim
from zerotrustml.exceptions import NonFiniteError, ParameterError, ShapeError, SubmissionRejected
from zerotrustml.validation import DHT_PROOF_SCHEME, ModelSpec, Submission, payload_hash

DIMS = 8
SPEC = ModelSpec(model_id="mlp-v1", dims=DIMS, max_norm=10.0, max_round=9)
# What a store hands back: the spec with its defaults resolved (max_payload_bytes = 4 * dims).
STORED_SPEC = ModelSpec.from_json(SPEC.to_json())


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run a coroutine test function with ``asyncio.run`` (fixtures still injected by name)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def vec(seed: int, scale: float = 0.5, dims: int = DIMS) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(dims) * scale).astype(np.float32)


PROOF_KEY = nacl.signing.SigningKey(bytes(range(32)))


@functools.cache
def _signed(node: str, rnd: int, digest: bytes) -> dict[str, Any]:
    # One proof per (node, round, payload): the same submission built twice is the same content.
    claim = dict(loss_before=0.9, loss_after=0.5, holdout_size=16, lr=0.1)
    return sign_claim(PROOF_KEY, node_id=node, round=rnd, payload_hash=digest, **claim).to_json()


def proof_for(node: str, rnd: int, values: np.ndarray, **over: Any) -> dict[str, Any]:
    """A signed edge proof of ``values`` (``to_json`` form), with fields of it replaced by ``over``."""
    return {**_signed(node, rnd, payload_hash(values)), **over}


def sub(node: str, rnd: int = 0, seed: int = 0, **over: Any) -> Submission:
    v = vec(seed)
    return Submission.create(node, rnd, SPEC.model_id, v, example_count=32, proof=proof_for(node, rnd, v, **over))


def record(rnd: int, contributors: tuple[str, ...] = ("a", "b"), flagged: tuple[str, ...] = ("c",)) -> RoundRecord:
    return RoundRecord(
        round=rnd,
        rule="multi_krum",
        contributors=contributors,
        flagged=flagged,
        aggregate=vec(100 + rnd),
        model=vec(200 + rnd, scale=2.0),
        evidence={"scores": {"a": 1.5, "b": 2.0, "c": 90.0}, "votes": [1, 1, 0]},
        metrics={"accuracy": 0.91, "loss": 0.3, "aggregate_ms": 1.25},
    )


async def submit_for(store: Backend, rec: RoundRecord) -> None:
    """Submissions for every node a record names (a record may only name nodes that submitted in its round)."""
    for i, node in enumerate((*rec.contributors, *rec.flagged)):
        if await store.get_submission(rec.round, node) is None:
            await store.submit(sub(node, rec.round, seed=50 + i))


def same_submission(x: Submission, y: Submission) -> bool:
    return (
        x.node_id == y.node_id
        and x.round == y.round
        and x.model_id == y.model_id
        and x.values.dtype == y.values.dtype == np.float32
        and x.values.view(np.uint32).tolist() == y.values.view(np.uint32).tolist()
        and x.example_count == y.example_count
        and x.norm == y.norm
        and x.payload_hash == y.payload_hash
        and dict(x.proof) == dict(y.proof)
    )


async def populate(store: Backend) -> None:
    """A small run: spec, two rounds of three nodes, records, reputations, meta."""
    await store.set_model_spec(SPEC)
    for rnd in (0, 1):
        for i, node in enumerate(("a", "b", "c")):
            await store.submit(sub(node, rnd, seed=10 * rnd + i))
        await store.put_round_record(record(rnd))
        await store.put_reputations(rnd, {"a": 0.9, "b": 0.8 - 0.1 * rnd, "c": 0.2 - 0.1 * rnd})
    await store.put_meta("run", {"rule": "multi_krum", "seed": 7, "nodes": ["a", "b", "c"]})


def count_rows(data_dir: Path, table: str) -> int:
    conn = sqlite3.connect(data_dir / DB_NAME)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


# --------------------------------------------------------------------- interface


def test_open_backend_names() -> None:
    assert BACKENDS == ("embedded", "holochain", "mock")
    assert isinstance(open_backend("embedded", "/nonexistent/never-opened"), EmbeddedStore)
    for name in ("holochain", "mock"):
        backend = open_backend(name, "/nonexistent/never-opened", round_timeout=5.0)
        assert isinstance(backend, HolochainBackend) and backend.name == name
    with pytest.raises(ParameterError) as err:
        open_backend("x", "/tmp")
    assert str(err.value) == "backend: unknown name 'x'; choose one of embedded, holochain, mock"
    with pytest.raises(ParameterError, match="the embedded store takes only durable, got conductors"):
        open_backend("embedded", "/tmp", conductors=2)
    assert open_backend("embedded", "/nonexistent/never-opened").durable  # type: ignore[attr-defined]
    assert not open_backend("embedded", "/nonexistent/never-opened", durable=False).durable  # type: ignore[attr-defined]


@async_test
async def test_a_throwaway_store_skips_fsync_and_keeps_what_it_wrote(tmp_path: Path) -> None:
    # synchronous: 2 is FULL (an fsync per transaction), 0 is OFF; per connection, so read on the store's own.
    for durable, expected in ((True, 2), (False, 0)):
        path = tmp_path / str(durable)
        async with EmbeddedStore(path, durable=durable) as store:
            assert store._conn is not None and store._conn.execute("PRAGMA synchronous").fetchone()[0] == expected
            await store.set_model_spec(SPEC)
        async with EmbeddedStore(path) as again:  # reopened (durably): what was written is there
            assert await again.get_model_spec() == SPEC


def test_store_errors_are_exported_from_exceptions() -> None:
    assert exceptions.StoreError is StoreError
    assert issubclass(exceptions.StoreLockedError, StoreError)
    assert issubclass(exceptions.StoreCorruptError, StoreError)
    assert {"StoreError", "StoreLockedError", "StoreCorruptError"} <= set(exceptions.__all__)


@async_test
async def test_closed_store_refuses(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    with pytest.raises(StoreError, match="not open"):
        await store.get_model_spec()
    async with store:
        assert await store.get_model_spec() is None
    with pytest.raises(StoreError, match="not open"):
        await store.get_reputations()


@async_test
async def test_creates_data_dir_with_parents(tmp_path: Path) -> None:
    data_dir = tmp_path / "deep" / "er" / "store"
    async with EmbeddedStore(data_dir):
        pass
    assert (data_dir / DB_NAME).is_file()


# --------------------------------------------------------------------- model spec


@async_test
async def test_model_spec_set_once(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        assert await store.get_model_spec() is None
        await store.set_model_spec(SPEC)
        await store.set_model_spec(SPEC)  # an equal spec again is fine (resume)
        assert await store.get_model_spec() == STORED_SPEC
        before = await store.export()
        with pytest.raises(StoreError, match="model spec: the store holds a different spec") as err:
            await store.set_model_spec(dataclasses.replace(SPEC, dims=DIMS + 1, max_payload_bytes=None))
        assert str(tmp_path) in str(err.value)
        with pytest.raises(SubmissionRejected) as bad:
            await store.set_model_spec(ModelSpec("m", dims=0))
        assert bad.value.code == "bad_spec"
        assert await store.export() == before


# --------------------------------------------------------------------- rules through the store


def _replace(**changes: Any) -> Callable[[Submission], Submission]:
    return lambda s: dataclasses.replace(s, **changes)


def _values(values: np.ndarray, norm: float = 1.0) -> Callable[[Submission], Submission]:
    # A payload with a claimed norm and its true hash, so the payload rule itself is what fails.
    return lambda s: dataclasses.replace(s, values=values, norm=norm, payload_hash=payload_hash(values))


def _nonfinite(value: float) -> np.ndarray:
    v = vec(5)
    v[3] = value
    return v


REJECTIONS: dict[str, tuple[Callable[[Submission], Submission], str, str]] = {
    "too few dims": (_values(vec(5, dims=DIMS - 1)), "dims", "dims_mismatch"),
    "too many dims": (_values(vec(5, dims=DIMS + 1)), "values", "too_large"),
    "nan value": (_values(_nonfinite(np.nan)), "values", "non_finite"),
    "inf value": (_values(_nonfinite(np.inf)), "values", "non_finite"),
    "nan norm": (lambda s: Submission.create("z", 0, SPEC.model_id, _nonfinite(np.nan), 3), "norm", "bad_norm"),
    "float64 values": (_replace(values=vec(5).astype(np.float64)), "values", "bad_dtype"),
    "norm over bound": (
        lambda s: Submission.create("z", 0, SPEC.model_id, vec(5, scale=100.0), 3),
        "norm",
        "norm_bound",
    ),
    "lying norm": (lambda s: dataclasses.replace(s, norm=s.norm * 0.5), "norm", "norm_mismatch"),
    "lying hash": (_replace(payload_hash=payload_hash(vec(99))), "payload_hash", "hash_mismatch"),
    "short hash": (_replace(payload_hash=b"\x00" * 31), "payload_hash", "bad_hash"),
    "wrong model id": (_replace(model_id="other-model"), "model_id", "model_mismatch"),
    "round past max_round": (_replace(round=SPEC.max_round + 1), "round", "round_out_of_range"),  # type: ignore[operator]
    "zero examples": (_replace(example_count=0), "example_count", "no_examples"),
    "negative round": (_replace(round=-1), "round", "bad_integer"),
    "empty node id": (_replace(node_id=""), "node_id", "bad_node"),
    "duplicate per node per round": (lambda s: sub("a", 0, seed=77), "round", "duplicate"),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
@async_test
async def test_rule_rejected_and_nothing_changes(tmp_path: Path, case: str) -> None:
    make_bad, field, code = REJECTIONS[case]
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        await store.submit(sub("a", 0, seed=1))
        before = await store.export()
        with pytest.raises(SubmissionRejected) as err:  # without a proof, which would name the payload it proves
            await store.submit(make_bad(dataclasses.replace(sub("z", 0, seed=2), proof={})))
        assert (err.value.field, err.value.code) == (field, code), str(err.value)
        assert isinstance(err.value, ValueError)
        assert await store.export() == before
    assert count_rows(tmp_path, "payloads") == 1


@async_test
async def test_submit_without_spec_is_a_store_error(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        before = await store.export()
        with pytest.raises(StoreError, match="no model spec"):
            await store.submit(sub("a"))
        assert await store.export() == before


@async_test
async def test_unstorable_proof_and_round(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(dataclasses.replace(SPEC, max_round=None))
        before = await store.export()
        with pytest.raises(SubmissionRejected, match="^proof.loss_before: must be finite, got NaN$"):
            await store.submit(sub("a", loss_before=float("nan")))
        with pytest.raises(SubmissionRejected, match="^proof.model: is not a field"):
            await store.submit(sub("a", model=object()))
        # Rounds and counts stop at 2^63 - 1 in the core rule, the DHT's too (they were a store-only limit).
        with pytest.raises(SubmissionRejected, match=r"^round: 9223372036854775808 is past the last round 92233"):
            await store.submit(dataclasses.replace(sub("a"), round=2**63, proof={}))
        many = dataclasses.replace(sub("a"), example_count=2**63)
        with pytest.raises(SubmissionRejected, match=r"^example_count: 9223372036854775808 is above the largest"):
            await store.submit(many)
        assert await store.export() == before


@async_test
async def test_a_proof_is_checked_as_the_zome_checks_it(tmp_path: Path) -> None:
    # Issue 11 item 9: the store kept any JSON as a proof, where the zome checks an EdgeProof's form.
    v = vec(1)
    dht = {"scheme": DHT_PROOF_SCHEME, "loss_before": 0.9, "loss_after": 0.5, "holdout_size": 16, "lr": 0.1}
    dht |= {"nonce": "01" * 16, "signature": ""}
    cases = {
        "any json": ({"loss": 0.5}, "proof.scheme"),
        "not a mapping": ([0.9, 0.5], "proof"),
        "another node's": (proof_for("b", 0, v), "proof.node_id"),
        "another round's": (proof_for("a", 1, v), "proof.round"),
        "another payload's": (proof_for("a", 0, vec(2)), "proof.payload_hash"),
        "no step": (proof_for("a", 0, v, lr=0.0), "proof.lr"),
        "no held-out data": (proof_for("a", 0, v, holdout_size=0), "proof.holdout_size"),
        "short nonce": (proof_for("a", 0, v, nonce="01" * 8), "proof.nonce"),
        "dht form, short signature": (dht | {"signature": "02" * 63}, "proof.signature"),
        "dht form, infinite loss": (dht | {"loss_after": float("inf")}, "proof.loss_after"),
        "dht form, extra key": (dht | {"node_id": "a"}, "proof"),
    }
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        await store.submit(sub("z"))
        before = await store.export()
        for name, (proof, field) in cases.items():
            bad = dataclasses.replace(Submission.create("a", 0, SPEC.model_id, v, example_count=32), proof=proof)
            with pytest.raises(SubmissionRejected) as err:
                await store.submit(bad)
            assert (err.value.field, err.value.code) == (field, "bad_proof"), name
            assert str(err.value).startswith(f"{field}: "), name
        assert await store.export() == before
        for proof in ({}, proof_for("a", 0, v), dht):  # none, the SDK's form, the DHT's form
            node = f"a{len(proof)}"
            if proof and "node_id" in proof:
                proof = proof_for(node, 0, v)
            await store.submit(Submission.create(node, 0, SPEC.model_id, v, example_count=32, proof=proof))
            got = await store.get_submission(0, node)
            assert got is not None and dict(got.proof) == proof


# --------------------------------------------------------------------- accepted submissions


@async_test
async def test_submission_round_trips_exactly(tmp_path: Path) -> None:
    values = np.array([-0.0, 1e-45, -3.4, np.float32(0.1), 1.0, -1.0, 2.5e-39, 7.0], dtype=np.float32)
    proof = proof_for("node-1", 3, values)
    base = Submission.create("node-1", 3, SPEC.model_id, values, example_count=17, proof=proof)
    # A claimed norm that differs within the rules' tolerance is stored as claimed, not recomputed.
    claimed = dataclasses.replace(base, norm=base.norm * (1 + 1e-6))
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        assert await store.submit(claimed) == base.payload_hash
        got = await store.get_submission(3, "node-1")
        assert got is not None and same_submission(got, claimed)
        assert got.norm == claimed.norm != base.norm
        assert not got.values.flags.writeable  # frozen like the Submission that holds it
        assert await store.get_submission(3, "nobody") is None
        assert await store.get_submission(4, "node-1") is None
        assert await store.get_round(5) == []


@async_test
async def test_get_round_orders_by_node_id(tmp_path: Path) -> None:
    nodes = ["node-10", "node-2", "Zed", "alpha", "é-node", "node-1", "_x"]
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        for i, node in enumerate(nodes):
            await store.submit(sub(node, 1, seed=i))
        await store.submit(sub("other-round", 2, seed=50))
        got = await store.get_round(1)
        assert [s.node_id for s in got] == sorted(nodes)
        assert all(same_submission(g, sub(g.node_id, 1, seed=nodes.index(g.node_id))) for g in got)


@async_test
async def test_identical_payloads_are_stored_once(tmp_path: Path) -> None:
    values = vec(3)
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        for node in ("a", "b", "c"):
            await store.submit(Submission.create(node, 0, SPEC.model_id, values, 5))
        await store.submit(Submission.create("a", 1, SPEC.model_id, values, 5))
        await store.submit(Submission.create("d", 1, SPEC.model_id, vec(4), 5))
        # An aggregate equal to a submitted payload shares its row too.
        await store.put_round_record(
            RoundRecord(0, "median", ("a", "b", "c"), (), aggregate=values.copy(), model=values.copy())
        )
        assert count_rows(tmp_path, "submissions") == 5
        assert count_rows(tmp_path, "payloads") == 2
        assert len((await store.export())["payloads"]) == 2
        assert all(
            same_submission(s, Submission.create(s.node_id, 0, SPEC.model_id, values, 5))
            for s in await store.get_round(0)
        )


@async_test
async def test_concurrent_submits_all_stored(tmp_path: Path) -> None:
    subs = [sub(f"node-{i:02d}", 0, seed=i) for i in range(50)]
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        hashes = await asyncio.gather(*(store.submit(s) for s in subs))
        assert hashes == [s.payload_hash for s in subs]
        got = await store.get_round(0)
        assert len(got) == 50
        assert all(same_submission(g, s) for g, s in zip(got, subs, strict=True))


@async_test
async def test_concurrent_duplicates_accept_exactly_one(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        results = await asyncio.gather(*(store.submit(sub("a", 0, seed=i)) for i in range(10)), return_exceptions=True)
        accepted = [r for r in results if isinstance(r, bytes)]
        rejected = [r for r in results if isinstance(r, SubmissionRejected)]
        assert len(accepted) == 1 and len(rejected) == 9
        assert {r.code for r in rejected} == {"duplicate"}
        assert count_rows(tmp_path, "submissions") == 1


# --------------------------------------------------------------------- round records


@async_test
async def test_round_records_are_immutable(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        assert await store.last_completed_round() is None
        rec = record(0)
        await submit_for(store, rec)
        await store.put_round_record(rec)
        got = await store.get_round_record(0)
        assert got == rec and got is not rec
        assert got.result_hash == payload_hash(rec.aggregate) == rec.result_hash
        assert got.contributors == ("a", "b") and got.flagged == ("c",)
        before = await store.export()
        for again in (rec, dataclasses.replace(rec, rule="median")):
            with pytest.raises(StoreError, match="round 0 already has a record; round records are immutable"):
                await store.put_round_record(again)
        assert await store.get_round_record(0) == rec
        assert await store.export() == before
        assert await store.get_round_record(1) is None


@async_test
async def test_round_record_bad_input(tmp_path: Path) -> None:
    rec = record(0)
    with pytest.raises(TypeError, match="aggregate: must be float32"):
        dataclasses.replace(rec, aggregate=rec.aggregate.astype(np.float64))
    with pytest.raises(NonFiniteError, match="model"):
        dataclasses.replace(rec, model=np.full(DIMS, np.nan, dtype=np.float32))
    with pytest.raises(ShapeError, match="aggregate"):
        dataclasses.replace(rec, aggregate=np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ParameterError, match="round"):
        dataclasses.replace(rec, round=-1)
    with pytest.raises(ParameterError, match="contributors"):
        dataclasses.replace(rec, contributors=("a", "a"))
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        before = await store.export()
        with pytest.raises(ShapeError, match="aggregate: the model has 8 parameters, got 9"):
            await store.put_round_record(dataclasses.replace(rec, aggregate=vec(1, dims=DIMS + 1)))
        with pytest.raises(ShapeError, match="model: the model has 8 parameters, got 7"):
            await store.put_round_record(dataclasses.replace(rec, model=vec(1, dims=DIMS - 1)))
        with pytest.raises(ParameterError, match="metrics: not JSON-serialisable"):
            await store.put_round_record(dataclasses.replace(rec, metrics={"loss": float("inf")}))
        with pytest.raises(ParameterError, match="evidence: not JSON-serialisable"):
            await store.put_round_record(dataclasses.replace(rec, evidence={"s": {1, 2}}))
        assert await store.export() == before


@async_test
async def test_numpy_values_in_evidence_become_plain_json(tmp_path: Path) -> None:
    rec = dataclasses.replace(
        record(0), evidence={"score": np.float32(0.5), "n": np.int64(3), "v": np.arange(3)}, metrics={}
    )
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        await submit_for(store, rec)
        await store.put_round_record(rec)
        got = await store.get_round_record(0)
    assert got is not None and dict(got.evidence) == {"score": 0.5, "n": 3, "v": [0, 1, 2]}


# --------------------------------------------------------------------- reputation and meta


@async_test
async def test_reputation_history_and_latest(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        assert await store.get_reputations() == {}
        await store.put_reputations(0, {"a": 0.5, "b": 0.9, "c": 1})
        await store.put_reputations(1, {"a": 0.25, "c": 0.0})
        await store.put_reputations(3, {"b": np.float64(0.75)})
        assert await store.get_reputation("a") == 0.25
        assert await store.get_reputation("b") == 0.75
        assert await store.get_reputation("nobody") is None
        assert await store.get_reputations() == {"a": 0.25, "b": 0.75, "c": 0.0}
        history = (await store.export())["reputation"]
        assert [(r["node_id"], r["round"], r["score"]) for r in history] == [
            ("a", 0, 0.5), ("b", 0, 0.9), ("c", 0, 1.0), ("a", 1, 0.25), ("c", 1, 0.0), ("b", 3, 0.75),
        ]  # fmt: skip
        before = await store.export()
        for bad in (1.5, -0.1, float("nan"), float("inf"), "0.5", True):
            with pytest.raises(ParameterError, match=r"scores\['bad-node'\]"):
                await store.put_reputations(4, {"a": 0.1, "bad-node": bad})  # type: ignore[dict-item]
        with pytest.raises(ParameterError, match="round"):
            await store.put_reputations(-1, {"a": 0.1})
        assert await store.export() == before
        # Re-running an unfinished round writes the same scores again: a no-op.
        await store.put_reputations(3, {"b": 0.75})
        assert await store.export() == before
        # History is append-only (it was INSERT OR REPLACE): a different score for a recorded round is refused,
        # whole, and nothing changes.
        with pytest.raises(StoreError, match=r"reputation of 'b' in round 3: already 0.75, not 0.7; .*append-only"):
            await store.put_reputations(3, {"a": 0.6, "b": 0.7})
        assert await store.export() == before


@async_test
async def test_meta(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        assert await store.get_meta("run") is None
        await store.put_meta("run", {"rule": "krum", "f": 2, "nested": {"x": [1.5, None]}})
        assert await store.get_meta("run") == {"rule": "krum", "f": 2, "nested": {"x": [1.5, None]}}
        await store.put_meta("run", {"rule": "median"})
        assert await store.get_meta("run") == {"rule": "median"}
        before = await store.export()
        with pytest.raises(ParameterError, match="not JSON-serialisable"):
            await store.put_meta("run", {"lr": float("nan")})
        with pytest.raises(ParameterError, match="key"):
            await store.put_meta("", {"a": 1})
        with pytest.raises(TypeError):
            await store.put_meta("run", [1, 2])  # type: ignore[arg-type]
        assert await store.export() == before


# --------------------------------------------------------------------- restart and resume


async def _check_populated(store: Backend) -> None:
    assert await store.get_model_spec() == STORED_SPEC
    for rnd in (0, 1):
        got = await store.get_round(rnd)
        assert [s.node_id for s in got] == ["a", "b", "c"]
        assert all(same_submission(g, sub(g.node_id, rnd, seed=10 * rnd + i)) for i, g in enumerate(got))
        assert await store.get_round_record(rnd) == record(rnd)
    assert await store.last_completed_round() == 1
    assert await store.get_reputations() == pytest.approx({"a": 0.9, "b": 0.7, "c": 0.1})
    assert await store.get_meta("run") == {"rule": "multi_krum", "seed": 7, "nodes": ["a", "b", "c"]}


@async_test
async def test_survives_restart(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    async with store:
        await populate(store)
        dump = await store.export()
    async with store:  # the same object, reopened
        await _check_populated(store)
        await store.submit(sub("d", 2, seed=33))
    async with EmbeddedStore(tmp_path) as fresh:  # a new object, as after a process restart
        await _check_populated(fresh)
        assert len(await fresh.get_round(2)) == 1
        assert await fresh.last_completed_round() == 1  # round 2 has submissions but no record yet
        after = await fresh.export()
    assert after["submissions"][:6] == dump["submissions"]


# --------------------------------------------------------------------- export / import


@async_test
async def test_export_import_round_trip(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path / "src") as src:
        await populate(src)
        dump = await src.export()
    assert json.loads(json.dumps(dump, allow_nan=False)) == dump  # strict JSON
    dump = json.loads(json.dumps(dump))
    async with EmbeddedStore(tmp_path / "dst") as dst:
        written = await dst.import_(dump)
        assert written == 1 + 6 + 2 + 6 + 1  # spec, submissions, round records, reputation rows, meta
        assert await dst.export() == dump
        await _check_populated(dst)
        assert await dst.import_(dump) == 0  # everything already there, unchanged
        assert await dst.export() == dump


@async_test
async def test_import_into_compatible_store_merges(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path / "src") as src:
        await populate(src)
        dump = await src.export()
    async with EmbeddedStore(tmp_path / "dst") as dst:
        await dst.set_model_spec(SPEC)
        await dst.submit(sub("a", 0, seed=0))  # the same submission, written earlier (another created_at)
        assert await dst.import_(dump) == 5 + 2 + 6 + 1
        await _check_populated(dst)


def _tamper_payload(dump: dict[str, Any]) -> dict[str, Any]:
    bad = copy.deepcopy(dump)
    key = bad["submissions"][0]["payload_hash"]
    values = np.frombuffer(base64.b64decode(bad["payloads"][key]), dtype="<f4").copy()
    values[0] += 0.25
    bad["payloads"][key] = base64.b64encode(values.tobytes()).decode()
    return bad


def _lying_norm(d: dict[str, Any]) -> dict[str, Any]:
    first = {**d["submissions"][0], "norm": 9.0}
    return {**d, "submissions": [first, *d["submissions"][1:]]}


def _missing_round(d: dict[str, Any]) -> dict[str, Any]:
    first = {k: v for k, v in d["submissions"][0].items() if k != "round"}
    return {**d, "submissions": [first]}


BAD_DUMPS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], str]] = {
    "tampered payload": (_tamper_payload, "the content hashes to"),
    "lying norm": (_lying_norm, "rejected by rule norm_mismatch"),
    "duplicate": (lambda d: {**d, "submissions": d["submissions"] + d["submissions"][:1]}, "appears twice"),
    "missing field": (_missing_round, "missing 'round'"),
    "missing payload": (lambda d: {**d, "payloads": {}}, "is not in the dump"),
    "bad score": (lambda d: {**d, "reputation": [{"node_id": "a", "round": 0, "score": 2.0}]}, r"scores\['a'\]"),
    "version": (lambda d: {**d, "version": 99}, "version"),
    "other spec": (lambda d: {**d, "model_spec": {**d["model_spec"], "dims": 9}}, "model spec"),
}


@pytest.mark.parametrize("case", list(BAD_DUMPS))
@async_test
async def test_bad_import_writes_nothing(tmp_path: Path, case: str) -> None:
    tamper, message = BAD_DUMPS[case]
    async with EmbeddedStore(tmp_path / "src") as src:
        await populate(src)
        dump = await src.export()
    async with EmbeddedStore(tmp_path / "dst") as dst:
        await dst.set_model_spec(SPEC)
        await dst.put_meta("mine", {"keep": True})
        before = await dst.export()
        with pytest.raises(StoreError, match=message) as err:
            await dst.import_(tamper(dump))
        assert str(tmp_path / "dst") in str(err.value)
        assert await dst.export() == before


@async_test
async def test_conflicting_import_writes_nothing(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path / "src") as src:
        await populate(src)
        dump = await src.export()
    async with EmbeddedStore(tmp_path / "dst") as dst:
        await dst.set_model_spec(SPEC)
        for i, node in enumerate(("a", "b", "c")):  # the dump's own round-1 submissions (see populate)
            await dst.submit(sub(node, 1, seed=10 + i))
        await dst.put_round_record(dataclasses.replace(record(1), rule="median"))
        before = await dst.export()
        with pytest.raises(StoreError, match="round 1: conflicts with the stored record"):
            await dst.import_(dump)
        assert await dst.export() == before


# --------------------------------------------------------------------- damaged and foreign files


@async_test
async def test_tampered_payload_row_is_detected(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        target = sub("a", 0, seed=1)
        await store.submit(target)
        await store.submit(sub("b", 0, seed=2))
    conn = sqlite3.connect(tmp_path / DB_NAME)
    with conn:
        conn.execute("UPDATE payloads SET data = ? WHERE hash = ?", (vec(42).tobytes(), target.payload_hash))
    conn.close()
    async with EmbeddedStore(tmp_path) as store:
        assert await store.get_submission(0, "b") is not None  # the other rows still read
        for read in (store.get_submission(0, "a"), store.get_round(0), store.export()):
            with pytest.raises(StoreCorruptError, match=target.payload_hash.hex()):
                await read


@async_test
async def test_random_bytes_file_is_corrupt_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    content = np.random.default_rng(0).bytes(8192)
    path.write_bytes(content)
    for _ in range(2):  # the failed open released its lock: the second attempt fails the same way
        with pytest.raises(StoreCorruptError, match="not a zerotrustml store") as err:
            await EmbeddedStore(tmp_path).open()
        assert str(path) in str(err.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([DB_NAME, "zerotrustml.lock"])


@async_test
async def test_foreign_sqlite_db_is_rejected_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.close()
    content = path.read_bytes()
    with pytest.raises(StoreCorruptError, match=r"another application \(tables: users\)") as err:
        await EmbeddedStore(tmp_path).open()
    assert str(path) in str(err.value)
    assert path.read_bytes() == content


@async_test
async def test_unknown_schema_version(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        await populate(store)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreCorruptError, match="schema version 99 .written by a newer zerotrustml."):
        await EmbeddedStore(tmp_path).open()


# --------------------------------------------------------------------- single writer


@async_test
async def test_locked_in_process(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as first:
        await first.set_model_spec(SPEC)
        second = EmbeddedStore(tmp_path)
        with pytest.raises(StoreLockedError, match=rf"locked by another run \(pid {os.getpid()}\)") as err:
            await second.open()
        assert str(tmp_path) in str(err.value)
        assert await first.get_model_spec() == STORED_SPEC  # the holder is unaffected
    async with second:  # released on close
        assert await second.get_model_spec() == STORED_SPEC


_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from zerotrustml.backends import EmbeddedStore

    async def main():
        async with EmbeddedStore(sys.argv[1]):
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)

    asyncio.run(main())
    """
)

_OPENER = textwrap.dedent(
    """
    import asyncio, sys
    from zerotrustml.backends import EmbeddedStore

    async def main():
        try:
            await EmbeddedStore(sys.argv[1]).open()
        except Exception as err:
            print(type(err).__name__, err)
        else:
            print("opened")

    asyncio.run(main())
    """
)


def _start_holder(data_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(data_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


@async_test
async def test_locked_across_processes(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path)
    try:
        with pytest.raises(StoreLockedError, match=rf"locked by another run \(pid {holder.pid}\)"):
            await EmbeddedStore(tmp_path).open()
    finally:
        holder.communicate("\n", timeout=10)
    assert holder.returncode == 0
    async with EmbeddedStore(tmp_path) as store:
        out = subprocess.run(
            [sys.executable, "-c", _OPENER, str(tmp_path)], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        assert out.startswith("StoreLockedError") and f"(pid {os.getpid()})" in out
        assert await store.get_model_spec() is None


@async_test
async def test_lock_dies_with_its_process(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=10)
    assert holder.returncode == -signal.SIGKILL
    async with EmbeddedStore(tmp_path) as store:  # no stale lock after a crash
        assert await store.last_completed_round() is None


@async_test
async def test_a_record_names_only_nodes_of_its_round(tmp_path: Path) -> None:
    """A round record cannot credit or blame a node that did not submit in the round (it could, before)."""
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        for i, node in enumerate(("a", "b")):
            await store.submit(sub(node, 0, seed=i))
        before = await store.export()
        with pytest.raises(ParameterError, match=r"^record.contributors: 'x' did not submit in round 0$"):
            await store.put_round_record(record(0, contributors=("a", "x"), flagged=()))
        with pytest.raises(ParameterError, match=r"^record.flagged: 'c' did not submit in round 0 \(nor is a rejected"):
            await store.put_round_record(record(0, contributors=("a", "b"), flagged=("c",)))
        with pytest.raises(ParameterError, match=r"^record.flagged: 'b' also listed as contributors$"):
            await store.put_round_record(record(0, contributors=("a", "b"), flagged=("b",)))
        assert await store.export() == before
        # A node whose submission the rules refused is flagged with the reason in the evidence.
        refused = dataclasses.replace(record(0, flagged=("c",)), evidence={"rejected": {"c": "norm_bound: ..."}})
        await store.put_round_record(refused)
        assert (await store.get_round_record(0)) == refused
        # Submissions held by another store (the DHT) count when the caller names them.
        await store.put_round_record(record(1, contributors=("a",), flagged=("d",)), elsewhere=("a", "d"))


@async_test
async def test_the_bytes_checked_are_the_bytes_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's buffer changing after validation (a race, a reused buffer) cannot reach the store."""
    import zerotrustml.backends.embedded as embedded

    values = vec(1)
    honest = Submission.create("a", 0, SPEC.model_id, values, 5)
    real_validate = embedded.validate

    def validate_then_tamper(spec: Any, s: Submission) -> None:
        real_validate(spec, s)
        values[0] = np.float32(1e6)  # the caller's array, after the rules passed (before the fix: stored as is)

    monkeypatch.setattr(embedded, "validate", validate_then_tamper)
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        await store.submit(honest)
        got = await store.get_submission(0, "a")  # before the fix: StoreCorruptError (bytes do not match the hash)
        assert got is not None and got.payload_hash == honest.payload_hash
        assert got.values[0] != np.float32(1e6)


@async_test
async def test_a_damaged_payload_is_repaired_by_a_write_of_the_same_content(tmp_path: Path) -> None:
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        a = Submission.create("a", 0, SPEC.model_id, vec(2), 5)
        await store.submit(a)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("UPDATE payloads SET data = ? WHERE hash = ?", (np.zeros(DIMS, np.float32).tobytes(), a.payload_hash))
    conn.commit()
    conn.close()
    async with EmbeddedStore(tmp_path) as store:
        with pytest.raises(StoreCorruptError, match="does not match its hash"):
            await store.get_round(0)
        # Another node sends the same update (before the fix: INSERT OR IGNORE kept the damaged bytes).
        await store.submit(Submission.create("b", 0, SPEC.model_id, vec(2), 5))
        held = await store.get_round(0)
        assert [s.node_id for s in held] == ["a", "b"] and all(s.payload_hash == a.payload_hash for s in held)


@async_test
async def test_a_cancelled_submit_says_whether_it_committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from zerotrustml.exceptions import SubmitCancelled

    started, release = threading.Event(), threading.Event()
    real = EmbeddedStore._submit

    def slow(self: EmbeddedStore, conn: Any, s: Submission) -> bytes:
        started.set()
        release.wait(10)
        return real(self, conn, s)

    monkeypatch.setattr(EmbeddedStore, "_submit", slow)
    async with EmbeddedStore(tmp_path) as store:
        await store.set_model_spec(SPEC)
        for node, expect_committed in (("a", True), ("a", False)):  # the second is a duplicate: refused
            started.clear()
            release.clear()
            task = asyncio.create_task(store.submit(sub(node, 0, seed=3)))
            await asyncio.to_thread(started.wait, 10)
            task.cancel()
            release.set()
            with pytest.raises(SubmitCancelled) as err:
                await task
            assert isinstance(err.value, asyncio.CancelledError)
            assert err.value.committed is expect_committed
            if expect_committed:
                assert err.value.payload_hash == sub(node, 0, seed=3).payload_hash
                assert "the write committed" in str(err.value)
            else:
                assert "not committed (SubmissionRejected: round: this author already submitted" in str(err.value)
        assert len(await store.get_round(0)) == 1
