"""Committee verification: peers re-score each update on their own data and vote.

A node's edge proof (:mod:`zerotrustml.defence.proofs`) is a claim nobody else can
check, so each round a committee of ``k`` peers is drawn, each member
re-scores every update on its own held-out data (:func:`score_update`) and
casts a signed :class:`Vote`, and :func:`aggregate_committee_votes` turns the
votes for one update into a :class:`CommitteeDecision`.

Selection (:func:`select_committee`)
    Weighted sampling without replacement by Efraimidis and Spirakis (2006):
    candidate ``i`` gets the key ``u_i ** (1 / w_i)`` and the ``k`` largest
    keys win. ``u_i`` is not drawn from a random generator but read from
    BLAKE2b of ``(seed, round, candidate id)``, so any party that knows the
    seed recomputes the same committee, and a candidate's key does not
    depend on who else is a candidate (the result does not depend on the
    order of ``candidates``, and excluding a non-member leaves the committee
    unchanged). The weight is ``max(reputation, REPUTATION_FLOOR)``: the
    floor keeps a node whose reputation fell to zero drawable, so it can
    earn reputation back. The seed must be fixed after node ids are (for
    example the previous round's aggregate hash), or a node could grind ids
    that win the hash.

Votes
    Signed with Ed25519 over a canonical encoding (the domain tag
    :data:`VOTE_DOMAIN`, then every field, length-prefixed or fixed-width
    big-endian, as for edge proofs); never JSON.

Decision
    An update is accepted when the accepting valid votes are a strict
    majority of the committee's size. The denominator is the committee, not
    the votes received: otherwise a member who stays silent (offline, or a
    Byzantine member withholding its vote) would shrink the denominator, and
    a single accepting colluder among few voters could carry a decision the
    committee as a whole never made. Silence counts as "not accept".
"""

from __future__ import annotations

import hashlib
import math
import numbers
import statistics
import struct
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import nacl.signing
import numpy.typing as npt

from zerotrustml.defence.proofs import (
    HASH_BYTES,
    KEY_BYTES,
    MAX_COUNT,
    MAX_ROUND,
    SIGNATURE_BYTES,
    ProofError,
    _as_bytes,
    _as_float,
    _as_int,
    _as_text,
    _check_keys,
    _error,
    _f64,
    _hex_field,
    _lp,
    _u64,
    _verify_signature,
    holdout_losses,
    relative_improvement,
)
from zerotrustml.exceptions import ParameterError
from zerotrustml.fl.models import Model

__all__ = [
    "VOTE_DOMAIN",
    "REPUTATION_FLOOR",
    "select_committee",
    "Vote",
    "cast_vote",
    "score_update",
    "CommitteeDecision",
    "aggregate_committee_votes",
    "ProofError",
]

VOTE_DOMAIN = b"zerotrustml/committee-vote/v1"
"""Domain tag at the start of every signed committee vote."""

REPUTATION_FLOOR = 0.01
"""Smallest selection weight: a node at reputation 0 is drawn about 1/100 as
often as one at 1, but never never."""

_SELECT_PERSON = b"zt-committee-v1"  # BLAKE2b personalisation: these hashes mean nothing elsewhere


# --------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------


def _selection_u(seed: int, round: int, candidate: str) -> float:
    """A uniform draw in the open interval (0, 1), fixed by (seed, round, candidate)."""
    h = hashlib.blake2b(
        struct.pack(">QQ", seed, round) + candidate.encode("utf-8"),
        digest_size=8,
        person=_SELECT_PERSON,
    ).digest()
    # The top 53 bits, centred in their cell: exactly representable, never 0 or 1.
    return ((int.from_bytes(h, "big") >> 11) + 0.5) / 2.0**53


def dht_committee_member(seed: str, round: int, public_key: bytes, rate: float) -> bool:
    """Whether ``public_key`` sits on ``round``'s committee under the hApp's hash lottery.

    The integrity zome's rule, from the same Rust code (``zerotrustml_core::committee``): the first 8
    bytes of SHA-256(seed || round as u64 big-endian || key), big-endian, below ``rate * 2^64``. It is
    unweighted and predictable (see ``docs/HOLOCHAIN.md``); :func:`select_committee` is the simulator's
    reputation-weighted draw.
    """
    from zerotrustml import _core

    return _core.is_committee_member(seed.encode(), round, bytes(public_key), rate)


def select_committee(
    candidates: Sequence[str],
    round: int,
    seed: int,
    k: int,
    reputations: Mapping[str, float] | None = None,
    exclude: Collection[str] = (),
) -> list[str]:
    """Draw a round's committee: ``k`` candidates, weighted by reputation, without replacement.

    Parameters
    ----------
    candidates : sequence of str
        Eligible node ids (unique, non-empty); their order does not matter.
    round : int
        The round (>= 0).
    seed : int
        The run's committee seed (>= 0, < 2**64); with ``round`` the only
        source of randomness.
    k : int
        Committee size (>= 1); all eligible candidates when ``k`` exceeds them.
    reputations : mapping of str to float, optional
        Selection weights, floored at :data:`REPUTATION_FLOOR`; a candidate
        without an entry has earned no trust yet and gets the floor. Uniform
        when omitted.
    exclude : collection of str
        Ids never selected (typically the author of the update being judged).

    Returns
    -------
    list of str
        The members, in decreasing order of their selection keys (the most
        strongly drawn first).

    Raises
    ------
    ParameterError
        ``k`` < 1, duplicate or empty ids, a negative or non-finite
        reputation, or ``round``/``seed`` out of range.
    TypeError
        ``candidates`` is a bare string.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or int(k) < 1:
        raise ParameterError(f"k: committee size must be an integer >= 1, got {k!r}")
    if isinstance(round, bool) or not isinstance(round, numbers.Integral) or not 0 <= int(round) <= MAX_ROUND:
        raise ParameterError(f"round: must be an integer in [0, 2**63 - 1], got {round!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) <= MAX_COUNT:
        raise ParameterError(f"seed: must be an integer in [0, 2**64 - 1], got {seed!r}")
    if isinstance(candidates, str):
        raise TypeError("candidates: must be a sequence of node ids, not one string")
    ids = list(candidates)
    for node in ids:
        if not isinstance(node, str) or not node:
            raise ParameterError(f"candidates: node ids are non-empty strings, got {node!r}")
    if len(set(ids)) != len(ids):
        raise ParameterError("candidates: node ids must be unique")
    excluded = set(exclude)
    keyed: list[tuple[float, str]] = []
    for node in ids:
        if node in excluded:
            continue
        weight = 1.0
        if reputations is not None:
            rep = reputations.get(node, 0.0)
            if isinstance(rep, bool) or not isinstance(rep, numbers.Real) or not math.isfinite(rep) or rep < 0:
                raise ParameterError(f"reputations[{node!r}]: must be a finite number >= 0, got {rep!r}")
            weight = max(float(rep), REPUTATION_FLOOR)
        # log(u ** (1/w)) = log(u) / w orders the same and does not underflow
        # to a tie at 0 when w is small (u ** 100 often would).
        keyed.append((math.log(_selection_u(int(seed), int(round), node)) / weight, node))
    # Ties (astronomically unlikely) go to the smaller id, so the order is total.
    keyed.sort(key=lambda t: (-t[0], t[1]))
    return [node for _, node in keyed[: int(k)]]


# --------------------------------------------------------------------------
# Votes
# --------------------------------------------------------------------------

_VOTE_SCHEME = VOTE_DOMAIN.decode()
_VOTE_KEYS = ("round", "node_id", "payload_hash", "voter", "quality", "accept", "public_key", "signature")


@dataclass(frozen=True)
class Vote:
    """A committee member's signed verdict on one update.

    Parameters
    ----------
    round : int
        The round of the update.
    node_id : str
        The update's author.
    payload_hash : bytes
        The update's payload hash (32 bytes).
    voter : str
        The committee member casting the vote.
    quality : float
        The member's own re-score (:func:`score_update`).
    accept : bool
        The member's verdict.
    public_key : bytes
        The voter's Ed25519 public key (32 bytes).
    signature : bytes
        Ed25519 signature (64 bytes) over :meth:`message`.

    Raises
    ------
    ProofError
        Code ``malformed`` for a field of the wrong type or size.
    """

    round: int
    node_id: str
    payload_hash: bytes
    voter: str
    quality: float
    accept: bool
    public_key: bytes
    signature: bytes

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "round", _as_int(self.round, "round", 0, MAX_ROUND))
        setattr_(self, "node_id", _as_text(self.node_id, "node_id"))
        setattr_(self, "payload_hash", _as_bytes(self.payload_hash, "payload_hash", HASH_BYTES))
        setattr_(self, "voter", _as_text(self.voter, "voter"))
        setattr_(self, "quality", _as_float(self.quality, "quality"))
        # Only a real bool: 0/1 or "yes" sneaking in would make the encoding ambiguous.
        if not isinstance(self.accept, bool):
            raise _error("accept", "malformed", f"must be a bool, got {self.accept!r}")
        setattr_(self, "public_key", _as_bytes(self.public_key, "public_key", KEY_BYTES))
        setattr_(self, "signature", _as_bytes(self.signature, "signature", SIGNATURE_BYTES))

    def message(self) -> bytes:
        """The canonical bytes the signature covers: every field but the signature, after the domain tag."""
        return b"".join(
            (
                _lp(VOTE_DOMAIN),
                _u64(self.round),
                _lp(self.node_id.encode("utf-8")),
                _lp(self.payload_hash),
                _lp(self.voter.encode("utf-8")),
                _f64(self.quality),
                b"\x01" if self.accept else b"\x00",
                _lp(self.public_key),
            )
        )

    def verify_signature(self) -> bool:
        """Whether the signature verifies under the vote's own ``public_key`` (not whether that key is the voter's)."""
        return _verify_signature(self.public_key, self.message(), self.signature)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able mapping (bytes as lowercase hex), for round-record evidence."""
        return {
            "scheme": _VOTE_SCHEME,
            "round": self.round,
            "node_id": self.node_id,
            "payload_hash": self.payload_hash.hex(),
            "voter": self.voter,
            "quality": self.quality,
            "accept": self.accept,
            "public_key": self.public_key.hex(),
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Vote:
        """Parse :meth:`to_json` output.

        Raises
        ------
        ProofError
            Code ``malformed``.
        """
        m = _check_keys(d, _VOTE_SCHEME, _VOTE_KEYS)
        return cls(
            round=m["round"],
            node_id=m["node_id"],
            payload_hash=_hex_field(m, "payload_hash", HASH_BYTES),
            voter=m["voter"],
            quality=m["quality"],
            accept=m["accept"],
            public_key=_hex_field(m, "public_key", KEY_BYTES),
            signature=_hex_field(m, "signature", SIGNATURE_BYTES),
        )


def cast_vote(
    signing_key: nacl.signing.SigningKey,
    *,
    voter: str,
    round: int,
    node_id: str,
    payload_hash: bytes,
    quality: float,
    accept: bool,
) -> Vote:
    """Sign a vote on ``node_id``'s update of ``round`` with the member's key.

    Raises
    ------
    ProofError
        Code ``malformed`` for a bad field.
    TypeError
        ``signing_key`` is not a ``nacl.signing.SigningKey``.
    """
    if not isinstance(signing_key, nacl.signing.SigningKey):
        raise TypeError(f"signing_key: must be a nacl.signing.SigningKey, got {type(signing_key).__name__}")
    fields: dict[str, Any] = {
        "round": round,
        "node_id": node_id,
        "payload_hash": payload_hash,
        "voter": voter,
        "quality": quality,
        "accept": accept,
        "public_key": bytes(signing_key.verify_key),
    }
    # Sign the normalised fields, exactly what a verifier will encode.
    unsigned = Vote(signature=bytes(SIGNATURE_BYTES), **fields)
    return Vote(signature=signing_key.sign(unsigned.message()).signature, **fields)


def score_update(
    model: Model,
    params: npt.ArrayLike,
    update: npt.ArrayLike,
    lr: float,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
) -> float:
    """A member's independent re-score of an update on its own held-out data.

    The same quantity as :attr:`zerotrustml.defence.proofs.EdgeProof.quality` (the
    relative decrease of the loss after ``params - lr * update``), computed
    by the same code path on the member's data rather than the author's, so
    an author's claim and the members' scores are directly comparable.

    Returns
    -------
    float
        > 0 when the update lowers the member's held-out loss.

    Raises
    ------
    ProofError
        ``update`` of the wrong shape or non-finite, or ``lr`` out of range.
    """
    before, after, _ = holdout_losses(model, params, update, lr, x, y)
    return relative_improvement(before, after)


# --------------------------------------------------------------------------
# Decision
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class CommitteeDecision:
    """The committee's verdict on one update.

    Attributes
    ----------
    round, node_id, payload_hash
        The update judged.
    committee_size : int
        ``len(members)``: the denominator of the majority.
    accepted : bool
        ``n_accept > committee_size / 2``.
    quality : float or None
        Median quality of the accepting valid votes (mean of the two middle
        values for an even count); ``None`` when no valid vote accepts.
    n_valid : int
        Valid votes counted (at most one per member).
    n_accept : int
        Valid votes that accept.
    rejected : list of (str, str)
        ``(voter, reason)`` for every dropped vote, in input order; reasons are
        ``malformed``, ``non_member``, ``self_vote``, ``unknown_key``,
        ``wrong_key``, ``bad_signature``, ``round_mismatch``,
        ``node_mismatch``, ``payload_mismatch``, ``non_finite``,
        ``duplicate``, ``equivocation``.
    votes : list of Vote
        The valid votes counted, in input order (the evidence).
    """

    round: int
    node_id: str
    payload_hash: bytes
    committee_size: int
    accepted: bool
    quality: float | None
    n_valid: int
    n_accept: int
    rejected: list[tuple[str, str]] = field(default_factory=list)
    votes: list[Vote] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able summary with every counted vote, for round-record evidence."""
        return {
            "round": self.round,
            "node_id": self.node_id,
            "payload_hash": self.payload_hash.hex(),
            "committee_size": self.committee_size,
            "accepted": self.accepted,
            "quality": self.quality,
            "n_valid": self.n_valid,
            "n_accept": self.n_accept,
            "rejected": [list(r) for r in self.rejected],
            "votes": [v.to_json() for v in self.votes],
        }


def _vote_problem(
    vote: Vote,
    members: set[str],
    keys: Mapping[str, bytes],
    round: int,
    node_id: str,
    payload_hash: bytes,
) -> str | None:
    """Why one vote, taken alone, must not count; ``None`` if it may."""
    if vote.voter not in members:
        return "non_member"
    if vote.voter == vote.node_id:
        # An author judging its own update proves nothing a committee should count.
        return "self_vote"
    registered = keys.get(vote.voter)
    if registered is None:
        return "unknown_key"
    if bytes(registered) != vote.public_key:
        return "wrong_key"
    if not vote.verify_signature():
        return "bad_signature"
    if vote.round != round:
        return "round_mismatch"
    if vote.node_id != node_id:
        return "node_mismatch"
    if vote.payload_hash != payload_hash:
        return "payload_mismatch"
    if not math.isfinite(vote.quality):
        return "non_finite"
    return None


def aggregate_committee_votes(
    votes: Iterable[Vote],
    *,
    members: Collection[str],
    keys: Mapping[str, bytes],
    round: int,
    node_id: str,
    payload_hash: bytes,
) -> CommitteeDecision:
    """Count a committee's votes on one update.

    A vote counts only if its voter is a member other than the author, its
    key is the voter's registered key, its signature verifies, it is for
    this round, author and payload, and its quality is finite. A member's
    identical repeated vote counts once (``duplicate``). A member who signed
    two different votes on the same update (``equivocation``) has all its
    votes dropped: keeping "the first" would let the arrival order, which
    differs between agents on a DHT, change the decision.

    Parameters
    ----------
    votes : iterable of Vote
    members : collection of str
        The committee (:func:`select_committee`); its size is the majority's
        denominator (see the module docstring for why).
    keys : mapping of str to bytes
        Registered public keys (a :class:`~zerotrustml.defence.proofs.KeyRing` works).
    round, node_id, payload_hash
        The update being judged.

    Returns
    -------
    CommitteeDecision

    Raises
    ------
    ParameterError
        ``members`` is empty or holds a non-string id.
    ProofError
        ``payload_hash`` is not 32 bytes (``malformed``).
    """
    if isinstance(members, str):
        raise TypeError("members: must be a collection of node ids, not one string")
    member_set = set(members)
    if not member_set:
        raise ParameterError("members: the committee must have at least one member")
    for m in member_set:
        if not isinstance(m, str) or not m:
            raise ParameterError(f"members: node ids are non-empty strings, got {m!r}")
    expected_hash = _as_bytes(payload_hash, "payload_hash", HASH_BYTES)

    rejected: list[tuple[str, str]] = []
    first: dict[str, Vote] = {}
    order: list[str] = []
    equivocators: set[str] = set()
    for vote in votes:
        if not isinstance(vote, Vote):
            rejected.append((str(getattr(vote, "voter", "?")), "malformed"))
            continue
        problem = _vote_problem(vote, member_set, keys, round, node_id, expected_hash)
        if problem is not None:
            rejected.append((vote.voter, problem))
            continue
        earlier = first.get(vote.voter)
        if earlier is None:
            first[vote.voter] = vote
            order.append(vote.voter)
        elif earlier == vote:
            rejected.append((vote.voter, "duplicate"))
        else:
            rejected.append((vote.voter, "equivocation"))
            equivocators.add(vote.voter)
    for voter in order:
        if voter in equivocators:
            rejected.append((voter, "equivocation"))
    counted = [first[v] for v in order if v not in equivocators]
    accepting = [v.quality for v in counted if v.accept]
    n_accept = len(accepting)
    return CommitteeDecision(
        round=round,
        node_id=node_id,
        payload_hash=expected_hash,
        committee_size=len(member_set),
        # 2 * n > size is "n > size / 2" without a float division.
        accepted=2 * n_accept > len(member_set),
        quality=float(statistics.median(accepting)) if accepting else None,
        n_valid=len(counted),
        n_accept=n_accept,
        rejected=rejected,
        votes=counted,
    )
