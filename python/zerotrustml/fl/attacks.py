"""Byzantine behaviour for the simulator: what a Byzantine node submits.

This is the simulator's side only: it knows which nodes are Byzantine and,
by default, what the honest nodes send this round (omniscient) and that the
Byzantine nodes act together (colluding). The defence never calls it.

Two entry points:

- :func:`poison_data` changes a Byzantine node's local data before it trains
  (the data attacks :data:`DATA_ATTACKS`); every other attack leaves the data
  alone.
- :func:`craft` turns the updates the Byzantine nodes would have sent if
  honest (``ctx.own``, trained on their possibly poisoned data) into the
  updates they submit.

Reference set and knowledge
---------------------------
The model-poisoning attacks (ALIE, IPM, min-max, min-sum, mimic, adaptive, adaptive_steady)
estimate the honest updates from a *reference set* ``R`` with coordinate-wise
mean ``mu`` and sample standard deviation ``sigma`` (``ddof=1``, as
``torch.std`` in the reference implementations; zero for one row):

- omniscient and colluding (``ctx.honest`` given, the default): ``R`` is the
  honest updates of the round; every Byzantine node sends the same vector.
- colluding, not omniscient (``ctx.honest is None``): ``R`` is ``ctx.own``, the
  Byzantine nodes' own honestly trained updates ("partial knowledge" in
  Shejwalkar & Houmansadr 2021).
- not colluding (``ctx.colluding=False``): node ``i`` neither coordinates nor
  eavesdrops; ``R`` is its own row ``own[i]`` alone. Then ``sigma = 0``, so ALIE
  and min-max/min-sum with the ``std`` perturbation send the node's own update,
  IPM sends ``-epsilon * own[i]``, mimic copies ``own[i]``, and the adaptive
  attack falls back to ALIE (its own update) unless the defence accepts more.

Every attack parameter has a named default in :data:`DEFAULT_PARAMS`;
``ctx.params`` (and the ``params`` of :func:`poison_data`) override them, and an
unknown key is an error so a typo cannot silently run the default.

Outputs are float32, finite and of shape ``(n_byzantine, d)``; with no
Byzantine node the result has shape ``(0, d)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from zerotrustml import aggregators, plugins
from zerotrustml.exceptions import NonFiniteError, ParameterError, ShapeError

__all__ = [
    "ATTACKS",
    "DATA_ATTACKS",
    "BACKDOOR_TARGET",
    "DEFAULT_PARAMS",
    "TRIGGER_SIZE",
    "IMAGE_TRIGGER_VALUE",
    "TABULAR_TRIGGER_VALUE",
    "AttackContext",
    "attack_names",
    "craft",
    "poison_data",
    "add_trigger",
    "alie_z",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Params = Mapping[str, float | str]
Oracle = Callable[[npt.NDArray[np.float32]], npt.ArrayLike]

ATTACKS = (
    "none",
    "gaussian",
    "sign_flip",
    "scaled_sign_flip",
    "zero",
    "random",
    "label_flip",
    "backdoor",
    "alie",
    "ipm",
    "min_max",
    "min_sum",
    "mimic",
    "adaptive",
    "adaptive_steady",
)
DATA_ATTACKS = ("label_flip", "backdoor")

BACKDOOR_TARGET = 0
"""Label the backdoor teaches triggered inputs to get (``params["target"]`` overrides)."""

TRIGGER_SIZE = 3
"""Side of the square trigger patch on images; number of trigger features on tabular data."""

IMAGE_TRIGGER_VALUE = 1.0
"""Patch value for images: the brightest pixel when pixels are scaled to [0, 1]."""

TABULAR_TRIGGER_VALUE = 3.0
"""Trigger value for tabular data: three standard deviations on standardised features,
a value clean rows rarely show in all trigger features at once."""

_NO_PARAMS: Params = MappingProxyType({})

_DEFAULTS: dict[str, dict[str, float | str | None]] = {
    "none": {},
    "zero": {},
    "sign_flip": {},
    # With 20% Byzantine nodes, -4x cancels the honest mean under plain averaging (0.8 - 0.2 * 4 = 0).
    "scaled_sign_flip": {"scale": 4.0},
    # sigma (absolute) None -> sigma_scale * RMS coordinate of the reference set: relative, so it means the
    # same at any model size; 10x makes 4 noisy nodes of 20 add noise to the mean as large as a whole honest
    # update (10 * sqrt(4) / 20 = 1).
    "gaussian": {"sigma": None, "sigma_scale": 10.0},
    # r (absolute) None -> r_scale * RMS coordinate of the reference set (same bound as gaussian's sigma).
    "random": {"r": None, "r_scale": 10.0},
    "label_flip": {},
    # boost None -> min(n_nodes / n_byzantine, boost_cap) (model replacement).
    "backdoor": {
        "fraction": 0.5,
        "target": BACKDOOR_TARGET,
        "trigger_value": None,
        "boost": None,
        "boost_cap": 10.0,
    },
    # z None -> alie_z(n_nodes, n_byzantine).
    "alie": {"z": None},
    "ipm": {"epsilon": 0.1},
    # The search reaches gammas in [0, 2 * gamma_init); the feasible gamma is O(1) for "std", so 50 leaves room.
    "min_max": {"perturbation": "std", "gamma_init": 50.0, "tol": 1e-5},
    "min_sum": {"perturbation": "std", "gamma_init": 50.0, "tol": 1e-5},
    # target_index None -> the paper's heuristic (see craft).
    "mimic": {"target_index": None},
    # gamma in units of ||sigma||; tau None -> median distance to the coordinate median (clipping proxy only).
    "adaptive": {"gamma_max": 1024.0, "gamma_min": 2.0**-10, "rtol": 1e-3, "tau": None, "jitter": 1.0},
    # The history-aware variant: one direction all run long, a margin inside what the defence accepts.
    "adaptive_steady": {
        "gamma_max": 1024.0,
        "gamma_min": 2.0**-10,
        "rtol": 1e-3,
        "tau": None,
        "jitter": 1.0,
        "perturbation": "unit_vec",
        "margin": 0.8,
    },
}
DEFAULT_PARAMS: Mapping[str, Mapping[str, float | str | None]] = MappingProxyType(
    {k: MappingProxyType(v) for k, v in _DEFAULTS.items()}
)
"""Every attack's parameters and defaults (``None``: computed, see :func:`craft`)."""

_PERTURBATIONS = ("std", "unit_vec", "sign")
_SELECTING = ("krum", "multi_krum", "bulyan")
_PROXIED = ("mean", "median", "trimmed_mean", "geometric_median", "centered_clipping")
# The paper's halving search needs about log2(gamma_init / tol) iterations; this only guards against a bad tol.
_MAX_SEARCH_ITERS = 200
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass
class AttackContext:
    """What the Byzantine nodes know when they craft their updates.

    Attributes
    ----------
    own : ndarray, shape (n_byzantine, d)
        The updates the Byzantine nodes would send if honest (trained on their
        own, possibly poisoned, data).
    honest : ndarray, shape (n_nodes - n_byzantine, d), or None
        This round's honest updates (the omniscient view); None when the
        attackers do not see them.
    n_nodes : int
        Nodes in the round, Byzantine included.
    n_byzantine : int
        Byzantine nodes in the round (``own`` has this many rows).
    rng : numpy.random.Generator
        The only source of randomness.
    aggregator : str
        The defence's rule (one of ``aggregators.RULES``), used by ``adaptive``
        when ``defence`` is None.
    f : int
        The ``f`` the defence's rule is run with.
    defence : callable or None
        Oracle for ``adaptive``: given all ``n_nodes`` updates as a float32
        ``(n_nodes, d)`` array, honest rows first, returns the boolean mask of
        rows the defence keeps.
    colluding : bool
        Whether the Byzantine nodes share information and send one vector.
    params : mapping
        Attack parameters overriding :data:`DEFAULT_PARAMS`.
    """

    own: npt.NDArray[np.floating[Any]]
    honest: npt.NDArray[np.floating[Any]] | None
    n_nodes: int
    n_byzantine: int
    rng: np.random.Generator
    aggregator: str = "mean"
    f: int = 0
    defence: Oracle | None = None
    colluding: bool = True
    params: Params = field(default_factory=dict)


# --------------------------------------------------------------------------- parameters


def attack_names() -> tuple[str, ...]:
    """The built-in attacks, then the registered plug-ins (:mod:`zerotrustml.plugins`)."""
    return ATTACKS + plugins.names("attack")


def _check_name(attack: object) -> str:
    if not isinstance(attack, str) or (attack not in ATTACKS and plugins.get("attack", attack) is None):
        raise ParameterError(f"attack: unknown name {attack!r}; choose one of {', '.join(attack_names())}")
    return attack


def _plugin_value(key: str, default: float | str, value: object) -> float | str:
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ParameterError(f"{key}: must be a string, got {value!r}")
        return value
    return _real(key, value)


def _real(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ParameterError(f"{key}: must be a finite real number, got {value!r}")
    return float(value)


def _positive(key: str, value: object) -> float:
    v = _real(key, value)
    if v <= 0:
        raise ParameterError(f"{key}: must be > 0, got {value!r}")
    return v


def _index(key: str, value: object) -> int:
    # Integral floats pass: command-line parameters arrive as floats ("target=2" -> 2.0).
    if not isinstance(value, bool):
        if isinstance(value, numbers.Integral) and int(value) >= 0:
            return int(value)
        if isinstance(value, numbers.Real):
            v = float(value)
            if math.isfinite(v) and v.is_integer() and v >= 0:
                return int(v)
    raise ParameterError(f"{key}: must be an integer >= 0, got {value!r}")


def _fraction(key: str, value: object) -> float:
    v = _real(key, value)
    if not 0 < v <= 1:
        raise ParameterError(f"{key}: must lie in (0, 1], got {value!r}")
    return v


def _nonnegative(key: str, value: object) -> float:
    v = _real(key, value)
    if v < 0:
        raise ParameterError(f"{key}: must be >= 0, got {value!r}")
    return v


def _open_unit(key: str, value: object) -> float:
    v = _real(key, value)
    if not 0 < v < 1:
        raise ParameterError(f"{key}: must lie in (0, 1), got {value!r}")
    return v


def _perturbation(key: str, value: object) -> str:
    if not isinstance(value, str) or value not in _PERTURBATIONS:
        raise ParameterError(f"{key}: must be one of {', '.join(_PERTURBATIONS)}, got {value!r}")
    return value


_CHECKS: dict[str, Callable[[str, object], object]] = {
    "scale": _positive,
    "sigma": _positive,
    "sigma_scale": _positive,
    "r": _positive,
    "r_scale": _positive,
    "fraction": _fraction,
    "target": _index,
    "trigger_value": _real,
    "boost": _positive,
    "boost_cap": _positive,
    "z": _nonnegative,
    "epsilon": _positive,
    "perturbation": _perturbation,
    "gamma_init": _positive,
    "tol": _positive,
    "target_index": _index,
    "gamma_max": _positive,
    "gamma_min": _positive,
    "rtol": _open_unit,
    "tau": _positive,
    "jitter": _nonnegative,
    "margin": _fraction,
}


def resolve_params(attack: str, params: Params) -> dict[str, Any]:
    """The attack's parameters: defaults overridden by ``params``, each checked."""
    if not isinstance(params, Mapping):
        raise ParameterError(f"params: expected a mapping, got {type(params).__name__}")
    plugin = None if attack in DEFAULT_PARAMS else plugins.get("attack", _check_name(attack))
    defaults = DEFAULT_PARAMS[attack] if plugin is None else dict(plugin.params)
    for key in params:
        if key not in defaults:
            known = ", ".join(defaults) or "none"
            raise ParameterError(f"params: unknown parameter {key!r} for attack {attack!r}; known: {known}")
    out: dict[str, Any] = dict(defaults)
    for key, value in params.items():
        if plugin is None:
            out[key] = _CHECKS[key](f"{attack}.{key}", value)
        else:
            out[key] = _plugin_value(f"{attack}.{key}", plugin.params[key], value)
    if attack in ("adaptive", "adaptive_steady") and out["gamma_min"] >= out["gamma_max"]:
        raise ParameterError(f"{attack}.gamma_min: must be < gamma_max ({out['gamma_max']}), got {out['gamma_min']}")
    return out


# --------------------------------------------------------------------------- statistics


def alie_z(n_nodes: int, n_byzantine: int) -> float:
    """ALIE's ``z_max`` (Baruch, Baruch & Goldberg, NeurIPS 2019, Algorithm 3).

    ``s = floor(n/2 + 1) - f`` is the number of honest nodes the attackers
    need on their side for a majority, and ``z = Phi^{-1}((n - s) / n)`` (Phi
    the standard normal CDF) is the largest shift, in standard deviations,
    for which at least ``s`` normally distributed honest values are still
    expected to lie farther from the mean than the Byzantine value, so
    majority- and distance-based rules keep preferring it. The probability is clamped to ``[1e-6, 1 - 1e-6]`` so that
    degenerate cases (``f = 0``, a Byzantine majority) still give a finite z.

    Examples
    --------
    ``n = 20, f = 4``: ``s = 7``, ``z = Phi^{-1}(0.65) ~ 0.3853``.
    """
    n = _index("n_nodes", n_nodes)
    f = _index("n_byzantine", n_byzantine)
    if n == 0:
        raise ParameterError("n_nodes: must be >= 1, got 0")
    s = math.floor(n / 2 + 1) - f
    p = min(max((n - s) / n, 1e-6), 1 - 1e-6)
    return NormalDist().inv_cdf(p)


def _mean_std(ref: F64) -> tuple[F64, F64]:
    mu: F64 = ref.mean(axis=0)
    if ref.shape[0] < 2:
        return mu, np.zeros_like(mu)
    sd: F64 = ref.std(axis=0, ddof=1)
    return mu, sd


def _rms(ref: F64) -> float:
    """Root-mean-square coordinate of the reference set; 1.0 when it is all zeros."""
    r = float(np.sqrt(np.mean(np.square(ref)))) if ref.size else 0.0
    return r if r > 0 and math.isfinite(r) else 1.0


def _sq_dists_to(ref: F64, m: F64) -> F64:
    diff = ref - m
    out: F64 = np.einsum("ij,ij->i", diff, diff)
    return out


def _pairwise_sq(ref: F64) -> F64:
    """Exact squared distances (one row at a time: O(n d) memory, no Gram-form cancellation)."""
    n = ref.shape[0]
    out = np.empty((n, n), dtype=np.float64)
    for i in range(n):
        out[i] = _sq_dists_to(ref, ref[i])
    return out


# --------------------------------------------------------------------------- the attacks


def _alie(ref: F64, z: float) -> F64:
    mu, sd = _mean_std(ref)
    out: F64 = mu - z * sd
    return out


def _direction(kind: str, mu: F64, sd: F64) -> F64:
    """Shejwalkar & Houmansadr's perturbation ``p`` (the paper's ``-deviation``)."""
    if kind == "std":
        return -sd
    if kind == "unit_vec":
        norm = float(np.linalg.norm(mu))
        return -mu / norm if norm > 0 else np.zeros_like(mu)
    out: F64 = -np.sign(mu)
    return out


def _min_max_sum(ref: F64, objective: str, kind: str, gamma_init: float, tol: float) -> tuple[F64, float]:
    """Shejwalkar & Houmansadr (NDSS 2021), AGR-agnostic min-max / min-sum.

    Returns ``(m, gamma)`` with ``m = mu + gamma * p`` for the largest gamma the
    paper's halving search finds satisfying the constraint.
    """
    mu, sd = _mean_std(ref)
    p = _direction(kind, mu, sd)
    if not np.any(p):
        return mu, 0.0
    pairwise = _pairwise_sq(ref)
    # Squared distances, as in the paper's code: the same feasible set as plain distances for min-max.
    threshold = float(pairwise.max()) if objective == "min_max" else float(pairwise.sum(axis=1).max())

    def feasible(m: F64) -> bool:
        d = _sq_dists_to(ref, m)
        return (float(d.max()) if objective == "min_max" else float(d.sum())) <= threshold

    # Paper: lambda = init; on success move up by half the last step, on failure down; halve the step.
    gamma, step, good = gamma_init, gamma_init, 0.0
    for _ in range(_MAX_SEARCH_ITERS):
        if abs(good - gamma) <= tol:
            break
        if feasible(mu + gamma * p):
            good = gamma
            gamma += step / 2
        else:
            gamma -= step / 2
        step /= 2
    # The float32 the node sends must satisfy the constraint too, not only its float64 original.
    for _ in range(64):
        if good == 0.0 or feasible((mu + good * p).astype(np.float32).astype(np.float64)):
            break
        good *= 1 - 1e-6
    else:
        good = 0.0
    out: F64 = mu + good * p
    return out, good


def _mimic(ref: F64, target_index: int | None) -> F64:
    """Karimireddy, He & Jaggi (ICLR 2022), the mimic attack's target choice.

    The paper's heuristic picks the honest node most extreme along ``z``, the
    top principal direction of the centred honest updates (estimated by power
    iteration over warm-up rounds). :func:`craft` is stateless, so ``z`` is the
    exact top eigenvector of this round's reference set, and the target is
    ``argmax_i |<x_i - mu, z>|`` (the absolute value removes the eigenvector's
    sign ambiguity; ties go to the lowest index). Pass ``target_index`` to pin
    a target across rounds as the paper does after warm-up.
    """
    n = ref.shape[0]
    if target_index is not None:
        if target_index >= n:
            raise ParameterError(f"mimic.target_index: must be < {n} (the reference rows), got {target_index}")
        chosen = target_index
    else:
        chosen = mimic_target(ref)
    row: F64 = ref[chosen]
    return row


def mimic_target(reference: npt.ArrayLike) -> int:
    """The row the mimic heuristic copies: most extreme along the top principal direction.

    A simulator calls this once (the paper fixes the target after warm-up) and
    passes the result as ``target_index`` in later rounds, so the bias it
    injects stays consistent across rounds.
    """
    ref = np.asarray(reference, dtype=np.float64)
    if ref.ndim != 2 or ref.shape[0] == 0:
        raise ParameterError(f"reference: expected a non-empty (n, d) array, got shape {ref.shape}")
    if ref.shape[0] == 1:
        return 0
    c = ref - ref.mean(axis=0)
    # The n x n Gram matrix has the same top eigenvector, seen from the rows: |<c_i, z>| is proportional to |u_i|.
    w, u = np.linalg.eigh(c @ c.T)
    return int(np.argmax(np.abs(u[:, -1]))) if w[-1] > 0 else 0


def _proxy_oracle(rule: str, f: int, n_honest: int, tau: float | None) -> Callable[[F32], Bools]:
    """Acceptance proxy for rules that do not select: a row is accepted when it lies no
    farther from the rule's aggregate than the farthest honest row (simulator-side knowledge)."""

    def oracle(x: F32) -> Bools:
        if rule == "mean":
            agg = aggregators.mean(x)
        elif rule == "median":
            agg = aggregators.median(x)
        elif rule == "trimmed_mean":
            agg = aggregators.trimmed_mean(x, f)
        elif rule == "geometric_median":
            agg = aggregators.geometric_median(x)
        else:
            # As zerotrustml.defence runs it in a first round: centred at the coordinate median, radius the
            # median distance to it, three iterations.
            center = aggregators.median(x).vector
            radius = tau if tau is not None else float(np.median(np.linalg.norm(x - center, axis=1)))
            agg = aggregators.centered_clipping(x, max(radius, 1e-12), iters=3, center=center)
        d = np.linalg.norm(x.astype(np.float64) - np.asarray(agg.vector, dtype=np.float64), axis=1)
        if n_honest == 0:
            return np.ones(x.shape[0], dtype=bool)
        limit = float(d[:n_honest].max())
        mask: Bools = d <= limit * (1 + 1e-9)
        return mask

    return oracle


def _default_oracle(rule: str, f: int, n_honest: int, tau: float | None) -> Callable[[F32], Bools]:
    if rule in _SELECTING:

        def oracle(x: F32) -> Bools:
            if rule == "krum":
                res = aggregators.krum(x, f)
            elif rule == "multi_krum":
                res = aggregators.multi_krum(x, f)
            else:
                res = aggregators.bulyan(x, f)
            mask = np.zeros(x.shape[0], dtype=bool)
            mask[list(res.selected)] = True
            return mask

        return oracle
    if rule in _PROXIED:
        return _proxy_oracle(rule, f, n_honest, tau)
    raise ParameterError(
        f"aggregator: unknown rule {rule!r} for the adaptive attack; choose one of {', '.join(_SELECTING + _PROXIED)}"
    )


def _adaptive(
    ref: F64,
    honest_rows: F64,
    n_byz: int,
    oracle: Oracle,
    z: float,
    vals: Mapping[str, Any],
) -> F64:
    """Strongest update the defence still accepts (see :func:`craft`); returns the ``(n_byz, d)`` rows.

    The search runs twice: with every Byzantine row on one point (copies support each other against
    distance-based rules) and with each row carrying one honest row's deviation from the mean, scaled
    by ``jitter`` (rows that spread like honest ones pass a near-duplicate check). The more damaging
    accepted candidate wins; damage is the distance of the rows' mean from the honest mean.
    """
    n_honest = honest_rows.shape[0]
    n = n_honest + n_byz
    mu, sd = _mean_std(ref)
    steady = "margin" in vals  # the history-aware variant: one direction, a margin inside the accepted region
    base = honest_rows.astype(np.float32)
    deviations = honest_rows[np.arange(n_byz) % max(n_honest, 1)] - mu if n_honest else np.zeros((n_byz, mu.size))
    jitter = float(vals["jitter"])
    best_rows = np.tile(mu - z * sd, (n_byz, 1))
    best_damage = -1.0
    if steady:  # nothing accepted: lie low (the honest mean, spread like honest rows), never get flagged
        best_rows = mu[None, :] + float(vals["jitter"]) * deviations
    for spread in [np.zeros_like(deviations)] + ([jitter * deviations] if jitter > 0 else []):

        def rows_for(m: F64, spread: F64 = spread) -> F64:
            out: F64 = m[None, :] + spread
            return out

        def accepted(m: F64, rows_for: Callable[[F64], F64] = rows_for) -> bool:
            rows = rows_for(m)
            if not float(np.abs(rows).max(initial=0.0)) <= _F32_MAX:
                return False  # not even sendable
            x = np.empty((n, mu.shape[0]), dtype=np.float32)
            x[:n_honest] = base
            x[n_honest:] = rows.astype(np.float32)
            mask = np.asarray(oracle(x))
            if mask.shape != (n,):
                raise ShapeError(f"defence: the oracle must return a mask of shape ({n},), got {mask.shape}")
            mask = mask.astype(bool)
            kept_byz = int(mask[n_honest:].sum())
            return kept_byz >= max(1, min(n_byz, int(mask.sum())))

        def damage(m: F64, rows_for: Callable[[F64], F64] = rows_for) -> float:
            return float(np.linalg.norm(rows_for(m).mean(axis=0) - mu))

        alie = mu - z * sd
        if not steady and accepted(alie) and damage(alie) > best_damage:
            best_rows, best_damage = rows_for(alie), damage(alie)
        # Step sizes are in units of the honest spread so one gamma range fits every model size.
        scale = float(np.linalg.norm(sd)) or float(np.linalg.norm(mu)) or 1.0
        gamma_max, gamma_min, rtol = float(vals["gamma_max"]), float(vals["gamma_min"]), float(vals["rtol"])
        for kind in (vals["perturbation"],) if steady else _PERTURBATIONS:
            p = _direction(kind, mu, sd)
            norm = float(np.linalg.norm(p))
            if norm == 0:
                continue
            p = p * (scale / norm)
            gamma = gamma_max
            while gamma >= gamma_min and not accepted(mu + gamma * p):
                gamma /= 2
            if gamma < gamma_min:
                continue
            lo, hi = gamma, 2 * gamma
            if gamma < gamma_max:
                while hi - lo > rtol * lo:
                    mid = (lo + hi) / 2
                    if accepted(mu + mid * p):
                        lo = mid
                    else:
                        hi = mid
            candidate = mu + (float(vals["margin"]) * lo if steady else lo) * p
            if steady and not accepted(candidate):
                continue  # the region is not a line segment here; a steady attacker does not gamble
            if damage(candidate) > best_damage:
                best_rows, best_damage = rows_for(candidate), damage(candidate)
    return best_rows


# --------------------------------------------------------------------------- public API


def _as_rows(name: str, a: object) -> F64:
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise ShapeError(f"{name}: expected a 2-D array (rows, d), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name}: expected a float array, got dtype {arr.dtype}")
    out = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise NonFiniteError(f"{name}: contains NaN or Inf")
    return out


def _from_plugin(name: str, raw: object, shape: tuple[int, int]) -> F32:
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ParameterError(f"attack plug-in {name!r}: did not return an array of numbers ({e})") from None
    if arr.shape != shape:
        raise ShapeError(f"attack plug-in {name!r}: must return shape (n_byzantine, d) = {shape}, got {arr.shape}")
    out = arr.astype(np.float32)
    if not (np.all(np.isfinite(arr)) and np.all(np.isfinite(out))):
        raise NonFiniteError(f"attack plug-in {name!r}: returned non-finite values (or values beyond float32)")
    return out


def craft(attack: str, ctx: AttackContext) -> F32:
    """The updates the Byzantine nodes submit.

    Notation: ``own`` the Byzantine nodes' honest updates, ``R`` the reference
    set with mean ``mu`` and standard deviation ``sigma`` (see the module
    docstring), ``n = ctx.n_nodes``, ``f_b = ctx.n_byzantine``. Parameters are
    ``ctx.params`` keys; defaults in :data:`DEFAULT_PARAMS`.

    none
        ``own`` unchanged.
    zero
        Zeros.
    sign_flip
        ``-own``.
    scaled_sign_flip
        ``-scale * own`` (``scale=4``).
    gaussian
        Pure noise, independent per node and coordinate: ``N(0, sigma^2)`` with
        ``sigma = sigma_scale * rms(R)`` (``sigma_scale=10``; ``rms`` the
        root-mean-square coordinate of ``R``, 1.0 if that is zero) so the noise
        norm is ten times a typical update's at any model size, as in the
        large-variance Gaussian attacks of Blanchard et al. 2017 and Xie et
        al. 2018; ``sigma`` sets it absolutely.
    random
        Pure noise, uniform on ``[-r, r]`` per coordinate, ``r = r_scale * rms(R)``
        (``r_scale=10``): bounded, so no coordinate exceeds ``r`` (unlike
        gaussian), with standard deviation ``r / sqrt(3)``; ``r`` sets it
        absolutely.
    label_flip
        A data attack (:func:`poison_data`); ``own`` is submitted unchanged.
    backdoor
        A data attack; ``own`` is boosted: ``boost * own`` with default
        ``boost = min(n / f_b, boost_cap)`` (``boost_cap=10``; non-colluding
        nodes each act alone: ``min(n, boost_cap)``). ``n / f_b`` is the model
        replacement factor of Bagdasaryan et al. (AISTATS 2020): under plain
        averaging the Byzantine share of the aggregate is then the backdoored
        update itself. The cap keeps norms within what a norm bound might
        plausibly let through.
    alie
        "A Little Is Enough" (Baruch et al., NeurIPS 2019): ``mu - z * sigma``
        with ``z = alie_z(n, f_b)`` (the paper's ``z_max``); ``z`` overrides.
    ipm
        Inner-product manipulation (Xie, Koyejo & Gupta, UAI 2020):
        ``-epsilon * mu`` (``epsilon=0.1``; 100 is the literature's other value).
    min_max, min_sum
        Shejwalkar & Houmansadr (NDSS 2021), AGR-agnostic: ``m = mu + gamma p``
        with ``p = -sigma`` (``perturbation="std"``), ``-mu/||mu||``
        (``"unit_vec"``) or ``-sign(mu)`` (``"sign"``); gamma is the paper's
        halving search from ``gamma_init=50`` until consecutive candidates
        differ by at most ``tol=1e-5`` (the paper's code threshold), keeping the
        largest gamma with ``max_i ||m - x_i|| <= max_{i,j} ||x_i - x_j||``
        (min-max) or ``sum_i ||m - x_i||^2 <= max_i sum_j ||x_i - x_j||^2``
        (min-sum), over ``x_i`` in ``R``.
    mimic
        Karimireddy, He & Jaggi (ICLR 2022): every Byzantine node copies one
        row of ``R``: the one most extreme along the top principal direction
        of the centred ``R`` (the paper's heuristic), or ``target_index``.
    adaptive
        Knows the defence: ``ctx.defence``, or else an oracle built from
        ``ctx.aggregator`` and ``ctx.f`` (for krum, multi_krum, bulyan the rows
        the rule selects; for mean, median, trimmed_mean, geometric_median
        and centered_clipping the rows no farther from the rule's aggregate
        than the farthest honest row; centered clipping is run as
        ``zerotrustml.defence`` runs it in a first round: centred at the
        coordinate median, three iterations, radius ``tau``, default the
        median distance to that centre). A candidate ``m`` is *accepted* when
        the oracle keeps all Byzantine rows, or, if it keeps fewer rows than
        there are Byzantine nodes (krum keeps one), when every row it keeps is
        Byzantine. For each direction ``p`` in (``-sigma``, ``-mu``,
        ``-sign(mu)``), rescaled to norm ``||sigma||``, gamma halves from
        ``gamma_max=1024`` until ``mu + gamma p`` is accepted (giving up below
        ``gamma_min=2**-10``), then bisects up to relative precision
        ``rtol=1e-3``. ALIE's update is a candidate too, so the result moves at
        least as far from ``mu`` as an accepted ALIE. The accepted candidate
        farthest from ``mu`` wins; if none is accepted, ALIE's update is sent.
        Without the honest view, the honest rows the oracle sees are drawn
        from ``N(mu, sigma^2)`` of ``R`` with ``ctx.rng``.
    adaptive_steady
        The history-aware variant of ``adaptive``, against defences that
        remember (reputation, probation, tests across rounds): the same
        search, along one direction the whole run (``perturbation``, default
        ``unit_vec``: against the honest mean), sent at ``margin=0.8`` times
        the largest accepted gamma, and only if that is accepted too. It is
        never flagged, so it builds no record, and its deviation is small and
        the same in kind every round. When nothing is accepted it lies low:
        the honest mean with the honest spread, not ALIE.

    Returns
    -------
    ndarray of float32, shape (n_byzantine, d)

    Raises
    ------
    ParameterError
        Unknown attack, unknown or bad parameter, inconsistent counts, or an
        update that overflows float32 (lower the boost or scale).
    ShapeError, NonFiniteError, TypeError
        Bad ``own`` / ``honest``.
    """
    name = _check_name(attack)
    vals = resolve_params(name, ctx.params)
    own = _as_rows("own", ctx.own)
    n_byz = _index("n_byzantine", ctx.n_byzantine)
    n_nodes = _index("n_nodes", ctx.n_nodes)
    f = _index("f", ctx.f)
    if n_nodes < n_byz or n_nodes == 0:
        raise ParameterError(f"n_nodes: must be >= max(1, n_byzantine={n_byz}), got {n_nodes}")
    if own.shape[0] != n_byz:
        raise ShapeError(f"own: expected {n_byz} rows (n_byzantine), got {own.shape[0]}")
    d = own.shape[1]
    honest: F64 | None = None
    if ctx.honest is not None:
        honest = _as_rows("honest", ctx.honest)
        if honest.shape != (n_nodes - n_byz, d):
            raise ShapeError(f"honest: expected shape ({n_nodes - n_byz}, {d}), got {honest.shape}")
    if not isinstance(ctx.rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, got {type(ctx.rng).__name__}")
    if n_byz == 0:
        return np.zeros((0, d), dtype=np.float32)
    plugin = None if name in ATTACKS else plugins.get("attack", name)
    if plugin is not None:
        return _from_plugin(name, plugin.fn(ctx, vals), (n_byz, d))

    colluding = bool(ctx.colluding)
    group = honest if colluding and honest is not None and honest.shape[0] > 0 else own
    refs = [group] * n_byz if colluding else [own[i : i + 1] for i in range(n_byz)]

    out: F64
    if name in ("none", "label_flip"):
        out = own
    elif name == "zero":
        out = np.zeros_like(own)
    elif name == "sign_flip":
        out = -own
    elif name == "scaled_sign_flip":
        out = -vals["scale"] * own
    elif name == "backdoor":
        boost = vals["boost"]
        if boost is None:
            boost = min(n_nodes / n_byz if colluding else float(n_nodes), vals["boost_cap"])
        out = boost * own
    elif name in ("gaussian", "random"):
        absolute, relative = ("sigma", "sigma_scale") if name == "gaussian" else ("r", "r_scale")
        if vals[absolute] is not None:
            scales = np.full((n_byz, 1), vals[absolute])
        else:
            scales = np.array([[vals[relative] * _rms(r)] for r in refs])
        if name == "gaussian":
            out = ctx.rng.standard_normal((n_byz, d)) * scales
        else:
            out = ctx.rng.uniform(-1.0, 1.0, (n_byz, d)) * scales
    else:
        # One vector per reference set: computed once when colluding, per node otherwise.
        z = vals["z"] if name == "alie" and vals["z"] is not None else alie_z(n_nodes, n_byz)
        oracle: Oracle | None = None
        if name in ("adaptive", "adaptive_steady"):
            oracle = ctx.defence
            if oracle is None:
                oracle = _default_oracle(str(ctx.aggregator), f, n_nodes - n_byz, vals["tau"])
        rows = []
        for ref in refs[:1] if colluding else refs:
            if name == "alie":
                rows.append(_alie(ref, z))
            elif name == "ipm":
                rows.append(-vals["epsilon"] * ref.mean(axis=0))
            elif name in ("min_max", "min_sum"):
                rows.append(_min_max_sum(ref, name, vals["perturbation"], vals["gamma_init"], vals["tol"])[0])
            elif name == "mimic":
                rows.append(_mimic(ref, vals["target_index"]))
            else:
                assert oracle is not None
                if ref is honest:
                    honest_rows = ref
                else:
                    mu, sd = _mean_std(ref)
                    honest_rows = mu + sd * ctx.rng.standard_normal((n_nodes - n_byz, d))
                block = _adaptive(ref, honest_rows, n_byz, oracle, z, vals)
                rows.extend(block if colluding else block[:1])
        if name in ("adaptive", "adaptive_steady") and colluding:
            out = np.stack(rows)
        else:
            out = np.tile(rows[0], (n_byz, 1)) if colluding else np.stack(rows)

    if out.size and not float(np.abs(out).max()) <= _F32_MAX:
        raise ParameterError(f"{name}: the crafted update overflows float32; lower the attack's boost/scale/sigma")
    return out.astype(np.float32)


def _image_shape(image_shape: object, n_features: int) -> tuple[int, ...] | None:
    if image_shape is None:
        return None
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) not in (2, 3):
        raise ShapeError(f"image_shape: expected (H, W) or (C, H, W), got {image_shape!r}")
    dims = tuple(_index("image_shape", v) for v in image_shape)
    if math.prod(dims) != n_features:
        raise ShapeError(f"image_shape: {dims} holds {math.prod(dims)} values, but x has {n_features} features")
    return dims


def add_trigger(
    x: npt.ArrayLike, image_shape: tuple[int, ...] | None, *, value: float | None = None
) -> npt.NDArray[Any]:
    """Stamp the backdoor trigger on every row of ``x`` (a copy; ``x`` is not modified).

    Images (``image_shape`` is ``(H, W)`` or ``(C, H, W)``, the channel-first,
    row-major order rows of ``x`` are flattened in, as in CIFAR-10's python
    batches and torch): the bottom-right ``TRIGGER_SIZE x TRIGGER_SIZE`` patch
    of every channel is set to ``value`` (default
    :data:`IMAGE_TRIGGER_VALUE`, the brightest pixel on [0, 1] data), as in the
    BadNets-style patch triggers of Gu et al. 2017. Tabular data
    (``image_shape=None``): the last ``TRIGGER_SIZE`` features are set to
    ``value`` (default :data:`TABULAR_TRIGGER_VALUE`). Everything else is
    unchanged.

    Parameters
    ----------
    x : array of shape (n_samples, n_features) or (n_features,)
    image_shape : tuple of int or None
    value : float, optional

    Raises
    ------
    ShapeError
        ``image_shape`` does not match the feature count.
    """
    a = np.array(x, copy=True)
    if a.ndim not in (1, 2):
        raise ShapeError(f"x: expected shape (n_samples, n_features) or (n_features,), got {a.shape}")
    n_features = a.shape[-1]
    shape = _image_shape(image_shape, n_features)
    v = _real("value", value) if value is not None else None
    if shape is None:
        a[..., max(0, n_features - TRIGGER_SIZE) :] = TABULAR_TRIGGER_VALUE if v is None else v
        return a
    c, h, w = (1, *shape) if len(shape) == 2 else shape
    view = a.reshape(*a.shape[:-1], c, h, w)
    view[..., max(0, h - TRIGGER_SIZE) :, max(0, w - TRIGGER_SIZE) :] = IMAGE_TRIGGER_VALUE if v is None else v
    return a


def poison_data(
    attack: str,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    n_classes: int,
    image_shape: tuple[int, ...] | None,
    rng: np.random.Generator,
    params: Params = _NO_PARAMS,
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """A Byzantine node's local data after its data attack (copies; the inputs are not modified).

    label_flip
        Every label ``y -> n_classes - 1 - y``, the all-to-all flip of Fang
        et al. (USENIX Security 2020) and ByzFL.
    backdoor
        ``round(fraction * n)`` samples (at least one; ``fraction=0.5``), chosen
        with ``rng`` without replacement, get :func:`add_trigger` (``value`` =
        ``params["trigger_value"]``) and label ``target`` (``BACKDOOR_TARGET``).
        The rest stay clean so the model keeps its main-task accuracy
        (Bagdasaryan et al. 2020).
    any other attack
        ``(x, y)`` unchanged.

    Raises
    ------
    ParameterError
        Unknown attack or parameter, ``target`` or labels outside
        ``[0, n_classes)``.
    ShapeError
        ``x``/``y``/``image_shape`` disagree.
    """
    name = _check_name(attack)
    vals = resolve_params(name, params)
    xa = np.asarray(x)
    ya = np.asarray(y)
    if name not in DATA_ATTACKS:
        return xa, ya
    classes = _index("n_classes", n_classes)
    if classes < 2:
        raise ParameterError(f"n_classes: must be >= 2, got {n_classes}")
    if xa.ndim != 2 or ya.shape != (xa.shape[0],):
        raise ShapeError(f"x, y: expected shapes (n, n_features) and (n,), got {xa.shape} and {ya.shape}")
    if not np.issubdtype(ya.dtype, np.integer):
        raise ParameterError(f"y: labels must be integers, got dtype {ya.dtype}")
    if ya.size and (int(ya.min()) < 0 or int(ya.max()) >= classes):
        raise ParameterError(f"y: labels must lie in [0, {classes - 1}]")
    if name == "label_flip":
        return xa.copy(), (classes - 1 - ya).astype(ya.dtype)
    target = int(vals["target"])
    if target >= classes:
        raise ParameterError(f"backdoor.target: must be < n_classes ({classes}), got {target}")
    _image_shape(image_shape, xa.shape[1])
    xo, yo = xa.copy(), ya.copy()
    n = xa.shape[0]
    if n == 0:
        return xo, yo
    k = min(n, max(1, round(float(vals["fraction"]) * n)))
    idx = np.sort(rng.choice(n, size=k, replace=False))
    xo[idx] = add_trigger(xa[idx], image_shape, value=vals["trigger_value"])
    yo[idx] = target
    return xo, yo
