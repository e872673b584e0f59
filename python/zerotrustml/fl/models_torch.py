"""PyTorch models behind the same flat-vector :class:`~zerotrustml.fl.models.Model` protocol.

Each model here wraps a small ``torch.nn.Module`` but keeps its parameters
outside it, as one flat float32 numpy vector, like the numpy models: the
simulator, the attacks, the proofs and the aggregation rules see a
``(dims,)`` array and nothing else, so they work unchanged.

Flattening
    The flat vector is ``torch.nn.utils.parameters_to_vector(module.parameters())``:
    the tensors of ``module.parameters()`` in that order, each flattened
    row-major (C order), as float32. ``torch.nn.utils.vector_to_parameters``
    loads such a vector back (:meth:`TorchModel.to_module`). ``layout`` lists
    the parts under their ``module.named_parameters()`` names, in the same
    order, so ``unflatten``/``flatten`` give named views as for the numpy models.

``torch_mlp`` (:class:`TorchMLP`), ``F`` features, ``H`` hidden units, ``C`` classes
    ``fc1.weight (H, F)``, ``fc1.bias (H,)``, ``fc2.weight (C, H)``, ``fc2.bias (C,)``.
    Logits are ``fc2(relu(fc1(x)))``. This is exactly the layout of the numpy
    :class:`~zerotrustml.fl.models.MLP` (``W1, b1, W2, b2``; ``torch.nn.Linear``
    stores its weight as ``(out, in)``), so a vector means the same network in
    both and the two give the same loss and gradient.
``torch_cnn`` (:class:`TorchCNN`), images ``(Cin, H, W)``, ``C`` classes
    ``conv1.weight (8, Cin, 3, 3)``, ``conv1.bias (8,)``,
    ``conv2.weight (16, 8, 3, 3)``, ``conv2.bias (16,)``,
    ``fc.weight (C, 16 * (H // 4) * (W // 4))``, ``fc.bias (C,)``.
    A row of ``x`` is one channel-first image flattened row-major (the
    datasets' ``image_shape`` order); the network is
    ``conv1`` (3x3, padding 1) -> ReLU -> 2x2 max-pool -> ``conv2`` (3x3,
    padding 1) -> ReLU -> 2x2 max-pool -> flatten -> ``fc``. Padding keeps 8x8
    digits at 8x8 -> 4x4 -> 2x2; 28x28 MNIST goes 28 -> 14 -> 7.

The loss is the numpy models' convention: mean cross-entropy of the softmax of
the logits plus ``l2 / 2`` times the squared norm of every ``*.weight`` tensor
(biases are not regularised); the gradient comes from autograd. As in the
numpy models, arithmetic is float64 inside (so float64 parameters give a
float64-accurate loss, for finite differences) and parameters and gradients
cross the API as float32. Everything runs on the CPU and takes parameters as
an argument instead of storing them in the module, so calls do not touch
shared state: the same input gives the same output, and calls from several
threads do not interfere. :meth:`TorchModel.init` seeds with
``torch.manual_seed(seed)`` inside ``torch.random.fork_rng``, so it is
deterministic in ``seed`` and leaves torch's global generator as it was;
weights are drawn by the modules' default (``reset_parameters``) initialisers.

Build these through :func:`zerotrustml.fl.models.make_model` with the names in
:data:`TORCH_MODELS`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as tf
from torch import nn
from torch.func import functional_call
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from zerotrustml.exceptions import ParameterError, ShapeError
from zerotrustml.fl.models import DEFAULT_HIDDEN, DEFAULT_L2, TORCH_MODELS, _count, _FlatModel, _nonnegative

__all__ = ["TORCH_MODELS", "TorchModel", "TorchMLP", "TorchCNN", "make_torch_model", "CNN_CHANNELS"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Labels = npt.NDArray[np.integer[Any]]

CNN_CHANNELS = (8, 16)
"""Output channels of :class:`TorchCNN`'s two convolutions."""


class _MLPNet(nn.Module):
    def __init__(self, n_features: int, hidden: int, n_classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_features, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(torch.relu(self.fc1(x)))
        return out


class _CNNNet(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], n_classes: int) -> None:
        super().__init__()
        c, h, w = image_shape
        c1, c2 = CNN_CHANNELS
        self.image_shape = image_shape
        self.conv1 = nn.Conv2d(c, c1, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=3, padding=1)
        self.fc = nn.Linear(c2 * (h // 4) * (w // 4), n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.reshape(x.shape[0], *self.image_shape)
        z = tf.max_pool2d(torch.relu(self.conv1(z)), 2)
        z = tf.max_pool2d(torch.relu(self.conv2(z)), 2)
        out: torch.Tensor = self.fc(z.flatten(1))
        return out


class TorchModel(_FlatModel):
    """A ``torch.nn.Module`` behind the flat-vector model protocol (see the module docstring).

    Subclasses set ``name``, ``n_features``, ``n_classes``, ``l2`` and call
    :meth:`_set_module` with a freshly built module; ``layout`` and ``dims``
    follow from its ``named_parameters()``.
    """

    module: nn.Module
    """A float32 template of the network: its structure and parameter order.
    Its own parameter values are never used by the loss or the predictions."""

    def _build(self) -> nn.Module:
        raise NotImplementedError

    def _set_module(self) -> None:
        self.module = self._build()
        self.module.requires_grad_(False)
        named = list(self.module.named_parameters())
        self._set_layout(tuple((key, tuple(int(s) for s in t.shape)) for key, t in named))
        self._weights = tuple(i for i, (key, _) in enumerate(named) if key.endswith(".weight"))

    def init(self, seed: int) -> F32:
        """The module's default initialisation under ``torch.manual_seed(seed)``, flattened.

        Deterministic in ``seed``; torch's global random state is restored afterwards.
        """
        seed = _count("seed", seed, 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self._build()
        with torch.no_grad():
            flat = parameters_to_vector(net.parameters())
        out: F32 = flat.numpy().astype(np.float32)
        return out

    def to_module(self, params: npt.ArrayLike, dtype: torch.dtype = torch.float32) -> nn.Module:
        """A fresh module holding ``params`` (loaded with ``vector_to_parameters``), in ``dtype``.

        ``module(torch.as_tensor(x))`` then gives the same logits as the model
        (up to the precision of ``dtype``).
        """
        p = self._params(params)
        net = self._build().to(dtype)
        with torch.no_grad():
            vector_to_parameters(torch.as_tensor(p, dtype=dtype), net.parameters())
        return net

    def _parts(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        offset = 0
        for key, shape in self.layout:
            size = math.prod(shape)
            out[key] = flat[offset : offset + size].view(shape)
            offset += size
        return out

    def _forward(self, flat: torch.Tensor, x: npt.NDArray[np.floating[Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of ``x`` and ``l2/2 * ||weights||^2`` under the flat parameters ``flat``."""
        parts = self._parts(flat)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
        logits: torch.Tensor = functional_call(self.module, parts, (xt,), strict=True)
        values = list(parts.values())
        reg = sum((values[i].square().sum() for i in self._weights), torch.zeros((), dtype=flat.dtype))
        return logits, 0.5 * self.l2 * reg

    def _logits(self, p: F64, x: npt.NDArray[np.floating[Any]]) -> F64:
        with torch.no_grad():
            logits, _ = self._forward(torch.from_numpy(p), x)
        out: F64 = logits.numpy()
        return out

    def _loss_grad64(self, p: F64, x: npt.NDArray[np.floating[Any]], y: Labels) -> tuple[float, F64]:
        flat = torch.tensor(p, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            logits, reg = self._forward(flat, x)
            loss = tf.cross_entropy(logits, torch.from_numpy(y.astype(np.int64))) + reg
            (grad,) = torch.autograd.grad(loss, flat)
        out: F64 = grad.numpy()
        return float(loss.item()), out

    def loss(self, params: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike) -> float:
        """Mean cross-entropy plus ``l2/2 * ||weights||^2`` on ``(x, y)``."""
        p = self._params(params)
        xa = self._x(x)
        ya = self._y(y, xa.shape[0])
        with torch.no_grad():
            logits, reg = self._forward(torch.from_numpy(p), xa)
            value = tf.cross_entropy(logits, torch.from_numpy(ya.astype(np.int64))) + reg
        return float(value.item())


class TorchMLP(TorchModel):
    """One ReLU hidden layer in torch: ``fc2(relu(fc1(x)))`` (the numpy :class:`~zerotrustml.fl.models.MLP`'s network).

    Parameters
    ----------
    n_features : int
        Input dimension ``F`` (>= 1).
    n_classes : int
        Number of classes ``C`` (>= 2).
    hidden : int
        Hidden width ``H`` (default :data:`~zerotrustml.fl.models.DEFAULT_HIDDEN`).
    l2 : float
        Weight decay on ``fc1.weight`` and ``fc2.weight`` (default :data:`~zerotrustml.fl.models.DEFAULT_L2`).

    Notes
    -----
    Flat order (``module.parameters()``): ``fc1.weight (H, F)``, ``fc1.bias (H,)``,
    ``fc2.weight (C, H)``, ``fc2.bias (C,)``, each row-major: the numpy MLP's
    ``W1, b1, W2, b2``. :meth:`init` draws torch's default ``nn.Linear``
    initialisation (uniform in ``±1/sqrt(fan_in)``), not the numpy MLP's He-normal.
    """

    def __init__(self, n_features: int, n_classes: int, hidden: int = DEFAULT_HIDDEN, l2: float = DEFAULT_L2) -> None:
        self.name = "torch_mlp"
        self.n_features = _count("n_features", n_features, 1)
        self.n_classes = _count("n_classes", n_classes, 2)
        self.hidden = _count("hidden", hidden, 1)
        self.l2 = _nonnegative("l2", l2)
        self._set_module()

    def _build(self) -> nn.Module:
        return _MLPNet(self.n_features, self.hidden, self.n_classes)


class TorchCNN(TorchModel):
    """A small CNN on channel-first images: two 3x3 conv + ReLU + 2x2 max-pool blocks, then a linear layer.

    Parameters
    ----------
    image_shape : tuple of int
        ``(C, H, W)`` (or ``(H, W)`` for one channel), with ``H, W >= 4``; a
        row of ``x`` holds ``C * H * W`` features, the image flattened row-major.
    n_classes : int
        Number of classes (>= 2).
    l2 : float
        Weight decay on ``conv1.weight``, ``conv2.weight`` and ``fc.weight``
        (default :data:`~zerotrustml.fl.models.DEFAULT_L2`).

    Notes
    -----
    Flat order (``module.parameters()``): ``conv1.weight (8, C, 3, 3)``,
    ``conv1.bias (8,)``, ``conv2.weight (16, 8, 3, 3)``, ``conv2.bias (16,)``,
    ``fc.weight (n_classes, 16 * (H // 4) * (W // 4))``, ``fc.bias (n_classes,)``,
    each row-major. 1,898 parameters on 8x8 digits, 9,098 on 28x28 MNIST.

    Raises
    ------
    ShapeError
        ``image_shape`` is not ``(C, H, W)``/``(H, W)`` of positive integers or
        an image is smaller than 4x4.
    """

    def __init__(self, image_shape: tuple[int, ...], n_classes: int, l2: float = DEFAULT_L2) -> None:
        self.name = "torch_cnn"
        self.image_shape = _chw(image_shape)
        self.n_features = math.prod(self.image_shape)
        self.n_classes = _count("n_classes", n_classes, 2)
        self.l2 = _nonnegative("l2", l2)
        self._set_module()

    def _build(self) -> nn.Module:
        return _CNNNet(self.image_shape, self.n_classes)

    def __repr__(self) -> str:
        return f"TorchCNN(image_shape={self.image_shape}, n_classes={self.n_classes}, dims={self.dims})"


def _chw(image_shape: object) -> tuple[int, int, int]:
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) not in (2, 3):
        raise ShapeError(f"image_shape: expected (C, H, W) or (H, W), got {image_shape!r}")
    dims = tuple(_count("image_shape", v, 1) for v in image_shape)
    c, h, w = dims if len(dims) == 3 else (1, *dims)
    if h < 4 or w < 4:
        raise ShapeError(f"image_shape: torch_cnn needs images of at least 4x4 (two 2x2 poolings), got {image_shape!r}")
    return c, h, w


def make_torch_model(
    name: str, n_features: int, n_classes: int, *, image_shape: tuple[int, ...] | None = None, **kw: Any
) -> TorchModel:
    """Build a torch model by name (what :func:`zerotrustml.fl.models.make_model` calls for :data:`TORCH_MODELS`).

    Parameters
    ----------
    name : {"torch_mlp", "torch_cnn"}
    n_features, n_classes : int
    image_shape : tuple of int or None
        The dataset's ``(C, H, W)``; required by ``"torch_cnn"`` (and must
        hold ``n_features`` values), ignored by ``"torch_mlp"``.
    **kw
        ``l2`` for both; ``hidden`` for ``"torch_mlp"``.

    Raises
    ------
    ParameterError
        Unknown name or option, a bad value, or ``"torch_cnn"`` without ``image_shape``.
    ShapeError
        ``image_shape`` does not hold ``n_features`` values.
    """
    options = {"torch_mlp": ("hidden", "l2"), "torch_cnn": ("l2",)}
    if name not in options:
        raise ParameterError(f"model: unknown torch model {name!r}; choose one of {', '.join(TORCH_MODELS)}")
    for key in kw:
        if key not in options[name]:
            raise ParameterError(f"model: unknown option {key!r} for {name!r}; known: {', '.join(options[name])}")
    if name == "torch_mlp":
        return TorchMLP(n_features, n_classes, **kw)
    if image_shape is None:
        raise ParameterError("model: 'torch_cnn' needs an image dataset, but the dataset has no image_shape")
    model = TorchCNN(image_shape, n_classes, **kw)
    if model.n_features != _count("n_features", n_features, 1):
        raise ShapeError(f"image_shape: {image_shape!r} holds {model.n_features} values, but x has {n_features}")
    return model
