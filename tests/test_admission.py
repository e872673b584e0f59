"""Admission to a closed network: the proof format, and the mock conductor refusing intruders as the zome does.

The same refusals on real conductors are in test_holochain_conductors.py
(``test_admission_refuses_intruders_on_real_conductors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import nacl.signing
import pytest
from dht_cases import PROPERTIES

from zerotrustml.backends.holochain import sign_registration
from zerotrustml.backends.mock_conductor import MockConductor
from zerotrustml.exceptions import ParameterError
from zerotrustml.holochain.admission import (
    admission_message,
    admission_property,
    issue_admission,
    parse_admission,
    verify_admission,
)
from zerotrustml.holochain.errors import ConductorError, ZomeCallError
from zerotrustml.holochain.wire import agent_key

KEY = nacl.signing.SigningKey(b"\x21" * 32)
AGENT = agent_key(b"\x31" * 32)
OTHER = agent_key(b"\x32" * 32)


def test_message_layout_is_length_prefixed_domain_agent_seed() -> None:
    msg = admission_message(AGENT, "seed-1")
    domain = b"zerotrustml/admission/v1"
    assert (
        msg
        == struct.pack(">I", len(domain)) + domain + struct.pack(">I", 39) + AGENT + struct.pack(">I", 6) + b"seed-1"
    )
    with pytest.raises(ParameterError, match="^agent: must be a 39-byte AgentPubKey"):
        admission_message(AGENT[:32], "seed-1")


def test_a_proof_admits_one_agent_on_one_network() -> None:
    pub = bytes(KEY.verify_key)
    proof = issue_admission(KEY, AGENT, "seed-1")
    assert len(proof) == 64
    assert verify_admission(pub, AGENT, "seed-1", proof)
    assert not verify_admission(pub, OTHER, "seed-1", proof)  # another agent cannot reuse it
    assert not verify_admission(pub, AGENT, "seed-2", proof)  # nor carry it to another network
    assert not verify_admission(bytes(nacl.signing.SigningKey(b"\x22" * 32).verify_key), AGENT, "seed-1", proof)
    assert not verify_admission(pub, AGENT, "seed-1", proof[:63])


def test_admission_property_round_trips_and_bad_values_are_named() -> None:
    prop = admission_property(KEY)
    assert prop == "ed25519:" + bytes(KEY.verify_key).hex()
    assert parse_admission(prop) == bytes(KEY.verify_key)
    assert parse_admission("open") is None
    for bad in ("closed", "ed25519:" + "a" * 63, "ed25519:" + "g" * 64, bytes(KEY.verify_key).hex(), "OPEN"):
        with pytest.raises(ParameterError, match='^admission: must be "open" or "ed25519:"'):
            parse_admission(bad)


@contextlib.asynccontextmanager
async def _mock(tmp_path: Path, key: nacl.signing.SigningKey | None) -> AsyncIterator[MockConductor]:
    mock = MockConductor(tmp_path / "dht", PROPERTIES, network_seed="net-1", admission_key=key)
    await mock.start()
    try:
        yield mock
    finally:
        await mock.stop()


def test_intruders_are_refused_at_install_on_a_closed_network(tmp_path: Path) -> None:
    async def go() -> None:
        async with _mock(tmp_path, KEY) as mock:
            assert mock.properties["admission"] == admission_property(KEY)
            member = mock.new_cell()  # the network's key issues the proof
            assert verify_admission(bytes(KEY.verify_key), member.agent, "net-1", member.membrane_proof)
            intruders = {
                b"": "membrane proof: required",
                b"\x01" * 10: "membrane proof: must be 64 bytes, got 10",
                issue_admission(KEY, OTHER, "net-1"): "membrane proof: not signed by the admission key",
                issue_admission(KEY, AGENT, "net-2"): "membrane proof: not signed by the admission key",
                issue_admission(nacl.signing.SigningKey(b"\x23" * 32), AGENT, "net-1"): "not signed by the admission",
            }
            for proof, reason in intruders.items():
                with pytest.raises(ConductorError, match=reason):
                    mock.new_cell(proof)
            assert mock.participants == {member.agent}  # nothing of the refused installs remains

    asyncio.run(go())


def test_registration_carries_the_agents_admission(tmp_path: Path) -> None:
    async def go() -> None:
        async with _mock(tmp_path, KEY) as mock:
            a, b = mock.new_cell(), mock.new_cell()
            node_key = nacl.signing.SigningKey(b"\x41" * 32)
            # B's proof in A's registration: signed by the admission key, but for another agent.
            stolen = dict(sign_registration(node_key, a.agent, "node-a"), admission=b.membrane_proof)
            with pytest.raises(ZomeCallError, match="NodeRegistration.admission: not signed by the admission key"):
                await a.call("register_node", stolen)
            assert await a.call("get_node_registrations") == []
            await a.call("register_node", sign_registration(node_key, a.agent, "node-a"))  # filled in by the zome
            (reg,) = await b.call("get_node_registrations")
            assert reg["registration"]["admission"] == a.membrane_proof

    asyncio.run(go())


def test_an_open_network_says_so_and_admits_anyone(tmp_path: Path) -> None:
    async def go() -> None:
        async with _mock(tmp_path, None) as mock:
            cell = mock.new_cell()
            assert (await cell.call("get_model_properties"))["admission"] == "open"
            await cell.call("register_node", sign_registration(nacl.signing.SigningKey(b"\x42" * 32), cell.agent, "x"))

    asyncio.run(go())


def test_cli_issues_proofs_the_network_accepts(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from zerotrustml.cli import main
    from zerotrustml.holochain.wire import hash_b64

    runner = CliRunner()
    key_file = tmp_path / "admission.key"
    made = runner.invoke(main, ["admission", "keygen", "--out", str(key_file)])
    assert made.exit_code == 0, made.output
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    prop = made.output.strip()
    public = parse_admission(prop)
    assert public is not None
    shown = runner.invoke(main, ["admission", "property", "--key", str(key_file)])
    assert shown.output.strip() == prop
    again = runner.invoke(main, ["admission", "keygen", "--out", str(key_file)])
    assert again.exit_code != 0 and "refusing to overwrite" in again.output

    issued = runner.invoke(
        main, ["admission", "issue", "--key", str(key_file), "--agent", hash_b64(AGENT), "--network-seed", "s"]
    )
    assert issued.exit_code == 0, issued.output
    import base64

    assert verify_admission(public, AGENT, "s", base64.b64decode(issued.output.strip()))
    bad = runner.invoke(
        main, ["admission", "issue", "--key", str(key_file), "--agent", hash_b64(AGENT)[:-3], "--network-seed", "s"]
    )
    assert bad.exit_code != 0 and "--agent" in bad.output

    # The same key releases each round's committee beacon, which the network's validators accept.
    from zerotrustml.holochain.admission import verify_beacon

    shown = runner.invoke(
        main,
        ["admission", "beacon", "--key", str(key_file), "--committee-seed", "c", "--round", "7", "--format", "hex"],
    )
    assert shown.exit_code == 0, shown.output
    assert verify_beacon(public, "c", 7, bytes.fromhex(shown.output.strip()))
    assert not verify_beacon(public, "c", 8, bytes.fromhex(shown.output.strip()))
    negative = runner.invoke(
        main, ["admission", "beacon", "--key", str(key_file), "--committee-seed", "c", "--round", "-1"]
    )
    assert negative.exit_code != 0 and "--round" in negative.output
