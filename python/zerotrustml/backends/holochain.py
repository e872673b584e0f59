"""The Holochain backend: the DHT, through one agent per node, and a local store for what stays local.

What goes where:

- **On the DHT** (the hApp's zome functions, called through each node's own
  agent): node registrations, submissions (chunked payloads; the integrity
  zome applies the same core rules as the embedded store), committee votes,
  every honest agent's round result (a ``RoundAggregate`` with rule
  ``personal``: a claim naming exactly the submissions it covers), and
  reputation records.
- **In the local store** (an :class:`~zerotrustml.backends.embedded.EmbeddedStore`
  in ``data_dir``): the model spec, this run's round records (with evidence,
  metrics and optimiser state) and metadata. That is the run's own notebook,
  not shared state.

Identity: a node signs its proofs and votes with its own Ed25519 *node
key*. :meth:`HolochainBackend.add_nodes` gives every node an agent and
publishes a ``NodeRegistration`` binding node id and node key to that agent
(signed by the node key over the agent key). Readers map a submission's
author to its node id and key through the registrations, so a proof or a
vote read from the DHT is the same object, with the same signature, as the
one the node signed; verification does not trust the backend.

Reads go through an agent (:meth:`HolochainBackend.view`): each agent sees
what has reached it, and a round's input set is what that agent holds when
it stops waiting (:meth:`HolochainView.await_round`). Results are ordered by
node id, never by DHT read order, so two agents that hold the same inputs
compute the same bits.

Where the cells come from: ``mode="conductors"`` starts a
:class:`~zerotrustml.holochain.network.LocalNetwork` (real conductors on
loopback); ``mode="mock"`` uses the in-process
:class:`~zerotrustml.backends.mock_conductor.MockConductor`, which answers
the same zome functions with the same payloads and errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import nacl.signing
import numpy as np

from zerotrustml.backends.base import Backend, RoundRecord, StoreError
from zerotrustml.backends.embedded import EmbeddedStore
from zerotrustml.exceptions import ParameterError
from zerotrustml.holochain.admission import OPEN, generate_admission_key, issue_beacon
from zerotrustml.holochain.errors import ConductorTimeout, ConductorUnavailable, ZomeCallError
from zerotrustml.holochain.network import DEFAULT_COMMITTEE_SEED
from zerotrustml.holochain.wire import hash_b64, pack_map_with_f32
from zerotrustml.validation import ModelSpec, Submission, check_proof

__all__ = [
    "HolochainBackend",
    "HolochainView",
    "ZomeCaller",
    "REGISTRATION_DOMAIN",
    "registration_message",
    "sign_registration",
]

REGISTRATION_DOMAIN = b"zerotrustml/node-registration/v1"


class ZomeCaller(Protocol):
    """One agent's cell: a real :class:`~zerotrustml.holochain.client.Cell` or a mock one."""

    @property
    def agent(self) -> bytes: ...

    async def call(self, fn_name: str, payload: Any = None, timeout: float = ...) -> Any: ...


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def registration_message(agent: bytes, node_id: str, node_key: bytes) -> bytes:
    """The bytes a node registration's signature covers (the integrity zome's ``registration_message``)."""
    return b"".join((_lp(REGISTRATION_DOMAIN), _lp(bytes(agent)), _lp(node_id.encode("utf-8")), _lp(bytes(node_key))))


def sign_registration(signing_key: nacl.signing.SigningKey, agent: bytes, node_id: str) -> dict[str, Any]:
    """A ``NodeRegistration`` entry for ``node_id`` on ``agent``, signed by the node key."""
    node_key = bytes(signing_key.verify_key)
    signature = signing_key.sign(registration_message(agent, node_id, node_key)).signature
    return {"node_id": node_id, "node_key": node_key, "signature": bytes(signature)}


# ----------------------------------------------------------------------------------------------------------
# submissions, proofs and votes: package objects <-> zome entries


def proof_from_entry(
    entry: Mapping[str, Any] | None, *, node_id: str, node_key: bytes | None, round: int, payload_hash: bytes
) -> dict[str, Any]:
    """A submission's proof as the node signed it, rebuilt from the DHT entry and the author's registration."""
    if not entry or node_key is None or len(bytes(entry.get("signature") or b"")) == 0:
        return {}
    from zerotrustml.defence.proofs import EdgeProof, ProofError

    try:
        return EdgeProof(
            node_id=node_id,
            round=round,
            payload_hash=payload_hash,
            nonce=bytes(entry["nonce"]),
            loss_before=entry["loss_before"],
            loss_after=entry["loss_after"],
            holdout_size=entry["holdout_size"],
            lr=entry["lr"],
            public_key=node_key,
            signature=bytes(entry["signature"]),
        ).to_json()
    except (ProofError, KeyError, TypeError):
        return {}


@dataclass(frozen=True)
class _Registered:
    node_id: str
    node_key: bytes
    action_hash: bytes


@dataclass
class _Node:
    node_id: str
    cell: ZomeCaller
    signing_key: nacl.signing.SigningKey


Provision = Callable[[dict[str, Any], int], Awaitable[list[ZomeCaller]]]


class HolochainView:
    """Reads of the DHT through one agent (see the module docs); returned by :meth:`HolochainBackend.view`."""

    def __init__(self, backend: HolochainBackend, node_id: str) -> None:
        self.backend = backend
        self.node_id = node_id
        self.cell = backend._node(node_id).cell

    async def registry(self) -> dict[bytes, _Registered]:
        """Agent key -> registration, as this agent sees them.

        The federation knows its members: a node id this backend admitted counts only when its own agent
        registered it, so another agent cannot take over an honest node's id by registering it first. Any other
        id goes to the first registration by action hash.
        """
        outputs = await self.cell.call("get_node_registrations", None, self.backend.call_timeout)
        members = {nid: bytes(node.cell.agent) for nid, node in self.backend._nodes.items()}
        by_agent: dict[bytes, _Registered] = {}
        claimed: set[str] = set()
        for out in outputs:  # ordered by action hash
            reg = out["registration"]
            agent, node_id = bytes(out["agent"]), str(reg["node_id"])
            if node_id in claimed or agent in by_agent:
                continue
            if node_id in members and members[node_id] != agent:
                continue  # a squatter on a member's id
            claimed.add(node_id)
            by_agent[agent] = _Registered(node_id, bytes(reg["node_key"]), bytes(out["action_hash"]))
        return by_agent

    async def get_round(self, round: int) -> list[Submission]:
        """Every submission of ``round`` this agent holds, ordered by node id."""
        subs, _ = await self._read_round(round)
        return subs

    async def _read_round(self, round: int) -> tuple[list[Submission], dict[str, bytes]]:
        outputs = await self.cell.call("get_round_submissions", int(round), self.backend.call_timeout)
        reg = self.backend._registry
        if any(bytes(o["author"]) not in reg for o in outputs):
            self.backend._registry = reg = await self.registry()
        # One submission per author per round is a zome rule, but an author with a forked chain (the same key on
        # two conductors) can get two past it; such an author's round is dropped, whatever order they came in.
        per_author: dict[bytes, int] = {}
        for out in outputs:
            per_author[bytes(out["author"])] = per_author.get(bytes(out["author"]), 0) + 1
        subs: list[Submission] = []
        actions: dict[str, bytes] = {}
        for out in outputs:
            author = bytes(out["author"])
            if per_author[author] > 1:
                continue
            r = reg.get(author)
            # An author without a registration is not a node of the federation: it shows under its agent key,
            # and the defence finds no registered key for it.
            node_id = r.node_id if r is not None else hash_b64(author)
            entry = out["submission"]
            digest = bytes(entry["payload_hash"])
            subs.append(
                Submission(
                    node_id=node_id,
                    round=int(entry["round"]),
                    model_id=str(entry["model_id"]),
                    values=np.asarray(out["values"], dtype=np.float32),
                    example_count=int(entry["example_count"]),
                    norm=float(entry["norm"]),
                    payload_hash=digest,
                    proof=proof_from_entry(
                        entry.get("proof"),
                        node_id=node_id,
                        node_key=r.node_key if r is not None else None,
                        round=int(entry["round"]),
                        payload_hash=digest,
                    ),
                )
            )
            actions[node_id] = bytes(out["action_hash"])
        subs.sort(key=lambda s: s.node_id)
        self.backend._actions.update({(round, nid): ah for nid, ah in actions.items()})
        return subs, actions

    async def await_round(
        self, round: int, expected: Collection[str], timeout: float | None = None
    ) -> tuple[list[Submission], list[str]]:
        """Read ``round`` until every ``expected`` node's submission is here or ``timeout`` passes.

        Returns the submissions (by node id) and the expected nodes still missing.
        """
        timeout = self.backend.round_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        want = set(expected)
        while True:
            subs, _ = await self._read_round(round)
            missing = sorted(want - {s.node_id for s in subs})
            if not missing or time.monotonic() >= deadline:
                return subs, missing
            await self.backend.nudge()
            await asyncio.sleep(self.backend.poll)

    async def get_votes(self, round: int, subs: Sequence[Submission]) -> list[Any]:
        """Every committee vote on ``subs`` this agent holds, as the members signed them."""
        from zerotrustml.defence.committee import Vote
        from zerotrustml.defence.proofs import ProofError

        reg = self.backend._registry
        out: list[Vote] = []
        for sub in subs:
            ah = self.backend._actions.get((round, sub.node_id))
            if ah is None:
                continue
            for v in await self.cell.call("get_submission_votes", ah, self.backend.call_timeout):
                author = bytes(v["author"])
                r = reg.get(author)
                if r is None:
                    self.backend._registry = reg = await self.registry()
                    r = reg.get(author)
                vote = v["vote"]
                sig = bytes(vote.get("signature") or b"")
                if r is None or not sig:
                    continue  # not a node, or nothing to verify: not evidence
                with contextlib.suppress(ProofError):
                    out.append(
                        Vote(
                            round=int(vote["round"]),
                            node_id=sub.node_id,
                            payload_hash=sub.payload_hash,
                            voter=r.node_id,
                            quality=float(vote["quality"]),
                            accept=bool(vote["accept"]),
                            public_key=r.node_key,
                            signature=sig,
                        )
                    )
        return out

    async def await_votes(
        self,
        round: int,
        subs: Sequence[Submission],
        members: Sequence[str],
        expected: int,
        timeout: float | None = None,
    ) -> list[Any]:
        """Votes on ``subs`` until ``expected`` have arrived or ``timeout`` passes, in the members' order.

        The order (member, then the voted node's id) is the order in which an
        in-process committee casts them, so the defence sees the same list
        on every backend.
        """
        timeout = self.backend.round_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        rank = {m: i for i, m in enumerate(members)}
        while True:
            votes = [v for v in await self.get_votes(round, subs) if v.voter in rank]
            if len(votes) >= expected or time.monotonic() >= deadline:
                votes.sort(key=lambda v: (rank[v.voter], v.node_id))
                return votes
            await self.backend.nudge()
            await asyncio.sleep(self.backend.poll)


class HolochainBackend(Backend):
    """The :class:`Backend` interface on a Holochain DHT (see the module docs).

    Parameters
    ----------
    data_dir
        The local store's directory (round records, metadata).
    mode
        ``"conductors"`` (real conductors on loopback) or ``"mock"`` (the in-process mock conductor).
    conductors
        Number of conductor processes (``mode="conductors"``); default: one per 5 agents, at least 1.
    round_timeout
        Seconds an agent waits for a round's submissions or votes to reach it.
    setup_timeout
        Seconds every agent may take to see every node's registration.
    call_timeout
        Seconds one zome call may take (a busy conductor answers reads of a large round slowly).
    local
        The local store to use (default: a new one in ``data_dir``); a hot swap passes the running one.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        mode: str = "conductors",
        conductors: int | None = None,
        round_timeout: float = 120.0,
        setup_timeout: float = 180.0,
        call_timeout: float = 120.0,
        poll: float = 0.2,
        properties: Mapping[str, Any] | None = None,
        network_options: Mapping[str, Any] | None = None,
        log: Callable[[str], None] | None = None,
        local: EmbeddedStore | None = None,
    ) -> None:
        if mode not in ("conductors", "mock"):
            raise ParameterError(f"mode: must be 'conductors' or 'mock', got {mode!r}")
        if conductors is not None and conductors < 1:
            raise ParameterError(f"conductors: must be at least 1, got {conductors}")
        if not round_timeout > 0:
            raise ParameterError(f"round_timeout: must be > 0, got {round_timeout}")
        self.name = "holochain" if mode == "conductors" else "mock"
        self.mode = mode
        self.data_dir = Path(data_dir)
        # A hot swap hands over the running store, already open: what stays local does not move.
        self.local = local if local is not None else EmbeddedStore(self.data_dir)
        self.n_conductors = conductors
        self.round_timeout = float(round_timeout)
        self.setup_timeout = float(setup_timeout)
        self.call_timeout = float(call_timeout)
        self.poll = float(poll)
        self._properties = dict(properties) if properties is not None else None
        self._network_options = dict(network_options or {})
        self._log = log
        self._spec: ModelSpec | None = None
        self._nodes: dict[str, _Node] = {}
        self._registry: dict[bytes, _Registered] = {}
        self._actions: dict[tuple[int, str], bytes] = {}
        self._published: dict[tuple[str, str], float] = {}
        self._chain_locks: dict[bytes, asyncio.Lock] = {}
        self._last_nudge = 0.0
        self._authority: nacl.signing.SigningKey | None = None
        self._committee_seed = DEFAULT_COMMITTEE_SEED
        self.network: Any = None  # LocalNetwork or MockConductor

    # -- lifecycle -----------------------------------------------------------------------------------------------
    async def open(self) -> None:
        await self.local.open()

    async def close(self) -> None:
        if self.network is not None:
            with contextlib.suppress(Exception):
                await self.network.stop()
            self.network = None
        await self.local.close()

    def _say(self, msg: str) -> None:
        if self._log is not None:
            self._log(msg)

    # -- the model and the nodes ---------------------------------------------------------------------------------
    async def set_model_spec(self, spec: ModelSpec) -> None:
        await self.local.set_model_spec(spec)
        self._spec = spec

    async def get_model_spec(self) -> ModelSpec | None:
        return await self.local.get_model_spec()

    def dna_properties(
        self, committee_seed: str = DEFAULT_COMMITTEE_SEED, committee_rate: float = 1.0
    ) -> dict[str, Any]:
        """The DNA properties of the network: the model spec's, and the committee lottery's seed and rate."""
        from zerotrustml.holochain.network import dna_properties

        if self._spec is None:
            raise StoreError("holochain backend: no model spec yet; call set_model_spec() first")
        props = dna_properties(self._spec, committee_rate=committee_rate, committee_seed=committee_seed)
        if self._properties:
            props.update(self._properties)
        return props

    async def add_nodes(
        self,
        keys: Mapping[str, nacl.signing.SigningKey],
        *,
        committee_seed: str = DEFAULT_COMMITTEE_SEED,
        committee_rate: float = 1.0,
        history: bool = False,
        authority: nacl.signing.SigningKey | None = None,
    ) -> None:
        """Give every node an agent of its own and publish its registration; waits until every agent sees all.

        ``committee_seed`` and ``committee_rate`` go into the DNA properties: the committee lottery every
        validator applies to votes, the same the defence draws its committee with. ``history`` allows a
        local store that already holds rounds (a hot swap, which then copies their submissions to the DHT).
        ``authority`` is the federation's admission key (default: a fresh one): it closes the network, issues
        every agent's membrane proof and releases each round's committee beacon (:meth:`beacon`), which the
        votes carry; a network opened with ``network_options={"admission": "open"}`` has neither.

        Raises
        ------
        StoreError
            No model spec yet, nodes already added, a network that does not
            come up, or registrations that do not reach every agent in time.
        """
        if self._nodes:
            raise StoreError("holochain backend: nodes were already added")
        if not keys:
            raise ParameterError("keys: at least one node is required")
        if not history and await self.local.last_completed_round() is not None:
            raise StoreError(
                f"store {self.data_dir}: holds a finished round; a holochain run starts a fresh network and "
                "cannot resume one, so use a new --data-dir"
            )
        props = self.dna_properties(committee_seed, committee_rate)
        wanted = self._network_options.get("admission")
        if wanted == OPEN:
            self._authority = None
        elif isinstance(wanted, nacl.signing.SigningKey):
            self._authority = wanted
        else:
            self._authority = authority if authority is not None else generate_admission_key()
        self._committee_seed = committee_seed
        ids = sorted(keys)
        cells = await self._provision(props, len(ids))
        self._nodes = {nid: _Node(nid, cell, keys[nid]) for nid, cell in zip(ids, cells, strict=True)}
        await asyncio.gather(*(self._register(node) for node in self._nodes.values()))
        # Every agent must know every node, as itself, before the first round counts on it.
        deadline = time.monotonic() + self.setup_timeout
        want = {bytes(self._nodes[n].cell.agent): n for n in ids}
        for nid in ids:
            view = self.view(nid)
            waiting_since, rebooted = time.monotonic(), False
            while True:
                reg = await view.registry()
                seen = sum(1 for agent, n in want.items() if agent in reg and reg[agent].node_id == n)
                if seen == len(ids):
                    break
                stuck = time.monotonic() - waiting_since
                restart_after = getattr(self.network, "restart_after", None)  # a LocalNetwork's; the mock has none
                if (
                    not rebooted
                    and restart_after is not None
                    and stuck > restart_after
                    and deadline - 30 > time.monotonic()
                ):
                    # The network connected at start, but this conductor no longer hears from the others.
                    self._say(
                        f"{nid}'s agent sees {seen} of {len(ids)} registrations after {stuck:.0f} s: "
                        "restarting its conductor"
                    )
                    await self.network.reboot(self._conductor_of(nid))
                    rebooted = True
                if time.monotonic() > deadline:
                    raise ConductorTimeout(
                        f"holochain backend: {nid}'s agent sees {seen} of {len(ids)} registrations "
                        f"after {self.setup_timeout:g} s"
                    )
                await self.nudge()
                await asyncio.sleep(self.poll)
            self._registry = reg
        self._say(f"{len(ids)} nodes registered on the DHT")

    def _conductor_of(self, node_id: str) -> int:
        cell = self._node(node_id).cell
        return int(next(a.conductor for a in self.network.agents if a.cell is cell))

    async def _provision(self, props: dict[str, Any], n: int) -> list[ZomeCaller]:
        if self.mode == "mock":
            from zerotrustml.backends.mock_conductor import MockConductor

            # Closed like a LocalNetwork (unless told open): the authority issues every agent's membrane proof.
            mock = MockConductor(self.data_dir / "mock-dht", props, admission_key=self._authority)
            await mock.start()
            self.network = mock
            return [mock.new_cell() for _ in range(n)]
        from zerotrustml.holochain.network import LocalNetwork

        conductors = self.n_conductors or max(1, min(n, -(-n // 5)))
        options = {**self._network_options, "admission": self._authority if self._authority is not None else OPEN}
        net = LocalNetwork(n, min(conductors, n), properties=props, log=self._log, **options)
        self.network = net
        await net.start()
        return [a.cell for a in net.agents]

    async def _register(self, node: _Node) -> None:
        await self._write(
            node.cell, "register_node", sign_registration(node.signing_key, node.cell.agent, node.node_id)
        )

    async def nudge(self) -> None:
        """While waiting for data from other conductors, hand every conductor the others' peer infos again.

        Right after start a conductor's agent info may not yet carry the address its peers need (the signal
        connection comes up a moment later); sharing again, at most every few seconds, lets a network that
        missed the first exchange connect without waiting for bootstrap polling.
        """
        share = getattr(self.network, "share_peer_infos", None)
        if share is None or time.monotonic() - self._last_nudge < 5.0:
            return
        self._last_nudge = time.monotonic()
        with contextlib.suppress(Exception):
            await share()

    async def _write(self, cell: ZomeCaller, fn_name: str, payload: Any) -> Any:
        """A write to ``cell``'s source chain: one at a time per chain, retried while it cannot be completed yet.

        A source chain takes one commit at a time: two concurrent writes by one agent make the second fail
        ("the source chain head has moved"), so writes to a chain wait for each other here. A vote needs the
        voted submission and a result its contributors; until gossip brings them the conductor answers
        "may be retried" (a missing dependency). Either way nothing was committed, so retrying is safe.
        """
        lock = self._chain_locks.setdefault(bytes(cell.agent), asyncio.Lock())
        deadline = time.monotonic() + self.round_timeout
        delay = self.poll
        while True:
            try:
                async with lock:
                    return await cell.call(fn_name, payload, self.call_timeout)
            except ZomeCallError as e:
                retry = "may be retried" in e.reason or "head has moved" in e.reason
                if not retry or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(2 * delay, 2.0)

    def _node(self, node_id: str) -> _Node:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise StoreError(f"holochain backend: node {node_id!r} has no agent; add it with add_nodes()") from None

    def _registered(self, node_id: str) -> _Registered:
        agent = self.agent_of(node_id)
        if agent not in self._registry:
            raise StoreError(f"holochain backend: node {node_id!r} has no registration this agent can see")
        return self._registry[agent]

    @property
    def node_ids(self) -> list[str]:
        return sorted(self._nodes)

    def agent_of(self, node_id: str) -> bytes:
        return self._node(node_id).cell.agent

    def view(self, node_id: str | None = None) -> HolochainView:
        """Reads through ``node_id``'s agent (default: the first node by id)."""
        if not self._nodes:
            raise StoreError("holochain backend: no nodes yet; call add_nodes() first")
        return HolochainView(self, node_id if node_id is not None else min(self._nodes))

    # -- submissions -----------------------------------------------------------------------------------------------
    async def submit(self, sub: Submission) -> bytes:
        """Publish ``sub`` through its node's own agent; the integrity zome applies the rules.

        A call whose connection drops is retried once the conductor is back,
        unless the submission already reached the agent's chain (so nothing
        acknowledged is lost and nothing is stored twice).
        """
        if not isinstance(sub, Submission):
            raise TypeError(f"sub: must be a Submission, got {type(sub).__name__}")
        if self._spec is None:
            raise StoreError("holochain backend: no model spec yet; call set_model_spec() before submitting")
        node = self._node(sub.node_id)
        fields = {
            "round": int(sub.round),
            "model_id": sub.model_id,
            "example_count": int(sub.example_count),
            # The zome applies the same rule; refused here, a malformed proof is never dropped. The node id,
            # round, payload hash and public key are not stored: the submission and its author's registration
            # imply them, and a reader rebuilds the proof from those (proof_from_entry).
            "proof": check_proof(sub),
            "norm": float(sub.norm),
            "payload_hash": bytes(sub.payload_hash),
        }
        payload = pack_map_with_f32(fields, "values", np.asarray(sub.values, dtype=np.float32))
        try:
            action = await self._write(node.cell, "submit_gradient", payload)
        except ConductorUnavailable:
            action = await self._resubmit(node, sub, payload)
        self._actions[(int(sub.round), sub.node_id)] = bytes(action)
        return bytes(sub.payload_hash)

    async def _resubmit(self, node: _Node, sub: Submission, payload: Any) -> bytes:
        # The first call may or may not have committed; the agent's own chain says which.
        held = await node.cell.call("get_agent_submissions", node.cell.agent, self.call_timeout)
        for out in held:
            if int(out["submission"]["round"]) == int(sub.round):
                if bytes(out["submission"]["payload_hash"]) == bytes(sub.payload_hash):
                    return bytes(out["action_hash"])
        action: bytes = await self._write(node.cell, "submit_gradient", payload)
        return action

    async def get_submission(self, round: int, node_id: str) -> Submission | None:
        for sub in await self.view().get_round(round):
            if sub.node_id == node_id:
                return sub
        return None

    async def get_round(self, round: int) -> list[Submission]:
        return await self.view().get_round(round)

    def beacon(self, round: int) -> bytes:
        """The committee beacon of ``round``: the authority's signature over it (empty on an open network)."""
        if self._authority is None:
            return b""
        return issue_beacon(self._authority, self._committee_seed, round)

    async def publish_votes(self, round: int, votes: Sequence[Any]) -> None:
        """Each vote cast as a ``CommitteeVote`` entry by its member's own agent, with the round's beacon."""
        beacon = self.beacon(round)
        by_voter: dict[str, list[Any]] = {}
        for v in votes:
            by_voter.setdefault(v.voter, []).append(v)

        async def cast(voter: str, mine: list[Any]) -> None:
            cell = self._node(voter).cell
            registration = self._registered(voter).action_hash
            for v in mine:  # one chain: one write at a time
                ah = self._actions.get((round, v.node_id))
                if ah is None:
                    continue
                await self._write(
                    cell,
                    "cast_vote",
                    {
                        "round": int(round),
                        "submission": ah,
                        "quality": float(v.quality),
                        "accept": bool(v.accept),
                        "signature": bytes(v.signature),
                        "registration": registration,
                        "beacon": beacon,
                    },
                )

        await asyncio.gather(*(cast(voter, mine) for voter, mine in by_voter.items()))

    async def publish_result(self, node_id: str, record: RoundRecord, subs: Sequence[Submission]) -> bytes | None:
        """``node_id``'s agent publishes its round result as a ``personal`` RoundAggregate over ``subs``."""
        cell = self._node(node_id).cell
        rows = [
            (self._actions[(record.round, s.node_id)], s.node_id)
            for s in subs
            if (record.round, s.node_id) in self._actions
        ]
        rows.sort(key=lambda x: x[0])
        if not rows:
            return None  # nothing was aggregated: no claim to make
        flagged = set(record.flagged)
        payload = pack_map_with_f32(
            {
                "round": int(record.round),
                "rule": "personal",
                "f": 0,
                "contributors": [ah for ah, _ in rows],
                "flagged": [self.agent_of(nid) for _, nid in rows if nid in flagged and nid in self._nodes],
            },
            "values",
            np.asarray(record.aggregate, dtype=np.float32),
        )
        action: bytes = await self._write(cell, "publish_computed_aggregate", payload)
        return action

    async def get_results(self, round: int, node_id: str | None = None) -> list[dict[str, Any]]:
        """The round results published for ``round``, as ``node_id``'s agent sees them.

        These are claims for display and audit. The run never uses one as the round's model: every honest
        agent computes the round itself from the submissions it reads. ``verified`` says whether validators
        recomputed the result (a rule they can recompute, within the DNA's ``recompute_limit``); a
        ``personal`` result or one above the bound is its author's word. ``coverage`` compares its contributors
        with the round's submissions this agent sees (``covered``, ``round_submissions``, ``complete``): a result
        over a hand-picked subset validates, and says so here.
        """
        view = self.view(node_id)
        reg = await view.registry()
        out = []
        for a in await view.cell.call("get_round_aggregates", int(round), self.call_timeout):
            r = reg.get(bytes(a["author"]))
            out.append(
                {
                    "author": r.node_id if r else hash_b64(bytes(a["author"])),
                    "rule": a["aggregate"]["rule"],
                    "contributors": len(a["aggregate"]["contributors"]),
                    "result_hash": bytes(a["aggregate"]["result_hash"]),
                    "values": np.asarray(a["values"], dtype=np.float32),
                    "verified": bool(a.get("verified", False)),
                    "coverage": dict(a.get("coverage") or {}),
                }
            )
        return out

    # -- local: records, reputation, meta ---------------------------------------------------------------------------
    async def put_round_record(self, record: RoundRecord) -> None:
        # The round's submitters are the nodes any of this backend's agents read on the DHT for that round.
        read = {nid for (rnd, nid) in self._actions if rnd == record.round}
        await self.local.put_round_record(record, elsewhere=read)

    async def get_round_record(self, round: int) -> RoundRecord | None:
        return await self.local.get_round_record(round)

    async def last_completed_round(self) -> int | None:
        return await self.local.last_completed_round()

    async def get_reputation(self, node_id: str) -> float | None:
        return await self.local.get_reputation(node_id)

    async def get_reputations(self) -> dict[str, float]:
        return await self.local.get_reputations()

    async def put_reputations(self, round: int, scores: Mapping[str, float], publisher: str | None = None) -> None:
        """Record the scores locally and publish the changed ones as ``publisher``'s ReputationRecords (its opinion
        of the other nodes)."""
        await self.local.put_reputations(round, scores)
        if not self._nodes:
            return
        author = publisher if publisher is not None else min(self._nodes)
        cell = self._node(author).cell
        # A record per change: a score that did not move since this publisher's last record says nothing new.
        # Nobody publishes its own standing (the zome refuses it: a record is an opinion of another agent).
        for nid, score in sorted(scores.items()):
            key = (author, nid)
            if nid in self._nodes and nid != author and self._published.get(key) != float(score):
                await self._write(
                    cell,
                    "publish_reputation",
                    {"agent": self.agent_of(nid), "round": int(round), "score": float(score)},
                )
                self._published[key] = float(score)

    async def put_meta(self, key: str, value: Mapping[str, Any]) -> None:
        await self.local.put_meta(key, value)

    async def get_meta(self, key: str) -> dict[str, Any] | None:
        return await self.local.get_meta(key)

    async def export(self) -> dict[str, Any]:
        return await self.local.export()

    async def import_(self, dump: Mapping[str, Any]) -> int:
        return await self.local.import_(dump)
