"""Edge proofs (PoGQ): honest proofs verify, every tampering and replay is caught.

The model is the package's real softmax regression on scikit-learn's digits;
the update is a real local-training pseudo-gradient.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import nacl.signing
import numpy as np
import pytest

from zerotrustml.backends.embedded import EmbeddedStore
from zerotrustml.defence.proofs import (
    EDGE_PROOF_DOMAIN,
    EdgeClient,
    EdgeProof,
    EdgeProofGenerator,
    KeyRing,
    ProofError,
    relative_improvement,
    verify_proof,
    verify_submission_proof,
)
from zerotrustml.exceptions import ValidationError
from zerotrustml.fl.data import load_dataset
from zerotrustml.fl.models import Model, local_update, make_model
from zerotrustml.validation import ModelSpec, payload_hash

LR = 0.5


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    ds = load_dataset("digits", seed=0)
    model = make_model("softmax", ds.n_features, ds.n_classes)
    params = model.init(0)
    x_tr, y_tr = ds.x_train[:300], ds.y_train[:300]
    x_ho, y_ho = ds.x_train[300:450], ds.y_train[300:450]
    update, _ = local_update(model, params, x_tr, y_tr, steps=3, lr=LR, batch_size=None, rng=np.random.default_rng(0))
    return {"ds": ds, "model": model, "params": params, "update": update, "x_ho": x_ho, "y_ho": y_ho}


@pytest.fixture(scope="module")
def key() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(b"\x01" * 32)


def _prove(setup: dict[str, Any], key: nacl.signing.SigningKey, update: Any = None, **kw: Any) -> EdgeProof:
    args = {"node_id": "node-a", "round": 3, "lr": LR} | kw
    return EdgeProofGenerator(key).prove(
        setup["model"],
        setup["params"],
        setup["update"] if update is None else update,
        setup["x_ho"],
        setup["y_ho"],
        **args,
    )


def _resign(proof: EdgeProof, key: nacl.signing.SigningKey, **changes: Any) -> EdgeProof:
    """A proof with fields changed and a valid signature by ``key`` (what a forger with a key can make)."""
    unsigned = dataclasses.replace(proof, **changes)
    return dataclasses.replace(unsigned, signature=key.sign(unsigned.message()).signature)


def _verify(proof: EdgeProof, **kw: Any) -> None:
    args = {
        "node_id": proof.node_id,
        "round": proof.round,
        "payload_hash": proof.payload_hash,
        "public_key": proof.public_key,
    } | kw
    verify_proof(proof, **args)


def _code(proof: EdgeProof, **kw: Any) -> str:
    with pytest.raises(ProofError) as info:
        _verify(proof, **kw)
    assert isinstance(info.value, ValidationError)
    assert str(info.value).startswith(info.value.field + ":")
    return info.value.code


def test_honest_update_has_positive_quality_and_verifies(setup: dict[str, Any], key: nacl.signing.SigningKey) -> None:
    proof = _prove(setup, key)
    model: Model = setup["model"]
    before = model.loss(setup["params"], setup["x_ho"], setup["y_ho"])
    assert proof.loss_before == pytest.approx(before, rel=1e-12)
    assert proof.loss_after < proof.loss_before
    assert proof.quality == pytest.approx((proof.loss_before - proof.loss_after) / proof.loss_before)
    assert proof.quality > 0.05
    assert proof.holdout_size == 150
    assert proof.payload_hash == payload_hash(setup["update"])
    assert proof.public_key == bytes(key.verify_key)
    assert len(proof.nonce) == 16 and len(proof.signature) == 64
    verify_proof(proof, node_id="node-a", round=3, payload_hash=proof.payload_hash, public_key=bytes(key.verify_key))


def test_proofs_of_the_same_update_have_fresh_nonces(setup: dict[str, Any], key: nacl.signing.SigningKey) -> None:
    a, b = _prove(setup, key), _prove(setup, key)
    assert a.nonce != b.nonce
    assert (a.loss_before, a.loss_after) == (b.loss_before, b.loss_after)


def test_message_is_canonical_bytes_with_the_domain_tag(setup: dict[str, Any], key: nacl.signing.SigningKey) -> None:
    proof = _prove(setup, key)
    msg = proof.message()
    assert msg[4 : 4 + len(EDGE_PROOF_DOMAIN)] == EDGE_PROOF_DOMAIN
    assert b"{" not in msg[:40]  # not JSON
    assert proof.signature not in msg
    # Length prefixes keep field boundaries: moving a character between
    # adjacent text fields must change the bytes.
    assert dataclasses.replace(proof, node_id="node-ab").message() != msg


TAMPERS: dict[str, Any] = {
    "loss_before": lambda p: p.loss_before + 1e-9,
    "loss_after": lambda p: p.loss_after * 0.5,
    "payload_hash": lambda p: bytes([p.payload_hash[0] ^ 1]) + p.payload_hash[1:],
    "round": lambda p: p.round + 1,
    "nonce": lambda p: bytes([p.nonce[0] ^ 0x80]) + p.nonce[1:],
    "node_id": lambda p: "node-b",
    "lr": lambda p: p.lr * 2,
    "holdout_size": lambda p: p.holdout_size + 1,
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_any_tampered_field_fails_the_signature(setup: dict[str, Any], key: nacl.signing.SigningKey, name: str) -> None:
    proof = _prove(setup, key)
    forged = dataclasses.replace(proof, **{name: TAMPERS[name](proof)})
    # The verifier expects exactly what the forged proof claims, so only the signature can catch it ...
    assert _code(forged) == "bad_signature"
    # ... and against the original binding it is still the signature that fails first.
    assert _code(forged, node_id=proof.node_id, round=proof.round, payload_hash=proof.payload_hash) == "bad_signature"


def test_tampered_signature_fails(setup: dict[str, Any], key: nacl.signing.SigningKey) -> None:
    proof = _prove(setup, key)
    forged = dataclasses.replace(proof, signature=proof.signature[:-1] + bytes([proof.signature[-1] ^ 1]))
    assert _code(forged) == "bad_signature"


def test_wrong_key(setup: dict[str, Any], key: nacl.signing.SigningKey) -> None:
    proof = _prove(setup, key)
    other = nacl.signing.SigningKey(b"\x02" * 32)
    # The registered key is someone else's.
    assert _code(proof, public_key=bytes(other.verify_key)) == "wrong_key"
    # A forger re-signs better losses with its own key and puts its key in the proof.
    forged = _resign(proof, other, loss_after=0.0, public_key=bytes(other.verify_key))
    assert _code(forged, public_key=bytes(key.verify_key)) == "wrong_key"
    # Swapping only the key field (and registering it) leaves a signature that does not verify.
    assert _code(dataclasses.replace(proof, public_key=bytes(other.verify_key))) == "bad_signature"


def test_intact_proof_bound_to_another_submission(setup: dict[str, Any], key: nacl.signing.SigningKey) -> None:
    proof = _prove(setup, key)
    assert _code(proof, node_id="node-b") == "node_mismatch"
    assert _code(proof, round=4) == "round_mismatch"
    assert _code(proof, payload_hash=bytes(32)) == "payload_mismatch"


def test_replayed_nonce(setup: dict[str, Any], key: nacl.signing.SigningKey) -> None:
    proof = _prove(setup, key)
    seen: set[bytes] = set()
    forged = dataclasses.replace(proof, loss_after=0.0)
    assert _code(forged, seen_nonces=seen) == "bad_signature"
    assert seen == set()  # a rejected forgery must not burn the honest node's nonce
    _verify(proof, seen_nonces=seen)
    assert seen == {proof.nonce}
    assert _code(proof, seen_nonces=seen) == "replay"


def test_signed_non_finite_losses_are_rejected(setup: dict[str, Any], key: nacl.signing.SigningKey) -> None:
    proof = _prove(setup, key)
    for name, value in (("loss_after", float("nan")), ("loss_before", float("inf")), ("lr", float("-inf"))):
        with pytest.raises(ProofError) as info:
            _verify(_resign(proof, key, **{name: value}))
        assert (info.value.code, info.value.field) == ("non_finite", name)
    assert _code(_resign(proof, key, lr=0.0)) == "malformed"


def test_sign_flipped_update_proves_negative_quality(setup: dict[str, Any], key: nacl.signing.SigningKey) -> None:
    flipped = -setup["update"]
    proof = _prove(setup, key, update=flipped)
    assert proof.loss_after > proof.loss_before
    assert proof.quality < 0
    _verify(proof)  # honest about a harmful update: the signature is fine, the number is what matters


def test_generator_refuses_a_proof_for_another_payload(setup: dict[str, Any], key: nacl.signing.SigningKey) -> None:
    with pytest.raises(ProofError) as info:
        _prove(setup, key, payload_hash=bytes(32))
    assert info.value.code == "payload_mismatch"
    bad = setup["update"].copy()
    bad[0] = np.nan
    with pytest.raises(ProofError) as info:
        _prove(setup, key, update=bad)
    assert info.value.code == "non_finite"


def test_json_round_trip(setup: dict[str, Any], key: nacl.signing.SigningKey) -> None:
    proof = _prove(setup, key)
    text = json.dumps(proof.to_json(), allow_nan=False, sort_keys=True)
    back = EdgeProof.from_json(json.loads(text))
    assert back == proof
    assert back.message() == proof.message()
    _verify(back)


@pytest.mark.parametrize(
    "change",
    [
        {"nonce": "00" * 15},
        {"signature": "zz" * 64},
        {"public_key": 123},
        {"round": -1},
        {"round": True},
        {"holdout_size": 0},
        {"loss_after": "0.1"},
        {"scheme": "zerotrustml/edge-proof/v0"},
        {"extra": 1},
    ],
)
def test_malformed_json_is_rejected(setup: dict[str, Any], key: nacl.signing.SigningKey, change: Any) -> None:
    d = _prove(setup, key).to_json() | change
    with pytest.raises(ProofError) as info:
        EdgeProof.from_json(d)
    assert info.value.code == "malformed"
    d = _prove(setup, key).to_json()
    del d["nonce"]
    with pytest.raises(ProofError, match="nonce"):
        EdgeProof.from_json(d)


def test_malformed_sizes_are_rejected_at_construction(setup: dict[str, Any], key: nacl.signing.SigningKey) -> None:
    proof = _prove(setup, key)
    for name, value in (("nonce", b"x" * 15), ("payload_hash", b"x" * 31), ("signature", b""), ("public_key", "k")):
        with pytest.raises(ProofError) as info:
            dataclasses.replace(proof, **{name: value})
        assert (info.value.code, info.value.field) == ("malformed", name)
    with pytest.raises(ProofError):
        verify_proof(proof, node_id="node-a", round=3, payload_hash=b"short", public_key=proof.public_key)


def test_relative_improvement_definition() -> None:
    assert relative_improvement(2.0, 1.5) == 0.25
    assert relative_improvement(2.0, 3.0) == -0.5
    assert relative_improvement(0.0, 0.0) == 0.0  # the floor guards the division
    assert relative_improvement(0.0, 1e-12) == -1.0


def test_keyring_registers_once(key: nacl.signing.SigningKey) -> None:
    ring = KeyRing()
    ring.register("a", key.verify_key)
    ring.register("a", bytes(key.verify_key))  # the same key again is fine
    with pytest.raises(ProofError) as info:
        ring.register("a", bytes(nacl.signing.SigningKey(b"\x03" * 32).verify_key))
    assert info.value.code == "key_conflict"
    assert dict(ring) == {"a": bytes(key.verify_key)}
    with pytest.raises(ProofError) as info:
        ring.register("b", b"short")
    assert info.value.code == "malformed"


def test_keyring_verify(setup: dict[str, Any], key: nacl.signing.SigningKey) -> None:
    proof = _prove(setup, key)
    ring = KeyRing({"node-a": bytes(key.verify_key)})
    ring.verify(proof, node_id="node-a", round=3, payload_hash=proof.payload_hash)
    with pytest.raises(ProofError) as info:
        ring.verify(proof, node_id="node-z", round=3, payload_hash=proof.payload_hash)
    assert info.value.code == "unknown_key"


def _client(setup: dict[str, Any], **kw: Any) -> EdgeClient:
    ds = setup["ds"]
    return EdgeClient(
        "node-a",
        setup["model"],
        ds.x_train[:300],
        ds.y_train[:300],
        setup["x_ho"],
        setup["y_ho"],
        local_steps=2,
        lr=LR,
        batch_size=64,
        seed=7,
        **kw,
    )


def test_edge_client_trains_deterministically_and_proves(setup: dict[str, Any]) -> None:
    client = _client(setup)
    params = setup["params"]
    u1, u2 = client.train(params, 1), client.train(params, 1)
    assert u1.dtype == np.float32 and np.array_equal(u1, u2)
    assert not np.array_equal(u1, client.train(params, 2))  # minibatch order depends on the round
    proof = client.prove(params, u1, 1)
    assert proof.quality > 0
    verify_proof(proof, node_id="node-a", round=1, payload_hash=payload_hash(u1), public_key=client.public_key)


def test_edge_client_end_to_end_with_the_embedded_store(setup: dict[str, Any], tmp_path: Path) -> None:
    model: Model = setup["model"]
    key = nacl.signing.SigningKey(b"\x04" * 32)
    client = _client(setup, signing_key=key)
    assert client.public_key == bytes(key.verify_key)
    ring = KeyRing()
    ring.register(client.node_id, client.public_key)

    async def scenario() -> None:
        async with EmbeddedStore(tmp_path) as store:
            await store.set_model_spec(ModelSpec("digits-softmax", dims=model.dims))
            digest = await client.submit(store, setup["params"], 5, "digits-softmax")
        # Reopen: the proof must survive the store's JSON round trip and a restart.
        async with EmbeddedStore(tmp_path) as store:
            sub = await store.get_submission(5, "node-a")
        assert sub is not None and sub.payload_hash == digest
        seen: set[bytes] = set()
        proof = verify_submission_proof(sub, ring["node-a"], seen_nonces=seen)
        assert proof.quality > 0 and proof.round == 5
        assert proof.payload_hash == payload_hash(sub.values)
        with pytest.raises(ProofError) as info:
            verify_submission_proof(sub, ring["node-a"], seen_nonces=seen)
        assert info.value.code == "replay"
        # The stored update really has the quality claimed, on the node's own held-out data.
        assert proof.loss_after == pytest.approx(
            model.loss(setup["params"].astype(np.float64) - LR * sub.values.astype(np.float64), *_holdout(setup))
        )

    asyncio.run(scenario())


def _holdout(setup: dict[str, Any]) -> tuple[Any, Any]:
    return setup["x_ho"], setup["y_ho"]


def test_submission_without_proof(setup: dict[str, Any], key: nacl.signing.SigningKey) -> None:
    from zerotrustml.validation import Submission

    sub = Submission.create("node-a", 0, "m", setup["update"], 10)
    with pytest.raises(ProofError) as info:
        verify_submission_proof(sub, bytes(key.verify_key))
    assert info.value.code == "missing"
