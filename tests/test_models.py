"""Models: gradients against finite differences, the flat layout, local training and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits  # type: ignore[import-untyped]

from zerotrustml import aggregators
from zerotrustml.exceptions import ParameterError, ShapeError
from zerotrustml.fl.models import MLP, MODELS, Model, SoftmaxRegression, local_update, make_model


def _data(rng: np.random.Generator, n: int, n_features: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=(n, n_features)), rng.integers(0, n_classes, size=n)


def _separable(rng: np.random.Generator, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian blobs in 5-D."""
    centres = np.array([[4.0, 0, 0, 0, 0], [0, 4.0, 0, 0, 0], [0, 0, 4.0, 0, 0]])
    y = rng.integers(0, 3, size=n)
    return (centres[y] + rng.normal(size=(n, 5))).astype(np.float32), y


def _finite_difference(model: Model, p: np.ndarray, x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    out = np.empty_like(p)
    for i in range(p.size):
        e = np.zeros_like(p)
        e[i] = eps
        out[i] = (model.loss(p + e, x, y) - model.loss(p - e, x, y)) / (2 * eps)
    return out


@pytest.mark.parametrize(
    "model",
    [SoftmaxRegression(4, 3, l2=0.1), MLP(3, 3, hidden=5, l2=0.1)],
    ids=["softmax", "mlp"],
)
def test_gradient_matches_finite_differences(model: Model, rng: np.random.Generator) -> None:
    x, y = _data(rng, 7, model.layout[0][1][1], 3)  # the first weight matrix is (out, n_features)
    p = rng.normal(size=model.dims)  # float64 parameters: the loss is float64-accurate
    loss, grad = model.loss_grad(p, x, y)
    assert grad.dtype == np.float32 and grad.shape == (model.dims,)
    assert loss == pytest.approx(model.loss(p, x, y), rel=1e-12)
    np.testing.assert_allclose(grad, _finite_difference(model, p, x, y), rtol=1e-5, atol=1e-6)


def test_softmax_loss_is_stable_for_huge_logits(rng: np.random.Generator) -> None:
    model = SoftmaxRegression(4, 3, l2=0.0)
    x, y = _data(rng, 5, 4, 3)
    p = rng.normal(size=model.dims) * 1e4
    loss, grad = model.loss_grad(p, x, y)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))


def test_softmax_layout_is_w_row_major_then_b() -> None:
    model = SoftmaxRegression(4, 3)
    assert model.dims == 3 * 4 + 3
    assert model.layout == (("W", (3, 4)), ("b", (3,)))
    p = np.arange(model.dims, dtype=np.float32)
    parts = model.unflatten(p)
    np.testing.assert_array_equal(parts["W"], np.arange(12).reshape(3, 4))
    np.testing.assert_array_equal(parts["b"], [12, 13, 14])
    np.testing.assert_array_equal(model.flatten(parts), p)
    parts["b"][0] = -1.0  # views: writes go through
    assert p[12] == -1.0


def test_mlp_layout_is_w1_b1_w2_b2() -> None:
    model = MLP(4, 3, hidden=2)
    assert model.layout == (("W1", (2, 4)), ("b1", (2,)), ("W2", (3, 2)), ("b2", (3,)))
    assert model.dims == 8 + 2 + 6 + 3
    p = np.arange(model.dims, dtype=np.float32)
    parts = model.unflatten(p)
    np.testing.assert_array_equal(parts["W1"], np.arange(8).reshape(2, 4))
    np.testing.assert_array_equal(parts["b1"], [8, 9])
    np.testing.assert_array_equal(parts["W2"], np.arange(10, 16).reshape(3, 2))
    np.testing.assert_array_equal(parts["b2"], [16, 17, 18])
    np.testing.assert_array_equal(model.flatten(parts), p)


@pytest.mark.parametrize("name", MODELS)
def test_predict_follows_the_documented_forward_pass(name: str, rng: np.random.Generator) -> None:
    model = make_model(name, 6, 4, **({"hidden": 5} if name == "mlp" else {}))
    p = rng.normal(size=model.dims).astype(np.float32)
    x = rng.normal(size=(20, 6)).astype(np.float32)
    parts = model.unflatten(p)
    if name == "softmax":
        logits = x @ parts["W"].T + parts["b"]
    else:
        logits = np.maximum(x @ parts["W1"].T + parts["b1"], 0) @ parts["W2"].T + parts["b2"]
    np.testing.assert_array_equal(model.predict(p, x), np.argmax(logits, axis=1))
    assert isinstance(model, Model)


def test_init_softmax_zeros_mlp_he(rng: np.random.Generator) -> None:
    soft = SoftmaxRegression(10, 3)
    assert soft.init(0).dtype == np.float32 and not np.any(soft.init(7))
    mlp = MLP(400, 10, hidden=300)
    p = mlp.init(3)
    assert p.dtype == np.float32 and p.shape == (mlp.dims,)
    np.testing.assert_array_equal(p, mlp.init(3))
    assert not np.array_equal(p, mlp.init(4))
    parts = mlp.unflatten(p)
    assert np.std(parts["W1"]) == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert np.std(parts["W2"]) == pytest.approx(np.sqrt(2 / 300), rel=0.05)
    assert not np.any(parts["b1"]) and not np.any(parts["b2"])


@pytest.mark.parametrize("name", MODELS)
def test_fedsgd_update_is_the_full_batch_gradient(name: str, rng: np.random.Generator) -> None:
    model = make_model(name, 5, 3)
    x, y = _separable(rng, 50)
    p = model.init(1)
    g, loss = local_update(model, p, x, y, steps=1, lr=0.3, batch_size=None, rng=np.random.default_rng(0))
    ref_loss, ref_grad = model.loss_grad(p, x, y)
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, ref_grad)
    assert loss == ref_loss
    # A batch at least the sample count is a full batch too.
    g2, _ = local_update(model, p, x, y, steps=1, lr=0.3, batch_size=50, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(g2, ref_grad)


def test_pseudo_gradient_is_parameter_change_over_lr(rng: np.random.Generator) -> None:
    model = SoftmaxRegression(5, 3)
    x, y = _separable(rng, 60)
    p = model.init(0)
    lr = 0.2
    g, _ = local_update(model, p, x, y, steps=4, lr=lr, batch_size=None, rng=np.random.default_rng(0))
    theta = p.astype(np.float64)
    for _ in range(4):
        theta = theta - lr * model.loss_grad(theta, x, y)[1]
    np.testing.assert_allclose(g, (p - theta) / lr, rtol=1e-5, atol=1e-6)
    assert not np.shares_memory(g, p) and not np.any(p)  # params untouched


@pytest.mark.parametrize("name", MODELS)
def test_local_steps_reduce_training_loss(name: str, rng: np.random.Generator) -> None:
    model = make_model(name, 5, 3)
    x, y = _separable(rng)
    p = model.init(2)
    lr = 0.1
    g, mean_loss = local_update(model, p, x, y, steps=20, lr=lr, batch_size=16, rng=np.random.default_rng(0))
    after = p - lr * g
    assert model.loss(after, x, y) < 0.5 * model.loss(p, x, y)
    assert model.accuracy(after, x, y) > 0.95
    assert 0 < mean_loss < model.loss(p, x, y)


def test_minibatches_are_deterministic_in_rng(rng: np.random.Generator) -> None:
    model = SoftmaxRegression(5, 3)
    x, y = _separable(rng, 100)
    p = model.init(0)
    a, _ = local_update(model, p, x, y, steps=5, lr=0.1, batch_size=8, rng=np.random.default_rng(5))
    b, _ = local_update(model, p, x, y, steps=5, lr=0.1, batch_size=8, rng=np.random.default_rng(5))
    c, _ = local_update(model, p, x, y, steps=5, lr=0.1, batch_size=8, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fedavg_softmax_learns_sklearn_digits() -> None:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1400], order[1400:]
    nodes = np.array_split(train, 10)
    model = make_model("softmax", 64, 10)
    theta = model.init(0)
    lr = 0.5
    for r in range(10):
        updates = np.stack(
            [
                local_update(
                    model, theta, x[idx], y[idx], steps=5, lr=lr, batch_size=32, rng=np.random.default_rng([r, i])
                )[0]
                for i, idx in enumerate(nodes)
            ]
        )
        theta = (theta - lr * aggregators.mean(updates).vector).astype(np.float32)
    assert model.accuracy(theta, x[test], y[test]) > 0.85


def test_make_model_errors() -> None:
    with pytest.raises(ParameterError, match="model: unknown name 'cnn'"):
        make_model("cnn", 4, 3)
    with pytest.raises(ParameterError, match="unknown option 'hidden'"):
        make_model("softmax", 4, 3, hidden=3)
    with pytest.raises(ParameterError, match="n_classes"):
        make_model("softmax", 4, 1)
    with pytest.raises(ParameterError, match="n_features"):
        make_model("mlp", 0, 3)
    with pytest.raises(ParameterError, match="hidden"):
        make_model("mlp", 4, 3, hidden=0)
    with pytest.raises(ParameterError, match="l2"):
        make_model("mlp", 4, 3, l2=-1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": 1.5}, "steps"),
        ({"lr": 0.0}, "lr"),
        ({"lr": -0.1}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": float("inf")}, "lr"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_local_update_rejects_bad_parameters(kwargs: dict[str, float], match: str, rng: np.random.Generator) -> None:
    model = SoftmaxRegression(5, 3)
    x, y = _separable(rng, 20)
    args = {"steps": 1, "lr": 0.1, "batch_size": None} | kwargs
    with pytest.raises(ParameterError, match=match):
        local_update(model, model.init(0), x, y, rng=rng, **args)  # type: ignore[arg-type]


def test_local_update_rejects_bad_data(rng: np.random.Generator) -> None:
    model = SoftmaxRegression(5, 3)
    x, y = _separable(rng, 20)
    kw = {"steps": 1, "lr": 0.1, "batch_size": None, "rng": rng}
    with pytest.raises(ParameterError, match="x: must hold at least one sample"):
        local_update(model, model.init(0), x[:0], y[:0], **kw)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="y"):
        local_update(model, model.init(0), x, y[:-1], **kw)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="params"):
        local_update(model, np.zeros(3, np.float32), x, y, **kw)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="x"):
        local_update(model, model.init(0), x[:, :4], y, **kw)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="y: labels"):
        local_update(model, model.init(0), x, y + 3, **kw)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="parts"):
        model.flatten({"W": np.zeros((3, 5))})
