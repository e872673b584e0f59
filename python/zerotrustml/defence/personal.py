"""The personal view: one honest agent's own aggregate, with its own evidence as the root of trust.

The shared view (:mod:`zerotrustml.defence.pipeline`) is the result every agent can recompute from the DHT; it
must hold for everyone, so it can only use what everyone sees, and when Byzantine agents are half the network
or more no statistic of what everyone sees can tell the halves apart (DETECTION.md). An honest agent still has
something the attackers cannot forge: its own data. Its personal view keeps its own model and moves it with
the updates that its own evidence, and the evidence of agents it has come to trust, vouch for:

1. **Evidence, every round.** Every agent ``x`` scores every update ``g_u`` of the round on its own data at its
   own model: ``s_x(u) = <grad L_x, g_u> / (|grad L_x| * m)``, where ``m`` is the round's median update norm (so
   scores compare across rounds), clipped to ``[-3, 3]``. An update trained on data like ``x``'s descends
   ``x``'s loss (``s > 0``); a negated or poisoned one climbs it; noise and data unlike ``x``'s score about
   zero. The scores are what an agent publishes as its votes (each one signed, like a committee vote).
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
4. **Aggregate.** The kept updates, each clipped to ``clip`` times their median norm, weighted by their
   capped example counts.

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
) -> dict[str, float]:
    """One agent's evidence on a round: ``s(u)`` for every update (step 1 of the module docs)."""
    rows = np.asarray(updates, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] != len(ids):
        raise ParameterError(f"updates: expected one row per id ({len(ids)}), got shape {rows.shape}")
    if rows.shape[0] == 0:
        return {}
    grad = np.asarray(model.loss_grad(params, x, y)[1], dtype=np.float64)
    scale = float(np.linalg.norm(grad)) * max(float(np.median(np.linalg.norm(rows, axis=1))), 1e-30)
    s = np.clip(rows @ grad / max(scale, 1e-300), -SCORE_CLIP, SCORE_CLIP)
    return {nid: float(v) for nid, v in zip(ids, s, strict=True)}


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


def personal_aggregate(rows: npt.ArrayLike, counts: Sequence[int], clip: float) -> F32:
    """The kept rows, each clipped to ``clip`` times their median norm (0: off), weighted by capped counts."""
    r = np.asarray(rows, dtype=np.float64)
    if r.shape[0] == 0:
        return np.zeros(r.shape[1] if r.ndim == 2 else 0, dtype=np.float32)
    if clip > 0:
        norms = np.linalg.norm(r, axis=1)
        bound = clip * float(np.median(norms))
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
