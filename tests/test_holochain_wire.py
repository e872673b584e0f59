"""The conductor client's wire helpers and error mapping (no conductor needed)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import msgpack
import nacl.signing
import numpy as np
import pytest

from zerotrustml.backends.holochain import registration_message, sign_registration
from zerotrustml.exceptions import SubmissionRejected
from zerotrustml.holochain.client import AdminClient
from zerotrustml.holochain.errors import CallRefused, ConductorError, rejection_from, zome_reason
from zerotrustml.holochain.wire import (
    AGENT_PREFIX,
    agent_key,
    dht_location,
    hash_b64,
    hash_from_b64,
    pack_f32_array,
    pack_map_with_f32,
    unpackb,
)


def test_agent_key_shape_and_location() -> None:
    pub = bytes(range(32))
    key = agent_key(pub)
    assert len(key) == 39 and key[:3] == AGENT_PREFIX and key[3:35] == pub
    # Location: BLAKE2b-128 of the core, its four 4-byte words XORed together.
    h = hashlib.blake2b(pub, digest_size=16).digest()
    want = bytes(h[j] ^ h[4 + j] ^ h[8 + j] ^ h[12 + j] for j in range(4))
    assert dht_location(pub) == want == key[35:]


def test_hash_text_form_round_trips() -> None:
    key = agent_key(b"\x07" * 32)
    text = hash_b64(key)
    assert text.startswith("uhCAk") and "=" not in text
    assert hash_from_b64(text) == key
    with pytest.raises(ValueError, match="not a Holochain hash string"):
        hash_from_b64("xhCAk")


@pytest.mark.parametrize("n", [0, 1, 15, 16, 65535, 65536])
def test_f32_arrays_decode_exactly(n: int) -> None:
    values = np.random.default_rng(n).normal(size=n).astype(np.float32)
    decoded = unpackb(pack_f32_array(values))
    assert np.asarray(decoded, dtype=np.float32).tobytes() == values.tobytes()
    if n:
        assert len(pack_f32_array(values)) - (1 if n < 16 else 3 if n < 65536 else 5) == 5 * n


def test_map_with_f32_keeps_other_floats_f64() -> None:
    values = np.array([0.1, -2.5, np.float32(1e-30)], dtype=np.float32)
    raw = pack_map_with_f32({"norm": 0.1, "round": 3, "hash": b"\x01\x02"}, "values", values)
    decoded = msgpack.unpackb(raw.data, raw=False)
    assert decoded["norm"] == 0.1  # float64: not rounded to float32
    assert decoded["round"] == 3 and decoded["hash"] == b"\x01\x02"
    assert np.asarray(decoded["values"], dtype=np.float32).tobytes() == values.tobytes()


# What a conductor answers when the integrity zome refuses a commit (the reason sits inside Debug-formatted
# wrappers, quotes escaped).
CONDUCTOR_TEXT = (
    'RibosomeError(WasmRuntimeError(RuntimeError { source: User(Guest("Source chain error: InvalidCommit error: '
    'GradientSubmission.model_id: expected \\"m\\", got \\"other\\" [model_mismatch]")) }))'
)


def test_zome_rejection_becomes_the_embedded_stores_error() -> None:
    reason = zome_reason(CONDUCTOR_TEXT)
    err = rejection_from(reason)
    assert isinstance(err, SubmissionRejected)
    assert (err.field, err.code) == ("model_id", "model_mismatch")
    assert str(err) == 'model_id: expected "m", got "other"'


def test_validation_failures_as_the_conductor_reports_them() -> None:
    # Read off a Holochain 0.6.3 conductor: the zome's message ends the text, unwrapped.
    message = "CommitteeVote.registration: node key 0a0b is not on the committee of round 4 (hash lottery, rate 0.5)"
    text = "Source chain error: InvalidCommit error: Validation failed while committing: " + message
    assert zome_reason(text) == message
    text = text.replace(
        text[text.index("CommitteeVote") :],
        "GradientSubmission.dims: the model has 24 parameters, got 4 [dims_mismatch]",
    )
    err = rejection_from(zome_reason(text))
    assert err is not None and (err.field, err.code, str(err)) == (
        "dims",
        "dims_mismatch",
        "dims: the model has 24 parameters, got 4",
    )


def test_other_entry_errors_are_not_submission_rejections() -> None:
    assert rejection_from("NodeRegistration.signature: does not verify under node_key") is None
    assert rejection_from("something else entirely") is None
    # Rules of the submission entry without a core code keep their field, under a generic code.
    err = rejection_from("GradientSubmission.proof.nonce: must be 16 bytes, got 4")
    assert err is not None and (err.field, err.code) == ("proof.nonce", "invalid")
    assert str(err) == "proof.nonce: must be 16 bytes, got 4"


def test_registration_signature_covers_agent_node_id_and_key() -> None:
    sk = nacl.signing.SigningKey(b"\x01" * 32)
    agent = agent_key(b"\x02" * 32)
    reg = sign_registration(sk, agent, "node-7")
    assert reg["node_key"] == bytes(sk.verify_key) and len(reg["signature"]) == 64
    msg = registration_message(agent, "node-7", reg["node_key"])
    sk.verify_key.verify(msg, reg["signature"])
    # The same signature does not stand for another agent or another id.
    for other in (
        registration_message(agent_key(b"\x03" * 32), "node-7", reg["node_key"]),
        registration_message(agent, "node-8", reg["node_key"]),
    ):
        with pytest.raises(nacl.exceptions.BadSignatureError):
            sk.verify_key.verify(other, reg["signature"])


class _Admin(AdminClient):
    """An admin client whose requests answer from a script instead of a socket."""

    def __init__(self, answers: list[Exception | None]) -> None:
        self.url = "ws://test"
        self.answers = answers
        self.kinds: list[str] = []

    async def request(self, kind: str, value: Any = None, timeout: float = 30.0) -> Any:
        self.kinds.append(kind)
        answer = self.answers.pop(0)
        if answer is not None:
            raise answer
        return None


def test_a_grant_the_conductor_says_may_be_retried_is_retried_and_nothing_else_is() -> None:
    retryable = ConductorError(
        "conductor at ws://test: grant_zome_call_capability failed (internal_error): Source chain error: The commit "
        "could not be completed but may be retried: DepMissingFromDht([...])"
    )
    admin = _Admin([retryable, retryable, None])
    creds = asyncio.run(admin.authorize_signing([b"d" * 39, b"a" * 39]))
    assert admin.kinds == ["grant_zome_call_capability"] * 3 and len(creds.cap_secret) == 64
    other = ConductorError("conductor at ws://test: grant_zome_call_capability failed (internal_error): bad cell")
    with pytest.raises(ConductorError, match="bad cell"):
        asyncio.run(_Admin([other, None]).authorize_signing([b"d" * 39, b"a" * 39]))
    refused = CallRefused("conductor at ws://test: grant_zome_call_capability refused (unauthorized): may be retried")
    with pytest.raises(CallRefused):
        asyncio.run(_Admin([refused, None]).authorize_signing([b"d" * 39, b"a" * 39]))
    # Bounded: past its deadline the last answer is raised.
    with pytest.raises(ConductorError, match="may be retried"):
        asyncio.run(_Admin([retryable] * 50).authorize_signing([b"d" * 39, b"a" * 39], retry_for=0.3))
