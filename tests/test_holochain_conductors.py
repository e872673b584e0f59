"""The bridge on real Holochain 0.6.3 conductors: client, local networks, backend, faults.

Needs the conductor binaries and the packed hApp (``make happ``); ``make
test-holochain`` runs this module after building them. Without them these
tests fail: they are never skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import nacl.signing
import numpy as np
import pytest
from dht_cases import (
    ADMISSION_KEY,
    PROPERTIES,
    assert_same_run,
    contract_cases,
    contract_on_mock,
    eventually,
    run_on,
    run_on_dht,
    submission,
    values,
)

from zerotrustml.backends.holochain import sign_registration
from zerotrustml.exceptions import SubmissionRejected
from zerotrustml.holochain.admission import admission_property
from zerotrustml.holochain.client import AdminClient, Signal
from zerotrustml.holochain.errors import (
    CallRefused,
    ConductorError,
    ConductorTimeout,
    ConductorUnavailable,
    ZomeCallError,
)
from zerotrustml.holochain.network import LocalNetwork

pytestmark = pytest.mark.conductors

ROOT = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0); it is dead for our purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_contract_mock_and_conductors_give_the_same_answers(tmp_path: Path) -> None:
    async def on_conductors() -> list[Any]:
        async with LocalNetwork(2, 2, properties=PROPERTIES, admission=ADMISSION_KEY) as net:
            return await contract_cases(net.agents[0].cell, net.agents[1].cell)

    real, mock = asyncio.run(on_conductors()), asyncio.run(contract_on_mock(tmp_path / "dht"))
    assert [name for name, _ in real] == [name for name, _ in mock]
    for (name, got), (_, want) in zip(real, mock, strict=True):
        assert got == want, f"{name}: conductor {got!r} != mock {want!r}"


def test_holochain_run_is_bit_identical_to_embedded(tmp_path: Path) -> None:
    a = run_on("embedded", tmp_path / "e")
    where, b = run_on_dht(tmp_path / "h", {"conductors": 2, "round_timeout": 120.0})
    assert_same_run(tmp_path / "e", a, where, b)
    # Every honest agent read the round through its own conductor and reached the same bits.
    assert all(r["agreement_ms"] >= 0 for r in b)


def test_signals_local_and_remote() -> None:
    async def go() -> None:
        async with LocalNetwork(2, 2, properties=PROPERTIES) as net:
            a, b = net.agents
            got_a: list[Signal] = []
            got_b: list[Signal] = []
            a.app.subscribe(got_a.append)
            b.app.subscribe(got_b.append)
            # Remote signals are fire and forget, sent to the participants the author can see: first make sure
            # the two conductors are connected (each reads the other's warm-up submission).
            await a.cell.call("submit_gradient", submission(2, values()))
            await b.cell.call("submit_gradient", submission(2, values(0.5)))
            for reader in (a, b):
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline:
                    if len(await reader.cell.call("get_round_submissions", 2)) == 2:
                        break
                    await net.share_peer_infos()
                    await asyncio.sleep(1.0)
            got_a.clear()
            got_b.clear()
            action = await a.cell.call("submit_gradient", submission(3, values()))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not any(s.kind == "app" for s in got_b):
                await asyncio.sleep(0.5)
            local = [s.payload for s in got_a if s.kind == "app"]
            remote = [s.payload for s in got_b if s.kind == "app"]
            assert {"type": "SubmissionCommitted", "round": 3, "action_hash": action} in local
            assert {"type": "NewSubmission", "round": 3, "action_hash": action, "author": a.agent_key} in remote

    asyncio.run(go())


def test_zome_rejection_is_the_typed_error_and_refused_calls_are_refused() -> None:
    async def go() -> None:
        async with LocalNetwork(2, 1, properties=PROPERTIES) as net:
            a, b = net.agents
            with pytest.raises(SubmissionRejected) as err:
                await a.cell.call("submit_gradient", submission(1, values(n=20)))
            assert (err.value.field, err.value.code) == ("dims", "dims_mismatch")
            assert str(err.value) == "dims: the model has 24 parameters, got 20"
            # A signature that does not cover the call.
            signed = a.cell.signed_call("get_model_properties", None)
            tampered = dict(signed, signature=bytes(64))
            with pytest.raises(CallRefused):
                await a.cell.send(tampered, "get_model_properties")
            # A's credentials on B's cell: no capability there.
            from zerotrustml.holochain.client import Cell

            foreign = Cell(a.app, b.cell.cell_id, a.cell.credentials)
            with pytest.raises(CallRefused):
                await foreign.call("get_model_properties")
            # Nothing of the refused calls was written: A still has no submission.
            assert await a.cell.call("get_agent_submissions", a.agent_key) == []

    asyncio.run(go())


def test_admission_refuses_intruders_on_real_conductors() -> None:
    """A closed network (the default of a LocalNetwork with properties) installs only agents whose membrane proof
    its admission key signed, and an open one admits anyone and says so (the attack it leaves open)."""

    async def go() -> None:
        async with LocalNetwork(1, 1, properties=PROPERTIES) as net:
            assert net.admission_key is not None
            (member,) = net.agents
            props = await member.cell.call("get_model_properties")
            assert props["admission"] == admission_property(net.admission_key)
            other = net.admission_key.sign(b"x")  # any signature by the key, over the wrong message
            intruders = {
                b"": "membrane proof: required",
                b"\x01" * 10: "membrane proof: must be 64 bytes, got 10",
                member.membrane_proof: "membrane proof: not signed by the admission key",  # another agent's proof
                bytes(other.signature): "membrane proof: not signed by the admission key",
            }
            for proof, reason in intruders.items():
                with pytest.raises(ConductorError, match=reason):
                    await net.add_agent(0, membrane_proof=proof)
            # An admitted agent joins; its registration carries its proof, and a stolen proof is refused.
            newcomer = await net.add_agent(0)
            key = nacl.signing.SigningKey(b"\x51" * 32)
            stolen = dict(sign_registration(key, newcomer.agent_key, "n"), admission=member.membrane_proof)
            with pytest.raises(ZomeCallError, match="NodeRegistration.admission: not signed by the admission key"):
                await newcomer.cell.call("register_node", stolen)
            await newcomer.cell.call("register_node", sign_registration(key, newcomer.agent_key, "n"))
            (reg,) = await member.cell.call("get_node_registrations")
            assert bytes(reg["registration"]["admission"]) == newcomer.membrane_proof
            assert sorted(map(bytes, await member.cell.call("get_participants"))) == sorted(
                a.agent_key for a in net.agents
            )

        async with LocalNetwork(1, 1, properties=PROPERTIES, admission="open") as net:
            assert (await net.agents[0].cell.call("get_model_properties"))["admission"] == "open"
            anyone = await net.add_agent(0, membrane_proof=b"")  # no proof at all
            await anyone.cell.call(
                "register_node", sign_registration(nacl.signing.SigningKey(b"\x52" * 32), anyone.agent_key, "m")
            )

    asyncio.run(go())


def test_conductor_not_running_is_named() -> None:
    async def go() -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with pytest.raises(ConductorUnavailable, match=rf"conductor at ws://127\.0\.0\.1:{port}: cannot connect"):
            await AdminClient.connect(port, timeout=3.0)

    asyncio.run(go())


def test_killed_conductor_restarts_and_nothing_acknowledged_is_lost() -> None:
    async def go() -> None:
        async with LocalNetwork(2, 2, properties=PROPERTIES) as net:
            a, b = net.agents
            first = await a.cell.call("submit_gradient", submission(0, values()))
            await net.kill_conductor(a.conductor)
            with pytest.raises(ConductorUnavailable):
                await AdminClient.connect(net.conductors[a.conductor].admin_port, timeout=2.0)
            # The next call waits for the conductor to come back, reconnects and goes through.
            restart = asyncio.create_task(net.restart_conductor(a.conductor))
            second = await a.cell.call("submit_gradient", submission(1, values(0.5)), timeout=120)
            await restart
            assert a.app.reconnects >= 1
            held = await a.cell.call("get_agent_submissions", a.agent_key)
            assert sorted(bytes(x["action_hash"]) for x in held) == sorted([bytes(first), bytes(second)])
            deadline = time.monotonic() + 120
            seen: list[Any] = []
            while time.monotonic() < deadline and len(seen) < 2:
                seen = await b.cell.call("get_agent_submissions", a.agent_key)
                await asyncio.sleep(0.5)
            assert len(seen) == 2

    asyncio.run(go())


def test_silent_agent_is_reported_missing_after_the_timeout(tmp_path: Path) -> None:
    async def go() -> None:
        import nacl.signing

        from zerotrustml.backends.holochain import HolochainBackend
        from zerotrustml.validation import ModelSpec, Submission

        spec = ModelSpec(PROPERTIES["model_id"], dims=24, max_norm=100.0, max_round=50)
        backend = HolochainBackend(tmp_path / "local", conductors=2, round_timeout=5.0)
        await backend.open()
        try:
            await backend.set_model_spec(spec)
            keys = {f"n{i}": nacl.signing.SigningKey(bytes([i + 1]) * 32) for i in range(3)}
            await backend.add_nodes(keys)
            for nid in ("n0", "n1"):  # n2 stays silent
                await backend.submit(Submission.create(nid, 0, spec.model_id, values(), 4))
            # n1 is on the other conductor: first let its submission reach n0's (gossip takes its time, and
            # this test is about the silent n2, not about propagation within the 5 s round timeout).
            view = backend.view("n0")
            deadline = time.monotonic() + 120
            while len(await view.get_round(0)) < 2 and time.monotonic() < deadline:
                await backend.nudge()
                await asyncio.sleep(0.5)
            t0 = time.monotonic()
            subs, missing = await view.await_round(0, ["n0", "n1", "n2"])
            assert [s.node_id for s in subs] == ["n0", "n1"] and missing == ["n2"]
            assert time.monotonic() - t0 >= 4.5
        finally:
            await backend.close()

    asyncio.run(go())


_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from zerotrustml.holochain.network import LocalNetwork
    async def main():
        net = LocalNetwork(2, 2)
        await net.start()
        print(json.dumps({"pids": net.pids(), "dir": str(net.work_dir)}), flush=True)
        await asyncio.sleep(600)
    asyncio.run(main())
    """
)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_no_orphan_processes(how: int) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())
        pids, work_dir = started["pids"], Path(started["dir"])
        assert len(pids) == 3 and all(_alive(p) for p in pids) and work_dir.is_dir()
        proc.send_signal(how)
        proc.wait(30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
        assert not [p for p in pids if _alive(p)], f"orphans after {signal.Signals(how).name}"
        if how == signal.SIGKILL:  # nothing runs in a killed process: its files are the caller's to remove
            shutil.rmtree(work_dir)
        else:  # the conductors' databases (~140 MB per network) must not pile up in /tmp
            assert not work_dir.exists(), f"{work_dir} left behind after {signal.Signals(how).name}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_dna_properties_follow_the_model(tmp_path: Path) -> None:
    async def go() -> None:
        props = dict(PROPERTIES, model_id="props-check", dims=7, max_payload_bytes=28, chunk_values=3)
        async with LocalNetwork(1, 1, properties=props) as net:
            got = await net.agents[0].cell.call("get_model_properties")
            assert net.admission_key is not None  # closed by a fresh key unless told otherwise
            assert got == dict(props, admission=admission_property(net.admission_key))
            v = np.arange(7, dtype=np.float32) / 10
            sub = submission(0, v, model_id="props-check")
            await net.agents[0].cell.call("submit_gradient", sub)
            (out,) = await net.agents[0].cell.call("get_round_submissions", 0)
            assert len(out["submission"]["chunk_hashes"]) == 3

    asyncio.run(go())


def test_live_swap_to_real_conductors_is_bit_identical(tmp_path: Path) -> None:
    import json as _json

    from dht_cases import SMALL_RUN

    from zerotrustml.fl.simulation import RunConfig, Simulation

    plain = run_on("embedded", tmp_path / "e")
    config = RunConfig(**{**SMALL_RUN, "backend": "embedded"})
    summary = Simulation(
        config, tmp_path / "s", swap_at_round=1, swap_to="holochain", swap_options={"conductors": 2}
    ).run()
    assert summary["swap"]["ok"], summary["swap"]["error"]
    assert summary["swap"]["submissions_verified"] == 2 * SMALL_RUN["nodes"]
    rows = [_json.loads(x) for x in (tmp_path / "s" / "run.jsonl").read_text().splitlines()]
    assert "agreement_ms" in rows[2]
    assert_same_run(tmp_path / "e", plain, tmp_path / "s", rows)


def test_cli_conductor_status_lists_the_apps() -> None:
    from click.testing import CliRunner

    from zerotrustml.cli import main

    async def go() -> str:
        async with LocalNetwork(2, 1, properties=PROPERTIES) as net:
            port = net.conductors[0].admin_port
            # click runs the command's own event loop: run it in a thread beside this one.
            result = await asyncio.to_thread(CliRunner().invoke, main, ["conductor", "--admin-port", str(port)])
            assert result.exit_code == 0, result.output
            return result.output

    out = asyncio.run(go())
    assert "2 app(s)" in out and "zerotrustml-0" in out and "zerotrustml-1" in out


def test_a_network_that_never_connects_gets_one_fresh_start() -> None:
    # Loopback peer connections fail now and then; the first start's connect barrier is made to fail here, and
    # the network must come up on its second start with new processes and working agents.
    class FlakyOnce(LocalNetwork):
        failed = False
        first_pids: list[int] = []

        async def await_connected(self, timeout: float | None = None) -> None:
            if not FlakyOnce.failed:
                FlakyOnce.failed = True
                self.first_pids = self.pids()
                raise ConductorTimeout("network not connected after 0 s: (made to fail by the test)")
            await super().await_connected(timeout)

    async def go() -> None:
        async with FlakyOnce(2, 2, properties=PROPERTIES) as net:
            assert FlakyOnce.failed and not any(_alive(p) for p in net.first_pids)
            assert set(net.pids()).isdisjoint(net.first_pids) and len(net.agents) == 2
            v = values()
            await net.agents[0].cell.call("submit_gradient", submission(0, v))
            rows = await eventually(lambda: net.agents[1].cell.call("get_round_submissions", 0), lambda r: len(r) >= 1)
            assert np.asarray(rows[0]["values"], dtype=np.float32).tobytes() == v.tobytes()

    asyncio.run(go())


def test_a_forked_chain_counts_for_nothing() -> None:
    # A Byzantine operator copies its conductor (keystore and chain) and commits a round-0 submission on each
    # copy: both pass the one-per-round chain walk, as each branch holds only its own. The honest reader sees both,
    # the activity authorities see the fork, and neither submission counts in an aggregate.
    async def go() -> None:
        async with LocalNetwork(2, 2, properties=PROPERTIES) as net:
            honest, liar = net.agents
            assert (await honest.cell.call("get_chain_status", liar.agent_key))["status"] == "valid"
            own = await honest.cell.call("submit_gradient", submission(0, values(0.5)))
            [twin] = await net.fork_conductor(liar.conductor)
            assert twin.agent_key == liar.agent_key
            on_twin = await twin.cell.call("submit_gradient", submission(0, values(1.0)), timeout=120)
            await eventually(lambda: honest.cell.call("get_round_submissions", 0), lambda r: len(r) >= 2)
            await net.kill_conductor(twin.conductor)
            await net.restart_conductor(liar.conductor)
            on_original = await liar.cell.call("submit_gradient", submission(0, values(0.0)), timeout=120)
            assert bytes(on_original) != bytes(on_twin)
            # Each branch still holds one submission per round.
            with pytest.raises(SubmissionRejected, match="already submitted"):
                await liar.cell.call("submit_gradient", submission(0, values(0.25)), timeout=120)

            rows = await eventually(lambda: honest.cell.call("get_round_submissions", 0), lambda r: len(r) >= 3)
            by_liar = sorted(bytes(r["action_hash"]) for r in rows if bytes(r["author"]) == liar.agent_key)
            assert by_liar == sorted([bytes(on_twin), bytes(on_original)])
            status = await eventually(
                lambda: honest.cell.call("get_chain_status", liar.agent_key), lambda s: s["status"] == "forked"
            )
            assert status["status"] == "forked" and status["fork_seq"] is not None
            assert await honest.cell.call("get_chain_status", honest.agent_key) == {"status": "valid", "fork_seq": None}

            agg = await honest.cell.call("compute_round_aggregate", {"round": 0, "rule": "mean", "f": 0})
            assert [bytes(h) for h in agg["contributors"]] == [bytes(own)]
            assert np.asarray(agg["values"], dtype=np.float32).tobytes() == values(0.5).tobytes()
            # An aggregate that counts the equivocator is refused by validation.
            forged = {
                "round": 0,
                "rule": "personal",
                "f": 0,
                "contributors": sorted([bytes(own), bytes(on_twin), bytes(on_original)]),
                "flagged": [],
                "values": [float(x) for x in values(0.5)],
            }
            with pytest.raises(ZomeCallError, match="equivocation: neither may count"):
                await liar.cell.call("publish_computed_aggregate", forged, timeout=120)
            await honest.cell.call("publish_aggregate", {"round": 0, "rule": "mean", "f": 0})
            [published] = await honest.cell.call("get_round_aggregates", 0)
            assert published["coverage"] == {"covered": 1, "round_submissions": 1, "complete": True}

    asyncio.run(go())


def test_the_guide_conductor_example_runs_as_written(tmp_path: Path) -> None:
    # docs/GUIDE.md's LocalNetwork example is skipped by the docs tests (it starts conductors); it runs here, as pasted.
    text = (ROOT / "docs" / "GUIDE.md").read_text()
    after = text.split("**From Python**, the conductor client is `zerotrustml.holochain`:", 1)[1]
    block = after.split("```python\n", 1)[1].split("```\n", 1)[0]
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("1 submission, from agent "), proc.stdout
