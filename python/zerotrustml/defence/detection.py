"""Similarity detection: which updates stand apart from the round, without ground truth.

The detector sees only the round's updates (and, when there is one, the
previous round's aggregate); it never learns which nodes are Byzantine. It
uses generic robust statistics only, none keyed to one attack:

- direction: the cosine of each update to the coordinate median (and to the
  previous aggregate), against the tolerated label-skew band
  ``[LABEL_SKEW_COS_MIN, LABEL_SKEW_COS_MAX]``, and against the round's own
  spread of cosines (a robust z-score of a negative cosine): where honest
  updates agree closely, as without label skew, a direction against theirs
  stands out even inside the band; where label skew spreads them, the
  spread widens and the test stays quiet;
- magnitude: the L2 distance to the coordinate median, as a robust z-score
  (median and MAD over the round's distinct updates), and the norm, likewise;
- neighbourhood: the Krum score (sum of the ``m - f - 2`` smallest squared
  distances to the other distinct updates, DESIGN.md's definition with
  copies counted once), as a robust z-score;
- collusion: clusters of near-duplicate updates. Each honest node computes
  its update from its own data, so any two honest updates differ by at least
  the sampling noise of their data; updates that are near-identical, far
  closer than the typical nearest-neighbour distance of the round, were
  computed from the same data or copied. That holds for every attack whose
  colluders submit one shared update (ALIE, IPM, min-max, mimic, backdoor
  copies...), so it is a property of collusion, not one attack's signature.

:func:`similarity_evidence` computes the statistics; :func:`flag` turns them
into a verdict with the parameters of :class:`~zerotrustml.defence.config.DefenceConfig`.

What similarity cannot do: under label skew an honest node whose data is
mostly of a class few others hold points away from the round's median, and
from every statistic above it looks just like an attacker that sends a
direction of its own at a normal magnitude. The tolerated cosine band is
the defence's statement of how much of that to accept; inside it the
distance tests count only deviations of magnitude (see :func:`flag`). Such
updates are left to the committee's quality scores and to reputation.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from zerotrustml import aggregators
from zerotrustml.defence.config import DefenceConfig
from zerotrustml.exceptions import NonFiniteError, ParameterError, PreconditionError, ShapeError

__all__ = ["Evidence", "SimilarityVerdict", "similarity_evidence", "flag", "robust_z", "COMPONENTS"]

F64 = npt.NDArray[np.float64]
FloatArray = npt.NDArray[np.floating[Any]]

#: Scales a MAD to the standard deviation of a normal distribution.
MAD_TO_SIGMA = 1.4826

#: The tests behind a suspicion, in the order their reasons are listed.
COMPONENTS = ("direction", "reference", "distance", "krum", "sybil")


@dataclass(frozen=True)
class Evidence:
    """Per-node statistics of one round, computed without ground truth.

    All arrays have shape ``(n,)`` and dtype float64, in the row order of the
    updates.

    Attributes
    ----------
    f : int
        The assumed number of Byzantine updates.
    krum_k : int
        Neighbours summed in a Krum score: ``m - f - 2``, clipped to
        ``[1, m - 1]``, where ``m`` is the number of distinct rows (one per
        near-duplicate cluster; see :func:`similarity_evidence`). Detection
        only needs a neighbourhood, not Krum's ``n >= 2f + 3`` guarantee.
    norms : ndarray
        L2 norm of each update.
    norm_z : ndarray
        Robust z-score of ``norms``.
    cos_median : ndarray
        Cosine to the coordinate median of the distinct rows (0 when either
        vector is zero).
    dist_median : ndarray
        L2 distance to the coordinate median.
    dist_z : ndarray
        Robust z-score of ``dist_median`` (see :func:`robust_z`).
    cos_reference : ndarray or None
        Cosine to the reference (the previous aggregate), when one was given.
    reference_agreement : float or None
        Median of ``cos_reference``: how far the round as a whole agrees with
        the reference.
    krum_scores : ndarray
        Krum scores from the Gram-form squared distances among the distinct
        rows; a cluster's members share their first member's score.
    krum_z : ndarray
        Robust z-score of ``sqrt(krum_scores / krum_k)``, the RMS distance to
        the nearest neighbours: on that scale the MAD floor means the same
        relative spread as for ``dist_median``.
    nn_distance : ndarray
        Distance to the nearest other update.
    duplicate_scale : float
        The near-duplicate distance limit: ``SYBIL_DISTANCE_RATIO`` times the
        median of ``nn_distance``.
    clusters : tuple of tuple of int
        Near-duplicate clusters (connected components of the near-duplicate
        pairs, at least two members each), ordered by their first index.
    """

    f: int
    krum_k: int
    norms: F64
    norm_z: F64
    cos_median: F64
    dist_median: F64
    dist_z: F64
    cos_reference: F64 | None
    reference_agreement: float | None
    krum_scores: F64
    krum_z: F64
    nn_distance: F64
    duplicate_scale: float
    clusters: tuple[tuple[int, ...], ...]

    @property
    def n(self) -> int:
        """The number of updates."""
        return int(self.norms.shape[0])

    def cluster_of(self) -> npt.NDArray[np.int64]:
        """Index into :attr:`clusters` for each node, -1 for nodes in none."""
        out = np.full(self.n, -1, dtype=np.int64)
        for c, members in enumerate(self.clusters):
            out[list(members)] = c
        return out

    def to_json(self) -> dict[str, Any]:
        """The evidence as JSON-able lists and numbers, for a round record."""

        def arr(a: F64 | None) -> list[float] | None:
            return None if a is None else [float(v) for v in a]

        return {
            "f": self.f,
            "krum_k": self.krum_k,
            "norms": arr(self.norms),
            "norm_z": arr(self.norm_z),
            "cos_median": arr(self.cos_median),
            "dist_median": arr(self.dist_median),
            "dist_z": arr(self.dist_z),
            "cos_reference": arr(self.cos_reference),
            "reference_agreement": self.reference_agreement,
            "krum_scores": arr(self.krum_scores),
            "krum_z": arr(self.krum_z),
            "nn_distance": arr(self.nn_distance),
            "duplicate_scale": self.duplicate_scale,
            "clusters": [list(c) for c in self.clusters],
        }


@dataclass(frozen=True)
class SimilarityVerdict:
    """What similarity detection concludes about each node.

    Attributes
    ----------
    suspicion : ndarray of float64, shape (n,)
        In [0, 1]; the strongest single piece of evidence (see :func:`flag`).
    flagged : ndarray of bool, shape (n,)
        ``suspicion >= SUSPICION_THRESHOLD``.
    reasons : tuple of tuple of str
        Per node, one sentence per test that fired (empty when none did).
    components : dict of str to ndarray
        Per test of :data:`COMPONENTS`, its score per node in [0, 1].
    """

    suspicion: F64
    flagged: npt.NDArray[np.bool_]
    reasons: tuple[tuple[str, ...], ...]
    components: dict[str, F64] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The verdict as JSON-able lists, for a round record."""
        return {
            "suspicion": [float(v) for v in self.suspicion],
            "flagged": [bool(v) for v in self.flagged],
            "reasons": [list(r) for r in self.reasons],
            "components": {k: [float(v) for v in a] for k, a in self.components.items()},
        }


#: Robust z-scores are clipped to this magnitude.
Z_CLIP = 1e12


def robust_z(
    values: npt.ArrayLike, mad_floor: float, core: int | None = None, among: npt.ArrayLike | None = None
) -> F64:
    """Robust z-scores: ``(v - median) / max(1.4826 * MAD, mad_floor * |median|)``.

    The floor keeps a near-zero MAD (honest values that all agree, as
    distances do in high dimension) from turning small differences into
    large scores. When both terms are zero (more than half the values equal
    their median, and that median is zero), the scale is the smallest
    positive float, so values equal to the median score 0.

    ``among`` (indices) restricts the values that set location and scale;
    ``core`` then keeps the ``core`` smallest of those. Every value is scored.
    """
    v = np.asarray(values, dtype=np.float64)
    pool = v if among is None else v[np.asarray(among, dtype=np.int64)]
    # With ``core``, location and scale come from the ``core`` smallest values only: the n - f updates an
    # honest majority must contain. At f close to n/2 the plain median sits on the boundary between honest
    # and Byzantine values and the MAD spans both; the core stays inside the honest ones.
    ref = np.sort(pool)[:core] if core is not None and 0 < core < pool.size else pool
    med = float(np.median(ref))
    mad = float(np.median(np.abs(ref - med)))
    scale = max(MAD_TO_SIGMA * mad, mad_floor * abs(med), float(np.finfo(np.float64).tiny))
    with np.errstate(over="ignore"):
        # Past 1e12 deviations the size no longer matters; clipping keeps the scores finite (and JSON-able).
        z: F64 = np.clip((v - med) / scale, -Z_CLIP, Z_CLIP)
    return z


def _cosines(dots: F64, norms: F64, other_norm: float) -> F64:
    denom = norms * other_norm
    out = np.zeros_like(dots)
    np.divide(dots, denom, out=out, where=denom > 0)
    return np.clip(out, -1.0, 1.0)


def _check_inputs(updates: Any, reference: Any, f: Any) -> tuple[FloatArray, FloatArray | None, int]:
    if not isinstance(updates, np.ndarray):
        raise TypeError(f"updates: expected a 2-D numpy array, got {type(updates).__name__}")
    if updates.ndim != 2:
        raise ShapeError(f"updates: expected shape (n_updates, n_params), got shape {updates.shape}")
    if updates.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"updates: dtype must be float32 or float64, got {updates.dtype}")
    n, d = updates.shape
    if n < 3:
        raise PreconditionError(f"similarity detection needs n >= 3 updates to compare each with the rest (got {n})")
    if d == 0:
        raise ShapeError("updates: must have at least one parameter")
    if isinstance(f, bool) or not isinstance(f, numbers.Integral) or not 0 <= int(f) < n:
        raise ParameterError(f"f: must be an integer in [0, {n - 1}], got {f!r}")
    ref: FloatArray | None = None
    if reference is not None:
        ref = np.asarray(reference)
        if ref.shape != (d,):
            raise ShapeError(f"reference: expected shape ({d},) like one update, got {ref.shape}")
        if ref.dtype.kind != "f":
            raise TypeError(f"reference: dtype must be floating, got {ref.dtype}")
        ref = np.ascontiguousarray(ref, dtype=updates.dtype)
        bad = np.flatnonzero(~np.isfinite(ref))
        if bad.size:
            raise NonFiniteError(f"reference: non-finite value {ref[bad[0]]} at index {int(bad[0])}")
    return np.ascontiguousarray(updates), ref, int(f)


def _components(labels: npt.NDArray[np.int64]) -> list[list[int]]:
    """Groups of indices sharing a root after union-find (``labels[i]`` is i's parent)."""
    groups: dict[int, list[int]] = {}
    for i in range(labels.shape[0]):
        root = i
        while labels[root] != root:
            root = int(labels[root])
        groups.setdefault(root, []).append(i)
    return [g for g in groups.values() if len(g) >= 2]


def _distinct_rows(
    n: int, clusters: tuple[tuple[int, ...], ...]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Each row's representative (its cluster's first member, else itself) and the sorted representatives.

    With fewer than three distinct rows there is nothing to compare, and every row represents itself.
    """
    rep = np.arange(n, dtype=np.int64)
    for g in clusters:
        rep[list(g)] = g[0]
    among = np.unique(rep)
    if among.size < 3:
        return np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64)
    return rep, among


def _near_duplicates(
    x: FloatArray, dist2: F64, err: F64, norms: F64, config: DefenceConfig
) -> tuple[F64, float, tuple[tuple[int, ...], ...]]:
    """Nearest-neighbour distances, the duplicate limit, and the near-duplicate clusters."""
    n = x.shape[0]
    off = dist2.copy()
    np.fill_diagonal(off, np.inf)
    nn = np.sqrt(off.min(axis=1))
    # The scale of honest sampling noise is the typical nearest-neighbour
    # distance: copies have (almost) none, so they sit far below it. The
    # median keeps it honest while colluders are fewer than half.
    limit = config.sybil_distance_ratio * float(np.median(nn))
    limit2 = limit * limit
    # Candidates by the Gram form; a pair the Gram form leaves in doubt (its
    # error bound straddles the limit, as when every update shares a large
    # common component) is decided on the exact distance, so imprecision can
    # neither merge distinct honest updates nor split copies.
    iu, ju = np.nonzero(np.triu(off - err <= limit2, k=1))
    parent = np.arange(n, dtype=np.int64)
    sq = norms * norms

    def root(i: int) -> int:
        while parent[i] != i:
            i = int(parent[i])
        return i

    for i, j in zip(iu.tolist(), ju.tolist(), strict=True):
        ri, rj = root(i), root(j)
        if ri == rj:
            continue  # already linked through other copies: no need to measure this pair
        d2 = float(dist2[i, j])
        if d2 + float(err[i, j]) > limit2 or d2 <= float(err[i, j]):
            # float32 differences of near-equal values are exact (Sterbenz); float64 sum.
            diff = (x[i] - x[j]).astype(np.float64, copy=False)
            d2 = float(diff @ diff)
            if d2 > limit2 and d2 > 0.0:
                continue
        denom = 2.0 * norms[i] * norms[j]
        # Two equal updates are duplicates (cosine 1, even when both are zero); a zero and a non-zero one are not.
        cos = 1.0 if d2 == 0.0 else ((sq[i] + sq[j] - d2) / denom if denom > 0 else 0.0)
        if d2 == 0.0 or cos > config.sybil_cos_threshold:
            parent[max(ri, rj)] = min(ri, rj)
    clusters = tuple(tuple(g) for g in sorted(_components(parent), key=lambda g: g[0]))
    return nn, limit, clusters


def similarity_evidence(
    updates: FloatArray,
    reference: npt.ArrayLike | None,
    f: int,
    config: DefenceConfig,
    *,
    distances: tuple[F64, F64] | None = None,
) -> Evidence:
    """Per-node similarity statistics of one round.

    Copies count once: the near-duplicate clusters are found first, and the
    median, every robust z-score (location and scale) and the Krum
    neighbourhoods use one row per cluster, whose values its members share.
    With fewer than three distinct rows every row counts.

    Parameters
    ----------
    updates : ndarray, shape (n, d), float32 or float64
        The round's updates, one row per node; ``n >= 3``.
    reference : array_like, shape (d,), optional
        The previous round's aggregate; ``None`` in the first round.
    f : int
        The assumed number of Byzantine updates, ``0 <= f < n``; sets the
        Krum neighbourhood ``n - f - 2``.
    config : DefenceConfig
        Uses ``SIMILARITY_MAD_FLOOR``, ``SYBIL_COS_THRESHOLD`` and
        ``SYBIL_DISTANCE_RATIO``.
    distances : (D, E), optional
        The output of :func:`zerotrustml.aggregators.gram_distances` for
        these updates, when the caller has it already.

    Returns
    -------
    Evidence

    Raises
    ------
    PreconditionError
        ``n < 3``.
    ShapeError, NonFiniteError, ParameterError, TypeError
        Bad updates, reference or ``f``, naming the parameter.
    """
    x, ref, f = _check_inputs(updates, reference, f)
    n = x.shape[0]
    dist2, err = aggregators.gram_distances(x) if distances is None else distances
    if dist2.shape != (n, n) or err.shape != (n, n):
        raise ShapeError(f"distances: expected two ({n}, {n}) arrays, got {dist2.shape} and {err.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x).astype(np.float64))
    nn, limit, clusters = _near_duplicates(x, dist2, err, norms, config)

    # Copies are not independent evidence of what is typical: every statistic takes one row per cluster of
    # near-duplicates (its first), and its members share that row's values. Otherwise a block of copies
    # (a mimic and the node it copies, a colluding ALIE block at half the round) would be the median, the
    # tight core of every z-score and each other's Krum neighbours. With fewer than three distinct rows
    # there is nothing to compare, and every row counts.
    rep, among = _distinct_rows(n, clusters)
    m = int(among.size)
    med = np.asarray(aggregators.median(x[among]).vector, dtype=x.dtype)
    med_norm = float(np.linalg.norm(med.astype(np.float64)))
    cos_median = _cosines((x @ med).astype(np.float64), norms, med_norm)
    # Row by row rather than one (n, d) difference: the same speed, no n*d temporary.
    dist_median = np.empty(n, dtype=np.float64)
    for i in range(n):
        r = x[i] - med
        dist_median[i] = float(r @ r)
    dist_median = np.sqrt(dist_median)
    dist_z = robust_z(dist_median, config.similarity_mad_floor, among=among)

    cos_reference: F64 | None = None
    agreement: float | None = None
    if ref is not None:
        cos_reference = _cosines((x @ ref).astype(np.float64), norms, float(np.linalg.norm(ref.astype(np.float64))))
        agreement = float(np.median(cos_reference[among]))

    k = min(m - 1, max(1, m - f - 2))
    off = dist2[np.ix_(among, among)].copy()
    np.fill_diagonal(off, np.inf)
    distinct_scores = np.sum(np.partition(off, k - 1, axis=1)[:, :k], axis=1)
    krum_scores = distinct_scores[np.searchsorted(among, rep)]
    krum_z = robust_z(np.sqrt(krum_scores / k), config.similarity_mad_floor, core=m - f, among=among)

    return Evidence(
        f=f,
        krum_k=k,
        norms=norms,
        norm_z=robust_z(norms, config.similarity_mad_floor, among=among),
        cos_median=cos_median,
        dist_median=dist_median,
        dist_z=dist_z,
        cos_reference=cos_reference,
        reference_agreement=agreement,
        krum_scores=krum_scores,
        krum_z=krum_z,
        nn_distance=nn,
        duplicate_scale=limit,
        clusters=clusters,
    )


def _below_band(cos: F64, cos_min: float) -> F64:
    """0 inside the band; from 0.5 just below ``cos_min`` up to 1 at cosine -1."""
    out = np.zeros_like(cos)
    below = cos < cos_min
    span = cos_min + 1.0  # > 0 whenever something can be below cos_min >= -1
    if span > 0:
        out[below] = 0.5 + 0.5 * (cos_min - cos[below]) / span
    return out


def _above_z(z: F64, threshold: float) -> F64:
    """0 up to the threshold; from 0.5 just above it up to 1 at twice the threshold."""
    return np.where(z > threshold, np.minimum(1.0, 0.5 * z / threshold), 0.0)


def _opposed(cos: F64, z: F64, threshold: float) -> F64:
    """The relative direction score: a negative cosine whose robust z is below ``-threshold``.

    Only a direction that opposes the consensus counts: a label-skewed minority, however few its nodes,
    points elsewhere (cosine near zero), not against it.
    """
    return np.where(cos < 0.0, _above_z(-z, threshold), 0.0)


def _direction_reason(to: str, cos: float, z: float, below: bool, opposed: bool, config: DefenceConfig) -> str:
    """Why a direction test fired: below the band (``below``), far below the round's typical cosine (``opposed``)."""
    parts = []
    if below:
        parts.append(f"< LABEL_SKEW_COS_MIN {config.label_skew_cos_min}")
    if opposed:
        parts.append(f"robust z {z:.1f} < -SIMILARITY_Z_THRESHOLD {config.similarity_z_threshold}")
    return f"cosine to {to} {cos:.3f} " + " and ".join(parts)


def flag(evidence: Evidence, config: DefenceConfig) -> SimilarityVerdict:
    """Suspicion and a flag per node from the evidence of one round.

    Each test gives a score in [0, 1] that is 0 while the node passes, 0.5
    just past the test's threshold and grows with the margin:

    - ``direction``: the larger of two scores. Cosine to the median below
      ``LABEL_SKEW_COS_MIN``: ``0.5 + 0.5 (cos_min - cos) / (cos_min + 1)``
      (the absolute band). And the robust z of that cosine below
      ``-SIMILARITY_Z_THRESHOLD`` when the cosine is negative, scored like
      the distance test (the relative test): a direction that opposes the
      consensus while the round's updates agree with it. Location and scale
      come from the distinct rows (one per near-duplicate cluster) that
      every other test passes. Without label skew honest cosines agree and
      a contrary direction inside the band stands out; label skew spreads the honest cosines, which widens the scale of
      the z-score, and a skewed minority points elsewhere (cosine near 0)
      rather than against the consensus, so skew alone does not trip it;
    - ``reference``: the same two on the cosine to the previous aggregate, used
      only when the round's median cosine to it is at least
      ``REFERENCE_AGREEMENT_MIN`` (otherwise the reference is stale and
      would flag honest nodes);
    - ``distance``: robust z of the distance to the median above
      ``SIMILARITY_Z_THRESHOLD``: ``min(1, 0.5 z / z_threshold)``, unless
      the distance is explained by a tolerated direction: a node whose
      cosine is at least ``LABEL_SKEW_COS_MIN`` and whose norm is not an
      outlier (robust z of the norm at most the threshold) is far from the
      median only because it points elsewhere, which is what label skew
      does, so the band's tolerance covers its distance too;
    - ``krum``: the same on the robust z of the Krum score, with the same
      exception (a minority class's honest nodes have high Krum scores);
    - ``sybil``: membership in a near-duplicate cluster, however large,
      unless it holds every update of the round: 1 when the node's cosine to
      the median is above ``LABEL_SKEW_COS_MAX`` (copies hugging the
      consensus), 0.5 otherwise (copies elsewhere). Honest nodes train on
      their own data, so even a majority of near-identical updates is one
      update submitted many times (a mimic block with the node it copies
      can pass half the round). Only a round in which every update agrees
      (every gradient zero once a model has converged) is a consensus that
      no detector without ground truth can call collusion.

    Only large deviations count: the z-tests are one-sided, since being
    closer than typical to the median is not suspicious on its own (near
    copies are the sybil test's business).

    ``suspicion`` is the largest of the scores rather than their sum,
    because the tests are correlated (a far update also has a high Krum
    score) and a sum would count one deviation twice. A node is flagged
    when ``suspicion >= SUSPICION_THRESHOLD`` (0.5 by default: any one test
    failing).

    Parameters
    ----------
    evidence : Evidence
        From :func:`similarity_evidence`.
    config : DefenceConfig

    Returns
    -------
    SimilarityVerdict
    """
    n = evidence.n
    z_max = config.similarity_z_threshold
    cos = evidence.cos_median
    # Deviations the band tolerates: a direction inside it at an ordinary magnitude.
    # (Above the band counts too: a node that close in direction at an ordinary
    # magnitude cannot be far from the median; the upper bound matters only for copies.)
    tolerated = (cos >= config.label_skew_cos_min) & (evidence.norm_z <= z_max)
    comps: dict[str, F64] = {
        "direction": _below_band(cos, config.label_skew_cos_min),
        "reference": np.zeros(n),
        "distance": np.where(tolerated, 0.0, _above_z(evidence.dist_z, z_max)),
        "krum": np.where(tolerated, 0.0, _above_z(evidence.krum_z, z_max)),
        "sybil": np.zeros(n),
    }
    reference_used = (
        evidence.cos_reference is not None
        and evidence.reference_agreement is not None
        and evidence.reference_agreement >= config.reference_agreement_min
    )
    cos_ref = evidence.cos_reference if reference_used else None
    if cos_ref is not None:
        comps["reference"] = _below_band(cos_ref, config.label_skew_cos_min)
    cluster_of = evidence.cluster_of()
    for members in evidence.clusters:
        if len(members) == n:
            continue  # the whole round agrees: a consensus (a converged model), not collusion
        idx = np.asarray(members)
        comps["sybil"][idx] = np.where(evidence.cos_median[idx] > config.label_skew_cos_max, 1.0, 0.5)

    # The relative direction test: what a typical cosine is comes from the distinct rows every other test
    # passes. Rows already caught (noise, copies) would otherwise set it: forty percent random rows, all
    # at cosine ~0 in high dimension, shrink the spread until a label-skewed honest node looks opposed.
    _, distinct = _distinct_rows(n, evidence.clusters)
    caught = np.max(np.stack([comps[c] for c in COMPONENTS]), axis=0) >= config.suspicion_threshold
    clean = distinct[~caught[distinct]]
    if clean.size < 3:
        clean = distinct
    band = {"direction": comps["direction"] > 0, "reference": comps["reference"] > 0}
    cos_z = robust_z(cos, config.similarity_mad_floor, among=clean)
    opposed = {"direction": _opposed(cos, cos_z, z_max), "reference": np.zeros(n)}
    ref_z = np.zeros(n)
    if cos_ref is not None:
        ref_z = robust_z(cos_ref, config.similarity_mad_floor, among=clean)
        opposed["reference"] = _opposed(cos_ref, ref_z, z_max)
    for test in ("direction", "reference"):
        comps[test] = np.maximum(comps[test], opposed[test])

    suspicion = np.max(np.stack([comps[c] for c in COMPONENTS]), axis=0)
    flagged = suspicion >= config.suspicion_threshold

    reasons: list[tuple[str, ...]] = []
    for i in range(n):
        why: list[str] = []
        if comps["direction"][i] > 0:
            why.append(
                _direction_reason(
                    "the median", cos[i], cos_z[i], band["direction"][i], opposed["direction"][i] > 0, config
                )
            )
        if comps["reference"][i] > 0 and cos_ref is not None:
            why.append(
                _direction_reason(
                    "the previous aggregate",
                    cos_ref[i],
                    ref_z[i],
                    band["reference"][i],
                    opposed["reference"][i] > 0,
                    config,
                )
            )
        if comps["distance"][i] > 0:
            why.append(
                f"distance to the median {evidence.dist_median[i]:.4g} has robust z {evidence.dist_z[i]:.1f} > "
                f"SIMILARITY_Z_THRESHOLD {config.similarity_z_threshold} (norm z {evidence.norm_z[i]:.1f})"
            )
        if comps["krum"][i] > 0:
            why.append(
                f"Krum score {evidence.krum_scores[i]:.4g} has robust z {evidence.krum_z[i]:.1f} > "
                f"SIMILARITY_Z_THRESHOLD {config.similarity_z_threshold}"
            )
        if comps["sybil"][i] > 0:
            c = int(cluster_of[i])
            size = len(evidence.clusters[c])
            text = (
                f"near-duplicate of {size - 1} other update(s) (cluster {c}: pairwise cosine > "
                f"SYBIL_COS_THRESHOLD {config.sybil_cos_threshold}, distance <= {evidence.duplicate_scale:.4g})"
            )
            if evidence.cos_median[i] > config.label_skew_cos_max:
                text += (
                    f", cosine to the median {evidence.cos_median[i]:.3f} > LABEL_SKEW_COS_MAX "
                    f"{config.label_skew_cos_max}"
                )
            why.append(text)
        reasons.append(tuple(why))
    return SimilarityVerdict(suspicion=suspicion, flagged=flagged, reasons=tuple(reasons), components=comps)
