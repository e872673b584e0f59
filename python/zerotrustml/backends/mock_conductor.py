"""The mock conductor: the coordinator zome's functions, in process, over the embedded store.

A declared stand-in for a Holochain conductor, for fast tests and for runs
without Holochain: :class:`MockCell` answers the zome functions the
:class:`~zerotrustml.backends.holochain.HolochainBackend` calls with the
payloads the real coordinator zome returns, and fails with the errors a
real :class:`~zerotrustml.holochain.client.Cell` raises for the same input
(``SubmissionRejected`` with the same field, code and message for a broken
submission rule; :class:`~zerotrustml.holochain.errors.ZomeCallError` with
the integrity zome's message for the other entry types). The contract test
(``tests/test_holochain_contract.py``) runs one suite of zome-level cases
against this mock and against real conductors and requires the same answers.

Submissions live in an :class:`~zerotrustml.backends.embedded.EmbeddedStore`
(the store applies the same core rules as the integrity zome; node id = the
author's agent key in Holochain's text form). Registrations, votes,
aggregates and reputation records live in memory. Hashes are deterministic
stand-ins with Holochain's shape (39 bytes, the right type prefix); they
differ from a conductor's, which hash the signed action.

What the mock does not model: gossip delay (every agent sees every write at
once), source-chain forks, and validation of aggregates by recomputation
(structure only, as above the recompute bound).
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import statistics
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import numpy as np

from zerotrustml.backends.base import MAX_INT
from zerotrustml.backends.embedded import EmbeddedStore
from zerotrustml.holochain.admission import (
    OPEN,
    admission_property,
    issue_admission,
    parse_admission,
    verify_admission,
    verify_beacon,
)
from zerotrustml.holochain.errors import ConductorError, ZomeCallError, rejection_from
from zerotrustml.holochain.wire import (
    ACTION_PREFIX,
    AGENT_PREFIX,
    ENTRY_PREFIX,
    RawPayload,
    hash_b64,
    holo_hash,
    unpackb,
)
from zerotrustml.validation import DHT_PROOF_SCHEME, NORM_RTOL, ModelSpec, Submission, l2_norm, payload_hash

__all__ = ["MockConductor", "MockCell"]

_SIGNATURE_BYTES = 64
_RULES = ("mean", "krum", "multi_krum", "median", "trimmed_mean", "personal")


def _h(prefix: bytes, *parts: bytes) -> bytes:
    h = hashlib.sha256(b"ztml-mock")
    for p in parts:
        h.update(struct.pack(">I", len(p)) + p)
    return holo_hash(prefix, h.digest())


def _invalid(fn: str, reason: str) -> Exception:
    """The error a real cell raises for the zome message ``reason``."""
    rejected = rejection_from(reason)
    if rejected is not None:
        return rejected
    return ZomeCallError(f"{fn}: {reason}", fn_name=fn, reason=reason)


class MockConductor:
    """The shared state of a mock network: one embedded store and the in-memory entries."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        properties: Mapping[str, Any],
        network_seed: str = "mock",
        admission_key: nacl.signing.SigningKey | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.properties = dict(properties)
        self.network_seed = network_seed
        # Like a LocalNetwork: given the admission key, the network is closed by it and issues proofs itself.
        self.issuer = admission_key
        if admission_key is not None:
            self.properties["admission"] = admission_property(admission_key)
        self.admission_key = parse_admission(str(self.properties.get("admission", OPEN)))
        self.spec = ModelSpec(
            model_id=str(properties["model_id"]),
            dims=int(properties["dims"]),
            max_norm=float(properties["max_norm"]),
            max_payload_bytes=int(properties["max_payload_bytes"]),
            max_round=None if properties.get("max_round") is None else int(properties["max_round"]),
        )
        self.chunk_values = int(properties["chunk_values"])
        self.store = EmbeddedStore(self.data_dir)
        self.registrations: list[dict[str, Any]] = []
        self.participants: set[bytes] = set()
        self.votes: dict[bytes, list[dict[str, Any]]] = {}
        self.reputation: dict[bytes, list[dict[str, Any]]] = {}
        self.aggregates: dict[int, list[dict[str, Any]]] = {}
        self.actions: dict[bytes, tuple[int, bytes]] = {}  # submission action -> (round, author)
        self._seq = 0

    async def start(self) -> None:
        await self.store.open()
        await self.store.set_model_spec(self.spec)

    async def stop(self) -> None:
        await self.store.close()

    def new_cell(self, membrane_proof: bytes | None = None) -> MockCell:
        """A new agent, with ``membrane_proof`` or, by default, a proof issued with the network's admission key.

        On a closed network a missing or wrong proof refuses the install, as ``genesis_self_check`` does.
        """
        agent = holo_hash(AGENT_PREFIX, bytes(nacl.signing.SigningKey.generate().verify_key))
        proof = membrane_proof
        if proof is None and self.issuer is not None:
            proof = issue_admission(self.issuer, agent, self.network_seed)
        reason = self.admission_refusal(agent, proof, "membrane proof")
        if reason is not None:
            raise ConductorError(f"mock conductor: install_app failed: genesis self-check: {reason}")
        cell = MockCell(self, agent, proof or b"")
        self.participants.add(cell.agent)  # the zome's init links each agent from the participants anchor
        return cell

    def admission_refusal(self, agent: bytes, proof: bytes | None, what: str) -> str | None:
        """The zome's reason to refuse ``proof`` for ``agent`` (``None`` when admitted)."""
        if self.admission_key is None:
            return None
        if not proof:
            return f"{what}: required (this network admits only agents with a proof signed by its admission key)"
        if len(proof) != 64:
            return f"{what}: must be 64 bytes, got {len(proof)}"
        if not verify_admission(self.admission_key, agent, self.network_seed, proof):
            return f"{what}: not signed by the admission key for this agent and network seed"
        return None

    def next_action(self, author: bytes, *parts: bytes) -> bytes:
        self._seq += 1
        return _h(ACTION_PREFIX, author, struct.pack(">Q", self._seq), *parts)

    def submission_action(self, author: bytes, round: int, digest: bytes) -> bytes:
        return _h(ACTION_PREFIX, b"submission", author, struct.pack(">Q", round), digest)

    def chunk_hashes(self, values: np.ndarray[Any, Any]) -> list[bytes]:
        n = max(1, -(-len(values) // self.chunk_values))
        return [
            _h(
                ENTRY_PREFIX,
                struct.pack(">Q", i),
                values[i * self.chunk_values : (i + 1) * self.chunk_values].tobytes(),
            )
            for i in range(n)
        ]


class MockCell:
    """One agent of a :class:`MockConductor`, with the same ``call`` as a real cell."""

    def __init__(self, conductor: MockConductor, agent: bytes, membrane_proof: bytes = b"") -> None:
        self.conductor = conductor
        self._agent = agent
        self.membrane_proof = membrane_proof

    @property
    def agent(self) -> bytes:
        return self._agent

    async def call(self, fn_name: str, payload: Any = None, timeout: float = 60.0) -> Any:
        if isinstance(payload, RawPayload):
            payload = unpackb(payload.data)
        handler = getattr(self, f"_fn_{fn_name}", None)
        if handler is None:
            raise ZomeCallError(
                f"{fn_name}: the zome has no function {fn_name!r}", fn_name=fn_name, reason=f"no function {fn_name}"
            )
        return await handler(payload)

    # -- properties -------------------------------------------------------------------------------------------------
    async def _fn_get_model_properties(self, _: Any) -> dict[str, Any]:
        return dict(self.conductor.properties)

    # -- submissions ------------------------------------------------------------------------------------------------
    async def _fn_submit_gradient(self, p: Mapping[str, Any]) -> bytes:
        c = self.conductor
        values = np.asarray(p["values"], dtype=np.float32)
        digest = bytes(p["payload_hash"]) if p.get("payload_hash") is not None else payload_hash(values)
        norm = float(p["norm"]) if p.get("norm") is not None else l2_norm(values)
        if len(digest) != 32:
            reason = f"GradientSubmission.payload_hash: must be 32 bytes, got {len(digest)} [bad_hash]"
            raise _invalid("submit_gradient", reason)
        proof = p.get("proof")  # its form is the core's rule, which the store applies
        sub = Submission(
            node_id=hash_b64(self._agent),
            round=int(p["round"]),
            model_id=str(p["model_id"]),
            values=values,
            example_count=int(p["example_count"]),
            norm=norm,
            payload_hash=digest,
            proof=store_proof(proof),
        )
        await c.store.submit(sub)  # the core's rules, as the integrity zome applies them
        action = c.submission_action(self._agent, sub.round, digest)
        c.actions[action] = (sub.round, self._agent)
        return action

    def _output(self, sub: Submission, author: bytes) -> dict[str, Any]:
        c = self.conductor
        values = np.asarray(sub.values, dtype=np.float32)
        return {
            "action_hash": c.submission_action(author, int(sub.round), bytes(sub.payload_hash)),
            "author": author,
            "submission": {
                "round": int(sub.round),
                "model_id": sub.model_id,
                "dims": int(values.shape[0]),
                "dtype": "f32",
                "payload_hash": bytes(sub.payload_hash),
                "norm": float(sub.norm),
                "example_count": int(sub.example_count),
                "chunk_hashes": c.chunk_hashes(values),
                "proof": entry_proof(sub.proof),
            },
            "values": values.tolist(),
        }

    async def _fn_get_round_submissions(self, round: int) -> list[dict[str, Any]]:
        c = self.conductor
        agents = {hash_b64(a): a for (_, a) in c.actions.values()}
        return [self._output(s, agents[s.node_id]) for s in await c.store.get_round(int(round)) if s.node_id in agents]

    async def _fn_get_agent_submissions(self, agent: bytes) -> list[dict[str, Any]]:
        c = self.conductor
        agent = bytes(agent)
        rounds = sorted({r for (r, a) in c.actions.values() if a == agent})
        out = []
        for r in rounds:
            sub = await c.store.get_submission(r, hash_b64(agent))
            if sub is not None:
                out.append(self._output(sub, agent))
        return out

    # -- registrations ----------------------------------------------------------------------------------------------
    async def _fn_register_node(self, r: Mapping[str, Any]) -> bytes:
        from zerotrustml.backends.holochain import registration_message

        node_id, key, sig = str(r["node_id"]), bytes(r["node_key"]), bytes(r["signature"])
        fn = "register_node"
        if not 1 <= len(node_id.encode()) <= 128:
            raise _invalid(fn, f"NodeRegistration.node_id: must be 1 to 128 bytes, got {len(node_id.encode())}")
        if any(ord(ch) < 32 or 127 <= ord(ch) <= 159 for ch in node_id):  # Rust's char::is_control
            raise _invalid(fn, "NodeRegistration.node_id: must not contain control characters")
        if len(key) != 32:
            raise _invalid(fn, f"NodeRegistration.node_key: must be 32 bytes, got {len(key)}")
        if len(sig) != _SIGNATURE_BYTES:
            raise _invalid(fn, f"NodeRegistration.signature: must be 64 bytes, got {len(sig)}")
        try:
            nacl.signing.VerifyKey(key).verify(registration_message(self._agent, node_id, key), sig)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
            raise _invalid(
                fn, "NodeRegistration.signature: does not verify under node_key for this agent and node_id"
            ) from None
        admission = bytes(r.get("admission") or b"") or self.membrane_proof
        refused = self.conductor.admission_refusal(self._agent, admission, "NodeRegistration.admission")
        if refused is not None:
            raise _invalid(fn, refused)
        if any(x["agent"] == self._agent for x in self.conductor.registrations):
            raise _invalid(fn, "NodeRegistration.agent: this agent is already registered")
        action = self.conductor.next_action(self._agent, b"registration", key)
        self.conductor.registrations.append(
            {
                "action_hash": action,
                "agent": self._agent,
                "registration": {"node_id": node_id, "node_key": key, "signature": sig, "admission": admission},
            }
        )
        return action

    async def _fn_get_participants(self, _: Any) -> list[bytes]:
        return sorted(self.conductor.participants)

    async def _fn_get_chain_status(self, agent: Any) -> dict[str, Any]:
        # One process, one chain per agent: a mock chain never forks, and it is never invalid (refused writes are
        # not kept), so a joined agent's chain is valid.
        return {"status": "valid" if bytes(agent) in self.conductor.participants else "empty", "fork_seq": None}

    async def _fn_get_node_registrations(self, _: Any) -> list[dict[str, Any]]:
        return sorted(self.conductor.registrations, key=lambda x: x["action_hash"])

    # -- votes ------------------------------------------------------------------------------------------------------
    async def _fn_is_committee_member(self, p: Mapping[str, Any]) -> bool:
        from zerotrustml.defence.committee import committee_member

        c = self.conductor
        rnd, beacon = int(p["round"]), bytes(p.get("beacon") or b"")
        reason = self._beacon_refusal(rnd, beacon, "beacon")
        if reason is not None:
            raise _invalid("is_committee_member", reason)
        seed, rate = str(c.properties["committee_seed"]), float(c.properties["committee_rate"])
        return committee_member(seed, rnd, bytes(p["node_key"]), rate, beacon)

    def _beacon_refusal(self, round: int, beacon: bytes, field: str) -> str | None:
        """The zome's reason to refuse ``beacon`` as ``round``'s (``beacon_seed``), or ``None``."""
        c = self.conductor
        if c.admission_key is None:
            return None if not beacon else f"{field}: must be empty on an open network (no admission key signs beacons)"
        if len(beacon) != 64:
            return (
                f"{field}: required on a closed network, the admission key's 64-byte signature over round {round}, "
                f"got {len(beacon)} bytes"
            )
        if not verify_beacon(c.admission_key, str(c.properties["committee_seed"]), round, beacon):
            return f"{field}: not the admission key's beacon for round {round}"
        return None

    async def _fn_cast_vote(self, v: Mapping[str, Any]) -> bytes:
        from zerotrustml.defence.committee import committee_member

        c, fn = self.conductor, "cast_vote"
        # The integrity zome's order: the registration, the vote's own fields, the lottery, the voted submission.
        reg = next((x for x in c.registrations if x["action_hash"] == bytes(v["registration"])), None)
        if reg is None:
            raise ZomeCallError(f"{fn}: the registration is not reachable", fn_name=fn, reason="not reachable")
        if reg["agent"] != self._agent:
            raise _invalid(fn, "CommitteeVote.registration: the registration of another agent")
        rnd, beacon = int(v["round"]), bytes(v.get("beacon") or b"")
        reason = self._beacon_refusal(rnd, beacon, "CommitteeVote.beacon")
        if reason is not None:
            raise _invalid(fn, reason)
        quality = float(v["quality"])
        if not math.isfinite(quality):
            raise _invalid(fn, f"CommitteeVote.quality: must be finite, got {_rust_float(quality)}")
        sig = bytes(v.get("signature") or b"")
        if len(sig) not in (0, _SIGNATURE_BYTES):
            raise _invalid(fn, f"CommitteeVote.signature: must be empty or 64 bytes, got {len(sig)}")
        rate = float(c.properties["committee_rate"])
        node_key = reg["registration"]["node_key"]
        if not committee_member(str(c.properties["committee_seed"]), rnd, node_key, rate, beacon):
            raise _invalid(
                fn,
                f"CommitteeVote.registration: node key {node_key.hex()} is not on the committee of round {rnd} "
                f"(hash lottery, committee_rate {_rust_float(rate)})",
            )
        target = bytes(v["submission"])
        if target not in c.actions:
            raise ZomeCallError(f"{fn}: the voted submission is not reachable", fn_name=fn, reason="not reachable")
        s_round, s_author = c.actions[target]
        if s_round != rnd:
            raise _invalid(
                fn, f"CommitteeVote.submission: a submission of round {s_round}, the vote is for round {rnd}"
            )
        if s_author == self._agent:
            raise _invalid(fn, "CommitteeVote.submission: a member cannot vote on its own submission")
        if any(x["author"] == self._agent for x in c.votes.get(target, [])):
            raise _invalid(fn, f"CommitteeVote.submission: this member already voted on {hash_b64(target)}")
        action = c.next_action(self._agent, b"vote", target)
        vote = {
            "round": rnd,
            "submission": target,
            "quality": quality,
            "accept": bool(v["accept"]),
            "signature": sig,
            "registration": bytes(v["registration"]),
        }
        c.votes.setdefault(target, []).append({"action_hash": action, "author": self._agent, "vote": vote})
        return action

    async def _fn_get_submission_votes(self, submission: bytes) -> list[dict[str, Any]]:
        return list(self.conductor.votes.get(bytes(submission), []))

    # -- reputation -------------------------------------------------------------------------------------------------
    async def _fn_publish_reputation(self, r: Mapping[str, Any]) -> bytes:
        c, score, rnd = self.conductor, float(r["score"]), int(r["round"])
        if bytes(r["agent"]) == self._agent:
            raise _invalid(
                "publish_reputation",
                "ReputationRecord.agent: an agent cannot publish its own reputation (a record is its author's "
                "opinion of another agent)",
            )
        if not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise _invalid(
                "publish_reputation",
                f"ReputationRecord.score: must be a finite number in [0, 1], got {_rust_float(score)}",
            )
        last = c.properties.get("max_round")
        max_round = MAX_INT if last is None else min(int(last), MAX_INT)
        if rnd > max_round:
            raise _invalid("publish_reputation", f"ReputationRecord.round: {rnd} is past the last round {max_round}")
        agent = bytes(r["agent"])
        mine = [x["record"]["round"] for x in c.reputation.get(agent, []) if x["author"] == self._agent]
        if mine and max(mine) >= rnd:
            raise _invalid(
                "publish_reputation",
                f"ReputationRecord.round: this author's opinion of this agent is already at round {max(mine)}; a new "
                f"one must name a later round, got {rnd}",
            )
        action = c.next_action(self._agent, b"reputation", agent)
        record = {"agent": agent, "round": rnd, "score": score}
        c.reputation.setdefault(agent, []).append(
            {"action_hash": action, "author": self._agent, "timestamp": c._seq, "record": record}
        )
        return action

    async def _fn_get_reputation_history(self, agent: bytes) -> list[dict[str, Any]]:
        return list(self.conductor.reputation.get(bytes(agent), []))

    async def _fn_get_reputation(self, agent: bytes) -> dict[str, Any]:
        latest: dict[bytes, dict[str, Any]] = {}
        for r in await self._fn_get_reputation_history(agent):
            key = (r["record"]["round"], r["timestamp"], r["action_hash"])
            cur = latest.get(r["author"])
            if cur is None or key > (cur["record"]["round"], cur["timestamp"], cur["action_hash"]):
                latest[r["author"]] = r
        opinions = [latest[a] for a in sorted(latest)]
        median = statistics.median(o["record"]["score"] for o in opinions) if opinions else None
        return {"agent": bytes(agent), "opinions": opinions, "median": median}

    # -- aggregates -------------------------------------------------------------------------------------------------
    async def _fn_publish_computed_aggregate(self, a: Mapping[str, Any]) -> bytes:
        """The integrity zome's checks, in its order: the cheap ones before any fetch, then (within
        ``recompute_limit``) the recompute of every rule but ``personal``."""
        c, fn = self.conductor, "publish_computed_aggregate"
        rule = str(a["rule"])
        if rule not in _RULES:
            raise _invalid(
                fn, f"RoundAggregate.rule: unknown rule {rule!r}, expected one of {', '.join(_RULES)}".replace("'", '"')
            )
        contributors = [bytes(h) for h in a["contributors"]]
        if not contributors:
            raise _invalid(fn, "RoundAggregate.contributors: at least one contributor is required")
        for i in range(1, len(contributors)):
            if contributors[i - 1] >= contributors[i]:
                raise _invalid(
                    fn,
                    f"RoundAggregate.contributors[{i}]: not strictly ascending "
                    "(contributors are sorted by action hash, without duplicates)",
                )
        n, f = len(contributors), int(a.get("f", 0))
        max_contributors = int(c.properties["max_contributors"])
        if n > max_contributors:
            raise _invalid(
                fn,
                f"RoundAggregate.contributors: {n} contributors, the DNA allows at most {max_contributors} "
                "(max_contributors)",
            )
        precondition = _precondition(rule, n, f)
        if precondition is not None:
            raise _invalid(fn, f"RoundAggregate.f: {precondition}")
        values = np.asarray(a["values"], dtype=np.float32)
        if values.shape[0] != c.spec.dims:
            raise _invalid(
                fn,
                f"RoundAggregate.result_chunks: expected {c.spec.dims} values, got {values.shape[0]} [length_mismatch]",
            )
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise _invalid(
                fn, f"RoundAggregate.result_chunks: non-finite value {values[bad[0]]} at index {int(bad[0])}"
            )
        bound = _result_norm_bound(rule, n, c.spec.max_norm)
        norm = l2_norm(values)
        if bound is not None and norm > bound * (1.0 + NORM_RTOL):
            raise _invalid(
                fn,
                f"RoundAggregate.result_chunks: result norm {_rust_float(norm)} exceeds {_rust_float(bound)}, the "
                f"most {rule} over {n} contributors within max_norm {_rust_float(c.spec.max_norm)} can give",
            )
        rnd = int(a["round"])
        if any(x["author"] == self._agent for x in c.aggregates.get(rnd, [])):
            raise _invalid(fn, f"RoundAggregate.round: this author already published an aggregate of round {rnd}")
        authors = []
        for i, h in enumerate(contributors):
            if h not in c.actions or c.actions[h][0] != rnd:
                raise _invalid(fn, f"RoundAggregate.contributors[{i}]: not a submission of round {rnd}")
            authors.append(c.actions[h][1])
        for i, agent in enumerate(authors):
            if agent in authors[:i]:
                raise _invalid(
                    fn,
                    f"RoundAggregate.contributors[{i}]: a second submission by the author of "
                    f"contributors[{authors.index(agent)}] in one round (equivocation: neither may count)",
                )
        flagged = [bytes(x) for x in a["flagged"]]
        want = {"krum": max(n - 1, 0), "multi_krum": min(n, f), "personal": len(flagged)}.get(rule, 0)
        if len(flagged) != want:
            raise _invalid(
                fn, f"RoundAggregate.flagged: {len(flagged)} flagged, but {rule} flags {want} of {n} contributors"
            )
        rest = iter(authors)
        for i, agent in enumerate(flagged):
            if not any(x == agent for x in rest):
                raise _invalid(
                    fn,
                    f"RoundAggregate.flagged[{i}]: {hash_b64(agent)} is not a contributor's author (or out of "
                    "contributor order)",
                )
        digest = payload_hash(values)
        verified = rule != "personal" and n * c.spec.dims <= int(c.properties["recompute_limit"])
        if verified:
            await self._recompute(fn, rule, f, contributors, authors, flagged, digest)
        action = c.next_action(self._agent, b"aggregate", digest)
        entry = {
            "round": rnd,
            "rule": rule,
            "f": f,
            "contributors": contributors,
            "flagged": flagged,
            "result_hash": digest,
            "result_chunks": c.chunk_hashes(values),
        }
        c.aggregates.setdefault(rnd, []).append(
            {
                "action_hash": action,
                "author": self._agent,
                "aggregate": entry,
                "values": values.tolist(),
                "verified": verified,
            }
        )
        return action

    async def _recompute(
        self,
        fn: str,
        rule: str,
        f: int,
        contributors: list[bytes],
        authors: list[bytes],
        flagged: list[bytes],
        claimed: bytes,
    ) -> None:
        """The validators' recompute (``gradients_integrity::recompute``): the same core rule over the
        contributors' payloads in contributor order, the same result hash and flagged list required."""
        from zerotrustml import aggregators

        c = self.conductor
        rows, counts = [], []
        for h in contributors:
            rnd, author = c.actions[h]
            sub = await c.store.get_submission(rnd, hash_b64(author))
            assert sub is not None  # every action the mock hands out is a stored submission
            rows.append(np.asarray(sub.values, dtype=np.float32))
            counts.append(int(sub.example_count))
        x, n = np.stack(rows), len(rows)
        picked: tuple[int, ...] = tuple(range(n))
        if rule == "mean":
            weights = aggregators.example_weights(counts, float(c.properties["example_cap"]))
            result = aggregators.mean(x, weights=weights).vector
        elif rule in ("krum", "multi_krum"):
            r = aggregators.krum(x, f) if rule == "krum" else aggregators.multi_krum(x, f, n - f)
            result, picked = r.vector, r.selected
        elif rule == "median":
            result = aggregators.median(x).vector
        else:
            result = aggregators.trimmed_mean(x, f).vector
        actual = payload_hash(np.asarray(result, dtype=np.float32))
        if actual != claimed:
            raise _invalid(
                fn,
                f"RoundAggregate.result_hash: {rule} over the contributors gives {actual.hex()}, the aggregate "
                f"claims {claimed.hex()}",
            )
        dropped = [i for i in range(n) if i not in picked]
        if [authors[i] for i in dropped] != flagged:
            raise _invalid(
                fn, f"RoundAggregate.flagged: {rule} flags contributors {dropped}, the aggregate lists other agents"
            )

    async def _fn_get_round_aggregates(self, round: int) -> list[dict[str, Any]]:
        # Coverage against the round's submissions now (the zome reads the round's links; one store never
        # holds two submissions by one author in a round, so nobody equivocates here).
        c = self.conductor
        held = {a for a, (r, _) in c.actions.items() if r == int(round)}
        out = []
        for x in c.aggregates.get(int(round), []):
            contributors = [bytes(h) for h in x["aggregate"]["contributors"]]
            coverage = {
                "covered": sum(h in held for h in contributors),
                "round_submissions": len(held),
                "complete": contributors == sorted(held),
            }
            out.append(dict(x, coverage=coverage))
        return out


def _precondition(rule: str, n: int, f: int) -> str | None:
    """The core's precondition message for ``rule`` on ``n`` contributors (``None`` when it holds)."""
    from zerotrustml import _core
    from zerotrustml.exceptions import PreconditionError

    try:
        _core.check_precondition(rule, n, f)
    except PreconditionError as e:
        return str(e)
    return None


def _result_norm_bound(rule: str, n: int, max_norm: float) -> float | None:
    """The integrity zome's bound on a result's norm (``Rule::result_norm_bound``)."""
    if rule in ("mean", "krum", "multi_krum"):
        return max_norm
    if rule in ("median", "trimmed_mean"):
        return math.sqrt(n) * max_norm
    return None


def _rust_float(v: float) -> str:
    """A float as Rust's Display writes it (NaN, inf, 1, 0.5)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(int(v)) if v == int(v) and abs(v) < 1e16 else repr(v)


def store_proof(entry: Mapping[str, Any] | None) -> dict[str, Any]:
    """A zome ``EdgeProof`` as the store keeps it (:data:`~zerotrustml.validation.DHT_PROOF_SCHEME`, bytes as hex)."""
    if entry is None:
        return {}
    # The zome's EdgeProof fields only (serde ignores any other key; a missing signature is empty).
    out: dict[str, Any] = {k: entry.get(k) for k in ("loss_before", "loss_after", "holdout_size", "lr")}
    for k in ("nonce", "signature"):
        out[k] = bytes(entry.get(k) or b"").hex()
    out["scheme"] = DHT_PROOF_SCHEME
    return out


def entry_proof(stored: Mapping[str, Any]) -> dict[str, Any] | None:
    """The zome ``EdgeProof`` of a proof the store keeps (``None`` for none): the inverse of :func:`store_proof`."""
    if not stored:
        return None
    out = {k: v for k, v in stored.items() if k != "scheme"}
    for k in ("nonce", "signature"):
        out[k] = bytes.fromhex(out.get(k) or "")
    return out


def new_agent_key() -> bytes:
    """A random AgentPubKey (for tests)."""
    return holo_hash(AGENT_PREFIX, secrets.token_bytes(32))
