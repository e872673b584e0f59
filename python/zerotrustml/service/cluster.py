"""``zerotrustml cluster``: the service and N node processes on loopback, as separate machines would run them.

The cluster starts ``zerotrustml serve`` (a closed federation: the cluster holds the admission key and admits
its own nodes), then one ``zerotrustml node`` process per node, the Byzantine ones chosen by the same seeded
draw as ``zerotrustml run`` and started with ``--attack``. It watches the rounds close and scores each one
after the service has decided it: true and false positives against the draw (which only the cluster knows, never
the service), and accuracy against an honest-only model it trains beside the run (the honest nodes' shares, the
same seeds, plain example-weighted averaging). It writes the per-round lines and a summary like ``run``'s.

Every process it starts is in its own process group and is stopped on exit, on error and on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import numpy as np

from zerotrustml.exceptions import ParameterError
from zerotrustml.fl import models
from zerotrustml.fl.simulation import RunConfig, byzantine_draw, data_shares, federation_ids
from zerotrustml.service import protocol

__all__ = ["Cluster", "ClusterError"]

log = logging.getLogger("zerotrustml.cluster")


class ClusterError(RuntimeError):
    """A process of the cluster failed (the message says which, with the end of its log)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A cluster run of ``config`` in ``data_dir`` (see the module docstring).

    ``crash`` maps node ids to the round at whose opening the cluster kills that node (SIGKILL), to show that
    rounds go on without it. ``on_round`` gets each round's metrics line.
    """

    config: RunConfig
    data_dir: Path
    round_deadline: float = 10.0
    port: int = 0
    crash: Mapping[str, int] = field(default_factory=dict)
    on_round: Callable[[dict[str, Any]], None] | None = None
    startup_timeout: float = 120.0

    def __post_init__(self) -> None:
        c = self.config
        c.check()
        if c.momentum != 0.0:
            raise ParameterError("momentum: the service steps without momentum; a cluster takes --momentum 0 only")
        if c.backend != "embedded":
            raise ParameterError("backend: the service runs on the embedded store")
        self.ids = federation_ids(c.nodes)
        unknown = sorted(set(self.crash) - set(self.ids))
        if unknown:
            raise ParameterError(f"crash: unknown nodes {unknown}; the nodes are {self.ids[0]} .. {self.ids[-1]}")
        self.byzantine = byzantine_draw(self.ids, c.n_byzantine, c.seed)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.url = ""

    # -- processes ---------------------------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{name}.log").open("ab") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "zerotrustml", *args],
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Ctrl-C reaches the cluster, which stops it
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.procs[name] = proc
        return proc

    def _log_tail(self, name: str) -> str:
        path = self.data_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""

    def stop(self) -> None:
        """Stop every process of the cluster: SIGTERM, then SIGKILL after 10 s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def _kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    # -- the run -----------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run the cluster to its last round; return the summary (also written to ``data_dir/run.json``).

        SIGTERM stops it as Ctrl-C does (``KeyboardInterrupt``), so its processes are stopped either way."""

        def on_term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, on_term)
        try:
            return self._run()
        finally:
            self.stop()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _common(self) -> list[str]:
        c = self.config
        return ["--dataset", c.dataset, "--model", c.model, "--seed", str(c.seed)]

    def _run(self) -> dict[str, Any]:
        c = self.config
        t_start = time.perf_counter()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        admission = nacl.signing.SigningKey.generate()
        port = self.port or _free_port()
        self.url = f"http://127.0.0.1:{port}"
        serve = self._spawn(
            "service",
            [
                "serve",
                "--data-dir",
                str(self.data_dir / "service"),
                "--port",
                str(port),
                *self._common(),
                "--rounds",
                str(c.rounds),
                "--aggregator",
                c.aggregator,
                "--assumed-f",
                str(c.f),
                "--server-lr",
                repr(c.effective_server_lr),
                "--max-norm",
                repr(c.max_norm),
                "--admission-key",
                bytes(admission.verify_key).hex(),
                "--round-deadline",
                repr(self.round_deadline),
                "--min-nodes",
                str(c.nodes),
                "--evaluation",
                str(self.data_dir / "run.jsonl"),
            ]
            + (["--defence-config", c.defence_config] if c.defence_config else []),
        )
        http = httpx.Client(timeout=30)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if serve.poll() is not None:
                raise ClusterError(f"the service exited with {serve.returncode}:\n{self._log_tail('service')}")
            with contextlib.suppress(httpx.TransportError):
                health = http.get(self.url + "/v1/health").json()
                break
            if time.monotonic() > deadline:
                raise ClusterError(f"the service did not answer within {self.startup_timeout:.0f} s")
            time.sleep(0.2)
        if health["round"] != 0:
            raise ClusterError(
                f"{self.data_dir / 'service'} holds a run already (round {health['round']}); use another --data-dir"
            )
        federation = health["federation"]
        keys_dir = self.data_dir / "keys"
        keys_dir.mkdir(exist_ok=True)
        for index, nid in enumerate(self.ids):
            key = nacl.signing.SigningKey.generate()
            key_file = keys_dir / f"{nid}.key"
            protocol.write_secret(key_file, bytes(key).hex())
            ticket = admission.sign(protocol.admission_message(federation, nid, bytes(key.verify_key))).signature.hex()
            args = [
                "node",
                "--url",
                self.url,
                "--node-id",
                nid,
                "--index",
                str(index),
                "--nodes",
                str(c.nodes),
                *self._common(),
                "--distribution",
                c.distribution,
                "--alpha",
                repr(c.alpha),
                "--local-steps",
                str(c.local_steps),
                "--batch-size",
                str(c.batch_size or 0),
                "--lr",
                repr(c.lr),
                "--holdout-fraction",
                repr(c.holdout_fraction),
                "--key-file",
                str(key_file),
                "--admission",
                ticket,
            ]
            if nid in self.byzantine:
                args += ["--attack", c.attack] + [f"--attack-param={k}={v}" for k, v in c.attack_params.items()]
            self._spawn(nid, args)
        return self._watch(http, t_start)

    def _watch(self, http: httpx.Client, t_start: float) -> dict[str, Any]:
        c = self.config
        ref = _Reference(c, self.ids, self.byzantine)
        metrics_path = self.data_dir / "run.jsonl"
        metrics_path.write_text("")
        rows: list[dict[str, Any]] = []
        crashed: set[str] = set()

        def kill_due(opening: int) -> None:
            for nid, at in self.crash.items():
                if at <= opening and nid not in crashed:
                    self._kill(nid)
                    crashed.add(nid)
                    log.info("%s killed at round %d", nid, opening)

        r = 0
        while r < c.rounds:
            kill_due(r)
            serve = self.procs["service"]
            if serve.poll() is not None:
                raise ClusterError(f"the service exited with {serve.returncode}:\n{self._log_tail('service')}")
            for nid in self.ids:
                proc = self.procs[nid]
                if nid not in crashed and proc.poll() not in (None, 0):
                    raise ClusterError(f"{nid} exited with {proc.returncode}:\n{self._log_tail(nid)}")
            resp = http.get(f"{self.url}/v1/rounds/{r}/aggregate")
            if resp.status_code != 200 or not resp.json()["final"]:
                time.sleep(0.1)
                continue
            agg = resp.json()
            # Round r closed, so round r + 1 is open: kill who is due now, before scoring (the honest-only reference
            # trains here, which on a loaded machine can take longer than the nodes need to finish a round).
            if r + 1 < c.rounds:
                kill_due(r + 1)
            ref.step(r)
            flagged = set(agg["flagged"])
            byz, honest = self.byzantine, set(self.ids) - self.byzantine
            tp, fp = len(flagged & byz), len(flagged & honest)
            row = {
                "round": r,
                "accuracy": agg["metrics"].get("accuracy"),
                "loss": agg["metrics"].get("loss"),
                "honest_only_accuracy": ref.accuracy(),
                "honest_only_loss": ref.loss(),
                "tp": tp,
                "fp": fp,
                "fn": len(byz) - tp,
                "tn": len(honest) - fp,
                "tpr": tp / len(byz) if byz else None,
                "fpr": fp / len(honest) if honest else None,
                "missing": agg["missing"],
                "submissions": agg["metrics"].get("submissions"),
                "round_ms": 1e3 * float(agg["metrics"].get("round_s") or 0.0),
                # Scored against the cluster's draw, after the service has decided.
                "verdicts": {
                    n: ("TP" if n in flagged else "FN") if n in byz else ("FP" if n in flagged else "TN")
                    for n in self.ids
                },
            }
            rows.append(row)
            with metrics_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            if self.on_round is not None:
                self.on_round(row)
            r += 1
        for nid in self.ids:  # the nodes stop by themselves once the service says the run is finished
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.procs[nid].wait(timeout=30)
        summary = self._summary(rows, time.perf_counter() - t_start, metrics_path, sorted(crashed))
        (self.data_dir / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def _summary(
        self, rows: list[dict[str, Any]], elapsed: float, metrics_path: Path, crashed: list[str]
    ) -> dict[str, Any]:
        c, last = self.config, rows[-1]

        def mean(values: list[float | None]) -> float | None:
            got = [v for v in values if v is not None]
            return sum(got) / len(got) if got else None

        latencies = sorted(row["round_ms"] for row in rows)
        return {
            "final_accuracy": last["accuracy"],
            "final_loss": last["loss"],
            "honest_only_accuracy": last["honest_only_accuracy"],
            "honest_only_loss": last["honest_only_loss"],
            "accuracy_gap": None if last["accuracy"] is None else last["honest_only_accuracy"] - last["accuracy"],
            "tpr": mean([row["tpr"] for row in rows]),
            "fpr": mean([row["fpr"] for row in rows]),
            "rounds": len(rows),
            "byzantine_nodes": sorted(self.byzantine),
            "n_byzantine": len(self.byzantine),
            "assumed_f": c.f,
            "crashed_nodes": crashed,
            "rounds_with_missing_nodes": sum(1 for row in rows if row["missing"]),
            "round_ms_p50": latencies[len(latencies) // 2],
            "round_ms_p95": latencies[min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)],
            "params": c.to_json(),
            "service_url": self.url,
            "data_dir": str(self.data_dir),
            "metrics_path": str(metrics_path),
            "elapsed_s": elapsed,
        }


class _Reference:
    """The honest-only model: the honest nodes' shares and seeds, plain example-weighted averaging."""

    def __init__(self, c: RunConfig, ids: list[str], byzantine: set[str]) -> None:
        self.c = c
        self.ds, self.shares = data_shares(
            c.dataset, c.nodes, c.distribution, alpha=c.alpha, holdout_fraction=c.holdout_fraction, seed=c.seed
        )
        self.model = models.make_model(c.model, self.ds.n_features, self.ds.n_classes, image_shape=self.ds.image_shape)
        self.honest = [i for i, nid in enumerate(ids) if nid not in byzantine]
        self.theta = self.model.init(c.seed)

    def step(self, r: int) -> None:
        c = self.c
        rows, counts = [], []
        for i in self.honest:
            g, _ = models.local_update(
                self.model,
                self.theta,
                self.shares[i].x_train,
                self.shares[i].y_train,
                steps=c.local_steps,
                lr=c.lr,
                batch_size=c.batch_size,
                rng=np.random.default_rng([c.seed, r, i]),
            )
            rows.append(g)
            counts.append(len(self.shares[i].y_train))
        step = np.average(np.stack(rows), axis=0, weights=counts)
        self.theta = (self.theta - c.effective_server_lr * step).astype(np.float32)

    def accuracy(self) -> float:
        return float(self.model.accuracy(self.theta, self.ds.x_test, self.ds.y_test))

    def loss(self) -> float:
        return float(self.model.loss(self.theta, self.ds.x_test, self.ds.y_test))
