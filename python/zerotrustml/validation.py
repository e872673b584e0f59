"""Submissions and the rules every backend applies to them.

The rules are the Rust core's (``zerotrustml_core::validation``), the same
code the integrity zome runs compiled to wasm, so the embedded store accepts
exactly what the DHT accepts. A broken rule raises
:class:`~zerotrustml.exceptions.SubmissionRejected`, whose ``field`` names
the field and ``code`` the rule (``dims_mismatch``, ``non_finite``,
``norm_bound``, ``norm_mismatch``, ``hash_mismatch``, ``too_large``,
``duplicate``, ``bad_hash``, ``bad_proof``, ...).

Payload hash: SHA-256 over the little-endian float32 bytes of the values in
order. Norm: L2, accumulated in float64; a claimed norm must agree within a
relative ``NORM_RTOL``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from zerotrustml import _core
from zerotrustml.exceptions import ParameterError, SubmissionRejected

NORM_RTOL: float = _core.NORM_RTOL

__all__ = [
    "NORM_RTOL",
    "ModelSpec",
    "Submission",
    "payload_hash",
    "l2_norm",
    "validate",
    "check_unique",
    "check_proof",
    "DHT_PROOF_SCHEME",
    "SubmissionRejected",
]

#: The scheme of a proof in the form the DHT stores it: the losses, step,
#: held-out size, nonce and signature (hex), without the node id, round,
#: payload hash and public key that the entry and its author imply. The
#: mock conductor keeps its agents' proofs in this form.
DHT_PROOF_SCHEME = "zerotrustml/dht-edge-proof/v1"
_DHT_PROOF_KEYS = frozenset({"scheme", "loss_before", "loss_after", "holdout_size", "lr", "nonce", "signature"})


def _payload(values: Any, name: str = "values") -> npt.NDArray[np.float32]:
    arr = np.asarray(values)
    if arr.dtype != np.float32:
        raise TypeError(f"{name}: payloads are float32, got {arr.dtype}")
    if arr.ndim != 1:
        raise ParameterError(f"{name}: a payload is a flat vector, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def payload_hash(values: npt.ArrayLike) -> bytes:
    """SHA-256 of a float32 payload's little-endian bytes (32 bytes)."""
    return _core.payload_hash(_payload(values))


def l2_norm(values: npt.ArrayLike) -> float:
    """L2 norm of a float32 payload, accumulated in float64 in index order."""
    return _core.l2_norm(_payload(values))


@dataclass(frozen=True)
class ModelSpec:
    """What every submission of a run must look like.

    Parameters
    ----------
    model_id
        Name of the model; submissions for another model are rejected.
    dims
        Number of parameters (the payload length).
    max_norm
        Largest accepted L2 norm of a payload.
    max_payload_bytes
        Size limit; defaults to one payload (``4 * dims``).
    max_round
        Last round accepted (inclusive), or ``None`` for no bound.
    """

    model_id: str
    dims: int
    max_norm: float = 1e6
    max_payload_bytes: int | None = None
    max_round: int | None = None

    def __post_init__(self) -> None:
        # Normalised at construction, so a spec equals itself read back from any backend.
        if self.max_payload_bytes is None:
            object.__setattr__(self, "max_payload_bytes", 4 * self.dims)

    def as_tuple(self) -> tuple[str, int, float, int, int | None]:
        size = 4 * self.dims if self.max_payload_bytes is None else self.max_payload_bytes
        return (self.model_id, self.dims, self.max_norm, size, self.max_round)

    def check(self) -> None:
        """Raise ``SubmissionRejected`` (code ``bad_spec``) if the spec is unusable."""
        if self.dims < 1 or (self.max_payload_bytes is not None and self.max_payload_bytes < 0):
            err = SubmissionRejected(f"model spec dims: must be at least 1 (got {self.dims})")
            err.field, err.code = "dims", "bad_spec"
            raise err
        _core.check_spec(self.as_tuple())

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "dims": self.dims,
            "max_norm": self.max_norm,
            "max_payload_bytes": self.as_tuple()[3],
            "max_round": self.max_round,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelSpec:
        return cls(
            model_id=str(d["model_id"]),
            dims=int(d["dims"]),
            max_norm=float(d["max_norm"]),
            max_payload_bytes=int(d["max_payload_bytes"]),
            max_round=None if d.get("max_round") is None else int(d["max_round"]),
        )


@dataclass(frozen=True, eq=False)
class Submission:
    """One node's update for one round, with the claims the rules check.

    Build one with :meth:`create`, which computes the norm and the hash;
    the constructor takes the claims as given (a Byzantine client may lie
    about them, and the rules must catch it).
    """

    node_id: str
    round: int
    model_id: str
    values: npt.NDArray[np.float32]
    example_count: int
    norm: float
    payload_hash: bytes
    proof: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        node_id: str,
        round: int,
        model_id: str,
        values: npt.ArrayLike,
        example_count: int,
        proof: Mapping[str, Any] | None = None,
    ) -> Submission:
        payload = _payload(np.asarray(values, dtype=np.float32))
        return cls(
            node_id=node_id,
            round=round,
            model_id=model_id,
            values=payload,
            example_count=example_count,
            norm=l2_norm(payload),
            payload_hash=payload_hash(payload),
            proof=dict(proof or {}),
        )

    @property
    def hash_hex(self) -> str:
        return self.payload_hash.hex()

    @property
    def dims(self) -> int:
        return int(np.asarray(self.values).shape[0]) if np.asarray(self.values).ndim == 1 else -1


def _reject(field_name: str, code: str, message: str) -> SubmissionRejected:
    err = SubmissionRejected(f"{field_name}: {message}")
    err.field, err.code = field_name, code
    return err


def validate(spec: ModelSpec, sub: Submission) -> None:
    """Apply every rule of one submission; raise ``SubmissionRejected`` on the first broken one."""
    if not sub.node_id or not isinstance(sub.node_id, str):
        raise _reject("node_id", "bad_node", "must be a non-empty string")
    for name, value in (("round", sub.round), ("example_count", sub.example_count)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise _reject(name, "bad_integer", f"must be a non-negative integer, got {value!r}")
        if value >= 2**64:  # beyond any u64; the core rule then names the largest value it takes
            raise _reject(name, "bad_integer", f"must be below 2**64, got {value!r}")
    if isinstance(sub.norm, bool) or not isinstance(sub.norm, (int, float, np.floating)):
        raise _reject("norm", "bad_norm", f"must be a number, got {sub.norm!r}")
    if not isinstance(sub.payload_hash, bytes):
        raise _reject("payload_hash", "bad_hash", f"must be 32 bytes, got {type(sub.payload_hash).__name__}")
    if len(sub.payload_hash) != 32:
        raise _reject("payload_hash", "bad_hash", f"must be 32 bytes, got {len(sub.payload_hash)}")
    check_proof(sub)
    values = np.asarray(sub.values)
    if values.dtype != np.float32:
        raise _reject("values", "bad_dtype", f"payloads are float32, got {values.dtype}")
    if values.ndim != 1:
        raise _reject("values", "length_mismatch", f"a payload is a flat vector, got shape {values.shape}")
    _core.validate_submission(
        spec.as_tuple(),
        np.ascontiguousarray(values),
        model_id=sub.model_id,
        round=int(sub.round),
        dims=int(values.shape[0]),
        norm=float(sub.norm),
        example_count=int(sub.example_count),
        payload_hash=sub.payload_hash,
    )


def check_proof(sub: Submission) -> dict[str, Any] | None:
    """The form of ``sub.proof``, by the core's rule (the one the integrity zome applies); its fields as the zome's
    ``EdgeProof`` holds them (losses, held-out size, step, nonce and signature bytes), or ``None`` for no proof.

    A proof is empty (none), an :class:`~zerotrustml.defence.proofs.EdgeProof`
    in its ``to_json`` form bound to this submission's node, round and
    payload hash, or a proof in the DHT's form (:data:`DHT_PROOF_SCHEME`).
    Either way its losses and step are finite, ``lr > 0``, the held-out set
    has 1..2**63-1 examples, the nonce is 16 bytes and the signature empty
    or 64 bytes. The signature itself is evidence for committees, not a
    store rule. Raises ``SubmissionRejected`` (code ``bad_proof``, field
    ``proof`` or ``proof.<name>``).
    """
    proof = sub.proof
    if not isinstance(proof, Mapping):
        raise _reject("proof", "bad_proof", f"must be a mapping (empty for none), got {type(proof).__name__}")
    if not proof:
        return None
    fields = _dht_proof_fields(proof) if proof.get("scheme") == DHT_PROOF_SCHEME else _sdk_proof_fields(sub, proof)
    nonce, signature = fields["nonce"], fields["signature"]
    _core.check_proof(
        loss_before=fields["loss_before"],
        loss_after=fields["loss_after"],
        holdout_size=fields["holdout_size"],
        lr=fields["lr"],
        nonce_len=len(nonce),
        signature_len=len(signature),
    )
    return fields


def _dht_proof_fields(proof: Mapping[str, Any]) -> dict[str, Any]:
    keys = set(proof)
    if keys != _DHT_PROOF_KEYS:
        missing, extra = sorted(_DHT_PROOF_KEYS - keys), sorted(keys - _DHT_PROOF_KEYS)
        raise _reject("proof", "bad_proof", f"missing keys {missing}, unknown keys {extra}")
    fields: dict[str, Any] = {}
    for name in ("loss_before", "loss_after", "lr"):
        v = proof[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _reject(f"proof.{name}", "bad_proof", f"must be a number, got {v!r}")
        fields[name] = float(v)
    size = proof["holdout_size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 2**64:
        raise _reject("proof.holdout_size", "bad_proof", f"must be an integer in [0, 2**64), got {size!r}")
    fields["holdout_size"] = size
    for name in ("nonce", "signature"):
        try:
            fields[name] = bytes.fromhex(proof[name])
        except (TypeError, ValueError):
            raise _reject(f"proof.{name}", "bad_proof", f"must be hex, got {proof[name]!r}") from None
    return fields


def _sdk_proof_fields(sub: Submission, proof: Mapping[str, Any]) -> dict[str, Any]:
    from zerotrustml.defence.proofs import EdgeProof, ProofError

    try:
        p = EdgeProof.from_json(proof)
    except ProofError as err:
        name = "proof" if err.field == "proof" else f"proof.{err.field}"
        text = str(err)
        reason = text.split(": ", 1)[1] if text.startswith(f"{err.field}: ") else text
        raise _reject(name, "bad_proof", reason) from None
    for name, theirs, ours in (
        ("node_id", p.node_id, sub.node_id),
        ("round", p.round, sub.round),
        ("payload_hash", p.payload_hash, sub.payload_hash),
    ):
        if theirs != ours:
            shown = (
                (theirs.hex(), ours.hex())
                if isinstance(theirs, bytes) and isinstance(ours, bytes)
                else (repr(theirs), repr(ours))
            )
            raise _reject(f"proof.{name}", "bad_proof", f"the proof is for {shown[0]}, the submission for {shown[1]}")
    return {
        "loss_before": p.loss_before,
        "loss_after": p.loss_after,
        "holdout_size": p.holdout_size,
        "lr": p.lr,
        "nonce": p.nonce,
        "signature": p.signature,
    }


def check_unique(round: int, already: int) -> None:
    """One submission per node per round: ``already`` is how many are stored for this node and round."""
    _core.check_unique(round, already)
