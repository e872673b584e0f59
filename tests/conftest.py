"""Shared fixtures for the suites (the naive reference rules are in references.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from zerotrustml import aggregators

SIMD_PATHS = ("scalar", "avx2", "avx512")

# Keep the whole suite fast on a busy 2-core machine; the examples are fixed
# (derandomize) so a run is reproducible. HYPOTHESIS_PROFILE=thorough searches
# longer, with fresh random examples.
_COMMON = {
    "deadline": None,
    # the SIMD fixture is function-scoped on purpose: every example runs on the path it set
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
settings.register_profile("zerotrustml", max_examples=50, derandomize=True, **_COMMON)
settings.register_profile("thorough", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "zerotrustml"))

# A suite started in the background by a non-interactive shell (`make test &`, `nohup ... &`) inherits SIGINT
# ignored, and so would every process it starts: the tests that stop a run, a cluster or a network with Ctrl-C
# (SIGINT) would see it ignored. Ignoring Ctrl-C is right for a background job, not for the processes under test.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator per test (results do not depend on test order)."""
    return np.random.default_rng(20240607)


@pytest.fixture(params=SIMD_PATHS)
def simd(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs the test once per SIMD path; yields the path actually taken."""
    original = aggregators.simd_path()
    taken = aggregators.set_simd_path(request.param)
    try:
        yield taken
    finally:
        aggregators.set_simd_path(original)
    assert aggregators.simd_path() == original
