"""Proofs of gradient quality (PoGQ): a node's signed claim about its own update.

A training node measures the loss of the real model on its own held-out data
before and after applying its update (``theta - lr * g``, the package's
pseudo-gradient convention), binds the two numbers to the update's payload
hash, the round, its node id and a fresh random nonce, and signs the result
with Ed25519 (:class:`EdgeProof`, made by :class:`EdgeProofGenerator`).
:class:`EdgeClient` is the SDK class a node uses end to end: train, prove,
build the :class:`~zerotrustml.validation.Submission`, submit.

What a proof shows, and what it does not: the signature shows that the key
holder claims these losses for exactly this update in exactly this round; it
cannot show the losses are true, since nobody else has the node's data. That
is why peers re-score updates on their own data (:mod:`zerotrustml.defence.committee`).

Quality
    ``(loss_before - loss_after) / max(loss_before, 1e-12)``: the relative
    decrease of the held-out loss. Relative rather than absolute, so that
    scores are comparable between nodes whose data have different loss
    scales; positive means the update helped, ``1`` would mean it drove the
    loss to zero, and it is unbounded below (a harmful update can raise the
    loss by any factor). The floor in the denominator only guards the
    division (the package's losses are cross-entropies, never negative).

Signed bytes (:meth:`EdgeProof.message`)
    Never JSON: every field in a fixed order, byte strings and text prefixed
    by their length as a big-endian ``u32``, integers as big-endian ``u64``,
    floats as IEEE-754 big-endian doubles, all after the length-prefixed
    domain tag :data:`EDGE_PROOF_DOMAIN`. The encoding is injective, so two
    different proofs never sign the same bytes, and the tag keeps a proof's
    signature from being replayed as any other signed object of the package.

Every check failure raises :class:`ProofError`, whose ``field`` names the
field and ``code`` the reason (``bad_signature``, ``wrong_key``,
``payload_mismatch``, ``round_mismatch``, ``node_mismatch``, ``replay``,
``non_finite``, ``malformed``, ``key_conflict``, ``unknown_key``,
``missing``).
"""

from __future__ import annotations

import asyncio
import math
import numbers
import os
import struct
from collections.abc import Iterator, Mapping, MutableSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nacl.exceptions
import nacl.signing
import numpy as np
import numpy.typing as npt

from zerotrustml.exceptions import ValidationError
from zerotrustml.fl.models import Model, local_update
from zerotrustml.validation import Submission
from zerotrustml.validation import payload_hash as compute_payload_hash

if TYPE_CHECKING:
    from zerotrustml.backends.base import Backend

__all__ = [
    "EDGE_PROOF_DOMAIN",
    "NONCE_BYTES",
    "QUALITY_EPS",
    "ProofError",
    "EdgeProof",
    "EdgeProofGenerator",
    "EdgeClient",
    "KeyRing",
    "verify_proof",
    "verify_submission_proof",
    "sign_claim",
    "relative_improvement",
    "holdout_losses",
]

EDGE_PROOF_DOMAIN = b"zerotrustml/edge-proof/v1"
"""Domain tag at the start of every signed edge proof."""

NONCE_BYTES = 16
"""Length of a proof's random nonce: 128 bits, so two honest proofs never collide."""

QUALITY_EPS = 1e-12
"""Floor of the denominator of the relative loss decrease."""

HASH_BYTES = 32
KEY_BYTES = 32
SIGNATURE_BYTES = 64
# Rounds are stored as SQLite's signed 64-bit INTEGER; accept exactly what a store can hold.
MAX_ROUND = 2**63 - 1
MAX_COUNT = 2**64 - 1

F32 = npt.NDArray[np.float32]


class ProofError(ValidationError):
    """A proof or vote is malformed, forged, replayed or bound to something else.

    Parameters
    ----------
    message
        Human-readable reason; it starts with the field name.
    field
        The field that failed (``"signature"``, ``"nonce"``, ...).
    code
        The rule that failed (``"bad_signature"``, ``"replay"``, ...).
    """

    field: str
    code: str

    def __init__(self, message: str, *, field: str, code: str) -> None:
        super().__init__(message)
        self.field = field
        self.code = code


def _error(field: str, code: str, reason: str) -> ProofError:
    return ProofError(f"{field}: {reason}", field=field, code=code)


# --------------------------------------------------------------------------
# Field checks and the canonical encoding (shared with committee votes)
# --------------------------------------------------------------------------


def _as_bytes(value: object, field: str, size: int) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        out = bytes(value)
        if len(out) == size:
            return out
        raise _error(field, "malformed", f"must be {size} bytes, got {len(out)}")
    raise _error(field, "malformed", f"must be {size} bytes, got {type(value).__name__}")


def _as_text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise _error(field, "malformed", f"must be a non-empty string, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _error(field, "malformed", "must be encodable as UTF-8") from None
    return value


def _as_int(value: object, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= int(value) <= hi:
        raise _error(field, "malformed", f"must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def _as_float(value: object, field: str) -> float:
    # Non-finite values are representable on purpose: verification, not
    # construction, rejects them, so a signed claim of NaN is reported as such.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _error(field, "malformed", f"must be a real number, got {value!r}")
    return float(value)


def _lp(data: bytes) -> bytes:
    """Length-prefixed bytes: the prefix is what makes a concatenation of fields unambiguous."""
    return struct.pack(">I", len(data)) + data


def _u64(value: int) -> bytes:
    return struct.pack(">Q", value)


def _f64(value: float) -> bytes:
    return struct.pack(">d", value)


def _verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        # CryptoError/ValueError cover keys that are not valid curve points:
        # to a verifier that is just another signature that does not check.
        return False
    return True


def _hex_field(d: Mapping[str, Any], key: str, size: int) -> bytes:
    value = d[key]
    if not isinstance(value, str):
        raise _error(key, "malformed", f"must be a hex string, got {type(value).__name__}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise _error(key, "malformed", "is not valid hex") from None
    return _as_bytes(raw, key, size)


def _check_keys(d: object, scheme: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise _error("proof", "malformed", f"must be a mapping, got {type(d).__name__}")
    if d.get("scheme") != scheme:
        raise _error("scheme", "malformed", f"expected {scheme!r}, got {d.get('scheme')!r}")
    expected = {"scheme", *keys}
    missing = sorted(expected - set(d))
    if missing:
        raise _error(missing[0], "malformed", "is missing")
    # Extra keys would ride along unsigned; refuse them rather than store unauthenticated data.
    extra = sorted(str(k) for k in set(d) - expected)
    if extra:
        raise _error(extra[0], "malformed", "is not a field of this record")
    return d


# --------------------------------------------------------------------------
# Quality
# --------------------------------------------------------------------------


def relative_improvement(loss_before: float, loss_after: float) -> float:
    """The relative decrease of a loss: ``(before - after) / max(before, QUALITY_EPS)``.

    Parameters
    ----------
    loss_before, loss_after : float
        Losses of the model before and after applying an update.

    Returns
    -------
    float
        Positive when the update lowered the loss; ``nan`` when either loss is.
    """
    return (float(loss_before) - float(loss_after)) / max(float(loss_before), QUALITY_EPS)


def _update_vector(update: npt.ArrayLike, dims: int) -> F32:
    u = np.asarray(update)
    if not np.issubdtype(u.dtype, np.floating):
        raise TypeError(f"update: must be a float array, got dtype {u.dtype}")
    # The payload that is hashed and submitted is float32: prove exactly that.
    u32 = np.ascontiguousarray(u, dtype=np.float32)
    if u32.shape != (dims,):
        raise _error("update", "malformed", f"expected shape ({dims},), got {u32.shape}")
    if not np.all(np.isfinite(u32)):
        raise _error("update", "non_finite", "holds NaN or Inf (in float32)")
    return u32


def _lr(lr: object) -> float:
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(float(lr)) or float(lr) <= 0:
        raise _error("lr", "malformed", f"must be a finite number > 0, got {lr!r}")
    return float(lr)


def holdout_losses(
    model: Model,
    params: npt.ArrayLike,
    update: npt.ArrayLike,
    lr: float,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
) -> tuple[float, float, int]:
    """Loss of ``model`` on ``(x, y)`` at ``params`` and at ``params - lr * update``.

    The step is taken in float64 from the float32 parameters and the float32
    payload, so the prover and every committee member evaluate bit-identical
    parameters.

    Parameters
    ----------
    model : Model
    params : array of shape (model.dims,)
        The global parameters of the round.
    update : float array of shape (model.dims,)
        The pseudo-gradient; evaluated as its float32 payload.
    lr : float
        Step size (finite, > 0).
    x, y : held-out samples and integer labels

    Returns
    -------
    loss_before, loss_after : float
    n_samples : int

    Raises
    ------
    ProofError
        ``update`` of the wrong shape (``malformed``) or non-finite
        (``non_finite``), ``lr`` out of range (``malformed``).
    TypeError
        ``update`` is not a float array.
    """
    step = _lr(lr)
    theta = np.asarray(params, dtype=np.float32).astype(np.float64)
    u = _update_vector(update, model.dims).astype(np.float64)
    before = model.loss(theta, x, y)
    after = model.loss(theta - step * u, x, y)
    return float(before), float(after), int(np.asarray(y).shape[0])


# --------------------------------------------------------------------------
# The proof
# --------------------------------------------------------------------------

_PROOF_SCHEME = EDGE_PROOF_DOMAIN.decode()
_PROOF_KEYS = (
    "node_id",
    "round",
    "payload_hash",
    "nonce",
    "loss_before",
    "loss_after",
    "holdout_size",
    "lr",
    "public_key",
    "signature",
)


@dataclass(frozen=True)
class EdgeProof:
    """A node's signed claim: the held-out loss before and after its update.

    Parameters
    ----------
    node_id : str
        The author of the update.
    round : int
        The round the update belongs to.
    payload_hash : bytes
        SHA-256 of the float32 payload (32 bytes), as in
        :func:`zerotrustml.validation.payload_hash`.
    nonce : bytes
        16 random bytes, fresh for every proof (replay detection).
    loss_before, loss_after : float
        Loss on the node's held-out data at ``theta`` and at ``theta - lr * g``.
    holdout_size : int
        Number of held-out samples the losses were measured on (>= 1).
    lr : float
        The step size the losses were measured with (> 0).
    public_key : bytes
        The signer's Ed25519 public key (32 bytes).
    signature : bytes
        Ed25519 signature (64 bytes) over :meth:`message`.

    Raises
    ------
    ProofError
        Code ``malformed`` for a field of the wrong type or size. Construction
        checks only the form; :func:`verify_proof` checks the content.
    """

    node_id: str
    round: int
    payload_hash: bytes
    nonce: bytes
    loss_before: float
    loss_after: float
    holdout_size: int
    lr: float
    public_key: bytes
    signature: bytes

    def __post_init__(self) -> None:
        # Normalised at construction (numpy scalars to Python numbers,
        # bytearrays to bytes), so equal proofs compare and encode equal.
        setattr_ = object.__setattr__
        setattr_(self, "node_id", _as_text(self.node_id, "node_id"))
        setattr_(self, "round", _as_int(self.round, "round", 0, MAX_ROUND))
        setattr_(self, "payload_hash", _as_bytes(self.payload_hash, "payload_hash", HASH_BYTES))
        setattr_(self, "nonce", _as_bytes(self.nonce, "nonce", NONCE_BYTES))
        setattr_(self, "loss_before", _as_float(self.loss_before, "loss_before"))
        setattr_(self, "loss_after", _as_float(self.loss_after, "loss_after"))
        setattr_(self, "holdout_size", _as_int(self.holdout_size, "holdout_size", 1, MAX_COUNT))
        setattr_(self, "lr", _as_float(self.lr, "lr"))
        setattr_(self, "public_key", _as_bytes(self.public_key, "public_key", KEY_BYTES))
        setattr_(self, "signature", _as_bytes(self.signature, "signature", SIGNATURE_BYTES))

    @property
    def quality(self) -> float:
        """Relative decrease of the held-out loss (see the module docstring); > 0 means the update helped."""
        return relative_improvement(self.loss_before, self.loss_after)

    def message(self) -> bytes:
        """The canonical bytes the signature covers: every field but the signature, after the domain tag."""
        return b"".join(
            (
                _lp(EDGE_PROOF_DOMAIN),
                _lp(self.node_id.encode("utf-8")),
                _u64(self.round),
                _lp(self.payload_hash),
                _lp(self.nonce),
                _f64(self.loss_before),
                _f64(self.loss_after),
                _u64(self.holdout_size),
                _f64(self.lr),
                _lp(self.public_key),
            )
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able mapping (bytes as lowercase hex), for ``Submission.proof``.

        Floats are JSON numbers, which round-trip exactly through Python's
        ``json``; a proof with non-finite losses has no strict-JSON form (the
        stores refuse it), and verification would refuse it anyway.
        """
        return {
            "scheme": _PROOF_SCHEME,
            "node_id": self.node_id,
            "round": self.round,
            "payload_hash": self.payload_hash.hex(),
            "nonce": self.nonce.hex(),
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
            "holdout_size": self.holdout_size,
            "lr": self.lr,
            "public_key": self.public_key.hex(),
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> EdgeProof:
        """Parse :meth:`to_json` output.

        Raises
        ------
        ProofError
            Code ``malformed``: wrong scheme, a missing or unknown key, bad hex
            or a value of the wrong type or size.
        """
        m = _check_keys(d, _PROOF_SCHEME, _PROOF_KEYS)
        return cls(
            node_id=m["node_id"],
            round=m["round"],
            payload_hash=_hex_field(m, "payload_hash", HASH_BYTES),
            nonce=_hex_field(m, "nonce", NONCE_BYTES),
            loss_before=m["loss_before"],
            loss_after=m["loss_after"],
            holdout_size=m["holdout_size"],
            lr=m["lr"],
            public_key=_hex_field(m, "public_key", KEY_BYTES),
            signature=_hex_field(m, "signature", SIGNATURE_BYTES),
        )


def _sign_proof(signing_key: nacl.signing.SigningKey, **fields: Any) -> EdgeProof:
    # Build with a placeholder signature first: the message is defined by the
    # dataclass's normalised fields, so sign exactly what verify will encode.
    unsigned = EdgeProof(signature=bytes(SIGNATURE_BYTES), **fields)
    signature = signing_key.sign(unsigned.message()).signature
    return EdgeProof(signature=signature, **fields)


def sign_claim(
    signing_key: nacl.signing.SigningKey,
    *,
    node_id: str,
    round: int,
    payload_hash: bytes,
    loss_before: float,
    loss_after: float,
    holdout_size: int,
    lr: float,
) -> EdgeProof:
    """Sign losses as claimed, without measuring them.

    :meth:`EdgeProofGenerator.prove` measures and then signs; this is what a
    dishonest node does instead (the simulator's Byzantine nodes use it). A
    valid signature proves who claimed the losses, not that they are true,
    which is why committees re-score updates.
    """
    return _sign_proof(
        signing_key,
        node_id=node_id,
        round=round,
        payload_hash=payload_hash,
        nonce=os.urandom(NONCE_BYTES),
        loss_before=loss_before,
        loss_after=loss_after,
        holdout_size=holdout_size,
        lr=float(lr),
        public_key=bytes(signing_key.verify_key),
    )


def verify_proof(
    proof: EdgeProof,
    *,
    node_id: str,
    round: int,
    payload_hash: bytes,
    public_key: bytes,
    seen_nonces: MutableSet[bytes] | None = None,
) -> None:
    """Check a proof's signature and what it is bound to; raise on the first failure.

    Order of the checks: form (``malformed``), signer (``wrong_key``),
    signature (``bad_signature``), content (``non_finite``), binding
    (``node_mismatch``, ``round_mismatch``, ``payload_mismatch``), then
    freshness (``replay``). The signature comes before the binding, so a
    proof with any one field altered fails as ``bad_signature`` whatever the
    verifier expected; an intact proof presented for another update fails
    on the binding.

    Parameters
    ----------
    proof : EdgeProof
    node_id, round, payload_hash
        The submission the proof must belong to.
    public_key : bytes
        The node's registered Ed25519 key (32 bytes); see :class:`KeyRing`.
    seen_nonces : set of bytes, optional
        Nonces of proofs accepted earlier. A proof whose nonce is in it is a
        replay; a proof that passes every check has its nonce added (only
        then, so a rejected forgery cannot burn an honest node's nonce).

    Raises
    ------
    ProofError
    """
    if not isinstance(proof, EdgeProof):
        raise _error("proof", "malformed", f"must be an EdgeProof, got {type(proof).__name__}")
    expected_key = _as_bytes(public_key, "public_key", KEY_BYTES)
    expected_hash = _as_bytes(payload_hash, "payload_hash", HASH_BYTES)
    if proof.public_key != expected_key:
        raise _error("public_key", "wrong_key", f"signed by a key that is not {node_id!r}'s registered key")
    if not _verify_signature(proof.public_key, proof.message(), proof.signature):
        raise _error("signature", "bad_signature", "does not verify under the node's key")
    for name in ("loss_before", "loss_after", "lr"):
        if not math.isfinite(getattr(proof, name)):
            raise _error(name, "non_finite", f"is {getattr(proof, name)!r}")
    if proof.lr <= 0:
        raise _error("lr", "malformed", f"must be > 0, got {proof.lr!r}")
    if proof.node_id != node_id:
        raise _error("node_id", "node_mismatch", f"proof is for node {proof.node_id!r}, expected {node_id!r}")
    if proof.round != round:
        raise _error("round", "round_mismatch", f"proof is for round {proof.round}, expected {round}")
    if proof.payload_hash != expected_hash:
        raise _error("payload_hash", "payload_mismatch", "proof is bound to another payload")
    if seen_nonces is not None:
        if proof.nonce in seen_nonces:
            raise _error("nonce", "replay", f"nonce {proof.nonce.hex()} was already used")
        seen_nonces.add(proof.nonce)


def verify_submission_proof(
    sub: Submission,
    public_key: bytes,
    *,
    seen_nonces: MutableSet[bytes] | None = None,
) -> EdgeProof:
    """Parse ``sub.proof`` and verify it against the submission's node, round and payload hash.

    Returns
    -------
    EdgeProof
        The verified proof.

    Raises
    ------
    ProofError
        Code ``missing`` when the submission carries no proof, else as
        :meth:`EdgeProof.from_json` and :func:`verify_proof`.
    """
    if not sub.proof:
        raise _error("proof", "missing", f"submission of {sub.node_id!r} in round {sub.round} carries no proof")
    proof = EdgeProof.from_json(sub.proof)
    verify_proof(
        proof,
        node_id=sub.node_id,
        round=int(sub.round),
        payload_hash=sub.payload_hash,
        public_key=public_key,
        seen_nonces=seen_nonces,
    )
    return proof


class EdgeProofGenerator:
    """Measures and signs edge proofs with one node's Ed25519 key.

    Parameters
    ----------
    signing_key : nacl.signing.SigningKey
    """

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        if not isinstance(signing_key, nacl.signing.SigningKey):
            raise TypeError(f"signing_key: must be a nacl.signing.SigningKey, got {type(signing_key).__name__}")
        self._key = signing_key

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key proofs are signed with."""
        return bytes(self._key.verify_key)

    def prove(
        self,
        model: Model,
        params: npt.ArrayLike,
        update: npt.ArrayLike,
        x_holdout: npt.ArrayLike,
        y_holdout: npt.ArrayLike,
        *,
        node_id: str,
        round: int,
        lr: float,
        payload_hash: bytes | None = None,
    ) -> EdgeProof:
        """Measure the held-out loss before and after ``params - lr * update`` and sign the result.

        Parameters
        ----------
        model : Model
            The real model of the run.
        params : array of shape (model.dims,)
            The round's global parameters.
        update : float array of shape (model.dims,)
            The pseudo-gradient the node submits (proved as its float32 payload).
        x_holdout, y_holdout
            The node's held-out samples; keep them out of training, or the
            proof measures fit rather than quality.
        node_id, round
            What the proof is bound to.
        lr : float
            The step size the server applies the update with.
        payload_hash : bytes, optional
            The submission's payload hash; computed from ``update`` when
            omitted, and checked against it when given.

        Returns
        -------
        EdgeProof

        Raises
        ------
        ProofError
            ``payload_hash`` is not the hash of ``update`` (``payload_mismatch``),
            the losses are not finite (``non_finite``), or a field is out of
            range (``malformed``).
        """
        u32 = _update_vector(update, model.dims)
        actual = compute_payload_hash(u32)
        if payload_hash is not None and _as_bytes(payload_hash, "payload_hash", HASH_BYTES) != actual:
            # A proof of one update attached to another would fail every
            # verifier; catch the client's bug here instead.
            raise _error("payload_hash", "payload_mismatch", "is not the hash of the update being proved")
        before, after, n = holdout_losses(model, params, u32, lr, x_holdout, y_holdout)
        if not (math.isfinite(before) and math.isfinite(after)):
            raise _error("loss_after", "non_finite", f"held-out losses are {before!r} -> {after!r}")
        return sign_claim(
            self._key,
            node_id=node_id,
            round=round,
            payload_hash=actual,
            loss_before=before,
            loss_after=after,
            holdout_size=n,
            lr=lr,
        )


class KeyRing(Mapping[str, bytes]):
    """Node id -> Ed25519 public key, registered once per node.

    A read-only mapping (pass it wherever ``keys: Mapping[str, bytes]`` is
    asked for); :meth:`register` is the only way in. Registering the same key
    again is a no-op; a different key for a registered node raises, because
    letting a node swap keys would let whoever claims its id next speak for it.

    Parameters
    ----------
    keys : mapping of str to bytes, optional
        Initial registrations.
    """

    def __init__(self, keys: Mapping[str, bytes] | None = None) -> None:
        self._keys: dict[str, bytes] = {}
        for node_id, key in (keys or {}).items():
            self.register(node_id, key)

    def register(self, node_id: str, public_key: bytes | nacl.signing.VerifyKey) -> None:
        """Register ``node_id``'s key.

        Raises
        ------
        ProofError
            ``key_conflict`` when the node already has a different key;
            ``malformed`` for a bad id or a key that is not 32 bytes.
        """
        node = _as_text(node_id, "node_id")
        raw = bytes(public_key) if isinstance(public_key, nacl.signing.VerifyKey) else public_key
        key = _as_bytes(raw, "public_key", KEY_BYTES)
        known = self._keys.get(node)
        if known is not None and known != key:
            raise _error("public_key", "key_conflict", f"node {node!r} already registered a different key")
        self._keys[node] = key

    def __getitem__(self, node_id: str) -> bytes:
        return self._keys[node_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def verify(
        self,
        proof: EdgeProof,
        *,
        node_id: str,
        round: int,
        payload_hash: bytes,
        seen_nonces: MutableSet[bytes] | None = None,
    ) -> None:
        """:func:`verify_proof` against ``node_id``'s registered key.

        Raises
        ------
        ProofError
            ``unknown_key`` when ``node_id`` has no registered key, else as
            :func:`verify_proof`.
        """
        key = self._keys.get(node_id)
        if key is None:
            raise _error("node_id", "unknown_key", f"node {node_id!r} has no registered key")
        verify_proof(
            proof, node_id=node_id, round=round, payload_hash=payload_hash, public_key=key, seen_nonces=seen_nonces
        )


class EdgeClient:
    """The SDK class of a training node: train, prove, build and submit a submission.

    Parameters
    ----------
    node_id : str
    model : Model
    x_train, y_train
        Local training data.
    x_holdout, y_holdout
        Local held-out data for the proofs (disjoint from the training data).
    signing_key : nacl.signing.SigningKey, optional
        The node's identity; a fresh key is generated when omitted.
    local_steps : int
        SGD steps per round (>= 1).
    lr : float
        Local learning rate; also the step the proof measures, which matches
        the server when ``server_lr == lr`` (the simulator's default).
    batch_size : int or None
        Minibatch size, or None for full batches.
    seed : int
        Minibatch order in round ``r`` comes from ``default_rng([seed, r])``.
    """

    def __init__(
        self,
        node_id: str,
        model: Model,
        x_train: npt.ArrayLike,
        y_train: npt.ArrayLike,
        x_holdout: npt.ArrayLike,
        y_holdout: npt.ArrayLike,
        *,
        signing_key: nacl.signing.SigningKey | None = None,
        local_steps: int = 1,
        lr: float = 0.1,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        self.node_id = _as_text(node_id, "node_id")
        self.model = model
        self.x_train = np.asarray(x_train)
        self.y_train = np.asarray(y_train)
        self.x_holdout = np.asarray(x_holdout)
        self.y_holdout = np.asarray(y_holdout)
        if self.x_train.ndim != 2 or self.x_train.shape[0] == 0:
            raise _error("x_train", "malformed", f"must be a non-empty 2-D array, got shape {self.x_train.shape}")
        self.local_steps = local_steps
        self.lr = _lr(lr)
        self.batch_size = batch_size
        self.seed = _as_int(seed, "seed", 0, MAX_COUNT)
        self._generator = EdgeProofGenerator(signing_key or nacl.signing.SigningKey.generate())

    @property
    def public_key(self) -> bytes:
        """The node's 32-byte Ed25519 public key (register it in a :class:`KeyRing`)."""
        return self._generator.public_key

    def train(self, params: npt.ArrayLike, round: int) -> F32:
        """One round of local training from ``params``; returns the float32 pseudo-gradient."""
        rng = np.random.default_rng([self.seed, _as_int(round, "round", 0, MAX_ROUND)])
        update, _ = local_update(
            self.model,
            params,
            self.x_train,
            self.y_train,
            steps=self.local_steps,
            lr=self.lr,
            batch_size=self.batch_size,
            rng=rng,
        )
        return update

    def prove(self, params: npt.ArrayLike, update: npt.ArrayLike, round: int) -> EdgeProof:
        """Sign an edge proof of ``update`` on the node's held-out data."""
        return self._generator.prove(
            self.model,
            params,
            update,
            self.x_holdout,
            self.y_holdout,
            node_id=self.node_id,
            round=round,
            lr=self.lr,
        )

    def make_submission(self, params: npt.ArrayLike, round: int, model_id: str) -> Submission:
        """Train, prove, and wrap both in a :class:`~zerotrustml.validation.Submission`."""
        update = self.train(params, round)
        proof = self.prove(params, update, round)
        return Submission.create(
            self.node_id,
            round,
            model_id,
            update,
            example_count=int(self.x_train.shape[0]),
            proof=proof.to_json(),
        )

    async def submit(self, backend: Backend, params: npt.ArrayLike, round: int, model_id: str) -> bytes:
        """Build a submission and store it in ``backend``; returns its payload hash.

        Training runs in a worker thread so that a client serving other
        coroutines (a conductor connection, a UI) is not blocked by it.
        """
        sub = await asyncio.to_thread(self.make_submission, params, round, model_id)
        return await backend.submit(sub)
