"""Own-data evidence by class: what one agent's held classes say about each update of a round."""

from __future__ import annotations

import numpy as np
import pytest

from zerotrustml.defence import owndata
from zerotrustml.fl.models import SoftmaxRegression, local_update


def _blobs(rng: np.random.Generator, classes: list[int], per_class: int, n_features: int = 8) -> tuple:
    centres = np.eye(4, n_features) * 3.0
    x = np.concatenate([centres[c] + rng.normal(size=(per_class, n_features)) for c in classes])
    y = np.repeat(np.asarray(classes), per_class)
    return x, y


def test_class_gradients_cover_the_classes_held_with_enough_samples() -> None:
    rng = np.random.default_rng(0)
    model = SoftmaxRegression(8, 4)
    theta = model.init(0)
    x, y = _blobs(rng, [0, 2], 10)
    x = np.concatenate([x, x[:3]])
    y = np.concatenate([y, [3, 3, 3]])  # three samples of class 3: fewer than MIN_CLASS_SAMPLES
    held, grads = owndata.class_gradients(model, theta, x, y)
    assert held == [0, 2] and grads.shape == (2, model.dims)
    mask = y == 2
    assert np.allclose(grads[1], model.loss_grad(theta, x[mask], y[mask])[1])
    none, empty = owndata.class_gradients(model, theta, x[:2], y[:2])
    assert none == [] and empty.shape == (0, model.dims)
    assert owndata.worst_class_scores(owndata.class_effects(np.ones((4, model.dims)), empty), 0.2).tolist() == [0.0] * 4


def test_a_flipped_update_on_a_class_the_verifier_holds_is_the_worst_and_skewed_honest_peers_are_not() -> None:
    """Peers each hold one class; one peer holding class 0 negates its update. A verifier holding classes 0 and 1
    scores that update far below every honest one, including the peers that hold classes it does not."""
    rng = np.random.default_rng(1)
    model = SoftmaxRegression(8, 4)
    theta = model.init(1)
    updates, flipped = [], 0
    for k, c in enumerate([0, 0, 1, 1, 2, 2, 3, 3, 2, 3]):
        x, y = _blobs(rng, [c], 30)
        g, _ = local_update(model, theta, x, y, steps=3, lr=0.1, batch_size=None, rng=rng)
        updates.append(-g if k == flipped else g)
    xv, yv = _blobs(rng, [0, 1], 20)
    scores = owndata.own_data_scores(model, theta, updates, xv, yv, mad_floor=0.2)
    assert int(np.argmin(scores)) == flipped
    assert scores[flipped] < -3.5 < float(np.min(np.delete(scores, flipped)))


def test_effects_are_first_order_loss_changes_per_class() -> None:
    rng = np.random.default_rng(2)
    model = SoftmaxRegression(8, 4)
    theta = model.init(2)
    x, y = _blobs(rng, [1], 40)
    held, grads = owndata.class_gradients(model, theta, x, y)
    g = rng.normal(size=model.dims).astype(np.float32)
    e = owndata.class_effects(g[None, :], grads)[0, 0]
    eps = 1e-4
    step = eps * g / 1.0
    change = model.loss(theta - step, x, y) - model.loss(theta, x, y)
    # e is the loss decrease per unit step along g, scaled by 1 / |grad|.
    assert -change / eps == pytest.approx(e * np.linalg.norm(grads[0]), rel=1e-2)
