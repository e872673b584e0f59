"""Small numpy models whose parameters are one flat float32 vector.

The simulator trains these on every node: a node's update is a flat float32
vector, so the models keep their parameters flat too and expose named views.

Parameter order (the flattening every update uses; it matches
``torch.nn.utils.parameters_to_vector`` on the equivalent ``torch.nn.Linear``
stack, so a torch model flattened the same way is interchangeable):

``softmax`` (:class:`SoftmaxRegression`), ``C`` classes, ``F`` features
    ``W`` of shape ``(C, F)`` row-major (row ``c`` holds class ``c``'s weights),
    then ``b`` of shape ``(C,)``. Logits are ``x @ W.T + b``.
``mlp`` (:class:`MLP`), ``H`` hidden units
    ``W1 (H, F)``, ``b1 (H,)``, ``W2 (C, H)``, ``b2 (C,)``, each row-major.
    Logits are ``relu(x @ W1.T + b1) @ W2.T + b2``.

The loss is the mean cross-entropy of the softmax of the logits plus
``l2 / 2`` times the squared norm of the weight matrices (biases are not
regularised). Arithmetic is float64 inside; parameters and gradients cross
the API as float32.

Training one node is :func:`local_update`, which returns the pseudo-gradient
``(theta_before - theta_after) / lr``; the server applies
``theta <- theta - server_lr * aggregate(updates)``.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from zerotrustml import plugins
from zerotrustml.exceptions import ParameterError, ShapeError

__all__ = [
    "MODELS",
    "TORCH_MODELS",
    "available_models",
    "Model",
    "SoftmaxRegression",
    "MLP",
    "make_model",
    "local_update",
    "DEFAULT_L2",
    "DEFAULT_HIDDEN",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Labels = npt.NDArray[np.integer[Any]]

MODELS = ("softmax", "mlp")

TORCH_MODELS = ("torch_mlp", "torch_cnn")
"""The :mod:`zerotrustml.fl.models_torch` models, built by :func:`make_model` when torch is installed."""

DEFAULT_L2 = 1e-4
"""Weight decay: small enough not to bias accuracy, large enough to keep a
separable problem's softmax weights from growing without bound."""

DEFAULT_HIDDEN = 64
"""Hidden width of :class:`MLP`: about 51k parameters on 784-d inputs, a size
at which every aggregation rule still runs in milliseconds."""


@runtime_checkable
class Model(Protocol):
    """What the simulator needs from a model: a flat float32 parameter vector and its loss.

    Attributes
    ----------
    name : str
        One of :data:`MODELS` for the built-in models.
    dims : int
        Number of parameters (the length of the flat vector).
    layout : tuple of (str, tuple of int)
        The named parts in flattening order, with their shapes.
    """

    name: str
    dims: int
    layout: tuple[tuple[str, tuple[int, ...]], ...]

    def init(self, seed: int) -> F32:
        """Initial parameters, deterministic in ``seed``."""
        ...

    def loss_grad(self, params: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[float, F32]:
        """The loss on ``(x, y)`` and its gradient with respect to ``params``."""
        ...

    def loss(self, params: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike) -> float:
        """The loss on ``(x, y)``."""
        ...

    def predict(self, params: npt.ArrayLike, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The predicted class of every row of ``x``."""
        ...

    def accuracy(self, params: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike) -> float:
        """The fraction of rows of ``x`` whose predicted class is ``y``."""
        ...

    def unflatten(self, params: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
        """Named views into ``params`` in flattening order."""
        ...

    def flatten(self, parts: Mapping[str, npt.ArrayLike]) -> F32:
        """The flat float32 vector of named parts (the inverse of ``unflatten``)."""
        ...


def _count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ParameterError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _nonnegative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ParameterError(f"{name}: must be a finite real number, got {value!r}")
    if float(value) < 0:
        raise ParameterError(f"{name}: must be >= 0, got {value!r}")
    return float(value)


def _log_softmax_grad(logits: F64, y: Labels) -> tuple[float, F64]:
    """Mean cross-entropy of ``softmax(logits)`` against ``y`` and its gradient in the logits."""
    n = logits.shape[0]
    # Subtracting the row maximum keeps exp() from overflowing; it cancels in softmax.
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.mean(np.log(s[:, 0]) - z[rows, y]))
    p = e / s
    p[rows, y] -= 1.0
    p /= n
    return loss, p


class _FlatModel:
    """Shared plumbing: input checks, flat layout, and the loss/accuracy wrappers."""

    name: str
    dims: int
    layout: tuple[tuple[str, tuple[int, ...]], ...]
    n_features: int
    n_classes: int
    l2: float

    def _set_layout(self, layout: tuple[tuple[str, tuple[int, ...]], ...]) -> None:
        self.layout = layout
        self.dims = int(sum(math.prod(shape) for _, shape in layout))

    def unflatten(self, params: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
        """Named parts of a flat vector, in flattening order.

        Returns views (writes go through to ``params``) when ``params`` is a
        contiguous 1-D array, as it is everywhere in this package.

        Raises
        ------
        ShapeError
            Unless ``params`` has shape ``(dims,)``.
        """
        if params.shape != (self.dims,):
            raise ShapeError(f"params: expected shape ({self.dims},) for {self.name}, got {params.shape}")
        out: dict[str, npt.NDArray[Any]] = {}
        offset = 0
        for key, shape in self.layout:
            size = math.prod(shape)
            out[key] = params[offset : offset + size].reshape(shape)
            offset += size
        return out

    def flatten(self, parts: Mapping[str, npt.ArrayLike]) -> F32:
        """Concatenate named parts into the flat float32 vector (the inverse of :meth:`unflatten`).

        Raises
        ------
        ShapeError
            A part is missing, unknown, or has the wrong shape.
        """
        expected = {key for key, _ in self.layout}
        if set(parts) != expected:
            raise ShapeError(f"parts: expected exactly {sorted(expected)} for {self.name}, got {sorted(parts)}")
        chunks = []
        for key, shape in self.layout:
            a = np.asarray(parts[key], dtype=np.float32)
            if a.shape != shape:
                raise ShapeError(f"parts[{key!r}]: expected shape {shape}, got {a.shape}")
            chunks.append(a.ravel())
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def _params(self, params: npt.ArrayLike) -> F64:
        p = np.asarray(params, dtype=np.float64)
        if p.shape != (self.dims,):
            raise ShapeError(f"params: expected shape ({self.dims},) for {self.name}, got {p.shape}")
        return p

    def _x(self, x: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        a = np.asarray(x)
        if a.dtype not in (np.float32, np.float64):
            a = a.astype(np.float64)
        if a.ndim != 2 or a.shape[1] != self.n_features:
            raise ShapeError(f"x: expected shape (n_samples, {self.n_features}), got {a.shape}")
        if a.shape[0] == 0:
            raise ParameterError("x: must hold at least one sample")
        return a

    def _y(self, y: npt.ArrayLike, n: int) -> Labels:
        a = np.asarray(y)
        if a.shape != (n,):
            raise ShapeError(f"y: expected shape ({n},) to match x, got {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise ParameterError(f"y: labels must be integers, got dtype {a.dtype}")
        if n and (int(a.min()) < 0 or int(a.max()) >= self.n_classes):
            raise ParameterError(f"y: labels must lie in [0, {self.n_classes - 1}]")
        return a

    def _logits(self, p: F64, x: npt.NDArray[np.floating[Any]]) -> F64:
        raise NotImplementedError

    def _loss_grad64(self, p: F64, x: npt.NDArray[np.floating[Any]], y: Labels) -> tuple[float, F64]:
        raise NotImplementedError

    def _weights_sq(self, p: F64) -> float:
        parts = self.unflatten(p)
        return float(sum(np.vdot(parts[k], parts[k]) for k, _ in self.layout if k.startswith("W")))

    def loss_grad(self, params: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[float, F32]:
        """Mean cross-entropy plus ``l2/2 * ||weights||^2`` on ``(x, y)``, and its gradient.

        Parameters
        ----------
        params : array of shape (dims,)
            Any float dtype; float64 parameters give a float64-accurate loss
            (useful for finite differences).
        x : array of shape (n_samples, n_features)
        y : int array of shape (n_samples,), labels in ``[0, n_classes)``

        Returns
        -------
        loss : float
        grad : float32 array of shape (dims,)
        """
        xa = self._x(x)
        loss, g = self._loss_grad64(self._params(params), xa, self._y(y, xa.shape[0]))
        return loss, g.astype(np.float32)

    def loss(self, params: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike) -> float:
        """Mean cross-entropy plus ``l2/2 * ||weights||^2`` on ``(x, y)``."""
        p = self._params(params)
        xa = self._x(x)
        ya = self._y(y, xa.shape[0])
        z = self._logits(p, xa)
        z = z - z.max(axis=1, keepdims=True)
        ce = float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(xa.shape[0]), ya]))
        return ce + 0.5 * self.l2 * self._weights_sq(p)

    def predict(self, params: npt.ArrayLike, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The class with the largest logit for every row of ``x`` (ties to the lowest class)."""
        labels: npt.NDArray[np.int64] = np.argmax(self._logits(self._params(params), self._x(x)), axis=1).astype(
            np.int64
        )
        return labels

    def accuracy(self, params: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike) -> float:
        """The fraction of rows of ``x`` classified as ``y``."""
        xa = self._x(x)
        ya = self._y(y, xa.shape[0])
        return float(np.mean(self.predict(params, xa) == ya))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_features={self.n_features}, n_classes={self.n_classes}, dims={self.dims})"


class SoftmaxRegression(_FlatModel):
    """Multinomial logistic regression: ``softmax(x @ W.T + b)``.

    Parameters
    ----------
    n_features : int
        Input dimension ``F`` (>= 1).
    n_classes : int
        Number of classes ``C`` (>= 2).
    l2 : float
        Weight decay on ``W`` (default :data:`DEFAULT_L2`).

    Notes
    -----
    Flat order: ``W (C, F)`` row-major, then ``b (C,)``. :meth:`init` returns
    zeros for every seed: the loss is convex, so a symmetric start costs
    nothing and makes runs comparable across seeds.
    """

    def __init__(self, n_features: int, n_classes: int, l2: float = DEFAULT_L2) -> None:
        self.name = "softmax"
        self.n_features = _count("n_features", n_features, 1)
        self.n_classes = _count("n_classes", n_classes, 2)
        self.l2 = _nonnegative("l2", l2)
        self._set_layout((("W", (self.n_classes, self.n_features)), ("b", (self.n_classes,))))

    def init(self, seed: int) -> F32:
        """Zeros (``seed`` is accepted for the protocol; the convex loss needs no symmetry breaking)."""
        _count("seed", seed, 0)
        return np.zeros(self.dims, dtype=np.float32)

    def _logits(self, p: F64, x: npt.NDArray[np.floating[Any]]) -> F64:
        parts = self.unflatten(p)
        out: F64 = x @ parts["W"].T + parts["b"]
        return out

    def _loss_grad64(self, p: F64, x: npt.NDArray[np.floating[Any]], y: Labels) -> tuple[float, F64]:
        parts = self.unflatten(p)
        w = parts["W"]
        loss, dz = _log_softmax_grad(x @ w.T + parts["b"], y)
        g = np.empty(self.dims, dtype=np.float64)
        gp = self.unflatten(g)
        np.matmul(dz.T, x, out=gp["W"])
        gp["W"] += self.l2 * w
        gp["b"][:] = dz.sum(axis=0)
        return loss + 0.5 * self.l2 * float(np.vdot(w, w)), g


class MLP(_FlatModel):
    """One ReLU hidden layer: ``softmax(relu(x @ W1.T + b1) @ W2.T + b2)``.

    Parameters
    ----------
    n_features : int
        Input dimension ``F`` (>= 1).
    n_classes : int
        Number of classes ``C`` (>= 2).
    hidden : int
        Hidden width ``H`` (default :data:`DEFAULT_HIDDEN`).
    l2 : float
        Weight decay on ``W1`` and ``W2`` (default :data:`DEFAULT_L2`).

    Notes
    -----
    Flat order: ``W1 (H, F)``, ``b1 (H,)``, ``W2 (C, H)``, ``b2 (C,)``. Shapes
    depend only on the constructor arguments; :meth:`init` draws the weights
    with He initialisation (normal, variance ``2 / fan_in``; He et al. 2015)
    and zero biases.
    """

    def __init__(self, n_features: int, n_classes: int, hidden: int = DEFAULT_HIDDEN, l2: float = DEFAULT_L2) -> None:
        self.name = "mlp"
        self.n_features = _count("n_features", n_features, 1)
        self.n_classes = _count("n_classes", n_classes, 2)
        self.hidden = _count("hidden", hidden, 1)
        self.l2 = _nonnegative("l2", l2)
        h, f, c = self.hidden, self.n_features, self.n_classes
        self._set_layout((("W1", (h, f)), ("b1", (h,)), ("W2", (c, h)), ("b2", (c,))))

    def init(self, seed: int) -> F32:
        """He-normal weights and zero biases, deterministic in ``seed``."""
        rng = np.random.default_rng(_count("seed", seed, 0))
        p = np.zeros(self.dims, dtype=np.float32)
        parts = self.unflatten(p)
        parts["W1"][:] = rng.standard_normal(parts["W1"].shape) * math.sqrt(2.0 / self.n_features)
        parts["W2"][:] = rng.standard_normal(parts["W2"].shape) * math.sqrt(2.0 / self.hidden)
        return p

    def _logits(self, p: F64, x: npt.NDArray[np.floating[Any]]) -> F64:
        parts = self.unflatten(p)
        h = np.maximum(x @ parts["W1"].T + parts["b1"], 0.0)
        out: F64 = h @ parts["W2"].T + parts["b2"]
        return out

    def _loss_grad64(self, p: F64, x: npt.NDArray[np.floating[Any]], y: Labels) -> tuple[float, F64]:
        parts = self.unflatten(p)
        w1, w2 = parts["W1"], parts["W2"]
        pre = x @ w1.T + parts["b1"]
        h = np.maximum(pre, 0.0)
        loss, dz = _log_softmax_grad(h @ w2.T + parts["b2"], y)
        g = np.empty(self.dims, dtype=np.float64)
        gp = self.unflatten(g)
        np.matmul(dz.T, h, out=gp["W2"])
        gp["W2"] += self.l2 * w2
        gp["b2"][:] = dz.sum(axis=0)
        dh = dz @ w2
        dh *= pre > 0
        np.matmul(dh.T, x, out=gp["W1"])
        gp["W1"] += self.l2 * w1
        gp["b1"][:] = dh.sum(axis=0)
        return loss + 0.5 * self.l2 * (float(np.vdot(w1, w1)) + float(np.vdot(w2, w2))), g


def available_models() -> tuple[str, ...]:
    """:data:`MODELS`, then :data:`TORCH_MODELS` when torch is installed (found, not imported: that takes seconds),
    then the registered plug-ins (:mod:`zerotrustml.plugins`)."""
    builtin = MODELS + TORCH_MODELS if importlib.util.find_spec("torch") is not None else MODELS
    return builtin + plugins.names("model")


def make_model(
    name: str, n_features: int, n_classes: int, *, image_shape: tuple[int, ...] | None = None, **kw: Any
) -> Model:
    """Build a model by name.

    Parameters
    ----------
    name : {"softmax", "mlp", "torch_mlp", "torch_cnn"}
        The torch names need torch (:func:`available_models`).
    n_features, n_classes : int
    image_shape : tuple of int or None
        The dataset's ``(C, H, W)``: required by ``"torch_cnn"``, ignored by the others.
    **kw
        ``l2`` for all; ``hidden`` for ``"mlp"`` and ``"torch_mlp"``.

    Raises
    ------
    ParameterError
        Unknown name or option, a bad value, a torch name without torch, or
        ``"torch_cnn"`` without ``image_shape``.
    """
    plugin = None if name in MODELS + TORCH_MODELS else plugins.get("model", name)
    if plugin is not None:
        model = plugin.fn(n_features, n_classes, image_shape=image_shape, **kw)
        missing = [a for a in ("dims", "init", "loss_grad", "loss", "predict") if not hasattr(model, a)]
        if missing:
            raise ParameterError(f"model plug-in {name!r}: what it built lacks {', '.join(missing)} (see Model)")
        return model  # type: ignore[no-any-return]
    if name in TORCH_MODELS:
        try:
            from zerotrustml.fl import models_torch
        except ImportError as e:
            raise ParameterError(f"model: {name!r} needs torch (pip install 'zerotrustml[torch]'): {e}") from e
        return models_torch.make_torch_model(name, n_features, n_classes, image_shape=image_shape, **kw)
    options = {"softmax": ("l2",), "mlp": ("hidden", "l2")}
    if name not in options:
        raise ParameterError(f"model: unknown name {name!r}; choose one of {', '.join(available_models())}")
    for key in kw:
        if key not in options[name]:
            raise ParameterError(f"model: unknown option {key!r} for {name!r}; known: {', '.join(options[name])}")
    if name == "softmax":
        return SoftmaxRegression(n_features, n_classes, **kw)
    return MLP(n_features, n_classes, **kw)


def local_update(
    model: Model,
    params: npt.ArrayLike,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    steps: int,
    lr: float,
    batch_size: int | None,
    rng: np.random.Generator,
) -> tuple[F32, float]:
    """Train one node for ``steps`` SGD steps and return its pseudo-gradient.

    Minibatches are drawn without replacement from a fresh ``rng``
    permutation of the local samples, reshuffled when fewer than
    ``batch_size`` remain (epochs; the short tail of an epoch is skipped);
    ``batch_size=None`` (or one at least the sample count) uses every sample
    in every step. ``steps=1, batch_size=None`` is FedSGD: the update is
    exactly ``model.loss_grad(params, x, y)[1]``.

    Parameters
    ----------
    model : Model
    params : array of shape (model.dims,)
        The global parameters the round starts from (not modified).
    x, y : local samples and integer labels
    steps : int
        Local SGD steps (>= 1).
    lr : float
        Local learning rate (finite, > 0).
    batch_size : int or None
        Minibatch size (>= 1), or None for full batches.
    rng : numpy.random.Generator
        The only source of randomness (minibatch order).

    Returns
    -------
    update : float32 array of shape (model.dims,)
        ``(theta_before - theta_after) / lr``, computed as the sum of the step
        gradients: equal in exact arithmetic, and free of the cancellation of
        subtracting two nearby parameter vectors.
    mean_loss : float
        Mean of the minibatch losses seen before each step.

    Raises
    ------
    ParameterError
        ``steps``, ``lr``, ``batch_size`` out of range, or empty ``x``.
    """
    steps = _count("steps", steps, 1)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(float(lr)) or float(lr) <= 0:
        raise ParameterError(f"lr: must be a finite number > 0, got {lr!r}")
    if batch_size is not None:
        batch_size = _count("batch_size", batch_size, 1)
    xa = np.asarray(x)
    if xa.ndim != 2:
        raise ShapeError(f"x: expected shape (n_samples, n_features), got {xa.shape}")
    n = xa.shape[0]
    if n == 0:
        raise ParameterError("x: must hold at least one sample")
    ya = np.asarray(y)
    if ya.shape != (n,):
        raise ShapeError(f"y: expected shape ({n},) to match x, got {ya.shape}")
    # One float64 copy up front instead of an implicit upcast inside every step's matmul.
    x64 = np.ascontiguousarray(xa, dtype=np.float64)
    theta = np.array(params, dtype=np.float64)
    if theta.shape != (model.dims,):
        raise ShapeError(f"params: expected shape ({model.dims},), got {theta.shape}")
    total = np.zeros(model.dims, dtype=np.float64)
    losses = 0.0
    full = batch_size is None or batch_size >= n
    order = np.empty(0, dtype=np.int64)
    cursor = n  # forces a shuffle before the first minibatch
    for _ in range(steps):
        if full:
            xb, yb = x64, ya
        else:
            assert batch_size is not None
            if cursor + batch_size > n:
                order = rng.permutation(n)
                cursor = 0
            idx = order[cursor : cursor + batch_size]
            cursor += batch_size
            xb, yb = x64[idx], ya[idx]
        loss, g = model.loss_grad(theta, xb, yb)
        losses += loss
        total += g
        theta -= float(lr) * g.astype(np.float64)
    return total.astype(np.float32), losses / steps
