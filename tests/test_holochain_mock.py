"""The Holochain backend over the mock conductor: same answers as the zome, same runs as the embedded store.

The same checks run on real conductors in tests/test_holochain_conductors.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nacl.signing
import numpy as np
import pytest
from dht_cases import (
    PROPERTIES,
    assert_same_run,
    bad_submissions,
    contract_on_mock,
    outcome,
    run_on,
    submission,
    values,
)

from zerotrustml.backends.embedded import EmbeddedStore
from zerotrustml.backends.holochain import HolochainBackend
from zerotrustml.backends.mock_conductor import MockConductor, store_proof
from zerotrustml.defence.committee import cast_vote
from zerotrustml.exceptions import SubmissionRejected
from zerotrustml.holochain.errors import ZomeCallError
from zerotrustml.validation import ModelSpec, Submission


@pytest.mark.parametrize("aggregator", ["pipeline", "multi_krum"])
def test_mock_run_is_bit_identical_to_embedded(tmp_path: Path, aggregator: str) -> None:
    a = run_on("embedded", tmp_path / "e", aggregator=aggregator)
    b = run_on("mock", tmp_path / "m", aggregator=aggregator)
    assert_same_run(tmp_path / "e", a, tmp_path / "m", b)
    # The committee's votes went to the DHT and came back: the pipeline's decisions count valid votes.
    if aggregator == "pipeline":
        assert any(r["tp"] for r in b)


def test_votes_that_never_arrive_are_recorded_as_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dht_cases import votes_missing

    from zerotrustml.backends.holochain import HolochainView

    real = HolochainView.await_votes

    async def one_short(self: HolochainView, *args: Any, **kwargs: Any) -> list[Any]:
        return (await real(self, *args, **kwargs))[:-1]  # the last vote stays on a stalled conductor

    run_on("mock", tmp_path / "ok")
    assert votes_missing(tmp_path / "ok") == {}  # every vote arrived: nothing recorded
    monkeypatch.setattr(HolochainView, "await_votes", one_short)
    rows = run_on("mock", tmp_path / "m")
    # Every round with a committee is decided on the votes that arrived, and says one was missing.
    assert votes_missing(tmp_path / "m") == {r["round"]: 1 for r in rows}


def test_contract_cases_on_the_mock(tmp_path: Path) -> None:
    answers = dict(asyncio.run(contract_on_mock(tmp_path / "dht")))
    # Spot checks that the suite means what it says (the full list is compared with real conductors).
    assert answers["submit dims"][:3] == ("rejected", "dims", "dims_mismatch")
    assert answers["submit nan"][:3] == ("rejected", "values", "non_finite")
    assert answers["submit duplicate"][:3] == ("rejected", "round", "duplicate")
    assert answers["submit proof nonce"] == (
        "rejected",
        "proof.nonce",
        "bad_proof",
        "proof.nonce: must be 16 bytes, got 4",
    )
    assert answers["register replayed"][0] == "zome_error"
    assert answers["register replayed"][1].startswith("NodeRegistration.signature: does not verify")
    assert answers["vote own"] == ("zome_error", "CommitteeVote.submission: a member cannot vote on its own submission")
    assert answers["registrations"] == ("ok", [("A", "node-a"), ("B", "node-b")])
    # Issue 11 item 8: on a closed network a vote needs its round's beacon, signed by the admission key.
    assert answers["vote without beacon"][1].startswith("CommitteeVote.beacon: required on a closed network")
    assert answers["vote forged beacon"][1].startswith("CommitteeVote.beacon: not the admission key's beacon")
    assert answers["vote stale beacon"][1].startswith("CommitteeVote.beacon: not the admission key's beacon")
    assert answers["lottery without beacon"][0] == "zome_error" and answers["lottery"] == ("ok", True)
    assert answers["vote"] == ("ok", 39)
    assert answers["reputation same round"][1].startswith(
        "ReputationRecord.round: this author's opinion of this agent is already at round 0"
    )
    assert answers["submit proof signature"][:3] == ("rejected", "proof.signature", "bad_proof")
    assert answers["aggregate hand-picked"] == ("ok", "ok")  # a subset validates ...
    cover = {"covered": 1, "round_submissions": 2, "complete": False}
    assert answers["hand-picked coverage"] == ("ok", [(True, cover)])  # ... and says what it covers
    full = {"covered": 2, "round_submissions": 2, "complete": True}
    assert [x[-1] for x in answers["aggregates"][1]] == [full, full]
    assert answers["chain status"] == ("ok", {"status": "valid", "fork_seq": None})

    # One table for both stores: the contract's refused submissions (each answered by the mock as by real
    # conductors, see test_holochain_conductors) get the same answers from the embedded store.
    def as_submission(p: dict[str, Any]) -> Submission:
        v = np.asarray(p["values"], dtype=np.float32)
        return Submission(
            "A", p["round"], p["model_id"], v, p["example_count"], p["norm"], p["payload_hash"], store_proof(p["proof"])
        )

    async def embedded() -> dict[str, tuple[Any, ...]]:
        props = PROPERTIES
        spec = ModelSpec(
            props["model_id"], props["dims"], props["max_norm"], props["max_payload_bytes"], props["max_round"]
        )
        async with EmbeddedStore(tmp_path / "emb") as store:
            await store.set_model_spec(spec)
            await store.submit(as_submission(submission(0, values())))
            return {name: await outcome(store.submit(as_submission(p))) for name, p in bad_submissions().items()}

    got = asyncio.run(embedded())
    assert got == {name: answers[f"submit {name}"] for name in got}
    assert all(a[0] == "rejected" for a in got.values())


SPEC = ModelSpec("mock-v1", dims=6, max_norm=10.0, max_round=9)


async def _backend(tmp_path: Path, n: int = 3) -> tuple[HolochainBackend, dict[str, nacl.signing.SigningKey]]:
    backend = HolochainBackend(tmp_path / "local", mode="mock", round_timeout=2.0, poll=0.01)
    await backend.open()
    await backend.set_model_spec(SPEC)
    keys = {f"n{i}": nacl.signing.SigningKey(bytes([i + 1]) * 32) for i in range(n)}
    await backend.add_nodes(keys)
    return backend, keys


def test_rejections_match_the_embedded_store(tmp_path: Path) -> None:
    v = np.arange(6, dtype=np.float32) * 0.1
    cases = {
        "dims": Submission.create("n0", 1, "mock-v1", np.zeros(4, np.float32), 3),
        "model": Submission.create("n0", 1, "other", v, 3),
        "nan": Submission(
            "n0",
            1,
            "mock-v1",
            np.where(np.arange(6) == 2, np.nan, v).astype(np.float32),
            3,
            1.0,
            Submission.create("n0", 1, "mock-v1", v, 3).payload_hash,
        ),
        "norm lie": Submission("n0", 1, "mock-v1", v, 3, 9.0, Submission.create("n0", 1, "mock-v1", v, 3).payload_hash),
        "round": Submission.create("n0", 10, "mock-v1", v, 3),
        "examples": Submission.create("n0", 1, "mock-v1", v, 0),
    }

    async def go() -> None:
        backend, _ = await _backend(tmp_path)
        store = EmbeddedStore(tmp_path / "emb")
        async with store:
            await store.set_model_spec(SPEC)
            try:
                for name, sub in cases.items():
                    with pytest.raises(SubmissionRejected) as want:
                        await store.submit(sub)
                    with pytest.raises(SubmissionRejected) as got:
                        await backend.submit(sub)
                    assert (got.value.field, got.value.code, str(got.value)) == (
                        want.value.field,
                        want.value.code,
                        str(want.value),
                    ), name
                ok = Submission.create("n0", 1, "mock-v1", v, 3)
                assert await backend.submit(ok) == ok.payload_hash == await store.submit(ok)
                for target in (store, backend):
                    with pytest.raises(SubmissionRejected) as dup:
                        await target.submit(Submission.create("n0", 1, "mock-v1", v * 2, 3))
                    assert dup.value.code == "duplicate"
                held = await backend.get_round(1)
                assert [s.node_id for s in held] == ["n0"] and held[0].values.tobytes() == v.tobytes()
            finally:
                await backend.close()

    asyncio.run(go())


def test_votes_round_trip_with_their_signatures(tmp_path: Path) -> None:
    async def go() -> None:
        backend, keys = await _backend(tmp_path)
        try:
            v = np.linspace(-1, 1, 6, dtype=np.float32)
            subs = [Submission.create(n, 0, "mock-v1", v + i, 5) for i, n in enumerate(sorted(keys))]
            for s in subs:
                await backend.submit(s)
            held = await backend.view("n2").get_round(0)
            votes = [
                cast_vote(
                    keys[m],
                    voter=m,
                    round=0,
                    node_id=s.node_id,
                    payload_hash=s.payload_hash,
                    quality=0.1 * i,
                    accept=i % 2 == 0,
                )
                for m in ("n1", "n0")
                for i, s in enumerate(held)
                if s.node_id != m
            ]
            await backend.publish_votes(0, votes)
            read = await backend.view("n2").await_votes(0, held, ["n1", "n0"], expected=len(votes))
            assert read == votes  # same objects, same order (members' order), signatures intact
            assert all(x.verify_signature() for x in read)
        finally:
            await backend.close()

    asyncio.run(go())


def test_registration_must_be_signed_by_the_node_key_for_this_agent(tmp_path: Path) -> None:
    async def go() -> None:
        mock = MockConductor(tmp_path / "dht", PROPERTIES)
        await mock.start()
        try:
            a, b = mock.new_cell(), mock.new_cell()
            from zerotrustml.backends.holochain import sign_registration

            sk = nacl.signing.SigningKey(b"\x05" * 32)
            with pytest.raises(ZomeCallError, match=r"NodeRegistration\.signature: does not verify"):
                await b.call("register_node", sign_registration(sk, a.agent, "n"))
            await a.call("register_node", sign_registration(sk, a.agent, "n"))
            with pytest.raises(ZomeCallError, match="already registered"):
                await a.call("register_node", sign_registration(sk, a.agent, "n"))
        finally:
            await mock.stop()

    asyncio.run(go())


def test_holochain_runs_do_not_resume_a_finished_store(tmp_path: Path) -> None:
    run_on("mock", tmp_path / "m", rounds=1)
    from zerotrustml.backends import StoreError

    with pytest.raises(StoreError, match="cannot resume"):
        run_on("mock", tmp_path / "m", rounds=1)


def test_a_node_whose_conductor_is_gone_is_reported_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zerotrustml.holochain.errors import ConductorUnavailable

    real_submit = HolochainBackend.submit

    async def flaky(self: HolochainBackend, sub: Submission) -> bytes:
        if sub.node_id == "node-1" and sub.round >= 1:
            raise ConductorUnavailable("conductor at ws://127.0.0.1:1: not back within 1 s")
        return await real_submit(self, sub)

    monkeypatch.setattr(HolochainBackend, "submit", flaky)
    rows = run_on("mock", tmp_path / "m")
    assert len(rows) == 3  # the rounds complete with the rest

    async def evidence() -> list[Any]:
        store = EmbeddedStore(tmp_path / "m")
        async with store:
            return [(await store.get_round_record(r)).evidence for r in range(3)]  # type: ignore[union-attr]

    ev = asyncio.run(evidence())
    assert "missing" not in ev[0]
    for e in ev[1:]:
        assert e["missing"] == ["node-1"] and "not back within" in e["unreachable"]["node-1"]
        assert "node-1" not in e.get("reasons", {})  # missing is not flagged


def test_an_outsider_cannot_take_a_members_id_nor_join_a_round(tmp_path: Path) -> None:
    from zerotrustml.backends.holochain import sign_registration

    async def go() -> None:
        backend, keys = await _backend(tmp_path)
        try:
            outsider = backend.network.new_cell()
            squat = nacl.signing.SigningKey(b"\x66" * 32)
            await outsider.call("register_node", sign_registration(squat, outsider.agent, "n1"))
            reg = await backend.view("n0").registry()
            assert reg[backend.agent_of("n1")].node_id == "n1"
            assert outsider.agent not in reg  # the squatter's claim on a member's id counts for nothing
            v = np.linspace(-1, 1, 6, dtype=np.float32)
            await backend.submit(Submission.create("n1", 0, "mock-v1", v, 5))
            big = Submission.create("x", 0, "mock-v1", v * 3, 10_000)
            await outsider.call(
                "submit_gradient",
                {"round": 0, "model_id": "mock-v1", "values": [float(x) for x in big.values], "example_count": 10_000},
            )
            held = await backend.view("n2").get_round(0)
            by_id = {s.node_id: s for s in held}
            assert by_id["n1"].values.tobytes() == v.tobytes()  # n1's own update, under n1
            assert sum(1 for s in held if s.node_id != "n1") == 1  # the outsider's, under its agent key
        finally:
            await backend.close()

    asyncio.run(go())


def test_strangers_entries_do_not_enter_the_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_add = HolochainBackend.add_nodes
    real_submit = HolochainBackend.submit

    async def add_and_stranger(self: HolochainBackend, keys: Any, **kw: Any) -> None:
        await real_add(self, keys, **kw)
        self._stranger = self.network.new_cell()  # type: ignore[attr-defined]

    async def submit_with_stranger(self: HolochainBackend, sub: Submission) -> bytes:
        out = await real_submit(self, sub)
        if sub.node_id == "node-0":  # a stranger floods every round with a huge claimed example count
            v = (np.asarray(sub.values) * 50).astype(np.float32)
            await self._stranger.call(  # type: ignore[attr-defined]
                "submit_gradient",
                {"round": sub.round, "model_id": sub.model_id, "values": [float(x) for x in v], "example_count": 10**6},
            )
        return out

    monkeypatch.setattr(HolochainBackend, "add_nodes", add_and_stranger)
    monkeypatch.setattr(HolochainBackend, "submit", submit_with_stranger)
    for rule in ("mean", "pipeline"):
        a = run_on("embedded", tmp_path / f"e-{rule}", aggregator=rule)
        b = run_on("mock", tmp_path / f"m-{rule}", aggregator=rule)
        rows_a = [{k: v for k, v in r.items() if k != "verdicts"} for r in a]
        assert len(rows_a) == len(b)

        async def ignored(path: Path = tmp_path / f"m-{rule}") -> list[Any]:
            store = EmbeddedStore(path)
            async with store:
                return [(await store.get_round_record(r)).evidence.get("ignored") for r in range(3)]  # type: ignore[union-attr]

        assert all(x and len(x) == 1 and x[0].startswith("uhCAk") for x in asyncio.run(ignored()))
        # Apart from that note, the run is the embedded store's, bit for bit.
        from dht_cases import _without_timings

        for x, y in zip(a, b, strict=True):
            assert _without_timings(x) == _without_timings(y)


def test_published_results_say_what_they_cover(tmp_path: Path) -> None:
    # Issue 11 item 4: a result over a hand-picked subset of the round validates; readers see what it covers.
    from zerotrustml.backends import RoundRecord

    async def go() -> None:
        backend, keys = await _backend(tmp_path)
        try:
            v = np.linspace(-1, 1, 6, dtype=np.float32)
            subs = [Submission.create(n, 0, "mock-v1", v * (i + 1) / 4, 5) for i, n in enumerate(sorted(keys))]
            for s in subs:
                await backend.submit(s)
            for node, picked in (("n0", subs), ("n2", subs[2:])):
                rec = RoundRecord(0, "mean", tuple(s.node_id for s in picked), (), picked[0].values, v)
                assert await backend.publish_result(node, rec, picked) is not None
            got = {r["author"]: r["coverage"] for r in await backend.get_results(0, "n1")}
            assert got == {
                "n0": {"covered": 3, "round_submissions": 3, "complete": True},
                "n2": {"covered": 1, "round_submissions": 3, "complete": False},
            }
        finally:
            await backend.close()

    asyncio.run(go())
