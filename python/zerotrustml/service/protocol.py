"""What a node signs for the HTTP service, and the request bodies it sends.

Every write to the service is signed by the node's Ed25519 key. A registration is signed twice: by the node
(possession of the key it registers) and, unless the federation is open, by the federation's admission key
(membership, as on the DHT). A submission's signature covers everything that decides what is stored:

    lp("zerotrustml/service/submit/v1") || lp(federation) || lp(node_id) || round (u64 BE) || lp(model_id)
      || payload hash (32 bytes, SHA-256 of the float32 payload) || example_count (u64 BE) || nonce (16 bytes)

(``lp(x)`` = x's length as a big-endian u32, then x.) The federation id binds a request to one service's
store, so it cannot be replayed at another; node, round and nonce make it a one-time request (a replay is
refused as ``replayed``, a second different submission for the round as ``duplicate``).

A registration's messages:

    node:      lp("zerotrustml/service/register/v1") || lp(federation) || lp(node_id) || public key (32 bytes)
    admission: lp("zerotrustml/service/admission/v1") || lp(federation) || lp(node_id) || public key (32 bytes)

:func:`submission_body` and :func:`registration_body` build the JSON bodies a client posts.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import numpy as np
import numpy.typing as npt

from zerotrustml.validation import payload_hash

__all__ = [
    "ADMISSION_DOMAIN",
    "REGISTER_DOMAIN",
    "SUBMIT_DOMAIN",
    "admission_message",
    "register_message",
    "registration_body",
    "submission_body",
    "submit_message",
    "verifies",
    "write_secret",
]

SUBMIT_DOMAIN = b"zerotrustml/service/submit/v1"
REGISTER_DOMAIN = b"zerotrustml/service/register/v1"
ADMISSION_DOMAIN = b"zerotrustml/service/admission/v1"


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def submit_message(
    federation: str, node_id: str, round: int, model_id: str, digest: bytes, example_count: int, nonce: bytes
) -> bytes:
    """The bytes a submission's signature covers (see the module docstring)."""
    return b"".join(
        (
            _lp(SUBMIT_DOMAIN),
            _lp(federation.encode()),
            _lp(node_id.encode()),
            struct.pack(">Q", round),
            _lp(model_id.encode()),
            digest,
            struct.pack(">Q", example_count),
            nonce,
        )
    )


def register_message(federation: str, node_id: str, public_key: bytes) -> bytes:
    """The bytes a node signs to register ``public_key`` as ``node_id``."""
    return _lp(REGISTER_DOMAIN) + _lp(federation.encode()) + _lp(node_id.encode()) + public_key


def admission_message(federation: str, node_id: str, public_key: bytes) -> bytes:
    """The bytes the federation's admission key signs to admit ``node_id`` with ``public_key``."""
    return _lp(ADMISSION_DOMAIN) + _lp(federation.encode()) + _lp(node_id.encode()) + public_key


def write_secret(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write ``text`` (a key or a token) to ``path``, readable by its owner only (mode 0600 from creation);
    ``exclusive`` refuses to replace a file that is there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    with os.fdopen(os.open(path, flags, 0o600), "w") as fh:
        fh.write(text + "\n")


def verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``message`` (False for malformed keys)."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


def submission_body(
    key: nacl.signing.SigningKey,
    *,
    federation: str,
    node_id: str,
    round: int,
    model_id: str,
    values: npt.ArrayLike,
    example_count: int,
    proof: Mapping[str, Any] | None = None,
    nonce: bytes | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/submissions``: the payload as float32 values, signed by ``key``."""
    payload = np.ascontiguousarray(values, dtype=np.float32)
    nonce = os.urandom(16) if nonce is None else nonce
    message = submit_message(federation, node_id, round, model_id, payload_hash(payload), example_count, nonce)
    return {
        "node_id": node_id,
        "round": round,
        "model_id": model_id,
        "values": payload.tolist(),
        "example_count": example_count,
        "nonce": nonce.hex(),
        "signature": key.sign(message).signature.hex(),
        "proof": dict(proof) if proof else None,
    }


def registration_body(
    key: nacl.signing.SigningKey,
    *,
    federation: str,
    node_id: str,
    admission_key: nacl.signing.SigningKey | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/nodes``; ``admission_key`` signs the admission (omit it for an open federation)."""
    public = bytes(key.verify_key)
    admission = None
    if admission_key is not None:
        admission = admission_key.sign(admission_message(federation, node_id, public)).signature.hex()
    return {
        "node_id": node_id,
        "public_key": public.hex(),
        "signature": key.sign(register_message(federation, node_id, public)).signature.hex(),
        "admission": admission,
    }
