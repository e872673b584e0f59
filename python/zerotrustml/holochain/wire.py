"""The conductor's websocket wire format: msgpack frames and Holochain hashes.

Every frame is a msgpack map. A request is ``{type: "request", id, data}``
and its answer ``{type: "response", id, data}``, where ``data`` is itself
msgpack of ``{type: <snake_case request name>, value: <argument>}``.
Signals arrive as ``{type: "signal", data}``; an app socket is opened with
``{type: "authenticate", data: msgpack({token})}``, which the conductor
does not answer (a bad token closes the socket).

Structs travel as maps keyed by field name; a ``Vec<u8>`` without
``serde_bytes`` as an array of ints; hashes as 39-byte binaries: a 3-byte
type prefix, the 32-byte hash, and 4 bytes of DHT location.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt

__all__ = [
    "packb",
    "unpackb",
    "RawPayload",
    "pack_f32_array",
    "pack_map_with_f32",
    "AGENT_PREFIX",
    "ACTION_PREFIX",
    "ENTRY_PREFIX",
    "DNA_PREFIX",
    "dht_location",
    "holo_hash",
    "agent_key",
    "hash_b64",
    "core32",
]

AGENT_PREFIX = bytes([0x84, 0x20, 0x24])
ACTION_PREFIX = bytes([0x84, 0x29, 0x24])
ENTRY_PREFIX = bytes([0x84, 0x21, 0x24])
DNA_PREFIX = bytes([0x84, 0x2D, 0x24])
HASH_BYTES = 39


def packb(obj: Any) -> bytes:
    """msgpack with binary for ``bytes`` (as Holochain's serde expects)."""
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


class RawPayload:
    """A zome call argument already encoded as msgpack (see :func:`pack_map_with_f32`)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def pack_f32_array(values: npt.ArrayLike) -> bytes:
    """A msgpack array of float32 values (marker 0xca, big-endian), built with numpy: 5 bytes a value."""
    v = np.ascontiguousarray(values, dtype=">f4")
    n = v.shape[0]
    if n < 16:
        head = bytes([0x90 | n])
    elif n < 2**16:
        head = b"\xdc" + n.to_bytes(2, "big")
    else:
        head = b"\xdd" + n.to_bytes(4, "big")
    body = np.empty((n, 5), dtype=np.uint8)
    body[:, 0] = 0xCA
    body[:, 1:] = v.view(np.uint8).reshape(n, 4)
    return head + body.tobytes()


def pack_map_with_f32(fields: dict[str, Any], key: str, values: npt.ArrayLike) -> RawPayload:
    """msgpack of ``{**fields, key: values}`` with ``values`` as float32 (the zome's ``Vec<f32>``).

    Everything else keeps msgpack's defaults (floats as float64), so a
    float64 claim such as a norm or a loss is not rounded.
    """
    n = len(fields) + 1
    if n >= 16:
        raise ValueError("pack_map_with_f32: at most 15 fields")
    parts = [bytes([0x80 | n])]
    for k, v in fields.items():
        parts.append(packb(k))
        parts.append(packb(v))
    parts.append(packb(key))
    parts.append(pack_f32_array(values))
    return RawPayload(b"".join(parts))


def unpackb(data: bytes) -> Any:
    """msgpack as Python: maps with non-string keys allowed (hash-keyed maps)."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def dht_location(core: bytes) -> bytes:
    """The 4 location bytes of a 32-byte hash core: BLAKE2b-128, folded by XOR into 4 bytes."""
    h = hashlib.blake2b(core, digest_size=16).digest()
    loc = bytearray(h[0:4])
    for i in range(4, 16, 4):
        for j in range(4):
            loc[j] ^= h[i + j]
    return bytes(loc)


def holo_hash(prefix: bytes, core: bytes) -> bytes:
    """A 39-byte Holochain hash from its type prefix and 32-byte core."""
    if len(prefix) != 3 or len(core) != 32:
        raise ValueError(f"holo_hash: needs a 3-byte prefix and a 32-byte core, got {len(prefix)} and {len(core)}")
    return prefix + core + dht_location(core)


def agent_key(ed25519_public: bytes) -> bytes:
    """The AgentPubKey (39 bytes) of an Ed25519 public key."""
    return holo_hash(AGENT_PREFIX, ed25519_public)


def core32(h: bytes) -> bytes:
    """The 32-byte core of a 39-byte hash."""
    if len(h) != HASH_BYTES:
        raise ValueError(f"expected a {HASH_BYTES}-byte Holochain hash, got {len(h)} bytes")
    return bytes(h[3:35])


def hash_b64(h: bytes) -> str:
    """Holochain's text form of a hash: ``u`` + URL-safe base64 without padding (``uhCAk...`` for agents)."""
    return "u" + base64.urlsafe_b64encode(bytes(h)).decode().rstrip("=")


def hash_from_b64(text: str) -> bytes:
    """Inverse of :func:`hash_b64`."""
    if not text.startswith("u"):
        raise ValueError(f"not a Holochain hash string: {text!r}")
    body = text[1:]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    if len(raw) != HASH_BYTES:
        raise ValueError(f"not a Holochain hash string: {text!r} decodes to {len(raw)} bytes")
    return raw
