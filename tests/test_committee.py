"""Committee selection, signed votes, the majority decision, and re-scoring."""

from __future__ import annotations

import collections
import dataclasses
import json
import random
from typing import Any

import nacl.signing
import numpy as np
import pytest

from zerotrustml.defence.committee import (
    VOTE_DOMAIN,
    CommitteeDecision,
    Vote,
    aggregate_committee_votes,
    cast_vote,
    committee_member,
    score_update,
    select_committee,
)
from zerotrustml.defence.proofs import EdgeProofGenerator, KeyRing, ProofError
from zerotrustml.exceptions import ParameterError
from zerotrustml.fl.data import load_dataset
from zerotrustml.fl.models import local_update, make_model

CANDIDATES = [f"node-{i:02d}" for i in range(20)]

# --------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------


KEYS = {nid: bytes(nacl.signing.SigningKey(bytes([i + 1]) * 32).verify_key) for i, nid in enumerate(CANDIDATES)}


def test_selection_is_the_core_lottery_on_node_keys() -> None:
    from zerotrustml import _core

    for r in range(10):
        members = select_committee(KEYS, r, "seed-x", 0.3)
        assert members == sorted(members)
        want = [n for n in CANDIDATES if _core.is_committee_member(b"seed-x", r, KEYS[n], 0.3)]
        assert members == want
        assert all(committee_member("seed-x", r, KEYS[n], 0.3) for n in members)


def test_selection_does_not_depend_on_candidate_order_or_on_other_candidates() -> None:
    shuffled = dict(random.Random(1).sample(sorted(KEYS.items()), len(KEYS)))
    for r in range(10):
        full = select_committee(KEYS, r, "s", 0.4)
        assert full == select_committee(shuffled, r, "s", 0.4)
        # A node's seat depends on its own key only: leaving a non-member out changes nothing.
        outsiders = [n for n in CANDIDATES if n not in full]
        fewer = {n: k for n, k in KEYS.items() if n not in outsiders[:3]}
        assert select_committee(fewer, r, "s", 0.4) == full


def test_selection_depends_on_round_and_seed() -> None:
    by_round = {tuple(select_committee(KEYS, r, "s", 0.25)) for r in range(20)}
    by_seed = {tuple(select_committee(KEYS, 3, f"s{i}", 0.25)) for i in range(20)}
    assert len(by_round) > 10 and len(by_seed) > 10


def test_selection_rate_is_the_expected_share() -> None:
    counts: collections.Counter[str] = collections.Counter()
    rounds = 400
    for r in range(rounds):
        counts.update(select_committee(KEYS, r, "rate", 0.25))
    total = sum(counts.values())
    # Binomial(20 * 400, 0.25): mean 2000, sd ~39.
    assert abs(total - 0.25 * 20 * rounds) < 200
    assert min(counts[n] for n in CANDIDATES) > 0.15 * rounds
    assert select_committee(KEYS, 0, "s", 1.0) == CANDIDATES
    assert select_committee(KEYS, 0, "s", 0.0) == []


def test_selection_bad_input() -> None:
    with pytest.raises(ParameterError, match="rate"):
        select_committee(KEYS, 0, "s", 1.5)
    with pytest.raises(ParameterError, match="rate"):
        select_committee(KEYS, 0, "s", float("nan"))
    with pytest.raises(ParameterError, match="round"):
        select_committee(KEYS, -1, "s", 0.5)
    with pytest.raises(ParameterError, match="32 bytes"):
        select_committee({"a": b"x" * 31}, 0, "s", 0.5)
    with pytest.raises(ParameterError, match="non-empty"):
        select_committee({"": KEYS["node-00"]}, 0, "s", 0.5)
    assert select_committee({}, 0, "s", 0.5) == []


# --------------------------------------------------------------------------
# Votes and the decision
# --------------------------------------------------------------------------

ROUND = 6
AUTHOR = "author"
PAYLOAD = bytes(range(32))


@pytest.fixture(scope="module")
def committee() -> tuple[list[str], dict[str, nacl.signing.SigningKey], KeyRing]:
    members = [f"m{i}" for i in range(5)]
    keys = {m: nacl.signing.SigningKey(bytes([i + 10]) * 32) for i, m in enumerate(members)}
    keys["outsider"] = nacl.signing.SigningKey(b"\x63" * 32)
    keys[AUTHOR] = nacl.signing.SigningKey(b"\x64" * 32)
    ring = KeyRing({m: bytes(k.verify_key) for m, k in keys.items()})
    return members, keys, ring


def _vote(keys: dict[str, nacl.signing.SigningKey], voter: str, accept: bool, quality: float = 0.1, **kw: Any) -> Vote:
    args: dict[str, Any] = {"round": ROUND, "node_id": AUTHOR, "payload_hash": PAYLOAD} | kw
    return cast_vote(keys[voter], voter=voter, quality=quality, accept=accept, **args)


def _decide(committee: Any, votes: list[Vote], members: list[str] | None = None) -> CommitteeDecision:
    m, _, ring = committee
    return aggregate_committee_votes(
        votes, members=m if members is None else members, keys=ring, round=ROUND, node_id=AUTHOR, payload_hash=PAYLOAD
    )


def test_vote_signature_and_json(committee: Any) -> None:
    _, keys, _ = committee
    v = _vote(keys, "m0", True, 0.25)
    assert v.verify_signature()
    assert v.message()[4 : 4 + len(VOTE_DOMAIN)] == VOTE_DOMAIN
    back = Vote.from_json(json.loads(json.dumps(v.to_json(), allow_nan=False)))
    assert back == v and back.verify_signature()
    for name, value in (("accept", False), ("quality", 0.26), ("round", ROUND + 1), ("voter", "m1")):
        assert not dataclasses.replace(v, **{name: value}).verify_signature()
    with pytest.raises(ProofError) as info:
        dataclasses.replace(v, accept=1)
    assert info.value.code == "malformed"
    with pytest.raises(ProofError):
        Vote.from_json(v.to_json() | {"payload_hash": "00"})


def test_majority_accepts(committee: Any) -> None:
    _, keys, _ = committee
    votes = [_vote(keys, "m0", True), _vote(keys, "m1", True), _vote(keys, "m2", True), _vote(keys, "m3", False)]
    d = _decide(committee, votes)
    assert d.accepted and d.n_accept == 3 and d.n_valid == 4 and d.committee_size == 5 and d.rejected == []
    json.dumps(d.to_json(), allow_nan=False)


def test_tie_is_not_a_majority(committee: Any) -> None:
    _, keys, _ = committee
    votes = [_vote(keys, "m0", True), _vote(keys, "m1", True), _vote(keys, "m2", False), _vote(keys, "m3", False)]
    d = _decide(committee, votes, members=["m0", "m1", "m2", "m3"])
    assert not d.accepted and d.n_accept == 2


def test_silence_does_not_help(committee: Any) -> None:
    _, keys, _ = committee
    # Every vote received accepts, but 2 of a committee of 5 is no majority.
    d = _decide(committee, [_vote(keys, "m0", True), _vote(keys, "m1", True)])
    assert not d.accepted and d.n_valid == 2 and d.n_accept == 2


def test_non_member_vote_is_dropped(committee: Any) -> None:
    _, keys, _ = committee
    votes = [_vote(keys, "m0", True), _vote(keys, "m1", True), _vote(keys, "outsider", True)]
    d = _decide(committee, votes)
    assert not d.accepted and d.n_accept == 2
    assert d.rejected == [("outsider", "non_member")]


def test_bad_signature_is_dropped(committee: Any) -> None:
    _, keys, _ = committee
    flipped = dataclasses.replace(_vote(keys, "m2", False), accept=True)  # a reject turned into an accept
    d = _decide(committee, [_vote(keys, "m0", True), _vote(keys, "m1", True), flipped])
    assert not d.accepted and d.rejected == [("m2", "bad_signature")]


def test_forged_key_is_dropped(committee: Any) -> None:
    _, keys, _ = committee
    # The outsider signs a vote in m2's name with its own (valid) key.
    forged = cast_vote(
        keys["outsider"], voter="m2", round=ROUND, node_id=AUTHOR, payload_hash=PAYLOAD, quality=0.9, accept=True
    )
    assert forged.verify_signature()
    d = _decide(committee, [_vote(keys, "m0", True), _vote(keys, "m1", True), forged])
    assert not d.accepted and d.rejected == [("m2", "wrong_key")]
    # A member with no registered key cannot be verified at all.
    m, _, ring = committee
    unknown = aggregate_committee_votes(
        [_vote(keys, "m0", True)],
        members=m,
        keys={k: v for k, v in ring.items() if k != "m0"},
        round=ROUND,
        node_id=AUTHOR,
        payload_hash=PAYLOAD,
    )
    assert unknown.rejected == [("m0", "unknown_key")] and unknown.n_valid == 0


def test_duplicate_voter_counted_once(committee: Any) -> None:
    _, keys, _ = committee
    v = _vote(keys, "m0", True)
    d = _decide(committee, [v, v, v, _vote(keys, "m1", True)])
    assert not d.accepted and d.n_accept == 2 and d.n_valid == 2
    assert d.rejected == [("m0", "duplicate"), ("m0", "duplicate")]


def test_equivocating_voter_is_dropped_whatever_the_order(committee: Any) -> None:
    _, keys, _ = committee
    yes, no = _vote(keys, "m0", True), _vote(keys, "m0", False)
    others = [_vote(keys, "m1", True), _vote(keys, "m2", True)]
    for votes in ([yes, no, *others], [no, yes, *others]):
        d = _decide(committee, votes)
        assert d.n_valid == 2 and d.n_accept == 2 and not d.accepted
        assert sorted(d.rejected) == [("m0", "equivocation"), ("m0", "equivocation")]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"round": ROUND - 1}, "round_mismatch"),
        ({"node_id": "someone-else"}, "node_mismatch"),
        ({"payload_hash": bytes(32)}, "payload_mismatch"),
    ],
)
def test_vote_for_another_update_is_dropped(committee: Any, change: dict[str, Any], reason: str) -> None:
    _, keys, _ = committee
    votes = [_vote(keys, "m0", True), _vote(keys, "m1", True), _vote(keys, "m2", True, **change)]
    d = _decide(committee, votes)
    assert not d.accepted and d.rejected == [("m2", reason)]


def test_self_vote_and_non_finite_quality_are_dropped(committee: Any) -> None:
    _, keys, _ = committee
    self_vote = _vote(keys, AUTHOR, True)
    d = _decide(committee, [self_vote], members=["m0", "m1", AUTHOR])
    assert d.rejected == [(AUTHOR, "self_vote")]
    d = _decide(committee, [_vote(keys, "m0", True, float("nan"))])
    assert d.rejected == [("m0", "non_finite")]
    d = _decide(committee, ["not a vote"])  # type: ignore[list-item]
    assert d.rejected == [("?", "malformed")]


def test_median_quality_of_accepting_votes(committee: Any) -> None:
    _, keys, _ = committee
    votes = [
        _vote(keys, "m0", True, 0.1),
        _vote(keys, "m1", True, 0.3),
        _vote(keys, "m2", True, 0.2),
        _vote(keys, "m3", False, 0.9),  # rejecting votes do not enter the median
        _vote(keys, "m4", False, -5.0),
    ]
    d = _decide(committee, votes)
    assert d.accepted and d.quality == pytest.approx(0.2)
    even = _decide(committee, votes[:2] + votes[3:])
    assert even.quality == pytest.approx(0.2)  # mean of the two middle values, 0.1 and 0.3
    none = _decide(committee, votes[3:])
    assert none.quality is None and not none.accepted and none.n_valid == 2


def test_empty_committee_is_an_error(committee: Any) -> None:
    with pytest.raises(ParameterError, match="members"):
        _decide(committee, [], members=[])


# --------------------------------------------------------------------------
# Re-scoring
# --------------------------------------------------------------------------


def test_score_update_agrees_in_sign_with_the_true_effect() -> None:
    ds = load_dataset("digits", seed=0)
    model = make_model("softmax", ds.n_features, ds.n_classes)
    params = model.init(0)
    lr = 0.5
    update, _ = local_update(
        model, params, ds.x_train[:300], ds.y_train[:300], steps=3, lr=lr, batch_size=None, rng=np.random.default_rng(1)
    )
    # Two members, each with its own held-out data, disjoint from the author's.
    for lo, hi in ((600, 800), (800, 1000)):
        x, y = ds.x_train[lo:hi], ds.y_train[lo:hi]
        honest = score_update(model, params, update, lr, x, y)
        flipped = score_update(model, params, -update, lr, x, y)
        assert honest > 0 > flipped
        true_after = model.loss(params - lr * update, x, y)
        assert (honest > 0) == (true_after < model.loss(params, x, y))
    # On the author's own data a member computes exactly the author's claimed quality.
    x_ho, y_ho = ds.x_train[300:450], ds.y_train[300:450]
    proof = EdgeProofGenerator(nacl.signing.SigningKey(b"\x05" * 32)).prove(
        model, params, update, x_ho, y_ho, node_id="a", round=0, lr=lr
    )
    assert score_update(model, params, update, lr, x_ho, y_ho) == proof.quality
    with pytest.raises(ProofError):
        score_update(model, params, update[:-1], lr, x_ho, y_ho)


def test_dht_lottery_matches_its_definition() -> None:
    import hashlib as _hashlib

    from zerotrustml.defence.committee import committee_member
    from zerotrustml.exceptions import ParameterError as _ParameterError

    key = bytes(range(32))
    for rnd in range(50):
        digest = _hashlib.sha256(b"zerotrustml" + rnd.to_bytes(8, "big") + key).digest()
        expected = int.from_bytes(digest[:8], "big") < 0.4 * 2**64
        assert committee_member("zerotrustml", rnd, key, 0.4) == expected
    assert committee_member("s", 1, key, 1.0) and not committee_member("s", 1, key, 0.0)
    with pytest.raises(_ParameterError, match="rate"):
        committee_member("s", 1, key, 1.5)
    with pytest.raises(_ParameterError, match="key"):
        committee_member("s", 1, b"short", 0.5)


def test_a_beacon_reseeds_each_round_and_only_its_key_can_issue_it() -> None:
    # Issue 11 item 8: with a fixed seed a key's rounds are known for ever, so a key can be ground to sit on
    # many committees. A beacon per round, signed by the federation's key, makes the draw unknown until then.
    from zerotrustml import _core
    from zerotrustml.holochain.admission import issue_beacon, verify_beacon

    authority = nacl.signing.SigningKey(b"\x05" * 32)
    beacons = [issue_beacon(authority, "s", r) for r in range(20)]
    assert beacons[3] == issue_beacon(authority, "s", 3)  # one beacon per round (Ed25519 is deterministic)
    assert verify_beacon(bytes(authority.verify_key), "s", 3, beacons[3])
    assert not verify_beacon(bytes(authority.verify_key), "s", 4, beacons[3])  # another round's
    assert not verify_beacon(bytes(authority.verify_key), "t", 3, beacons[3])  # another federation's
    other = nacl.signing.SigningKey(b"\x06" * 32)
    assert not verify_beacon(bytes(authority.verify_key), "s", 3, issue_beacon(other, "s", 3))
    # The grinder's best key under the fixed seed: it wins the most of rounds 0-19 ...
    grind = [bytes([i]) * 32 for i in range(200)]
    best = max(grind, key=lambda k: sum(committee_member("s", r, k, 0.25) for r in range(20)))
    fixed = sum(committee_member("s", r, best, 0.25) for r in range(20))
    assert fixed >= 10  # twice its fair share of 5
    # ... and under beacons it is one key like the others (the draw is the core's round seed of the beacon).
    beaconed = sum(committee_member("s", r, best, 0.25, beacons[r]) for r in range(20))
    assert beaconed < fixed
    seeds = {_core.committee_round_seed(b"s", b) for b in beacons}
    assert len(seeds) == 20 and _core.committee_round_seed(b"s", b"") == b"s"
    assert committee_member("s", 3, best, 0.25, beacons[3]) == _core.is_committee_member(
        _core.committee_round_seed(b"s", beacons[3]), 3, best, 0.25
    )
    with pytest.raises(ParameterError, match="beacon: must be empty or 64 bytes, got 3"):
        committee_member("s", 3, best, 0.25, b"abc")
