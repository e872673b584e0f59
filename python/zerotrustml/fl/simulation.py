"""The federated-learning simulator: nodes, attacks, a backend and a defence.

One round, as DESIGN.md has it: every node trains on its own data and
produces a flat float32 update; Byzantine nodes replace theirs with an
attack; every update is submitted to the backend, which validates it with
the shared rules; the defence reads the round back from the backend (it
never sees which nodes are Byzantine) and aggregates; the server step
``theta <- theta - server_lr * (aggregate + momentum)`` follows, and the
round record (aggregate, model, kept and flagged nodes, evidence, metrics)
is stored. A second model trained on the same seed from the honest nodes
alone, by plain averaging, is the reference for the accuracy gap.

Updates are pseudo-gradients ``(theta_before - theta_after) / lr``, so with
``server_lr == lr`` (the default) the server step is FedAvg's average of the
local model changes, and with one full-batch local step it is FedSGD.

Every random draw comes from ``numpy.random.default_rng([seed, round, ...])``,
so a resumed run continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.signing
import numpy as np
import numpy.typing as npt

from zerotrustml import defence, plugins
from zerotrustml.backends import BACKENDS, Backend, RoundRecord, StoreError, open_backend
from zerotrustml.backends.embedded import EmbeddedStore
from zerotrustml.backends.holochain import HolochainBackend
from zerotrustml.backends.hotswap import HotSwapBackend, SwapError, SwapReport
from zerotrustml.defence import committee, detection, personal, pipeline, proofs
from zerotrustml.defence.config import DefenceConfig
from zerotrustml.defence.decision import RoundDecision, decide_round
from zerotrustml.defence.reputation import ReputationLedger
from zerotrustml.exceptions import ParameterError, SubmissionRejected
from zerotrustml.fl import attacks, data, models, partition
from zerotrustml.holochain.errors import ConductorError
from zerotrustml.validation import ModelSpec, Submission, payload_hash

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

#: Stages timed per round (``<stage>_ms`` in the metrics).
STAGES = ("train", "validate", "aggregate", "store")
#: Stages a DHT backend adds: every node's submission committed through its own agent, the round reaching the
#: first honest agent, the committee's votes published and read
#: back, and every other honest agent reading the round and recomputing the result.
DHT_STAGES = ("submit", "visible", "votes", "agreement")


#: What ``--assumed-f`` means wherever a command takes one (``RunConfig.f``).
ASSUMED_F_HELP = (
    "f the aggregator assumes [default: the pipeline's ASSUMED_BYZANTINE_FRACTION of the nodes; for a plain rule, "
    "the Byzantine count]."
)


@dataclass(frozen=True)
class RunConfig:
    """Parameters of one simulated run (the CLI options, one to one)."""

    nodes: int = 20
    rounds: int = 30
    byzantine_fraction: float = 0.3
    attack: str = "sign_flip"
    aggregator: str = "pipeline"
    dataset: str = "mnist"
    dataset_path: str | None = None
    distribution: str = "iid"
    alpha: float = 0.5
    model: str = "softmax"
    local_steps: int = 5
    batch_size: int | None = 32
    lr: float = 0.1
    server_lr: float | None = None
    momentum: float = 0.0
    seed: int = 0
    backend: str = "embedded"
    assumed_f: int | None = None
    omniscient: bool = True
    colluding: bool = True
    holdout_fraction: float = 0.1
    max_norm: float = 1e6
    attack_params: Mapping[str, float | str] = field(default_factory=dict)
    defence_config: str | None = None
    personal_view: bool = False

    @property
    def n_byzantine(self) -> int:
        return int(round(self.nodes * self.byzantine_fraction))

    @property
    def f(self) -> int:
        """The f the aggregator assumes: ``assumed_f`` when given; else, for the pipeline, its configured share
        of the nodes (``ASSUMED_BYZANTINE_FRACTION``, never the true count), and for a plain rule (whose
        precondition and selection need it) the true Byzantine count."""
        return self.resolve_f(None)

    def resolve_f(self, defence_config: DefenceConfig | None) -> int:
        """:attr:`f` with the defence settings already loaded (``None``: load them from ``defence_config``,
        the environment included); a run resolves it once, not on every access."""
        if self.assumed_f is not None:
            return self.assumed_f
        if self.aggregator == "pipeline":
            loaded = DefenceConfig.load(self.defence_config) if defence_config is None else defence_config
            return pipeline.assumed_f(loaded, self.nodes)
        return self.n_byzantine

    @property
    def effective_server_lr(self) -> float:
        return self.lr if self.server_lr is None else self.server_lr

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["attack_params"] = dict(self.attack_params)
        if not self.personal_view:
            # Written only when on: stores and matrix cells from before the option stay the same run.
            del d["personal_view"]
        return d

    def check(self) -> None:
        """Raise ``ParameterError``/``PreconditionError`` naming the option, before anything runs."""

        def bad(option: str, reason: str) -> ParameterError:
            return ParameterError(f"{option}: {reason}")

        if self.nodes < 1:
            raise bad("nodes", f"must be at least 1 (got {self.nodes})")
        if self.rounds < 1:
            raise bad("rounds", f"must be at least 1 (got {self.rounds})")
        if not (math.isfinite(self.byzantine_fraction) and 0.0 <= self.byzantine_fraction < 1.0):
            raise bad("byzantine_fraction", f"must be in [0, 1) (got {self.byzantine_fraction})")
        if self.nodes - self.n_byzantine < 1:
            raise bad("byzantine_fraction", "leaves no honest node")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise bad("alpha", f"must be > 0 (got {self.alpha})")
        if self.local_steps < 1:
            raise bad("local_steps", f"must be at least 1 (got {self.local_steps})")
        if self.batch_size is not None and self.batch_size < 1:
            raise bad("batch_size", f"must be at least 1 (got {self.batch_size})")
        for name, value in (("lr", self.lr), ("max_norm", self.max_norm)):
            if not (math.isfinite(value) and value > 0):
                raise bad(name, f"must be a finite number > 0 (got {value})")
        if self.server_lr is not None and not (math.isfinite(self.server_lr) and self.server_lr > 0):
            raise bad("server_lr", f"must be a finite number > 0 (got {self.server_lr})")
        if not (math.isfinite(self.momentum) and 0.0 <= self.momentum < 1.0):
            raise bad("momentum", f"must be in [0, 1) (got {self.momentum})")
        if self.assumed_f is not None and self.assumed_f < 0:
            raise bad("assumed_f", f"must be >= 0 (got {self.assumed_f})")
        plugins.load_entry_points()  # installed packages' plug-ins, once
        if self.attack not in attacks.attack_names():
            raise bad("attack", f"unknown name {self.attack!r}; choose one of {', '.join(attacks.attack_names())}")
        resolved = attacks.resolve_params(self.attack, self.attack_params)
        for key, value in resolved.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise bad(f"{self.attack}.{key}", f"must be finite (got {value})")
        target = resolved.get("target_index")
        if target is not None and target >= self.nodes - self.n_byzantine:
            raise bad("mimic.target_index", f"must be < {self.nodes - self.n_byzantine} (the honest nodes)")
        datasets = tuple(dict.fromkeys(data.DATASETS + data.PATH_DATASETS + plugins.names("dataset")))
        if self.dataset not in datasets:
            raise bad("dataset", f"unknown name {self.dataset!r}; choose one of {', '.join(datasets)}")
        if self.dataset in data.PATH_DATASETS and self.dataset not in data.DATASETS and self.dataset_path is None:
            raise bad(
                "dataset_path",
                f"dataset {self.dataset!r} is not bundled; pass dataset_path= the directory holding its files",
            )
        if self.distribution not in partition.PARTITIONS:
            raise bad(
                "distribution", f"unknown name {self.distribution!r}; choose one of {', '.join(partition.PARTITIONS)}"
            )
        if self.model not in models.available_models():
            raise bad("model", f"unknown name {self.model!r}; choose one of {', '.join(models.available_models())}")
        if self.backend not in BACKENDS:
            raise bad("backend", f"unknown name {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        defence.check_precondition(self.aggregator, self.nodes, self.f)


def _b64(v: F32) -> str:
    return base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode()


def _unb64(s: str) -> F32:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").astype(np.float32)


def _percentiles(values: list[float | None]) -> dict[str, float | None]:
    real = [v for v in values if v is not None]
    if not real:
        return {"p50": None, "p95": None}
    a = np.asarray(real)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95))}


def _mean(values: list[float | None]) -> float | None:
    real = [v for v in values if v is not None]
    return float(np.mean(real)) if real else None


@dataclass
class _State:
    """What carries from one round to the next; stored in each round record, so a run resumes exactly."""

    theta: F32
    reference: F32
    velocity: F32
    reference_velocity: F32
    previous: F32 | None
    mimic_target: int | None
    ledger: dict[str, Any] | None = None
    # The personal view (RunConfig.personal_view): each honest agent's own model and memory of its peers.
    personal: dict[str, F32] | None = None
    views: dict[str, dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "reference": _b64(self.reference),
            "velocity": _b64(self.velocity),
            "reference_velocity": _b64(self.reference_velocity),
            "mimic_target": self.mimic_target,
            "ledger": self.ledger,
        }
        if self.personal is not None:
            out["personal"] = {nid: _b64(v) for nid, v in sorted(self.personal.items())}
            out["views"] = self.views
        return out


@dataclass
class _Setup:
    dataset: data.Dataset
    nodes: list[partition.NodeData]
    node_ids: list[str]
    byzantine: set[str]
    model: models.Model
    spec: ModelSpec
    defence_config: DefenceConfig
    keys: dict[str, Any]
    ring: proofs.KeyRing
    f: int  # the f the aggregator assumes (RunConfig.f, resolved once with ``defence_config``)


def data_shares(
    dataset: str,
    nodes: int,
    distribution: str,
    *,
    alpha: float,
    holdout_fraction: float,
    seed: int,
    path: str | None = None,
) -> tuple[data.Dataset, list[partition.NodeData]]:
    """The dataset and every node's share of it, as a run of these parameters splits it (a node process and a
    cluster's honest-only model take the same shares)."""
    ds = data.load_dataset(dataset, seed=seed, path=path)
    shares = partition.split_nodes(
        ds.x_train, ds.y_train, nodes, distribution, alpha=alpha, holdout_fraction=holdout_fraction, seed=seed
    )
    return ds, shares


def federation_ids(nodes: int) -> list[str]:
    """The node ids of a federation of ``nodes``: ``node-0`` .. ``node-<n-1>``, zero-padded to one width."""
    width = len(str(nodes - 1))
    return [f"node-{i:0{width}d}" for i in range(nodes)]


def byzantine_draw(node_ids: Sequence[str], n_byzantine: int, seed: int) -> set[str]:
    """Which nodes lie: a seeded draw, not the last ones, so row order cannot leak it to the defence."""
    order = np.random.default_rng([seed, 0xB12]).permutation(len(node_ids))
    return {node_ids[i] for i in order[:n_byzantine]}


def plausible_claim(
    key: nacl.signing.SigningKey,
    model: models.Model,
    theta: F32,
    nd: partition.NodeData,
    node_id: str,
    r: int,
    update: F32,
    *,
    lr: float,
    quality: float = 0.05,
) -> proofs.EdgeProof:
    """A Byzantine node's signed lie: the loss its held-out data has now, and a typical improvement claimed."""
    before = model.loss(theta, nd.x_holdout, nd.y_holdout) if len(nd.y_holdout) else 1.0
    return proofs.sign_claim(
        key,
        node_id=node_id,
        round=r,
        payload_hash=payload_hash(update),
        loss_before=before,
        loss_after=before * (1.0 - quality),
        holdout_size=max(len(nd.y_holdout), 1),
        lr=lr,
    )


class Simulation:
    """A run of :class:`RunConfig` against a backend in ``data_dir``.

    ``on_round`` is called with each round's metrics (the CLI's progress bar).
    ``metrics_path`` receives one JSON line per round.
    """

    def __init__(
        self,
        config: RunConfig,
        data_dir: str | Path,
        *,
        metrics_path: str | Path | None = None,
        on_round: Callable[[dict[str, Any]], None] | None = None,
        on_start: Callable[[int], None] | None = None,
        backend_options: Mapping[str, Any] | None = None,
        swap_at_round: int | None = None,
        swap_to: str = "holochain",
        swap_options: Mapping[str, Any] | None = None,
    ) -> None:
        config.check()
        self.backend_options = dict(backend_options or {})
        if swap_at_round is not None:
            if not 0 <= swap_at_round < config.rounds:
                raise ParameterError(f"swap_at_round: must be in [0, rounds={config.rounds}), got {swap_at_round}")
            if swap_to not in ("holochain", "mock"):
                raise ParameterError(f"swap_to: must be 'holochain' or 'mock', got {swap_to!r}")
            if config.backend != "embedded":
                raise ParameterError(f"swap_at_round: a run swaps from the embedded store, not from {config.backend}")
        self.swap_at_round = swap_at_round
        self.swap_to = swap_to
        self.swap_options = dict(swap_options or {})
        self.swap_report: SwapReport | None = None
        self.config = config
        self.data_dir = Path(data_dir)
        self.metrics_path = Path(metrics_path) if metrics_path is not None else self.data_dir / "run.jsonl"
        self.on_round = on_round
        self.on_start = on_start  # called with the first round to run: 0, or where a stored run resumes
        self.grown_from: int | None = None  # the stored run's rounds when this run extends it

    # -- setup -------------------------------------------------------------------------------------------------
    def _setup(self) -> _Setup:
        c = self.config
        ds, nodes = data_shares(
            c.dataset,
            c.nodes,
            c.distribution,
            alpha=c.alpha,
            holdout_fraction=c.holdout_fraction,
            seed=c.seed,
            path=c.dataset_path,
        )
        node_ids = federation_ids(c.nodes)
        byzantine = byzantine_draw(node_ids, c.n_byzantine, c.seed)
        if c.model in models.TORCH_MODELS and "ZEROTRUSTML_TORCH_THREADS" not in os.environ:
            import torch

            # Nodes train one after another on small models: intra-op threads cost more than they save
            # (20-40x slower on 2 busy cores). ZEROTRUSTML_TORCH_THREADS leaves torch's setting alone.
            torch.set_num_threads(1)
        model = models.make_model(c.model, ds.n_features, ds.n_classes, image_shape=ds.image_shape)
        spec = ModelSpec(f"{c.dataset}-{c.model}", dims=model.dims, max_norm=c.max_norm, max_round=c.rounds - 1)
        if c.attack in attacks.DATA_ATTACKS:
            poisoned = []
            for nid, nd in zip(node_ids, nodes, strict=True):
                if nid in byzantine:
                    rng = np.random.default_rng([c.seed, 0xDA7A, node_ids.index(nid)])
                    x, y = attacks.poison_data(
                        c.attack,
                        nd.x_train,
                        nd.y_train,
                        n_classes=ds.n_classes,
                        image_shape=ds.image_shape,
                        rng=rng,
                        params=c.attack_params,
                    )
                    nd = dataclasses.replace(nd, x_train=x, y_train=y)
                poisoned.append(nd)
            nodes = poisoned
        dconf = DefenceConfig.load(c.defence_config)
        keys = {nid: pipeline.signing_key(c.seed, nid) for nid in node_ids}
        ring = proofs.KeyRing()
        for nid, key in keys.items():
            ring.register(nid, key.verify_key)
        return _Setup(ds, nodes, node_ids, byzantine, model, spec, dconf, keys, ring, c.resolve_f(dconf))

    # -- the run -----------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run (or resume) to the last round; return the summary."""
        return asyncio.run(self.run_async())

    async def run_async(self) -> dict[str, Any]:
        c = self.config
        s = self._setup()
        t_start = time.perf_counter()
        backend: Backend = open_backend(c.backend, self.data_dir, **self.backend_options)
        if self.swap_at_round is not None:
            backend = HotSwapBackend(backend)
        await backend.open()
        try:
            start, st = await self._resume_or_start(backend, s)
            await self._rewrite_metrics(backend, start)
            if self.on_start is not None:
                self.on_start(start)
            for r in range(start, c.rounds):
                st, metrics = await self._round(backend, s, r, st, resuming=r == start and start > 0)
                with self.metrics_path.open("a") as fh:
                    fh.write(json.dumps(metrics) + "\n")
                log.debug(
                    "round %d: accuracy %.4f (honest-only %.4f), flagged %s, %.0f ms",
                    r + 1,
                    metrics["accuracy"],
                    metrics["honest_only_accuracy"],
                    metrics.get("tp", 0) + metrics.get("fp", 0),
                    metrics.get("round_ms") or 0.0,
                )
                if self.on_round is not None:
                    self.on_round(metrics)
            summary = self._summary(s, time.perf_counter() - t_start)
            if self.swap_report is not None:
                summary["swap"] = {"at_round": self.swap_at_round, "to": self.swap_to, **self.swap_report.to_json()}
            return summary
        finally:
            await backend.close()

    @staticmethod
    def _state(record: RoundRecord) -> dict[str, Any]:
        state = record.evidence.get("state")
        if not isinstance(state, Mapping):
            raise StoreError(f"round {record.round}: the record holds no optimiser state")
        return dict(state)

    def _train(self, s: _Setup, r: int, params: F32, which: Sequence[str]) -> dict[str, tuple[F32, float]]:
        """Local training of the nodes ``which`` from ``params``; node ``i`` always draws from [seed, round, i]."""
        c = self.config
        index = {nid: i for i, nid in enumerate(s.node_ids)}
        return {
            nid: models.local_update(
                s.model,
                params,
                s.nodes[index[nid]].x_train,
                s.nodes[index[nid]].y_train,
                steps=c.local_steps,
                lr=c.lr,
                batch_size=c.batch_size,
                rng=np.random.default_rng([c.seed, r, index[nid]]),
            )
            for nid in which
        }

    async def _rewrite_metrics(self, backend: Backend, start: int) -> None:
        # The round records are the source of truth: a resumed run's JSON lines are rebuilt from them
        # (the store stage of those rounds was timed after its record was written, so it reads null).
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for r in range(start):
            rec = await backend.get_round_record(r)
            if rec is not None:
                lines.append(json.dumps({**dict(rec.metrics), "store_ms": None}) + "\n")
        self.metrics_path.write_text("".join(lines))

    async def _resume_or_start(self, backend: Backend, s: _Setup) -> tuple[int, _State]:
        c = self.config
        held = await backend.get_meta("run")
        wanted = c.to_json()
        if held is not None and held != wanted:
            differ = [k for k in wanted if held.get(k) != wanted[k]] + sorted(set(held) - set(wanted))
            if differ == ["rounds"] and isinstance(held["rounds"], int) and c.rounds > held["rounds"]:
                # More rounds for a stored run: it goes on where it stopped, as if it had been started this long.
                if not isinstance(backend, EmbeddedStore):
                    raise StoreError(
                        f"store {self.data_dir}: rounds: a run grows on the embedded store only "
                        f"(its DNA properties fix max_round on a DHT); held {held['rounds']}, asked {c.rounds}"
                    )
                await backend.extend_max_round(c.rounds - 1)
                await backend.put_meta("run", wanted)
                self.grown_from = int(held["rounds"])
            else:
                parts = ", ".join(f"{k} {held.get(k)!r} (this run: {wanted.get(k)!r})" for k in differ)
                raise StoreError(
                    f"store {self.data_dir}: holds a run with other parameters: {parts}; use another --data-dir, "
                    "or the same parameters to resume it (more --rounds extend a finished run)"
                )
        await backend.set_model_spec(s.spec)
        if isinstance(backend, HolochainBackend):
            # Every node an agent of its own, registered with its node key.
            # The run's authority closes the network and releases the beacons the committee is drawn with.
            await backend.add_nodes(
                s.keys,
                committee_seed=pipeline.committee_seed(c.seed),
                committee_rate=pipeline.lottery_rate(s.defence_config, c.nodes),
                authority=pipeline.authority_key(c.seed),
            )
        last = await backend.last_completed_round()
        if last is None:
            await backend.put_meta("run", c.to_json())
            theta = s.model.init(c.seed)
            zero = np.zeros_like(theta)
            own_models = None
            views = None
            if c.personal_view:
                own_models = {n: theta.copy() for n in s.node_ids if n not in s.byzantine}
                views = {n: personal.PersonalView(n).state() for n in s.node_ids}
            return 0, _State(theta, theta.copy(), zero, zero.copy(), None, None, None, own_models, views)
        rec = await backend.get_round_record(last)
        if rec is None:
            raise StoreError(f"store {self.data_dir}: round {last} is listed but has no record")
        state = self._state(rec)
        return last + 1, _State(
            theta=np.asarray(rec.model, np.float32),
            reference=_unb64(state["reference"]),
            velocity=_unb64(state["velocity"]),
            reference_velocity=_unb64(state["reference_velocity"]),
            previous=np.asarray(rec.aggregate, np.float32),
            mimic_target=state.get("mimic_target"),
            ledger=state.get("ledger"),
            personal=None if "personal" not in state else {k: _unb64(v) for k, v in state["personal"].items()},
            views=state.get("views"),
        )

    async def _round(
        self, backend: Backend, s: _Setup, r: int, st: _State, *, resuming: bool
    ) -> tuple[_State, dict[str, Any]]:
        c = self.config
        t_round = time.perf_counter()
        times: dict[str, float] = {}
        counts = {nid: len(nd.y_train) for nid, nd in zip(s.node_ids, s.nodes, strict=True)}
        honest_ids = [n for n in s.node_ids if n not in s.byzantine]
        byz_ids = [n for n in s.node_ids if n in s.byzantine]

        # Train every node on the global model (attacks included in the stage).
        t0 = time.perf_counter()
        if st.personal is None:
            trained = self._train(s, r, st.theta, s.node_ids)
        else:
            # With the personal view every honest agent trains its own model; the attackers train the shared one.
            trained = self._train(s, r, st.theta, byz_ids)
            for nid in honest_ids:
                trained.update(self._train(s, r, st.personal[nid], [nid]))
        updates = {nid: g for nid, (g, _) in trained.items()}
        losses = {nid: loss for nid, (_, loss) in trained.items()}
        mimic_target = st.mimic_target
        if byz_ids:
            honest_rows = np.stack([updates[n] for n in honest_ids])
            params: dict[str, float | str] = dict(c.attack_params)
            if c.attack == "mimic" and "target_index" not in params:
                # The paper fixes the copied node after warm-up; here after the first round.
                if mimic_target is None:
                    mimic_target = attacks.mimic_target(honest_rows)
                params["target_index"] = mimic_target
            ctx = attacks.AttackContext(
                own=np.stack([updates[n] for n in byz_ids]),
                honest=honest_rows if c.omniscient else None,
                n_nodes=c.nodes,
                n_byzantine=len(byz_ids),
                rng=np.random.default_rng([c.seed, r, 0xA77]),
                aggregator=c.aggregator,
                f=s.f,
                colluding=c.colluding,
                params=params,
                defence=self._oracle(s, st, len(honest_ids)) if c.aggregator == "pipeline" else None,
            )
            for nid, row in zip(byz_ids, attacks.craft(c.attack, ctx), strict=True):
                updates[nid] = np.asarray(row, dtype=np.float32)
        times["train"] = time.perf_counter() - t0

        # The honest-only reference: the same nodes and seeds, plain example-weighted averaging, same optimiser.
        ref_rows = [g for g, _ in self._train(s, r, st.reference, honest_ids).values()]
        ref_step = np.average(np.stack(ref_rows), axis=0, weights=[counts[n] for n in honest_ids])
        ref_velocity = (c.momentum * st.reference_velocity + ref_step).astype(np.float32)
        reference = (st.reference - c.effective_server_lr * ref_velocity).astype(np.float32)

        # Validate: the backend applies the shared rules; a rejected update is excluded.
        t0 = time.perf_counter()
        rejected: dict[str, str] = {}
        unreachable: dict[str, str] = {}
        claims = self._proofs(s, r, st.theta, updates)

        async def submit(nid: str) -> None:
            sub = Submission.create(
                nid, r, s.spec.model_id, updates[nid], example_count=counts[nid], proof=claims[nid].to_json()
            )
            if resuming:
                # This round was cut short after some submissions were stored: the same payload is the same
                # submission, not a second one.
                held = await backend.get_submission(r, nid)
                if held is not None and held.payload_hash == sub.payload_hash:
                    return
            try:
                await backend.submit(sub)
            except SubmissionRejected as e:
                rejected[nid] = f"{e.code}: {e}"
            except ConductorError as e:  # the node's conductor is gone: the round goes on without it
                unreachable[nid] = str(e)

        swap = self._start_swap(backend, s, r)
        dht = _dht(backend)
        try:
            if dht is not None:
                # Every node submits through its own agent, all at once, as separate machines would.
                await asyncio.gather(*(submit(nid) for nid in s.node_ids))
            else:
                # Writers keep submitting while a swap (if one starts this round) copies and verifies.
                for nid in s.node_ids:
                    await submit(nid)
        except BaseException:
            if swap is not None:  # the swap must not outlive the round: it rolls back when cancelled
                swap.cancel()
                with contextlib.suppress(BaseException):
                    await swap
            raise
        await self._finish_swap(swap)
        dht = _dht(backend)
        if dht is not None:
            times["submit"] = time.perf_counter() - t0
            decision, stored = await self._decide_on_dht(dht, s, r, st, rejected, times, unreachable)
            times["validate"] = times["submit"] + times["visible"]
        else:
            stored = await backend.get_round(r)
            times["validate"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            decision = self._decide(s, r, st, stored, rejected, self._vote_source(s, r, st))
            times["aggregate"] = time.perf_counter() - t0
        aggregate, kept_ids, flagged_ids = decision.aggregate, decision.kept, decision.flagged
        evidence, ledger_state = decision.evidence, decision.ledger
        t0 = time.perf_counter()
        velocity = (c.momentum * st.velocity + aggregate).astype(np.float32)
        theta = (st.theta - c.effective_server_lr * velocity).astype(np.float32)
        times["aggregate"] += time.perf_counter() - t0

        own_models, views = self._personal_step(s, st, stored, unreachable)
        new = _State(theta, reference, velocity, ref_velocity, aggregate, mimic_target, ledger_state, own_models, views)
        metrics = self._evaluate(s, r, theta, reference, flagged_ids, len(rejected))
        if own_models is not None:
            acc = [s.model.accuracy(p, s.dataset.x_test, s.dataset.y_test) for p in own_models.values()]
            metrics["personal_accuracy"] = {"mean": float(np.mean(acc)), "min": min(acc), "max": max(acc)}
        metrics["train_loss"] = float(np.mean([losses[n] for n in honest_ids]))
        for stage in STAGES[:-1]:
            metrics[f"{stage}_ms"] = times[stage] * 1e3
        for extra in DHT_STAGES:
            if extra in times:
                metrics[f"{extra}_ms"] = times[extra] * 1e3

        # The record carries the optimiser state: one write, so a run can always resume after it.
        t0 = time.perf_counter()
        record = RoundRecord(
            round=r,
            rule=c.aggregator,
            contributors=tuple(kept_ids),
            flagged=tuple(sorted(flagged_ids)),
            aggregate=aggregate,
            model=theta,
            evidence={**evidence, "state": new.to_json()},
            metrics=dict(metrics),
        )
        await backend.put_round_record(record)
        if c.aggregator == "pipeline" and ledger_state is not None:
            await backend.put_reputations(r, ledger_state["scores"])
        if dht is not None:
            # Every honest agent publishes its own result: a claim naming the submissions it covers.
            honest_agents = [n for n in s.node_ids if n not in s.byzantine and n not in unreachable]
            await asyncio.gather(*(dht.publish_result(n, record, stored) for n in honest_agents))
        metrics["store_ms"] = (time.perf_counter() - t0) * 1e3
        # Wall time of the whole round, training and the honest-only reference model included.
        metrics["round_ms"] = (time.perf_counter() - t_round) * 1e3
        return new, metrics

    def _personal_step(
        self,
        s: _Setup,
        st: _State,
        stored: Sequence[Submission],
        unreachable: Mapping[str, str],
    ) -> tuple[dict[str, F32] | None, dict[str, dict[str, Any]] | None]:
        """The personal view of the round (:mod:`zerotrustml.defence.personal`): every agent publishes its
        evidence on what the store holds (honest agents score it on their own data at their own models;
        Byzantine agents lie: colluders vouch for each other and against everyone else), and each honest agent
        steps its own model with the updates reached from its own evidence."""
        if st.personal is None or st.views is None:
            return None, None
        c = self.config
        ids = [sub.node_id for sub in stored]
        rows = np.stack([np.asarray(sub.values, dtype=np.float32) for sub in stored]) if stored else None
        counts = [sub.example_count for sub in stored]
        index = {nid: i for i, nid in enumerate(s.node_ids)}
        views = {nid: personal.PersonalView.from_state(state) for nid, state in st.views.items()}

        def own_norm(nid: str) -> float | None:
            """The norm of the agent's own update this round: its scale (None: it sent none)."""
            return float(np.linalg.norm(rows[ids.index(nid)])) if rows is not None and nid in ids else None

        if rows is not None:
            for nid, view in views.items():
                if nid in unreachable:
                    continue
                if nid in s.byzantine:
                    lie = personal.SCORE_CLIP
                    view.remember({u: lie if c.colluding and u in s.byzantine else -lie for u in ids})
                else:
                    nd = s.nodes[index[nid]]
                    scores = personal.evidence_scores(
                        ids,
                        rows,
                        model=s.model,
                        params=st.personal[nid],
                        x=nd.x_train,
                        y=nd.y_train,
                        own_norm=own_norm(nid),
                    )
                    view.remember(scores)
        trust = {nid: view.trust for nid, view in views.items()}
        models_out: dict[str, F32] = {}
        for nid, theta_v in st.personal.items():
            if rows is not None and nid not in unreachable:
                kept = personal.reach(nid, trust, ids, personal.MIN_TRUST, personal.MIN_VOUCHERS, personal.VETO_Z)
                at = [ids.index(u) for u in kept]
                step = personal.personal_aggregate(
                    rows[at], [counts[i] for i in at], s.defence_config.aggregation_clip, own_norm(nid)
                )
                theta_v = (theta_v - c.effective_server_lr * step).astype(np.float32)
            models_out[nid] = theta_v
        return models_out, {nid: view.state() for nid, view in views.items()}

    def _start_swap(self, backend: Backend, s: _Setup, r: int) -> asyncio.Task[SwapReport] | None:
        """At the swap round, start moving to the target while this round's writers submit."""
        if r != self.swap_at_round or not isinstance(backend, HotSwapBackend):
            return None
        c = self.config
        local = backend.active if isinstance(backend.active, EmbeddedStore) else None
        target = HolochainBackend(
            self.data_dir,
            mode="conductors" if self.swap_to == "holochain" else "mock",
            local=local,
            **self.swap_options,
        )
        return asyncio.create_task(
            backend.switch_to(
                target,
                s.keys,
                committee_seed=pipeline.committee_seed(c.seed),
                committee_rate=pipeline.lottery_rate(s.defence_config, c.nodes),
                authority=pipeline.authority_key(c.seed),
            )
        )

    async def _finish_swap(self, task: asyncio.Task[SwapReport] | None) -> None:
        """Wait for the swap before the round is decided; a failed swap leaves the run where it was."""
        if task is None:
            return
        try:
            self.swap_report = await task
        except SwapError as e:
            self.swap_report = SwapReport(ok=False, error=str(e))

    def _vote_source(self, s: _Setup, r: int, st: _State) -> pipeline.VoteSource:
        return lambda members, subs: self._votes(s, r, st.theta, members, subs)

    def _decide(
        self,
        s: _Setup,
        r: int,
        st: _State,
        stored: Sequence[Submission],
        rejected: Mapping[str, str],
        votes: pipeline.VoteSource,
    ) -> RoundDecision:
        """The round's result from what one agent holds: the defence sees node ids, payloads, proofs and votes."""
        c = self.config
        return decide_round(
            r,
            stored,
            rejected,
            aggregator=c.aggregator,
            f=s.f,
            seed=c.seed,
            dims=int(st.theta.shape[0]),
            defence_config=s.defence_config,
            keys=s.ring,
            ledger=st.ledger,
            previous=st.previous,
            votes=votes,
            federation_size=c.nodes,
        )

    async def _decide_on_dht(
        self,
        backend: HolochainBackend,
        s: _Setup,
        r: int,
        st: _State,
        rejected: Mapping[str, str],
        times: dict[str, float],
        unreachable: Mapping[str, str],
    ) -> tuple[RoundDecision, list[Submission]]:
        """No central server: every honest agent reads the round through its own conductor and decides.

        The first honest agent (by id) publishes the committee's votes it reads back; every honest agent then
        decides from its own reads, and all must reach the same bits. A disagreement is an error, never averaged.
        """
        c = self.config
        # Agents whose conductor is unreachable neither submit nor decide this round.
        honest = [n for n in s.node_ids if n not in s.byzantine and n not in unreachable]
        if not honest:
            raise StoreError(f"round {r}: no honest agent is reachable ({', '.join(sorted(unreachable))})")
        expected = [n for n in s.node_ids if n not in rejected and n not in unreachable]
        t0 = time.perf_counter()
        observer = backend.view(honest[0])
        wanted = set(expected)
        stored, missing = await observer.await_round(r, expected)
        strangers = sorted(x.node_id for x in stored if x.node_id not in wanted)
        stored = [x for x in stored if x.node_id in wanted]
        times["visible"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        cast: list[committee.Vote] = []
        members: list[str] = []
        if c.aggregator == "pipeline" and stored:
            ledger = (
                ReputationLedger(s.defence_config)
                if st.ledger is None
                else ReputationLedger.from_state(s.defence_config, st.ledger)
            )
            ids = [x.node_id for x in stored]
            rate = pipeline.lottery_rate(s.defence_config, c.nodes)
            members = pipeline.committee_members(r, ids, ledger=ledger, keys=s.ring, seed=c.seed, rate=rate)
            cast = self._votes(s, r, st.theta, members, stored)
            await backend.publish_votes(r, cast)
        times["votes"] = time.perf_counter() - t0

        votes_missing: list[int] = []  # votes cast that had not reached the recording agent by the round timeout

        async def decide(view_node: str) -> tuple[RoundDecision, list[Submission], list[str]]:
            view = backend.view(view_node)
            held, lost = (stored, missing) if view_node == honest[0] else await view.await_round(r, expected)
            # The round's input set is the federation's expected submissions: a stranger's entry, or one that
            # reached some agents late, must not make honest agents decide on different sets.
            held = [x for x in held if x.node_id in wanted]
            read: list[committee.Vote] = []
            if c.aggregator == "pipeline" and held:
                read = await view.await_votes(r, held, members, expected=len(cast))
                if view_node == honest[0] and len(read) < len(cast):
                    votes_missing.append(len(cast) - len(read))

            def votes(m: Sequence[str], subs: Sequence[Submission]) -> list[committee.Vote]:
                if list(m) != members:
                    raise StoreError(f"round {r}: agent {view_node} draws committee {list(m)}, not {members}")
                return read

            return self._decide(s, r, st, held, rejected, votes), held, lost

        t0 = time.perf_counter()
        mine, _, _ = await decide(honest[0])
        times["aggregate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for other in honest[1:]:
            theirs, held, lost = await decide(other)
            same = (
                theirs.aggregate.tobytes() == mine.aggregate.tobytes()
                and theirs.kept == mine.kept
                and theirs.flagged == mine.flagged
            )
            if not same:
                raise StoreError(
                    f"round {r}: honest agents disagree: {other} holds {len(held)} submissions (missing {lost}), "
                    f"{honest[0]} holds {len(stored)} (missing {missing}); their results differ "
                    f"(kept {theirs.kept} vs {mine.kept}, flagged {sorted(theirs.flagged)} vs {sorted(mine.flagged)})"
                )
        times["agreement"] = time.perf_counter() - t0
        if strangers:
            mine.evidence["ignored"] = strangers  # entries of the round from outside the expected set
        if missing or unreachable:
            mine.evidence["missing"] = sorted(set(missing) | set(unreachable))
        if unreachable:
            mine.evidence["unreachable"] = dict(unreachable)
        if votes_missing:
            mine.evidence["votes_missing"] = votes_missing[0]
        mine.evidence["agents_agreeing"] = len(honest)
        return mine, stored

    def _oracle(self, s: _Setup, st: _State, n_honest: int) -> Callable[[F32], npt.NDArray[np.bool_]]:
        """What an adaptive attacker aimed at the pipeline simulates: its similarity stage, which needs only the
        round's updates (omniscient attackers see them); with the personal view on, the honest agents' predicted
        vouching instead (:func:`personal.predicted_vouching`, the honest updates standing in for the agents'
        private gradients; the candidate rows come after the ``n_honest`` honest ones). Against the personal
        view the attacker aims at what that view protects, the honest agents' own models: searching against
        both views was tried and did less harm to them under label skew (DETECTION.md). Committee and
        reputation depend on other nodes' data and history, which the attacker cannot replay."""
        if st.personal is not None:
            return lambda x: personal.predicted_vouching(x, n_honest)
        f = s.f

        def accepts(x: F32) -> npt.NDArray[np.bool_]:
            ev = detection.similarity_evidence(x, st.previous, min(f, x.shape[0] - 1), s.defence_config)
            return np.asarray(~detection.flag(ev, s.defence_config).flagged, dtype=bool)

        return accepts

    def _proofs(self, s: _Setup, r: int, theta: F32, updates: Mapping[str, F32]) -> dict[str, proofs.EdgeProof]:
        """Every node's signed edge proof. Honest nodes measure; Byzantine nodes sign a plausible lie."""
        c = self.config
        out: dict[str, proofs.EdgeProof] = {}
        honest_quality: list[float] = []
        for nid, nd in zip(s.node_ids, s.nodes, strict=True):
            if nid in s.byzantine or len(nd.y_holdout) == 0:
                continue
            out[nid] = proofs.EdgeProofGenerator(s.keys[nid]).prove(
                s.model, theta, updates[nid], nd.x_holdout, nd.y_holdout, node_id=nid, round=r, lr=c.lr
            )
            honest_quality.append(out[nid].quality)
        typical = float(np.median(honest_quality)) if honest_quality else 0.05
        for nid, nd in zip(s.node_ids, s.nodes, strict=True):
            if nid not in out:
                out[nid] = plausible_claim(
                    s.keys[nid], s.model, theta, nd, nid, r, updates[nid], lr=c.lr, quality=typical
                )
        return out

    def _votes(
        self, s: _Setup, r: int, theta: F32, members: Sequence[str], subs: Sequence[Submission]
    ) -> list[committee.Vote]:
        """The committee's votes: honest members re-score on their own held-out data; Byzantine members lie.

        Colluding Byzantine members accept their accomplices and reject everyone else; without collusion
        they reject every update (they know nothing to favour).
        """
        c = self.config
        out: list[committee.Vote] = []
        index = {nid: i for i, nid in enumerate(s.node_ids)}
        for m in members:
            nd = s.nodes[index[m]]
            if m not in s.byzantine:
                out.extend(
                    pipeline.member_votes(
                        s.keys[m],
                        m,
                        r,
                        subs,
                        model=s.model,
                        params=theta,
                        lr=c.lr,
                        x_holdout=nd.x_holdout,
                        y_holdout=nd.y_holdout,
                        config=s.defence_config,
                    )
                )
                continue
            for sub in subs:
                if sub.node_id == m:
                    continue
                accomplice = c.colluding and sub.node_id in s.byzantine
                out.append(
                    committee.cast_vote(
                        s.keys[m],
                        voter=m,
                        round=r,
                        node_id=sub.node_id,
                        payload_hash=sub.payload_hash,
                        quality=0.05 if accomplice else -1.0,
                        accept=accomplice,
                    )
                )
        return out

    def _evaluate(
        self, s: _Setup, r: int, theta: F32, theta_ref: F32, flagged: set[str], n_rejected: int
    ) -> dict[str, Any]:
        ds, model = s.dataset, s.model
        byz, honest = s.byzantine, set(s.node_ids) - s.byzantine
        tp, fp = len(flagged & byz), len(flagged & honest)
        fn, tn = len(byz) - tp, len(honest) - fp
        m: dict[str, Any] = {
            "round": r,
            "accuracy": model.accuracy(theta, ds.x_test, ds.y_test),
            "loss": model.loss(theta, ds.x_test, ds.y_test),
            "honest_only_accuracy": model.accuracy(theta_ref, ds.x_test, ds.y_test),
            "honest_only_loss": model.loss(theta_ref, ds.x_test, ds.y_test),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "tpr": tp / len(byz) if byz else None,
            "fpr": fp / len(honest) if honest else None,
            "rejected": n_rejected,
            # Scored against the simulator's ground truth, after the defence has decided.
            "verdicts": {
                nid: ("TP" if nid in flagged else "FN") if nid in byz else ("FP" if nid in flagged else "TN")
                for nid in s.node_ids
            },
        }
        if self.config.attack == "backdoor":
            target = int(self.config.attack_params.get("target", attacks.BACKDOOR_TARGET))
            others = ds.y_test != target
            value = self.config.attack_params.get("trigger_value")
            triggered = attacks.add_trigger(
                ds.x_test[others], ds.image_shape, value=None if value is None else float(value)
            )
            m["attack_success_rate"] = float(np.mean(model.predict(theta, triggered) == target))
        else:
            m["attack_success_rate"] = None
        return m

    def _summary(self, s: _Setup, elapsed: float) -> dict[str, Any]:
        rows = [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]
        last = rows[-1]
        c = self.config
        summary: dict[str, Any] = {
            "final_accuracy": last["accuracy"],
            "final_loss": last["loss"],
            "honest_only_accuracy": last["honest_only_accuracy"],
            "honest_only_loss": last["honest_only_loss"],
            "accuracy_gap": last["honest_only_accuracy"] - last["accuracy"],
            "tpr": _mean([row["tpr"] for row in rows]),
            "fpr": _mean([row["fpr"] for row in rows]),
            "attack_success_rate": last["attack_success_rate"],
            "rounds": len(rows),
            "byzantine_nodes": sorted(s.byzantine),
            "n_byzantine": len(s.byzantine),
            "assumed_f": s.f,
            "dims": s.model.dims,
            "params": c.to_json(),
            "defence_config": s.defence_config.to_json(),
            "data_dir": str(self.data_dir),
            "metrics_path": str(self.metrics_path),
            "elapsed_s": elapsed,
        }
        if "personal_accuracy" in last:
            # The honest agents' own models at the end: mean, worst and best over the agents.
            summary["personal_accuracy"] = last["personal_accuracy"]
        for stage in STAGES + DHT_STAGES:
            if stage in DHT_STAGES and f"{stage}_ms" not in last:
                continue
            p = _percentiles([row.get(f"{stage}_ms") for row in rows])
            summary[f"{stage}_ms_p50"], summary[f"{stage}_ms_p95"] = p["p50"], p["p95"]
        return summary


def _dht(backend: Backend) -> HolochainBackend | None:
    """The Holochain backend a run talks to, directly or behind a hot swap; ``None`` for any other store."""
    if isinstance(backend, HotSwapBackend):
        backend = backend.active
    return backend if isinstance(backend, HolochainBackend) else None


def run(config: RunConfig, data_dir: str | Path, **kw: Any) -> dict[str, Any]:
    """Run a simulation (see :class:`Simulation`) and return its summary."""
    return Simulation(config, data_dir, **kw).run()


@dataclass(frozen=True)
class SimulationResult:
    """What :func:`simulate` returns: the run's summary and one metrics record per round.

    ``summary`` is what ``zerotrustml run`` writes to ``run.json`` (final and honest-only accuracy, TPR/FPR,
    timings, the parameters); ``rounds`` holds the per-round records of ``run.jsonl`` (accuracy, kept and
    flagged nodes, timings). ``data_dir`` is the run's store, or ``None`` when it was a temporary one.
    """

    summary: dict[str, Any]
    rounds: list[dict[str, Any]]
    data_dir: Path | None

    @property
    def final_accuracy(self) -> float:
        return float(self.summary["final_accuracy"])

    @property
    def tpr(self) -> float | None:
        value = self.summary.get("tpr")
        return None if value is None else float(value)

    @property
    def fpr(self) -> float | None:
        value = self.summary.get("fpr")
        return None if value is None else float(value)


_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))


def simulate(
    config: RunConfig | None = None,
    *,
    data_dir: str | Path | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> SimulationResult:
    """Run one simulated federation and return its summary and per-round records.

    Options are :class:`RunConfig`'s fields, named as the CLI's flags with underscores::

        result = zerotrustml.simulate(nodes=10, rounds=5, attack="alie", aggregator="multi_krum")
        result.final_accuracy, result.tpr, result.rounds[-1]["flagged"]

    or pass a ``config`` (and options to change in it). With ``data_dir`` the run is stored there (and a
    directory holding the same run resumes it, as ``zerotrustml run --data-dir`` does); without, it runs in a
    temporary directory that is removed afterwards. ``on_round`` is called with each round's record as it
    completes.

    Raises
    ------
    ParameterError
        An unknown option, or a value the run cannot take (named as the option).
    """
    unknown = sorted(set(options) - set(_CONFIG_FIELDS))
    if unknown:
        raise ParameterError(f"{unknown[0]}: not an option of simulate(); the options are {', '.join(_CONFIG_FIELDS)}")
    config = dataclasses.replace(config or RunConfig(), **options)
    config.check()
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            import tempfile

            where = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ztml-simulate-")))
        else:
            where = Path(data_dir)
        sim = Simulation(config, where, on_round=on_round)
        summary = sim.run()
        rounds = [json.loads(line) for line in sim.metrics_path.read_text().splitlines() if line.strip()]
    return SimulationResult(summary=summary, rounds=rounds, data_dir=None if data_dir is None else where)
