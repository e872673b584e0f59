"""The shared submission rules, called from Python (the zome runs the same Rust)."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from zerotrustml.exceptions import ParameterError, SubmissionRejected, ValidationError
from zerotrustml.validation import NORM_RTOL, ModelSpec, Submission, check_unique, l2_norm, payload_hash, validate

SPEC = ModelSpec("mnist-softmax", dims=4, max_norm=10.0, max_round=9)


def good(payload: list[float] | None = None, **kw: object) -> Submission:
    sub = Submission.create("node-1", 3, "mnist-softmax", payload or [1.0, 2.0, 2.0, 0.0], example_count=7)
    return dataclasses.replace(sub, **kw) if kw else sub


def test_hash_is_sha256_of_little_endian_float32() -> None:
    v = np.array([1.0, -2.5, 3e-38, 0.0], dtype=np.float32)
    assert payload_hash(v) == hashlib.sha256(v.astype("<f4").tobytes()).digest()
    big = np.random.default_rng(0).normal(size=100_003).astype(np.float32)
    assert payload_hash(big) == hashlib.sha256(big.tobytes()).digest()


def test_norm_accumulates_in_float64() -> None:
    v = np.random.default_rng(1).normal(size=10_000).astype(np.float32)
    assert l2_norm(v) == pytest.approx(float(np.linalg.norm(v.astype(np.float64))), rel=1e-12)


def test_good_submission_passes() -> None:
    sub = good()
    validate(SPEC, sub)
    assert sub.norm == 3.0 and len(sub.payload_hash) == 32


def test_float32_norm_from_numpy_is_within_tolerance() -> None:
    v = np.random.default_rng(2).normal(size=50_000).astype(np.float32)
    spec = ModelSpec("m", dims=v.size, max_norm=1e4)
    sub = dataclasses.replace(
        Submission.create("n", 0, "m", v, 1),
        norm=float(np.linalg.norm(v)),  # float32 pairwise sum
    )
    validate(spec, sub)
    assert NORM_RTOL == 1e-4


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"model_id": "other"}, "model_id", "model_mismatch"),
        ({"round": 10}, "round", "round_out_of_range"),
        ({"values": np.array([1, 2, 2], dtype=np.float32)}, "dims", "dims_mismatch"),
        ({"values": np.zeros(5, dtype=np.float32)}, "values", "too_large"),
        ({"values": np.array([1, np.nan, 2, 0], dtype=np.float32)}, "values", "non_finite"),
        ({"values": np.array([1, np.inf, 2, 0], dtype=np.float32)}, "values", "non_finite"),
        ({"values": np.array([1, 2, 2, 0], dtype=np.float64)}, "values", "bad_dtype"),
        ({"values": np.ones((2, 2), dtype=np.float32)}, "values", "length_mismatch"),
        ({"norm": 3.5}, "norm", "norm_mismatch"),
        ({"norm": float("nan")}, "norm", "bad_norm"),
        ({"norm": -1.0}, "norm", "bad_norm"),
        ({"payload_hash": bytes(32)}, "payload_hash", "hash_mismatch"),
        ({"payload_hash": b"short"}, "payload_hash", "bad_hash"),
        ({"example_count": 0}, "example_count", "no_examples"),
        ({"example_count": -3}, "example_count", "bad_integer"),
        ({"round": -1}, "round", "bad_integer"),
        ({"round": 2**64}, "round", "bad_integer"),
        ({"example_count": 2**64}, "example_count", "bad_integer"),
        ({"example_count": 2**63}, "example_count", "example_count_out_of_range"),
        ({"node_id": ""}, "node_id", "bad_node"),
    ],
)
def test_each_rule_names_field_and_code(change: dict[str, object], field: str, code: str) -> None:
    with pytest.raises(SubmissionRejected) as info:
        validate(SPEC, good(**change))
    assert (info.value.field, info.value.code) == (field, code)
    assert field in str(info.value)
    assert isinstance(info.value, ValidationError) and isinstance(info.value, ValueError)


def test_norm_bound_uses_the_payload_not_the_claim() -> None:
    big = good([6.0, 8.0, 1.0, 0.0])
    with pytest.raises(SubmissionRejected) as info:
        validate(SPEC, big)
    assert info.value.code == "norm_bound"
    with pytest.raises(SubmissionRejected) as info:  # lying low about the norm does not help
        validate(SPEC, dataclasses.replace(big, norm=3.0))
    assert info.value.code in ("norm_bound", "norm_mismatch")


def test_duplicates_and_bad_specs() -> None:
    check_unique(4, 0)
    with pytest.raises(SubmissionRejected) as info:
        check_unique(4, 1)
    assert (info.value.field, info.value.code) == ("round", "duplicate")
    for spec in (ModelSpec("m", dims=0), ModelSpec("m", dims=3, max_norm=-1.0), ModelSpec("", dims=3)):
        with pytest.raises(SubmissionRejected) as info:
            spec.check()
        assert info.value.code == "bad_spec"


def test_spec_json_round_trip_and_payload_errors() -> None:
    assert ModelSpec.from_json(SPEC.to_json()) == SPEC and SPEC.max_payload_bytes == 16
    with pytest.raises(TypeError, match="float32"):
        payload_hash(np.zeros(3, dtype=np.float64))
    with pytest.raises(ParameterError, match="flat"):
        l2_norm(np.zeros((2, 2), dtype=np.float32))
