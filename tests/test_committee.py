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
    REPUTATION_FLOOR,
    VOTE_DOMAIN,
    CommitteeDecision,
    Vote,
    aggregate_committee_votes,
    cast_vote,
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


def test_selection_is_deterministic() -> None:
    reps = {c: 0.1 + 0.04 * i for i, c in enumerate(CANDIDATES)}
    a = select_committee(CANDIDATES, 7, 123, 5, reps)
    assert a == select_committee(CANDIDATES, 7, 123, 5, dict(reps))
    assert len(a) == 5 and len(set(a)) == 5 and set(a) <= set(CANDIDATES)


def test_selection_does_not_depend_on_candidate_order() -> None:
    reps = {c: 0.1 + 0.04 * i for i, c in enumerate(CANDIDATES)}
    shuffled = CANDIDATES[:]
    random.Random(5).shuffle(shuffled)
    for r in range(10):
        assert select_committee(CANDIDATES, r, 9, 6, reps) == select_committee(shuffled, r, 9, 6, reps)
        assert select_committee(CANDIDATES, r, 9, 6) == select_committee(tuple(reversed(CANDIDATES)), r, 9, 6)


def test_selection_depends_on_round_and_seed() -> None:
    by_round = {tuple(select_committee(CANDIDATES, r, 1, 5)) for r in range(20)}
    by_seed = {tuple(select_committee(CANDIDATES, 3, s, 5)) for s in range(20)}
    # 15504 possible committees: twenty draws repeating often would mean the input is ignored.
    assert len(by_round) >= 18
    assert len(by_seed) >= 18


def test_selection_is_weighted_by_reputation() -> None:
    reps = {c: 0.5 for c in CANDIDATES}
    reps["node-00"], reps["node-01"], reps["node-02"] = 0.9, 0.1, 0.0
    rounds = 2000
    counts: collections.Counter[str] = collections.Counter()
    for r in range(rounds):
        counts.update(select_committee(CANDIDATES, r, 42, 5, reps))
    hi, lo, zero, mid = counts["node-00"], counts["node-01"], counts["node-02"], counts["node-05"]
    # Expected roughly 0.43, 0.07, 0.005 and 0.27 of the rounds; bounds are generous.
    assert hi > 3 * lo
    assert hi > mid > lo > zero
    assert 0.3 * rounds < hi < 0.6 * rounds
    assert lo < 0.15 * rounds
    # The floor keeps a zero-reputation node drawable, but rarely.
    assert 0 < zero < 0.03 * rounds
    assert REPUTATION_FLOOR == 0.01


def test_selection_without_reputations_is_uniform() -> None:
    rounds = 2000
    counts: collections.Counter[str] = collections.Counter()
    for r in range(rounds):
        counts.update(select_committee(CANDIDATES, r, 3, 5))
    # Each node's expected share is k/n = 0.25.
    assert set(counts) == set(CANDIDATES)
    assert all(0.2 * rounds < c < 0.3 * rounds for c in counts.values())
    # Missing reputations get the floor: all missing is uniform too.
    assert select_committee(CANDIDATES, 11, 3, 5, {}) == select_committee(CANDIDATES, 11, 3, 5)


def test_exclude() -> None:
    base = select_committee(CANDIDATES, 4, 8, 5)
    out = select_committee(CANDIDATES, 4, 8, 5, exclude={base[0]})
    assert base[0] not in out and len(out) == 5
    assert out[:4] == base[1:]  # everyone else keeps their key, so the rest of the order stays
    outsider = next(c for c in CANDIDATES if c not in base)
    assert select_committee(CANDIDATES, 4, 8, 5, exclude=[outsider]) == base
    # Too few left: all of them, in the same order as without the exclusions.
    assert select_committee(CANDIDATES, 4, 8, 50, exclude=CANDIDATES[:18]) == select_committee(CANDIDATES[18:], 4, 8, 2)


def test_selection_size_limits_and_bad_input() -> None:
    everyone = select_committee(CANDIDATES, 0, 0, 100)
    assert sorted(everyone) == CANDIDATES
    with pytest.raises(ParameterError, match="k"):
        select_committee(CANDIDATES, 0, 0, 0)
    with pytest.raises(ParameterError, match="unique"):
        select_committee(["a", "a"], 0, 0, 1)
    with pytest.raises(ParameterError, match="reputations"):
        select_committee(["a", "b"], 0, 0, 1, {"a": float("nan")})
    with pytest.raises(ParameterError, match="reputations"):
        select_committee(["a", "b"], 0, 0, 1, {"a": -0.1})
    with pytest.raises(ParameterError, match="round"):
        select_committee(["a"], -1, 0, 1)
    with pytest.raises(TypeError):
        select_committee("abc", 0, 0, 1)
    assert select_committee([], 0, 0, 3) == []


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

    from zerotrustml.defence.committee import dht_committee_member
    from zerotrustml.exceptions import ParameterError as _ParameterError

    key = bytes(range(32))
    for rnd in range(50):
        digest = _hashlib.sha256(b"zerotrustml" + rnd.to_bytes(8, "big") + key).digest()
        expected = int.from_bytes(digest[:8], "big") < 0.4 * 2**64
        assert dht_committee_member("zerotrustml", rnd, key, 0.4) == expected
    assert dht_committee_member("s", 1, key, 1.0) and not dht_committee_member("s", 1, key, 0.0)
    with pytest.raises(_ParameterError, match="rate"):
        dht_committee_member("s", 1, key, 1.5)
    with pytest.raises(_ParameterError, match="key"):
        dht_committee_member("s", 1, b"short", 0.5)
