"""Type stub of the Rust extension. The documented API is zerotrustml.aggregators."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

_Updates = npt.NDArray[np.floating[Any]] | Sequence[npt.NDArray[np.floating[Any]]]
_Agg = tuple[npt.NDArray[np.floating[Any]], list[int], npt.NDArray[np.float64], int]
_Mixed = tuple[npt.NDArray[np.floating[Any]], list[list[int]]]

class ValidationError(ValueError): ...
class EmptyInputError(ValidationError): ...
class ShapeError(ValidationError): ...
class NonFiniteError(ValidationError): ...
class PreconditionError(ValidationError): ...
class ParameterError(ValidationError): ...

class SubmissionRejected(ValidationError):
    field: str
    code: str

NORM_RTOL: float

def mean(updates: _Updates, weights: list[float] | None = None) -> _Agg:
    """Weighted mean, f64 accumulation."""

def krum(updates: _Updates, f: int, variant: str = "standard") -> _Agg:
    """Krum; needs n >= 2f+3."""

def multi_krum(updates: _Updates, f: int, m: int, variant: str = "standard") -> _Agg:
    """Multi-Krum; needs n >= 2f+3 and 1 <= m <= n."""

def median(updates: _Updates) -> _Agg:
    """Coordinate-wise median."""

def trimmed_mean(updates: _Updates, f: int) -> _Agg:
    """Trimmed mean, f per side; needs n > 2f."""

def bulyan(updates: _Updates, f: int) -> _Agg:
    """Bulyan; needs n >= 4f+3."""

def geometric_median(
    updates: _Updates, weights: list[float] | None = None, nu: float = 1e-6, tol: float = 1e-7, max_iter: int = 100
) -> _Agg:
    """Smoothed Weiszfeld."""

def centered_clipping(updates: _Updates, tau: float, iters: int = 1, center: list[float] | None = None) -> _Agg:
    """Centered clipping."""

def nnm(updates: _Updates, f: int) -> _Mixed:
    """Nearest-neighbour mixing; needs n > f."""

def bucketing(updates: _Updates, s: int, seed: int = 0) -> _Mixed:
    """Seeded bucketing."""

def gram_distances(updates: _Updates) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Gram-form squared distances and their error bounds."""

def simd_path() -> str:
    """Active instruction set."""

def set_simd_path(name: str) -> str:
    """Force an instruction set."""

def payload_hash(values: npt.NDArray[np.float32]) -> bytes:
    """SHA-256 of the payload's little-endian float32 bytes."""

def l2_norm(values: npt.NDArray[np.float32]) -> float:
    """L2 norm accumulated in float64 in index order."""

def check_spec(spec: tuple[str, int, float, int, int | None]) -> None:
    """Raise SubmissionRejected (code bad_spec) if the model spec is unusable."""

def validate_submission(
    spec: tuple[str, int, float, int, int | None],
    values: npt.NDArray[np.float32],
    *,
    model_id: str,
    round: int,
    dims: int,
    norm: float,
    example_count: int,
    payload_hash: bytes,
) -> None:
    """Apply every submission rule; raise SubmissionRejected naming the field."""

def check_unique(round: int, already: int) -> None:
    """Raise SubmissionRejected (code duplicate) when already > 0."""

def check_proof(
    *, loss_before: float, loss_after: float, holdout_size: int, lr: float, nonce_len: int, signature_len: int
) -> None:
    """Raise SubmissionRejected (code bad_proof, field proof.<name>) for a malformed edge proof."""

def check_precondition(rule: str, n: int, f: int) -> None:
    """Raise PreconditionError when rule's precondition fails on n updates (krum, multi_krum: n >= 2f+3;
    trimmed_mean: n > 2f)."""

def beacon_message(committee_seed: bytes, round: int) -> bytes:
    """The bytes a round's committee beacon signs."""

def committee_round_seed(committee_seed: bytes, beacon: bytes) -> bytes:
    """The lottery seed of a round: committee_seed without a beacon, else SHA-256 of both (length-prefixed)."""

def is_committee_member(seed: bytes, round: int, key: bytes, rate: float) -> bool:
    """The DHT committee lottery: SHA-256(seed || round u64 BE || key)[:8] as u64 BE < rate * 2^64."""

DEFAULT_EXAMPLE_CAP: float

def capped_example_weights(counts: list[int], cap: float) -> list[float]:
    """min(c_i, cap * median(c)) per count; ParameterError when cap is not finite and >= 1."""
