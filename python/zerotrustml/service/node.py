"""``zerotrustml node``: one training node talking to the service over HTTP.

A node loads its own share of the data (the simulator's partition of the same dataset, seed and node count,
so a cluster and ``zerotrustml run`` train on the same shares), registers its Ed25519 key, and then, round by
round, fetches the global model, trains locally, proves the update on its held-out data, signs the request
and submits. A Byzantine node (``--attack``) trains the same way and then sends what its attack crafts from its
own update alone (separate processes neither collude nor see honest updates), with a signed, plausible claim
in place of a proof. It stops when the service says the run is finished.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import numpy as np

from zerotrustml.defence import proofs
from zerotrustml.exceptions import ParameterError
from zerotrustml.fl import attacks, models
from zerotrustml.fl.simulation import data_shares, plausible_claim
from zerotrustml.service import protocol

__all__ = ["NodeSettings", "TrainingNode", "load_or_create_key"]

log = logging.getLogger("zerotrustml.node")


def load_or_create_key(path: Path) -> nacl.signing.SigningKey:
    """The node's signing key from ``path`` (32 bytes, hex), created there (mode 0600) when missing."""
    if path.exists():
        text = path.read_text().strip()
        try:
            return nacl.signing.SigningKey(bytes.fromhex(text))
        except ValueError:
            raise ParameterError(f"--key-file: {path} does not hold a 32-byte hex key") from None
    key = nacl.signing.SigningKey.generate()
    protocol.write_secret(path, bytes(key).hex(), exclusive=True)
    return key


@dataclass(frozen=True)
class NodeSettings:
    """What a node trains on and how (the ``run`` options a node needs, one to one)."""

    node_id: str
    index: int
    nodes: int
    dataset: str = "mnist"
    model: str = "softmax"
    distribution: str = "iid"
    alpha: float = 0.5
    local_steps: int = 5
    batch_size: int | None = 32
    lr: float = 0.1
    seed: int = 0
    holdout_fraction: float = 0.1
    attack: str | None = None
    attack_params: dict[str, float | str] = field(default_factory=dict)

    def check(self) -> None:
        if not 0 <= self.index < self.nodes:
            raise ParameterError(f"index: must be in [0, nodes={self.nodes}), got {self.index}")
        if self.attack is not None and self.attack not in attacks.attack_names():
            raise ParameterError(
                f"attack: unknown name {self.attack!r}; choose one of {', '.join(attacks.attack_names())}"
            )
        if self.attack is not None:
            attacks.resolve_params(self.attack, self.attack_params)


class TrainingNode:
    """One node: its data share, its model, its key, and the loop of :meth:`run`."""

    def __init__(
        self,
        url: str,
        settings: NodeSettings,
        key: nacl.signing.SigningKey,
        *,
        admission: str | None = None,
        poll_s: float = 0.1,
        timeout_s: float = 30.0,
    ) -> None:
        settings.check()
        self.url, self.s, self.key, self.admission, self.poll_s = url.rstrip("/"), settings, key, admission, poll_s
        self.http = httpx.Client(timeout=timeout_s)
        s = settings
        ds, shares = data_shares(
            s.dataset, s.nodes, s.distribution, alpha=s.alpha, holdout_fraction=s.holdout_fraction, seed=s.seed
        )
        self.data = shares[s.index]
        if s.attack in attacks.DATA_ATTACKS:
            x, y = attacks.poison_data(
                s.attack,
                self.data.x_train,
                self.data.y_train,
                n_classes=ds.n_classes,
                image_shape=ds.image_shape,
                rng=np.random.default_rng([s.seed, 0xDA7A, s.index]),
                params=s.attack_params,
            )
            self.data = dataclasses.replace(self.data, x_train=x, y_train=y)
        self.model = models.make_model(s.model, ds.n_features, ds.n_classes, image_shape=ds.image_shape)
        self.federation = ""
        self.submitted: list[int] = []

    def _get(self, path: str) -> dict[str, Any]:
        r = self.http.get(self.url + path)
        r.raise_for_status()
        return dict(r.json())

    def register(self) -> None:
        self.federation = self._get("/v1/health")["federation"]
        body = protocol.registration_body(self.key, federation=self.federation, node_id=self.s.node_id)
        body["admission"] = self.admission
        r = self.http.post(self.url + "/v1/nodes", json=body)
        if r.status_code not in (200, 201):
            raise ParameterError(f"registration refused: {r.json().get('detail', r.text)}")

    def update(self, theta: np.ndarray, r: int) -> tuple[np.ndarray, proofs.EdgeProof]:
        """This round's update and its proof (a Byzantine node: its attack's update and a plausible lie)."""
        s = self.s
        g, _ = models.local_update(
            self.model,
            theta,
            self.data.x_train,
            self.data.y_train,
            steps=s.local_steps,
            lr=s.lr,
            batch_size=s.batch_size,
            rng=np.random.default_rng([s.seed, r, s.index]),
        )
        if s.attack is None or s.attack in attacks.DATA_ATTACKS:
            if s.attack is None and len(self.data.y_holdout):
                proof = proofs.EdgeProofGenerator(self.key).prove(
                    self.model, theta, g, self.data.x_holdout, self.data.y_holdout, node_id=s.node_id, round=r, lr=s.lr
                )
                return g, proof
        else:
            ctx = attacks.AttackContext(
                own=g[None, :],
                honest=None,
                n_nodes=s.nodes,
                n_byzantine=1,
                rng=np.random.default_rng([s.seed, r, 0xA77, s.index]),
                colluding=False,
                params=s.attack_params,
            )
            g = np.asarray(attacks.craft(s.attack, ctx)[0], np.float32)
        return g, plausible_claim(self.key, self.model, theta, self.data, s.node_id, r, g, lr=s.lr)

    def step(self) -> bool:
        """Submit for the open round if this node has not yet; False once the run is finished."""
        health = self._get("/v1/health")
        if health["finished"]:
            return False
        r = health["round"]
        if r is None or (self.submitted and self.submitted[-1] >= r):
            return True
        model = self._get("/v1/model")
        if model["round"] != r:
            return True  # the round moved on while we asked: ask again
        theta = np.asarray(model["values"], np.float32)
        g, proof = self.update(theta, r)
        body = protocol.submission_body(
            self.key,
            federation=self.federation,
            node_id=self.s.node_id,
            round=r,
            model_id=model["model_id"],
            values=g,
            example_count=len(self.data.y_train),
            proof=proof.to_json(),
        )
        resp = self.http.post(self.url + "/v1/submissions", json=body)
        if resp.status_code == 202:
            log.debug("%s: round %d submitted", self.s.node_id, r)
        elif resp.status_code == 409:  # the round closed under us, or we had submitted already: go on
            log.info("%s: round %d: %s", self.s.node_id, r, resp.json().get("detail"))
        else:
            raise ParameterError(f"round {r}: the service refused the update: {resp.json().get('detail', resp.text)}")
        self.submitted.append(r)
        return True

    def run(self) -> list[int]:
        """Register, then train and submit every round until the run is finished; the rounds submitted."""
        self.register()
        while self.step():
            time.sleep(self.poll_s)
        return self.submitted
