"""Committee verification: peers re-score each update on their own data and vote.

A node's edge proof (:mod:`zerotrustml.defence.proofs`) is a claim nobody else can
check, so each round a committee of ``k`` peers is drawn, each member
re-scores every update on its own held-out data (:func:`score_update`) and
casts a signed :class:`Vote`, and :func:`aggregate_committee_votes` turns the
votes for one update into a :class:`CommitteeDecision`.

Selection (:func:`select_committee`)
    One rule for the embedded store, the mock conductor and the DHT: the
    core's hash lottery over each node's Ed25519 node key
    (:func:`committee_member`), the rule the integrity zome checks on every
    vote. Each node sits on a round's committee independently with
    probability ``rate`` (the DNA's ``committee_rate``; the pipeline uses
    ``committee_size / federation size``), so nobody needs a roster or an
    agreed reputation to know who may vote, and a validator decides from the
    vote alone. Reputation matters when the votes are read: a reader weighs
    each member's vote by its own view of the member's reputation, and
    ignores members it has excluded. On a closed federation each round's
    lottery is seeded by that round's beacon (the admission key's signature
    over the round, released when the round starts), so no key can be ground
    for rounds to come; on an open one the seed is fixed and predictable.
    Keys are as scarce as admission makes them.

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

import math
import numbers
import statistics
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nacl.signing
import numpy.typing as npt

from zerotrustml.defence.proofs import (
    HASH_BYTES,
    KEY_BYTES,
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
    "committee_member",
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


# --------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------


def committee_member(seed: str, round: int, node_key: bytes, rate: float, beacon: bytes = b"") -> bool:
    """Whether the node with ``node_key`` sits on ``round``'s committee: the one committee rule.

    The core's hash lottery (``zerotrustml_core::committee``), the same code the integrity zome runs on every
    vote: the first 8 bytes of SHA-256(round seed || round as u64 big-endian || node key), big-endian, below
    ``rate * 2^64``. ``node_key`` is the node's Ed25519 public key (the key that signs its proofs and votes;
    on the DHT, the key of its ``NodeRegistration``). The round seed is ``seed`` itself without a ``beacon``
    (an open network), else the core's ``round_seed(seed, beacon)``, where the beacon is the federation's
    signature over the round (:func:`zerotrustml.holochain.admission.issue_beacon`), unknown before it is
    released, so no key can be ground for the round ahead of time.
    """
    from zerotrustml import _core

    round_seed = _core.committee_round_seed(seed.encode(), bytes(beacon))
    return bool(_core.is_committee_member(round_seed, round, bytes(node_key), rate))


def select_committee(
    candidates: Mapping[str, bytes],
    round: int,
    seed: str,
    rate: float,
    beacon: bytes = b"",
) -> list[str]:
    """A round's committee among ``candidates`` (node id -> node key): every candidate whose key wins the lottery.

    Parameters
    ----------
    candidates : mapping of str to bytes
        Eligible node ids and their 32-byte Ed25519 node keys.
    round : int
        The round (>= 0).
    seed : str
        The federation's committee seed (the DNA's ``committee_seed``).
    rate : float
        The probability that a node sits on a round's committee, in [0, 1]
        (the DNA's ``committee_rate``): the expected committee is
        ``rate * len(federation)``.
    beacon : bytes, optional
        The round's beacon on a closed federation (see :func:`committee_member`); empty on an open one.

    Returns
    -------
    list of str
        The members, by node id.

    Raises
    ------
    ParameterError
        A rate outside [0, 1], a round out of range, an empty id or a key that is not 32 bytes.
    """
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not (math.isfinite(rate) and 0 <= rate <= 1):
        raise ParameterError(f"rate: must be a probability in [0, 1], got {rate!r}")
    if isinstance(round, bool) or not isinstance(round, numbers.Integral) or not 0 <= int(round) <= MAX_ROUND:
        raise ParameterError(f"round: must be an integer in [0, 2**63 - 1], got {round!r}")
    if not isinstance(seed, str):
        raise TypeError(f"seed: must be a string, got {type(seed).__name__}")
    members = []
    for node, key in candidates.items():
        if not isinstance(node, str) or not node:
            raise ParameterError(f"candidates: node ids are non-empty strings, got {node!r}")
        if len(bytes(key)) != KEY_BYTES:
            raise ParameterError(f"candidates[{node!r}]: a node key is {KEY_BYTES} bytes, got {len(bytes(key))}")
        if committee_member(seed, int(round), bytes(key), float(rate), beacon):
            members.append(node)
    return sorted(members)


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
