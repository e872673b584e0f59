"""The personal view: one honest agent's own aggregate, with its own evidence as the root of trust.

The shared view (:mod:`zerotrustml.defence.pipeline`) is the result every agent can recompute from the DHT; it
must hold for everyone, so it can only use what everyone sees, and when Byzantine agents are half the network
or more no statistic of what everyone sees can tell the halves apart (DETECTION.md). An honest agent still has
something the attackers cannot forge: its own data. Its personal view keeps its own model and moves it with
the updates that its own evidence, and the evidence of agents it has come to trust, vouch for:

1. **Evidence, every round.** Every agent ``x`` scores every update ``g_u`` of the round on its own data at its
   own model: ``s_x(u) = <grad L_x, g_u> / (|grad L_x| * m_x)``, where ``m_x`` is the norm of ``x``'s own update
   (so scores compare across rounds, and no one else's update sets the scale: a block of huge updates would
   otherwise shrink every honest score below the bar), clipped to ``[-3, 3]``. An update trained on data like
   ``x``'s descends ``x``'s loss (``s > 0``); a negated or poisoned one climbs it; noise and data unlike ``x``'s
   score about zero. The scores are what an agent publishes as its votes (each one signed, like a committee vote).
2. **Memory per peer.** ``trust_x(u) <- decay * trust_x(u) + (1 - decay) * s_x(u)`` over the rounds ``u`` took
   part in. ``x`` *vouches* for ``u`` while ``trust_x(u) > min_trust``: its data has kept confirming ``u``.
   Anyone can recompute every agent's trust from its published scores; an agent reads its own from its own
   data.
3. **Reached from the root.** Agent ``v`` keeps its own update, every update it vouches for itself, and then,
   repeatedly, every update vouched for by at least ``min_vouchers`` agents it has already kept and
   *distrusted* by none of them (a negative trust far below the agent's typical trust in its peers,
   :func:`distrust_bar`). Trust flows only outward from ``v``'s own evidence: an
   attacker is kept only if agents ``v`` already keeps vouch for it, which their data does only for updates
   that help them, so colluders vouching for each other stay outside however many they are. Under label skew
   the chain runs through shared classes: ``v`` vouches for peers holding its classes, they vouch for peers
   holding theirs. The veto is what label skew needs: a sign-flipped update of classes ``v`` does not hold
   can look like mild help to ``v`` and to others like it, but the agents holding those classes see it climb
   their loss, and one of them kept is enough to keep it out.
4. **Aggregate.** The kept updates, each clipped to ``clip`` times the norm of the agent's own update (not the
   kept updates' median, which kept attackers could set), weighted by their capped example counts.

No majority is assumed anywhere, so the view holds at half the network Byzantine and beyond, as long as the
honest agents' evidence connects them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from zerotrustml import aggregators
from zerotrustml.exceptions import ParameterError
from zerotrustml.fl.models import Model

__all__ = [
    "MIN_TRUST",
    "MIN_VOUCHERS",
    "SCORE_CLIP",
    "VETO_Z",
    "PersonalView",
    "evidence_scores",
    "personal_aggregate",
    "predicted_vouching",
    "distrust_bar",
    "reach",
]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: Trust an agent's evidence must exceed before it vouches for a peer (positive evidence: noise scores ~0).
MIN_TRUST = 0.05
#: Kept agents that must vouch for an update the root does not vouch for itself.
MIN_VOUCHERS = 2
#: An agent distrusts a peer whose trust is negative and more than ``VETO_Z`` robust deviations below the agent's
#: median trust in its peers; one kept agent distrusting an update keeps it out.
VETO_Z = 5.0
#: Scores are clipped to [-SCORE_CLIP, SCORE_CLIP]: one round's evidence moves a peer's trust by a bounded amount.
SCORE_CLIP = 3.0


def evidence_scores(
    ids: Sequence[str],
    updates: npt.ArrayLike,
    *,
    model: Model,
    params: npt.ArrayLike,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    own_norm: float | None = None,
) -> dict[str, float]:
    """One agent's evidence on a round: ``s(u)`` for every update (step 1 of the module docs).

    ``own_norm`` is the norm of the agent's own update this round, the scale ``m_x``; ``None`` (an agent that sent
    none) falls back to the round's median update norm.
    """
    rows = np.asarray(updates, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] != len(ids):
        raise ParameterError(f"updates: expected one row per id ({len(ids)}), got shape {rows.shape}")
    if own_norm is not None and not (np.isfinite(own_norm) and own_norm >= 0):
        raise ParameterError(f"own_norm: must be finite and >= 0, got {own_norm}")
    if rows.shape[0] == 0:
        return {}
    grad = np.asarray(model.loss_grad(params, x, y)[1], dtype=np.float64)
    m = float(np.median(np.linalg.norm(rows, axis=1))) if own_norm is None else float(own_norm)
    scale = float(np.linalg.norm(grad)) * max(m, 1e-30)
    s = np.clip(rows @ grad / max(scale, 1e-300), -SCORE_CLIP, SCORE_CLIP)
    return {nid: float(v) for nid, v in zip(ids, s, strict=True)}


def predicted_vouching(rows: npt.ArrayLike, n_honest: int, min_trust: float = MIN_TRUST) -> npt.NDArray[np.bool_]:
    """What an omniscient attacker can predict of the personal view: which rows every honest agent would vouch for.

    The attacker sees the honest updates (the first ``n_honest`` rows) but not the agents' data, so it stands
    each agent's update in for the gradient of its loss (an update is a few steps down that gradient) and scores
    every row as :func:`evidence_scores` would: ``<row, h_i> / |h_i|^2`` (the agent's own update norm is its
    scale). A row
    is predicted kept by everyone when every honest agent's score exceeds ``min_trust`` (its trust then does
    too, as trust is an average of scores). Honest rows are always ``True`` (an agent keeps its own update).
    This is the white-box oracle the adaptive attackers search against when the personal view is on (in the
    simulator: the oracle replaces the similarity stage's, as the own models are what that view protects).
    """
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim != 2:
        raise ParameterError(f"rows: expected a 2-d array, got shape {x.shape}")
    if not 0 <= n_honest <= x.shape[0]:
        raise ParameterError(f"n_honest: must be in [0, {x.shape[0]}], got {n_honest}")
    out = np.ones(x.shape[0], dtype=bool)
    if n_honest == 0 or n_honest == x.shape[0]:
        return out
    honest = x[:n_honest]
    sq = np.maximum((honest * honest).sum(axis=1), 1e-300)
    scores = np.clip(x[n_honest:] @ honest.T / sq, -SCORE_CLIP, SCORE_CLIP)
    out[n_honest:] = (scores > min_trust).all(axis=1)
    return out


def reach(
    me: str,
    trust: Mapping[str, Mapping[str, float]],
    present: Sequence[str],
    min_trust: float = MIN_TRUST,
    min_vouchers: int = MIN_VOUCHERS,
    veto_z: float = VETO_Z,
) -> list[str]:
    """The updates agent ``me`` keeps: step 3 of the module docs, over the ids ``present`` this round.

    ``trust[x][u]`` is agent ``x``'s trust in ``u`` (missing: no evidence). Returned in ``present``'s order.
    """
    here = set(present)
    mine = trust.get(me, {})
    bars = {x: distrust_bar(tx, veto_z) for x, tx in trust.items()}

    def distrusts(x: str, t: float) -> bool:
        return t < bars.get(x, -np.inf)

    kept = {me} & here
    kept |= {u for u, t in mine.items() if u in here and t > min_trust}
    while True:
        vouchers: dict[str, int] = {}
        vetoed: set[str] = set()
        for x in kept:
            for u, t in trust.get(x, {}).items():
                if u not in here or u in kept:
                    continue
                if t > min_trust and x != me:
                    vouchers[u] = vouchers.get(u, 0) + 1
                elif distrusts(x, t):
                    vetoed.add(u)
        new = {u for u, k in vouchers.items() if k >= min_vouchers and u not in vetoed}
        if not new:
            break
        kept |= new
    # Agents kept in the same wave could not yet veto each other: one last pass over what was reached through
    # others (the root's own evidence stands), against the distrust of everyone kept.
    direct = {me} | {u for u, t in mine.items() if t > min_trust}
    distrusted = {u for x in kept for u, t in trust.get(x, {}).items() if distrusts(x, t) and u != x}
    kept -= distrusted - direct
    return [u for u in present if u in kept]


def distrust_bar(trust: Mapping[str, float], veto_z: float = VETO_Z) -> float:
    """The trust below which an agent distrusts a peer: ``min(0, median - veto_z * 1.4826 * MAD)`` of its trust.

    Relative to the agent's own spread, because the scale of its evidence changes as models converge (at an
    equilibrium under label skew, honest peers holding other classes all pull a little against it); absolute
    only in its sign. ``-inf`` (nobody distrusted) without evidence.
    """
    vals = np.asarray(list(trust.values()), dtype=np.float64)
    if vals.size == 0:
        return -np.inf
    med = float(np.median(vals))
    spread = max(1.4826 * float(np.median(np.abs(vals - med))), 1e-3)
    return min(0.0, med - veto_z * spread)


def personal_aggregate(rows: npt.ArrayLike, counts: Sequence[int], clip: float, reference: float | None = None) -> F32:
    """The kept rows, each clipped to ``clip`` times ``reference`` (the agent's own update norm; ``None``: the
    rows' median norm; ``clip`` 0: off), weighted by capped counts."""
    r = np.asarray(rows, dtype=np.float64)
    if r.shape[0] == 0:
        return np.zeros(r.shape[1] if r.ndim == 2 else 0, dtype=np.float32)
    if clip > 0:
        norms = np.linalg.norm(r, axis=1)
        bound = clip * (float(np.median(norms)) if reference is None else float(reference))
        r = r * np.where(norms > bound, bound / np.maximum(norms, 1e-300), 1.0)[:, None]
    w = aggregators.example_weights([int(c) for c in counts])
    out: F32 = ((w[:, None] * r).sum(axis=0) / max(float(w.sum()), 1e-300)).astype(np.float32)
    return out


@dataclass
class PersonalView:
    """An agent's memory of its evidence on each peer (step 2 of the module docs).

    Parameters
    ----------
    me : str
        The agent's node id.
    decay : float
        Weight of the past in each peer's trust, in [0, 1).
    """

    me: str
    decay: float = 0.7
    trust: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (0.0 <= self.decay < 1.0):
            raise ParameterError(f"decay: must be in [0, 1), got {self.decay}")

    def remember(self, scores: Mapping[str, float]) -> None:
        """Fold one round's scores into the trust in each peer scored (not in the agent itself)."""
        for nid, v in scores.items():
            if nid != self.me:
                self.trust[nid] = self.decay * self.trust.get(nid, 0.0) + (1.0 - self.decay) * float(v)

    def state(self) -> dict[str, Any]:
        """The agent's memory, JSON-able."""
        return {"me": self.me, "trust": dict(sorted(self.trust.items()))}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], **options: Any) -> PersonalView:
        """Rebuild from :meth:`state`; ``options`` as the constructor's."""
        if not isinstance(state, Mapping) or not isinstance(state.get("trust"), Mapping):
            raise ParameterError("state.trust: missing or not a mapping")
        return cls(str(state["me"]), trust={str(k): float(v) for k, v in state["trust"].items()}, **options)
