"""Own-data evidence: how each update of a round moves the loss of each class this agent holds.

An agent trusts its own data first. Under strong label skew, one number per update (the change of the agent's
whole held-out loss) cannot tell a poisoned update from an honest peer that holds other classes: both raise
the loss of the classes the agent holds a little. Split by class, the two differ:

- an honest peer *helps* the classes it holds and mildly hurts the others (it pushes their scores down on its
  own inputs), like most peers do for most classes;
- a sign-flipped update, or one trained on flipped labels, *hurts* the classes its data holds, far more than
  a typical peer hurts any class.

So for every class ``c`` with at least ``min_samples`` held-out samples, the agent computes the gradient of
its class-``c`` loss, ``grad_c``, and each update's first-order effect on it,
``e[j, c] = <g_j, grad_c> / |grad_c|`` (positive: the step ``theta - lr * g_j`` lowers the class's loss).
Each class column is standardised across the round's updates (robust z over one value per update), and an
update's score is its *worst* class: ``score[j] = min_c z[j, c]``. A class no peer helps more than it hurts
still has its typical effect at the median, so an honest update is a low outlier only when it harms a class
far more than the round's other updates do.

The evidence sees the round's payloads and this agent's own held-out data, nothing else; it never sees which
nodes are Byzantine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from zerotrustml.defence.detection import robust_z
from zerotrustml.fl.models import Model

__all__ = ["class_gradients", "class_effects", "worst_class_scores", "own_data_scores", "MIN_CLASS_SAMPLES"]

F64 = npt.NDArray[np.float64]

#: Classes with fewer held-out samples than this are not scored (their gradient is mostly noise).
MIN_CLASS_SAMPLES = 5


def class_gradients(
    model: Model, params: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike, min_samples: int = MIN_CLASS_SAMPLES
) -> tuple[list[int], F64]:
    """The classes with at least ``min_samples`` samples in ``(x, y)`` and the gradient of each one's loss.

    Returns the classes (ascending) and a float64 array of shape ``(len(classes), model.dims)``; both empty
    when no class has enough samples.
    """
    xa, ya = np.asarray(x), np.asarray(y)
    classes, counts = np.unique(ya, return_counts=True)
    held = [int(c) for c, k in zip(classes.tolist(), counts.tolist(), strict=True) if k >= min_samples]
    grads = np.zeros((len(held), model.dims), dtype=np.float64)
    for k, c in enumerate(held):
        mask = ya == c
        grads[k] = model.loss_grad(params, xa[mask], ya[mask])[1]
    return held, grads


def class_effects(updates: npt.ArrayLike, grads: npt.ArrayLike) -> F64:
    """``e[j, c] = <g_j, grad_c> / |grad_c|``: update ``j``'s first-order benefit to class ``c`` (shape ``(n, C)``)."""
    rows = np.asarray(updates, dtype=np.float64)
    g = np.asarray(grads, dtype=np.float64)
    if g.shape[0] == 0:
        return np.zeros((rows.shape[0], 0))
    norms = np.maximum(np.linalg.norm(g, axis=1), 1e-300)
    out: F64 = (rows @ g.T) / norms[None, :]
    return out


def worst_class_scores(effects: npt.ArrayLike, mad_floor: float) -> F64:
    """Each update's lowest robust z-score over the class columns of ``effects`` (0 when there is no class)."""
    e = np.asarray(effects, dtype=np.float64)
    if e.ndim != 2 or e.shape[1] == 0 or e.shape[0] < 3:
        return np.zeros(e.shape[0] if e.ndim == 2 else 0)
    z = np.stack([robust_z(e[:, c], mad_floor) for c in range(e.shape[1])], axis=1)
    out: F64 = z.min(axis=1)
    return out


def own_data_scores(
    model: Model,
    params: npt.ArrayLike,
    updates: Sequence[npt.ArrayLike],
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    mad_floor: float,
    min_samples: int = MIN_CLASS_SAMPLES,
) -> F64:
    """Every update's worst-class score on one agent's held-out data (the rule in the module docs)."""
    if len(updates) == 0:
        return np.zeros(0)
    _, grads = class_gradients(model, params, x, y, min_samples)
    return worst_class_scores(class_effects(np.stack([np.asarray(u) for u in updates]), grads), mad_floor)
