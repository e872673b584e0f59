"""ZeroTrustStrategy in Flower's own simulation engine (flwr 1.42, Ray backend): 10 clients, 3 of them attack.

Each client trains our softmax model on its own IID share of the synthetic data; clients 0-2 send a scaled
sign flip of their update. The strategy never sees which clients lie; the test does, through the partition id
each client reports in its metrics, and computes TPR and FPR from the strategy's per-round decisions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from zerotrustml.exceptions import ParameterError
from zerotrustml.fl.data import load_dataset
from zerotrustml.fl.models import local_update, make_model
from zerotrustml.fl.partition import split_nodes
from zerotrustml.flower import ZeroTrustStrategy

N_CLIENTS, N_BYZANTINE, ROUNDS, LR = 10, 3, 4, 0.5

# Ray (Flower's simulation backend) leaves files open and warns about its GPU settings from its own threads;
# neither is ours, and the suite turns warnings into errors.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


@pytest.fixture(autouse=True)
def _ray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences the GPU tip Ray raises as a warning


def _federation(strategy: FedAvg) -> tuple[float, Any]:
    ds = load_dataset("synthetic", seed=0)
    parts = [(p.x_train, p.y_train) for p in split_nodes(ds.x_train, ds.y_train, N_CLIENTS, "iid", seed=0)]
    model = make_model("softmax", ds.n_features, ds.n_classes)

    client = ClientApp()

    @client.train()
    def train(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        params = msg.content["arrays"].to_numpy_ndarrays()[0]
        x, y = parts[pid]
        # local_update returns the pseudo-gradient: the trained parameters are params - lr * it.
        grad, _ = local_update(model, params, x, y, steps=2, lr=LR, batch_size=None, rng=np.random.default_rng(pid))
        if pid < N_BYZANTINE:
            grad = -4.0 * grad  # a scaled sign flip
        content = RecordDict(
            {
                "arrays": ArrayRecord([np.asarray(params - LR * grad, dtype=np.float32)]),
                "metrics": MetricRecord({"num-examples": len(y), "partition-id": pid}),
            }
        )
        return Message(content=content, reply_to=msg)

    server = ServerApp()
    out: dict[str, Any] = {}

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        out["result"] = strategy.start(grid=grid, initial_arrays=ArrayRecord([model.init(0)]), num_rounds=ROUNDS)

    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=N_CLIENTS,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    final = out["result"].arrays.to_numpy_ndarrays()[0]
    accuracy = float(np.mean(model.predict(final, ds.x_test) == ds.y_test))
    return accuracy, strategy


def test_the_strategy_finds_the_attackers_in_flowers_simulation() -> None:
    common = {"fraction_evaluate": 0.0, "min_train_nodes": N_CLIENTS, "min_available_nodes": N_CLIENTS}
    accuracy, strategy = _federation(ZeroTrustStrategy("pipeline", num_malicious_nodes=N_BYZANTINE, **common))
    assert isinstance(strategy, ZeroTrustStrategy) and len(strategy.rounds) == ROUNDS
    tp = fp = fn = tn = 0
    for rnd in strategy.rounds:
        for node in rnd.nodes:
            liar = rnd.metrics[node]["partition-id"] < N_BYZANTINE
            flagged = node in rnd.flagged
            tp, fp, fn, tn = (
                tp + (liar and flagged),
                fp + (flagged and not liar),
                fn + (liar and not flagged),
                tn + (not liar and not flagged),
            )
    tpr, fpr = tp / (tp + fn), fp / (fp + tn)
    print(f"pipeline in Flower: TPR {tpr:.2f}, FPR {fpr:.2f}, accuracy {accuracy:.3f}")
    assert tpr == 1.0 and fpr == 0.0
    # Flower's own FedAvg, on the same federation, is dragged down by the same three clients.
    fedavg_accuracy, _ = _federation(FedAvg(**common))
    print(f"Flower FedAvg on the same federation: accuracy {fedavg_accuracy:.3f}")
    assert accuracy > fedavg_accuracy + 0.05, (accuracy, fedavg_accuracy)


def test_a_plain_rule_and_bad_arguments() -> None:
    strategy = ZeroTrustStrategy(
        "multi_krum",
        num_malicious_nodes=N_BYZANTINE,
        fraction_evaluate=0.0,
        min_train_nodes=N_CLIENTS,
        min_available_nodes=N_CLIENTS,
    )
    accuracy, strategy = _federation(strategy)
    assert all(
        sorted(r.flagged) == sorted(n for n in r.nodes if r.metrics[n]["partition-id"] < N_BYZANTINE)
        for r in strategy.rounds
    )
    with pytest.raises(ParameterError, match="rule: unknown name 'nope'"):
        ZeroTrustStrategy("nope")
    with pytest.raises(ParameterError, match="num_malicious_nodes: must be an integer >= 0"):
        ZeroTrustStrategy("median", num_malicious_nodes=-1)
