"""Cases shared by the mock-conductor tests and the real-conductor tests.

``contract_cases`` is one suite of zome-level calls; it runs against two
agents of any kind (mock cells or real cells) and returns every answer in a
normal form that leaves out what legitimately differs (hash values, which
hash a conductor's signed actions and the mock does not). The contract test
requires the same list from the mock and from real conductors.

``run_on`` / ``assert_same_run`` run the simulator on two backends and
compare them round by round.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import nacl.signing
import numpy as np

from zerotrustml import aggregators
from zerotrustml.backends.embedded import EmbeddedStore
from zerotrustml.backends.holochain import ZomeCaller, sign_registration
from zerotrustml.defence.committee import committee_member
from zerotrustml.exceptions import SubmissionRejected
from zerotrustml.fl.simulation import RunConfig, Simulation
from zerotrustml.holochain.admission import issue_beacon
from zerotrustml.holochain.errors import ConductorError, ZomeCallError
from zerotrustml.holochain.wire import agent_key
from zerotrustml.validation import l2_norm, payload_hash

# The DNA the contract runs on: small payloads in several chunks.
PROPERTIES: dict[str, Any] = {
    "model_id": "contract-v1",
    "dims": 24,
    "max_norm": 100.0,
    "max_payload_bytes": 96,
    "max_round": 50,
    "chunk_values": 10,
    "committee_rate": 0.5,
    "committee_seed": "ztml-committee-v1",
    "recompute_limit": 1_000_000,
    "max_contributors": 1000,
    "example_cap": 10.0,
    "admission": "open",
}
# The contract runs on a closed network: this key issues both agents' membrane proofs (mock and conductors).
ADMISSION_KEY = nacl.signing.SigningKey(b"\x0c" * 32)

SMALL_RUN: dict[str, Any] = {
    "dataset": "synthetic",
    "nodes": 5,
    "rounds": 3,
    "local_steps": 2,
    "seed": 3,
    "byzantine_fraction": 0.2,
}


def values(shift: float = 0.0, n: int = 24) -> np.ndarray:
    return np.asarray([(i - 12) * 0.125 + shift for i in range(n)], dtype=np.float32)


def submission(round: int, v: np.ndarray, **over: Any) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "round": round,
        "model_id": PROPERTIES["model_id"],
        "values": [float(x) for x in v],
        "example_count": 32,
        "proof": None,
        "norm": l2_norm(v) if np.all(np.isfinite(v)) else 1.0,
        "payload_hash": payload_hash(v),
    }
    sub.update(over)
    return sub


_HASH_TEXT = re.compile(r"uhC[A-Za-z0-9_-]{50,}")


def _no_hashes(text: str) -> str:
    # Hash values differ between a conductor (hashes of signed actions) and the mock; their place does not.
    return _HASH_TEXT.sub("<hash>", text)


async def outcome(call: Awaitable[Any], normal: Callable[[Any], Any] = lambda x: "ok") -> tuple[Any, ...]:
    """``("ok", normal(result))`` or the error in a backend-independent form."""
    try:
        result = await call
    except SubmissionRejected as e:
        return ("rejected", e.field, e.code, str(e))
    except ZomeCallError as e:
        return ("zome_error", _no_hashes(e.reason))
    except ConductorError as e:
        return ("conductor_error", type(e).__name__)
    return ("ok", normal(result))


async def eventually(read: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.25)


def bad_submissions() -> dict[str, dict[str, Any]]:
    """Submissions every store refuses, as zome payloads: A submitted round 0 before each (the contract's table,
    fed to the mock and real conductors there and to the embedded store in ``test_holochain_mock``)."""
    v = values()
    return {
        "dims": submission(1, values(n=20)),
        "too large": submission(1, values(n=48)),
        "nan": submission(1, np.where(np.arange(24) == 1, np.nan, v).astype(np.float32), norm=1.0),
        "nan norm": submission(1, v, norm=float("nan")),
        "norm lie": submission(1, v, norm=l2_norm(v) * 1.01),
        "norm bound": submission(1, np.full(24, 30.0, dtype=np.float32)),
        "hash lie": submission(1, v, payload_hash=payload_hash(values(1.0))),
        "hash size": submission(1, v, payload_hash=b"\x00" * 31),
        "model": submission(1, v, model_id="other-model"),
        "examples": submission(1, v, example_count=0),
        "round past the end": submission(51, v),
        "proof nonce": submission(
            1, v, proof={"loss_before": 1.0, "loss_after": 0.9, "holdout_size": 5, "lr": 0.1, "nonce": b"\x01" * 4}
        ),
        "proof lr": submission(
            1, v, proof={"loss_before": 1.0, "loss_after": 0.9, "holdout_size": 5, "lr": 0.0, "nonce": b"\x01" * 16}
        ),
        "proof holdout": submission(
            1, v, proof={"loss_before": 1.0, "loss_after": 0.9, "holdout_size": 0, "lr": 0.1, "nonce": b"\x01" * 16}
        ),
        "proof loss": submission(
            1,
            v,
            proof={"loss_before": math.inf, "loss_after": 0.9, "holdout_size": 5, "lr": 0.1, "nonce": b"\x01" * 16},
        ),
        "proof signature": submission(
            1,
            v,
            proof={
                "loss_before": 1.0,
                "loss_after": 0.9,
                "holdout_size": 5,
                "lr": 0.1,
                "nonce": b"\x01" * 16,
                "signature": b"\x02" * 63,
            },
        ),
        "duplicate": submission(0, values(0.5)),
    }


async def contract_cases(a: ZomeCaller, b: ZomeCaller) -> list[tuple[str, tuple[Any, ...]]]:
    """The zome-level suite; ``a`` and ``b`` are two agents of one network with :data:`PROPERTIES`."""
    out: list[tuple[str, tuple[Any, ...]]] = []
    ka, kb = nacl.signing.SigningKey(b"\x0a" * 32), nacl.signing.SigningKey(b"\x0b" * 32)
    names = {a.agent: "A", b.agent: "B"}

    out.append(("properties", await outcome(a.call("get_model_properties"), lambda p: sorted(p.items()))))
    joined = await eventually(lambda: b.call("get_participants"), lambda r: len(r) >= 2)
    out.append(("participants", ("ok", sorted(names[bytes(x)] for x in joined), joined == sorted(joined))))
    forged = dict(sign_registration(ka, a.agent, "node-a"), admission=b"\x01" * 64)
    out.append(("register forged admission", await outcome(a.call("register_node", forged))))
    short = dict(sign_registration(ka, a.agent, "node-a"), admission=b"\x01" * 10)
    out.append(("register short admission", await outcome(a.call("register_node", short))))
    reg_a = await a.call("register_node", sign_registration(ka, a.agent, "node-a"))
    reg_b = await b.call("register_node", sign_registration(kb, b.agent, "node-b"))
    out.append(("register A and B", ("ok", len(bytes(reg_a)), len(bytes(reg_b)))))
    out.append(("register A again", await outcome(a.call("register_node", sign_registration(ka, a.agent, "node-a2")))))
    forged = sign_registration(kb, a.agent, "node-x")  # signed for A's agent, sent by B
    out.append(("register replayed", await outcome(b.call("register_node", forged))))
    bad_key = dict(sign_registration(kb, b.agent, "node-y"), node_key=b"\x01" * 31)
    out.append(("register short key", await outcome(b.call("register_node", bad_key))))
    regs = await eventually(lambda: b.call("get_node_registrations"), lambda r: len(r) >= 2)
    out.append(
        ("registrations", ("ok", sorted((names[bytes(r["agent"])], r["registration"]["node_id"]) for r in regs)))
    )

    v = values()
    sub_a = await a.call("submit_gradient", submission(0, v))
    out.append(("submit", ("ok", len(bytes(sub_a)))))
    bad = bad_submissions()
    for name, payload in bad.items():
        out.append((f"submit {name}", await outcome(a.call("submit_gradient", payload))))

    def read_subs(rows: Sequence[dict[str, Any]]) -> list[Any]:
        return sorted(
            (
                names[bytes(r["author"])],
                {
                    k: (bytes(x).hex() if isinstance(x, (bytes, bytearray)) else x)
                    for k, x in r["submission"].items()
                    if k != "chunk_hashes"
                },
                len(r["submission"]["chunk_hashes"]),
                np.asarray(r["values"], dtype=np.float32).tobytes().hex(),
            )
            for r in rows
        )

    rows = await eventually(lambda: b.call("get_round_submissions", 0), lambda r: len(r) >= 1)
    out.append(("B reads round 0", ("ok", read_subs(rows))))
    out.append(("A's submissions", await outcome(b.call("get_agent_submissions", a.agent), read_subs)))
    sub_b = await b.call("submit_gradient", submission(0, values(0.25)))
    await eventually(lambda: a.call("get_round_submissions", 0), lambda r: len(r) >= 2)

    # The committee lottery on node keys, seeded by each round's beacon on this closed network: rounds where
    # B's key is and is not drawn (the zome agrees).
    seed, rate = PROPERTIES["committee_seed"], PROPERTIES["committee_rate"]
    pub_a, pub_b = bytes(ka.verify_key), bytes(kb.verify_key)

    def beacon(r: int) -> bytes:
        return issue_beacon(ADMISSION_KEY, seed, r)

    def drawn(r: int, key: bytes) -> bool:
        return committee_member(seed, r, key, rate, beacon(r))

    lottery = [
        await b.call("is_committee_member", {"node_key": pub_b, "round": r, "beacon": beacon(r)}) for r in range(12)
    ]
    out.append(("lottery", ("ok", lottery == [drawn(r, pub_b) for r in range(12)])))
    out.append(
        ("lottery without beacon", await outcome(b.call("is_committee_member", {"node_key": pub_b, "round": 3})))
    )
    b_in = next(r for r in range(1, 50) if drawn(r, pub_b))
    b_out = next(r for r in range(1, 50) if not drawn(r, pub_b))
    a_in = next(r for r in range(1, 50) if drawn(r, pub_a) and r not in (b_in, b_out))
    # A round where B's key wins under another round's beacon but not its own: a stale beacon cannot help.
    b_stale = next(
        r for r in range(1, 50) if not drawn(r, pub_b) and committee_member(seed, r, pub_b, rate, beacon(b_in))
    )
    sub_in = await a.call("submit_gradient", submission(b_in, values(0.75)))
    sub_out = await a.call("submit_gradient", submission(b_out, values(0.75)))
    sub_a_in = await a.call("submit_gradient", submission(a_in, values(1.5)))
    sub_stale = sub_out if b_stale == b_out else await a.call("submit_gradient", submission(b_stale, values(0.5)))
    await eventually(lambda: b.call("get_agent_submissions", a.agent), lambda r: len(r) >= 4)
    vote = {
        "round": b_in,
        "submission": sub_in,
        "quality": 0.25,
        "accept": True,
        "signature": b"\x07" * 64,
        "registration": reg_b,
        "beacon": beacon(b_in),
    }
    out.append(("vote without beacon", await outcome(b.call("cast_vote", dict(vote, beacon=b"")))))
    forged = issue_beacon(nacl.signing.SigningKey(b"\x0d" * 32), seed, b_in)  # another key's "beacon"
    out.append(("vote forged beacon", await outcome(b.call("cast_vote", dict(vote, beacon=forged)))))
    stale = dict(vote, round=b_stale, submission=sub_stale)  # round b_stale, carrying round b_in's beacon
    out.append(("vote stale beacon", await outcome(b.call("cast_vote", stale))))
    out.append(("vote", await outcome(b.call("cast_vote", vote), lambda h: len(bytes(h)))))
    out.append(("vote again", await outcome(b.call("cast_vote", dict(vote, accept=False)))))
    not_drawn = dict(vote, round=b_out, submission=sub_out, beacon=beacon(b_out))
    out.append(("vote not drawn", await outcome(b.call("cast_vote", not_drawn))))
    out.append(("vote with A's registration", await outcome(b.call("cast_vote", dict(vote, registration=reg_a)))))
    own = dict(vote, round=a_in, submission=sub_a_in, registration=reg_a, beacon=beacon(a_in))
    out.append(("vote own", await outcome(a.call("cast_vote", own))))
    out.append(("vote wrong round", await outcome(b.call("cast_vote", dict(vote, submission=sub_a)))))
    out.append(("vote nan", await outcome(b.call("cast_vote", dict(vote, quality=math.nan)))))
    out.append(("vote signature size", await outcome(b.call("cast_vote", dict(vote, signature=b"1")))))
    votes = await eventually(lambda: a.call("get_submission_votes", sub_in), lambda r: len(r) >= 1)
    out.append(
        (
            "votes",
            (
                "ok",
                [
                    (
                        names[bytes(x["author"])],
                        x["vote"]["quality"],
                        x["vote"]["accept"],
                        bytes(x["vote"]["signature"]).hex(),
                    )
                    for x in votes
                ],
            ),
        )
    )

    rep = {"agent": b.agent, "round": 0, "score": 0.75}
    out.append(("reputation", await outcome(a.call("publish_reputation", rep), lambda h: len(bytes(h)))))
    out.append(("reputation out of range", await outcome(a.call("publish_reputation", dict(rep, score=1.5)))))
    out.append(("reputation past the end", await outcome(a.call("publish_reputation", dict(rep, round=51)))))
    out.append(("reputation of self", await outcome(b.call("publish_reputation", rep))))
    # An author's opinions of an agent go forward in rounds: the same round again (or an earlier one) is refused.
    out.append(("reputation same round", await outcome(a.call("publish_reputation", dict(rep, score=0.5)))))
    hist = await eventually(lambda: b.call("get_reputation_history", b.agent), lambda r: len(r) >= 1)
    out.append(
        (
            "reputation history",
            ("ok", [(names[bytes(x["author"])], x["record"]["round"], x["record"]["score"]) for x in hist]),
        )
    )
    # A's later opinion replaces its own earlier one; a record's round never makes it win over other authors.
    await a.call("publish_reputation", dict(rep, round=50, score=0.25))
    view = await eventually(
        lambda: b.call("get_reputation", b.agent), lambda v: any(o["record"]["round"] == 50 for o in v["opinions"])
    )
    out.append(
        (
            "reputation view",
            (
                "ok",
                [(names[bytes(o["author"])], o["record"]["round"], o["record"]["score"]) for o in view["opinions"]],
                view["median"],
            ),
        )
    )

    contributors = sorted([bytes(sub_a), bytes(sub_b)])
    result = values(0.125)
    agg = {
        "round": 0,
        "rule": "personal",
        "f": 0,
        "contributors": contributors,
        "flagged": [b.agent],
        "values": [float(x) for x in result],
    }
    out.append(
        ("personal aggregate", await outcome(a.call("publish_computed_aggregate", agg), lambda h: len(bytes(h))))
    )
    out.append(
        (
            "aggregate unordered",
            await outcome(a.call("publish_computed_aggregate", dict(agg, contributors=contributors[::-1]))),
        )
    )
    out.append(
        (
            "aggregate stranger flagged",
            # by B, which has no aggregate of the round yet (A's second would be refused for being a second)
            await outcome(b.call("publish_computed_aggregate", dict(agg, flagged=[agent_key(b"\x09" * 32)]))),
        )
    )
    out.append(
        ("aggregate unknown rule", await outcome(a.call("publish_computed_aggregate", dict(agg, rule="bulyan"))))
    )
    out.append(
        (
            "aggregate second in round",
            await outcome(a.call("publish_computed_aggregate", dict(agg, flagged=[]))),
        )
    )
    out.append(
        (
            "aggregate preconditions",  # multi_krum with f >= n would flag everyone
            await outcome(b.call("publish_computed_aggregate", dict(agg, rule="multi_krum", f=2, flagged=[]))),
        )
    )
    big = [30.0] * 24  # norm 30 * sqrt(24) = 147 > max_norm 100, which no mean of valid submissions can reach
    out.append(
        (
            "aggregate result norm",
            await outcome(b.call("publish_computed_aggregate", dict(agg, rule="mean", flagged=[], values=big))),
        )
    )
    # A mean validators recompute: B's forged result is refused, the true one (the core rule over the two
    # submissions in contributor order, example counts capped) stands and reads as verified.
    by_action = {bytes(sub_a): values(), bytes(sub_b): values(0.25)}
    rows = np.stack([by_action[h] for h in contributors])
    true_mean = aggregators.mean(rows, weights=aggregators.example_weights([32, 32])).vector
    forged = dict(agg, rule="mean", flagged=[], values=[float(x) for x in values(0.5)])
    out.append(("aggregate mean forged", await outcome(b.call("publish_computed_aggregate", forged))))
    honest_mean = dict(agg, rule="mean", flagged=[], values=[float(x) for x in true_mean])
    out.append(
        ("aggregate mean", await outcome(b.call("publish_computed_aggregate", honest_mean), lambda h: len(bytes(h))))
    )
    aggs = await eventually(lambda: b.call("get_round_aggregates", 0), lambda r: len(r) >= 2)
    out.append(
        (
            "aggregates",
            (
                "ok",
                sorted(
                    (
                        names[bytes(x["author"])],
                        x["aggregate"]["rule"],
                        len(x["aggregate"]["contributors"]),
                        [names.get(bytes(f)) for f in x["aggregate"]["flagged"]],
                        bytes(x["aggregate"]["result_hash"]).hex(),
                        x["verified"],
                        x["coverage"],
                    )
                    for x in aggs
                ),
            ),
        )
    )
    # A hand-picked subset validates (the median of A's own submission in a round where B submitted too);
    # what it covers is there for every reader to see.
    await b.call("submit_gradient", submission(b_in, values(2.0)))
    await eventually(lambda: a.call("get_round_submissions", b_in), lambda r: len(r) >= 2)
    picked = {
        "round": b_in,
        "rule": "median",
        "f": 0,
        "contributors": [bytes(sub_in)],
        "flagged": [],
        "values": [float(x) for x in values(0.75)],
    }
    out.append(("aggregate hand-picked", await outcome(a.call("publish_computed_aggregate", picked), lambda h: "ok")))
    aggs = await eventually(lambda: b.call("get_round_aggregates", b_in), lambda r: len(r) >= 1)
    out.append(("hand-picked coverage", ("ok", [(x["verified"], x["coverage"]) for x in aggs])))
    out.append(("chain status", await outcome(b.call("get_chain_status", a.agent), lambda s: s)))
    return out


async def contract_on_mock(data_dir: Path) -> list[tuple[str, tuple[Any, ...]]]:
    """:func:`contract_cases` on two agents of a mock conductor over an embedded store in ``data_dir``."""
    from zerotrustml.backends.mock_conductor import MockConductor

    mock = MockConductor(data_dir, PROPERTIES, admission_key=ADMISSION_KEY)
    await mock.start()
    try:
        return await contract_cases(mock.new_cell(), mock.new_cell())
    finally:
        await mock.stop()


# ----------------------------------------------------------------------------------------------------------
# whole runs


def run_on(
    backend: str, data_dir: Path, backend_options: dict[str, Any] | None = None, **cfg: Any
) -> list[dict[str, Any]]:
    """Run the simulator and return its per-round metric lines."""
    config = RunConfig(**{**SMALL_RUN, **cfg, "backend": backend})
    Simulation(config, data_dir, backend_options=backend_options).run()
    return [json.loads(line) for line in (data_dir / "run.jsonl").read_text().splitlines()]


def votes_missing(data_dir: Path) -> dict[int, int]:
    """Rounds whose recording agent decided without some committee votes (round -> how many), from the records."""

    async def read() -> dict[int, int]:
        async with EmbeddedStore(data_dir) as store:
            out: dict[int, int] = {}
            r = 0
            while (rec := await store.get_round_record(r)) is not None:
                if rec.evidence.get("votes_missing"):
                    out[r] = int(rec.evidence["votes_missing"])
                r += 1
            return out

    return asyncio.run(read())


def run_on_dht(data_dir: Path, backend_options: dict[str, Any], **cfg: Any) -> tuple[Path, list[dict[str, Any]]]:
    """:func:`run_on` on real conductors, with one fresh network if votes did not arrive within the round timeout.

    Votes published on one conductor and never seen on the other for the whole timeout is the loopback transport
    stall the tryorama suite also restarts for (a peer connection that is never retried; the same entries reach
    a fresh network). The run records it (``votes_missing``) and decides on what arrived, so its evidence then
    differs from the embedded run's. One fresh start; a second stall is returned as is and fails the comparison.
    """
    rows = run_on("holochain", data_dir, backend_options, **cfg)
    stalled = votes_missing(data_dir)
    if not stalled:
        return data_dir, rows
    print(f"[dht_cases] votes never arrived (round -> missing: {stalled}); one fresh network", flush=True)
    fresh = data_dir.with_name(data_dir.name + "-fresh")
    return fresh, run_on("holochain", fresh, backend_options, **cfg)


def _without_timings(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.endswith("_ms")}


def assert_same_run(dir_a: Path, rows_a: list[dict[str, Any]], dir_b: Path, rows_b: list[dict[str, Any]]) -> None:
    """Bit-identical models and aggregates, the same kept and flagged nodes, the same metrics, every round."""
    assert len(rows_a) == len(rows_b) > 0
    for x, y in zip(rows_a, rows_b, strict=True):
        assert _without_timings(x) == _without_timings(y), f"round {x['round']}: metrics differ"

    async def records() -> None:
        a, b = EmbeddedStore(dir_a), EmbeddedStore(dir_b)
        async with a, b:
            for r in range(len(rows_a)):
                ra, rb = await a.get_round_record(r), await b.get_round_record(r)
                assert ra is not None and rb is not None
                assert ra.model.tobytes() == rb.model.tobytes(), f"round {r}: model bits differ"
                assert ra.aggregate.tobytes() == rb.aggregate.tobytes(), f"round {r}: aggregate bits differ"
                assert ra.contributors == rb.contributors and ra.flagged == rb.flagged
                # The defence's evidence (scores, votes, reputation) is the same; the DHT path adds only its own.
                ea = {k: v for k, v in ra.evidence.items() if k != "state"}
                eb = {k: v for k, v in rb.evidence.items() if k not in ("state", "agents_agreeing")}
                differ = sorted(k for k in set(ea) | set(eb) if ea.get(k) != eb.get(k))
                assert ea == eb, f"round {r}: evidence differs in {differ}: " + "; ".join(
                    f"{k}: {ea.get(k)!r:.300} != {eb.get(k)!r:.300}" for k in differ
                )

    asyncio.run(records())
