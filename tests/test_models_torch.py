"""Torch models: the flat layout is parameters_to_vector's, autograd against finite differences,
the torch MLP against the numpy MLP, local training, and a short simulation run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector

from zerotrustml.exceptions import ParameterError, ShapeError
from zerotrustml.fl import data
from zerotrustml.fl.models import MLP, MODELS, TORCH_MODELS, Model, available_models, local_update, make_model
from zerotrustml.fl.models_torch import TorchCNN, TorchMLP, TorchModel
from zerotrustml.fl.simulation import RunConfig, run


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return data.load_dataset("digits", seed=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread while these tests run: on a busy 2-core machine, two threads make the tiny
    ops here tens of times slower (OpenMP waits for a core), which would only cost time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _finite_difference(
    model: Model, p: np.ndarray, x: np.ndarray, y: np.ndarray, coords: np.ndarray, eps: float = 1e-6
) -> np.ndarray:
    out = np.empty(coords.size)
    for j, i in enumerate(coords):
        e = np.zeros_like(p)
        e[i] = eps
        out[j] = (model.loss(p + e, x, y) - model.loss(p - e, x, y)) / (2 * eps)
    return out


def _coords(model: TorchModel, rng: np.random.Generator, per_part: int) -> np.ndarray:
    """Up to ``per_part`` coordinates of every named part (all of a part that small)."""
    out, offset = [], 0
    for _, shape in model.layout:
        size = int(np.prod(shape))
        out.append(offset + np.sort(rng.choice(size, size=min(size, per_part), replace=False)))
        offset += size
    return np.concatenate(out)


def test_names_and_protocol() -> None:
    assert MODELS == ("softmax", "mlp")
    assert available_models() == ("softmax", "mlp", "torch_mlp", "torch_cnn")
    mlp = make_model("torch_mlp", 20, 10, hidden=8)
    cnn = make_model("torch_cnn", 64, 10, image_shape=(1, 8, 8))
    assert isinstance(mlp, TorchMLP) and isinstance(cnn, TorchCNN)
    assert (mlp.name, cnn.name) == TORCH_MODELS
    assert isinstance(mlp, Model) and isinstance(cnn, Model)
    # The numpy models accept (and ignore) the dataset's image shape the simulator now passes.
    assert make_model("mlp", 64, 10, image_shape=(1, 8, 8)).name == "mlp"


@pytest.mark.parametrize(
    "model",
    [TorchMLP(5, 3, hidden=4), TorchCNN((1, 8, 8), 10), TorchCNN((3, 6, 5), 4)],
    ids=["mlp", "cnn-digits", "cnn-rgb-odd"],
)
def test_flat_order_is_parameters_to_vector(model: TorchModel) -> None:
    p = model.init(7)
    assert p.dtype == np.float32 and p.shape == (model.dims,)
    net = model.to_module(p)
    named = list(net.named_parameters())
    assert [(k, tuple(t.shape)) for k, t in named] == list(model.layout)
    assert model.dims == sum(t.numel() for _, t in named)
    np.testing.assert_array_equal(parameters_to_vector(net.parameters()).detach().numpy(), p)
    parts = model.unflatten(p)
    assert list(parts) == [k for k, _ in named]
    for key, t in named:
        np.testing.assert_array_equal(parts[key], t.detach().numpy())
    np.testing.assert_array_equal(model.flatten(parts), p)


def test_cnn_layout_is_documented() -> None:
    digits = TorchCNN((1, 8, 8), 10)
    assert digits.layout == (
        ("conv1.weight", (8, 1, 3, 3)),
        ("conv1.bias", (8,)),
        ("conv2.weight", (16, 8, 3, 3)),
        ("conv2.bias", (16,)),
        ("fc.weight", (10, 16 * 2 * 2)),
        ("fc.bias", (10,)),
    )
    assert digits.dims == 1898
    assert TorchCNN((1, 28, 28), 10).dims == 9098
    assert TorchCNN((28, 28), 10).layout == TorchCNN((1, 28, 28), 10).layout


def test_init_is_seeded_and_leaves_the_global_generator_alone() -> None:
    model = TorchCNN((1, 8, 8), 10)
    state = torch.get_rng_state()
    a = model.init(3)
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_array_equal(a, model.init(3))
    assert not np.array_equal(a, model.init(4))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        reference = model._build()  # the module's own initialisation under the same seed
    np.testing.assert_array_equal(parameters_to_vector(reference.parameters()).detach().numpy(), a)


@pytest.mark.parametrize(
    "model",
    [TorchMLP(3, 3, hidden=5, l2=0.1), TorchCNN((1, 4, 4), 3, l2=0.1)],
    ids=["mlp", "cnn"],
)
def test_gradient_matches_finite_differences(model: TorchModel, rng: np.random.Generator) -> None:
    x, y = rng.normal(size=(6, model.n_features)), rng.integers(0, 3, size=6)
    p = model.init(1).astype(np.float64) + 0.1 * rng.normal(size=model.dims)  # float64: a float64-accurate loss
    loss, grad = model.loss_grad(p, x, y)
    assert grad.dtype == np.float32 and grad.shape == (model.dims,)
    assert loss == pytest.approx(model.loss(p, x, y), rel=1e-12)
    coords = _coords(model, rng, per_part=60)
    np.testing.assert_allclose(grad[coords], _finite_difference(model, p, x, y, coords), rtol=1e-5, atol=1e-6)
    # and the whole gradient along random directions
    for _ in range(3):
        d = rng.normal(size=model.dims)
        fd = (model.loss(p + 1e-6 * d, x, y) - model.loss(p - 1e-6 * d, x, y)) / 2e-6
        assert float(np.dot(grad.astype(np.float64), d)) == pytest.approx(fd, rel=1e-5, abs=1e-6)


def test_results_are_deterministic(digits: data.Dataset) -> None:
    assert digits.image_shape is not None
    model = TorchCNN(digits.image_shape, 10)
    p = model.init(0)
    x, y = digits.x_train[:64], digits.y_train[:64]
    first = model.loss_grad(p, x, y)
    again = model.loss_grad(p, x, y)
    assert first[0] == again[0]
    np.testing.assert_array_equal(first[1], again[1])
    assert model.loss(p, x, y) == model.loss(p, x, y)


@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_torch_mlp_equals_numpy_mlp(l2: float, rng: np.random.Generator) -> None:
    ref = MLP(6, 4, hidden=5, l2=l2)
    model = TorchMLP(6, 4, hidden=5, l2=l2)
    # Same network, same flat order: W1 (H, F) = fc1.weight, b1 = fc1.bias, W2 (C, H) = fc2.weight, b2 = fc2.bias.
    assert [shape for _, shape in ref.layout] == [shape for _, shape in model.layout]
    assert [k for k, _ in model.layout] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    x, y = rng.normal(size=(20, 6)), rng.integers(0, 4, size=20)
    for p in (ref.init(2), model.init(2), rng.normal(size=ref.dims)):
        loss_ref, grad_ref = ref.loss_grad(p, x, y)
        loss, grad = model.loss_grad(p, x, y)
        assert loss == pytest.approx(loss_ref, rel=1e-12)
        assert model.loss(p, x, y) == pytest.approx(ref.loss(p, x, y), rel=1e-12)
        np.testing.assert_allclose(grad, grad_ref, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(model.predict(p, x), ref.predict(p, x))
        assert model.accuracy(p, x, y) == ref.accuracy(p, x, y)


def test_to_module_gives_the_same_logits(digits: data.Dataset) -> None:
    assert digits.image_shape is not None
    model = TorchCNN(digits.image_shape, 10)
    p = model.init(5)
    x = digits.x_test[:50]
    net = model.to_module(p, dtype=torch.float64)
    with torch.no_grad():
        logits = net(torch.as_tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_array_equal(np.argmax(logits, axis=1), model.predict(p, x))


def test_local_update_with_cnn_reduces_training_loss_on_digits(digits: data.Dataset) -> None:
    model = make_model("torch_cnn", digits.n_features, digits.n_classes, image_shape=digits.image_shape)
    x, y = digits.x_train[:400], digits.y_train[:400]
    theta = model.init(0)
    before, acc_before = model.loss(theta, x, y), model.accuracy(theta, x, y)
    lr = 0.5
    for r in range(3):
        update, _ = local_update(model, theta, x, y, steps=40, lr=lr, batch_size=32, rng=np.random.default_rng(r))
        theta = theta - lr * update
    after = model.loss(theta, x, y)
    assert after < 0.8 * before
    assert model.accuracy(theta, x, y) > acc_before + 0.2


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_three_round_simulation_runs(name: str, tmp_path: Path) -> None:
    config = RunConfig(dataset="digits", model=name, nodes=6, rounds=3, byzantine_fraction=1 / 6, local_steps=2, lr=0.5)
    summary = run(config, tmp_path / "d", metrics_path=tmp_path / "m.jsonl")
    assert summary["rounds"] == 3 and summary["params"]["model"] == name
    assert summary["dims"] == make_model(name, 64, 10, image_shape=(1, 8, 8)).dims
    assert summary["n_byzantine"] == 1
    assert 0.0 <= summary["final_accuracy"] <= 1.0
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert all(np.isfinite(r["loss"]) for r in rows)


def test_cnn_needs_an_image_dataset(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="^model: 'torch_cnn' needs an image dataset"):
        make_model("torch_cnn", 30, 2)
    with pytest.raises(ParameterError, match="^model: 'torch_cnn' needs an image dataset"):
        run(RunConfig(dataset="breast_cancer", model="torch_cnn", nodes=4, rounds=1, aggregator="mean"), tmp_path)


def test_errors() -> None:
    with pytest.raises(ShapeError, match="image_shape"):
        make_model("torch_cnn", 63, 10, image_shape=(1, 8, 8))
    with pytest.raises(ShapeError, match="at least 4x4"):
        TorchCNN((1, 3, 8), 10)
    with pytest.raises(ShapeError, match="image_shape"):
        TorchCNN((1, 1, 8, 8), 10)
    with pytest.raises(ParameterError, match="model: unknown option 'hidden' for 'torch_cnn'"):
        make_model("torch_cnn", 64, 10, image_shape=(1, 8, 8), hidden=3)
    with pytest.raises(ParameterError, match="model: unknown name 'cnn'; choose one of .*torch_cnn"):
        make_model("cnn", 64, 10)
    with pytest.raises(ParameterError, match="model: unknown name 'cnn'"):
        RunConfig(model="cnn").check()
    model = TorchMLP(4, 3)
    with pytest.raises(ShapeError, match="params"):
        model.loss(np.zeros(model.dims + 1), np.zeros((2, 4)), np.zeros(2, dtype=int))
    with pytest.raises(ShapeError, match="x"):
        model.loss_grad(np.zeros(model.dims), np.zeros((2, 5)), np.zeros(2, dtype=int))
    with pytest.raises(ParameterError, match="y"):
        model.loss_grad(np.zeros(model.dims), np.zeros((2, 4)), np.array([0, 3]))
