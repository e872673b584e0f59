"""Admission to a federation's network: membrane proofs signed by the federation's admission key.

A network's DNA properties name its admission rule (``admission``): ``"open"`` admits every agent (tests,
demos), ``"ed25519:<64 hex>"`` only agents whose membrane proof that key signed. The proof is the Ed25519
signature, by the admission key, over

    lp("zerotrustml/admission/v1") || lp(agent key, 39 bytes) || lp(network seed, UTF-8)

(``lp(x)`` = x's length as a big-endian u32, then x). It names the agent, so another key cannot reuse it, and
the network seed, so it is not valid on another network of the same DNA. The integrity zome checks it at
install (``genesis_self_check``), when validating the agent's genesis, and again in the agent's
``NodeRegistration``, which carries the same bytes.

Whoever holds the admission key decides membership::

    key = generate_admission_key()
    props = dna_properties(spec, admission=admission_property(key.verify_key))
    proof = issue_admission(key, agent_pub_key, network_seed)  # install the agent with this membrane proof

``zerotrustml admission keygen`` and ``zerotrustml admission issue`` do the same from a shell.

The same key releases the committee *beacons*, one per round: its signature over
``lp("zerotrustml/committee-beacon/v1") || lp(committee seed) || round (u64 big-endian)``. A closed
network's committee of round r is drawn with a seed derived from beacon r (the core's ``round_seed``),
and every vote carries the beacon of its round, which validators check against the admission key. Release
beacon r when round r starts (``zerotrustml admission beacon``): a node key registered before then cannot
have been ground for that round's committee.
"""

from __future__ import annotations

import struct

import nacl.exceptions
import nacl.signing

from zerotrustml.exceptions import ParameterError

__all__ = [
    "ADMISSION_DOMAIN",
    "OPEN",
    "admission_message",
    "admission_property",
    "generate_admission_key",
    "issue_admission",
    "parse_admission",
    "verify_admission",
    "issue_beacon",
    "verify_beacon",
]

ADMISSION_DOMAIN = b"zerotrustml/admission/v1"
OPEN = "open"
_PREFIX = "ed25519:"


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def admission_message(agent: bytes, network_seed: str) -> bytes:
    """The bytes an admission proof signs (``agent`` is the 39-byte AgentPubKey)."""
    if len(agent) != 39:
        raise ParameterError(f"agent: must be a 39-byte AgentPubKey, got {len(agent)} bytes")
    return _lp(ADMISSION_DOMAIN) + _lp(bytes(agent)) + _lp(network_seed.encode())


def generate_admission_key() -> nacl.signing.SigningKey:
    """A fresh admission key (keep it secret: whoever holds it decides who joins)."""
    return nacl.signing.SigningKey.generate()


def admission_property(key: nacl.signing.VerifyKey | nacl.signing.SigningKey | bytes) -> str:
    """The ``admission`` DNA property for an admission key (its public half is what the DNA names)."""
    if isinstance(key, nacl.signing.SigningKey):
        key = key.verify_key
    raw = bytes(key)
    if len(raw) != 32:
        raise ParameterError(f"admission: an Ed25519 public key is 32 bytes, got {len(raw)}")
    return _PREFIX + raw.hex()


def parse_admission(value: str) -> bytes | None:
    """The admission public key a property names, or ``None`` for ``"open"``; a malformed value raises."""
    if value == OPEN:
        return None
    hex_part = value[len(_PREFIX) :] if value.startswith(_PREFIX) else ""
    try:
        raw = bytes.fromhex(hex_part) if len(hex_part) == 64 else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ParameterError(f'admission: must be "open" or "ed25519:" and 64 hex digits, got {value!r}')
    return raw


def issue_admission(key: nacl.signing.SigningKey, agent: bytes, network_seed: str) -> bytes:
    """The membrane proof admitting ``agent`` to the network with ``network_seed`` (64 bytes)."""
    return bytes(key.sign(admission_message(agent, network_seed)).signature)


def verify_admission(public_key: bytes, agent: bytes, network_seed: str, proof: bytes) -> bool:
    """Whether ``proof`` admits ``agent`` under the admission key ``public_key``."""
    return _verifies(public_key, admission_message(agent, network_seed), proof)


def _verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(signature) != 64:
        return False
    try:
        nacl.signing.VerifyKey(bytes(public_key)).verify(message, bytes(signature))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False
    return True


def issue_beacon(key: nacl.signing.SigningKey, committee_seed: str, round: int) -> bytes:
    """The committee beacon of ``round`` (64 bytes): the admission key's signature over the core's message."""
    from zerotrustml import _core

    return bytes(key.sign(_core.beacon_message(committee_seed.encode(), int(round))).signature)


def verify_beacon(public_key: bytes, committee_seed: str, round: int, beacon: bytes) -> bool:
    """Whether ``beacon`` is the admission key ``public_key``'s beacon of ``round``."""
    from zerotrustml import _core

    return _verifies(public_key, _core.beacon_message(committee_seed.encode(), int(round)), beacon)
