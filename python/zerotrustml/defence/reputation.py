"""Reputation across rounds (RB-BFT): penalties, recovery, exclusion, aggregation weights.

Each node carries a reputation ``r`` in [0, 1], starting at
``REPUTATION_INITIAL``. After each round, for every node that took part:

- flagged: ``r <- r * (1 - REPUTATION_PENALTY)``; its good streak resets to 0
  and the node is marked as recovering;
- not flagged: ``r <- min(1, r + REPUTATION_REWARD)``; its good streak grows
  by one. When a recovering node's streak reaches
  ``BEHAVIOR_RECOVERY_THRESHOLD``, it also gets
  ``r <- min(1, r + BEHAVIOR_RECOVERY_BONUS)``, and stops recovering.

So the bonus is paid once per penalty episode: it triggers again only after
another flagged round followed by another ``BEHAVIOR_RECOVERY_THRESHOLD``
consecutive good rounds. A node that was never flagged never gets it (it
has nothing to recover from). The penalty is multiplicative, so repeated
offences compound while the score stays non-negative; the reward is
additive, so even a node at 0 can earn its way back.

**Probation: a run of flags is repaid before reputation grows, and a long run
is never repaid.** The ``m``-th flagged round of a run (consecutive flagged
rounds, no good round between; absent rounds do not count) adds
``REPUTATION_PROBATION x (m - 1)`` rounds to the node's debt, so a run of
``M`` flags owes ``REPUTATION_PROBATION x M (M - 1) / 2`` good rounds; a good
round while the node owes any repays one round and earns nothing (no reward,
no bonus; the good streak still counts). With the default 2: a run of three
flags owes 6 rounds, a run of ten 90, a run of forty 1,560. So an attacker
whose lie stops being visible (a sign flip once the model has converged)
stays where its record put it instead of earning its way back, however
quiet it has become, while the usual mistakes about honest nodes stay
cheap: an isolated flag costs no probation at all, and a node flagged every
other round owes nothing either (it sinks below the exclusion threshold by
the penalty alone). A debt that grew in proportion to the run (the rule
before) let a node flagged for 24 rounds back in by round 72.

Nodes missing from a round (no submission) are left alone, streak included:
a streak counts consecutive rounds the node took part in, since absence is
neither good nor bad behaviour.

A node is excluded while ``r < REPUTATION_EXCLUSION_THRESHOLD``: its update
gets zero aggregation weight, but it is still scored every round, which is
how an honest node that was wrongly penalised climbs back.

The ledger's :meth:`~ReputationLedger.state` is JSON-able; :func:`save_ledger`
and :func:`load_ledger` keep it in a backend (scores per round through
``put_reputations``, the full state, streaks included, under the meta key
``reputation_state``), so reputation survives a restart.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from zerotrustml.backends.base import Backend, check_scores
from zerotrustml.defence.config import DefenceConfig
from zerotrustml.exceptions import ParameterError, PreconditionError

__all__ = ["ReputationLedger", "load_ledger", "save_ledger", "STATE_KEY", "STATE_VERSION"]

#: Meta key under which :func:`save_ledger` stores the ledger's state.
STATE_KEY = "reputation_state"
#: Version of the state layout; :meth:`ReputationLedger.from_state` refuses others.
STATE_VERSION = 3
#: Older state layouts :meth:`ReputationLedger.from_state` still reads (version 1 had no debts, version 2 no runs:
#: read as no run under way).
READABLE_VERSIONS = (1, 2, 3)


def _check_node(node: Any, where: str) -> str:
    if not isinstance(node, str) or not node:
        raise ParameterError(f"{where}: node ids are non-empty strings, got {node!r}")
    return node


def _check_counts(counts: Mapping[str, Any], name: str) -> dict[str, int]:
    if not isinstance(counts, Mapping):
        raise TypeError(f"{name}: must be a mapping of node id to count, got {type(counts).__name__}")
    out: dict[str, int] = {}
    for node, count in counts.items():
        _check_node(node, name)
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or int(count) < 0:
            raise ParameterError(f"{name}[{node!r}]: must be a non-negative integer, got {count!r}")
        out[node] = int(count)
    return out


class ReputationLedger:
    """Reputation, good streaks and recovery state of every node seen so far.

    Parameters
    ----------
    config : DefenceConfig
        Uses the ``REPUTATION_*`` and ``BEHAVIOR_RECOVERY_*`` parameters.
    scores : mapping of str to float, optional
        Starting reputations, each in [0, 1]; nodes not listed start at
        ``REPUTATION_INITIAL`` when first seen.
    streaks : mapping of str to int, optional
        Starting good streaks (consecutive good rounds), each >= 0.
    recovering : iterable of str, optional
        Nodes penalised whose recovery bonus is still to be paid.
    last_round : int, optional
        The last round applied; :meth:`update` accepts only later rounds.
    debts : mapping of str to int, optional
        Good rounds each node still owes before it earns reputation again
        (probation, see the module docs), each >= 0.
    runs : mapping of str to int, optional
        Each node's current run of consecutive flagged rounds, each >= 0.

    Raises
    ------
    ParameterError
        A score outside [0, 1] or not finite, a negative streak, an empty
        node id, naming the node.
    """

    def __init__(
        self,
        config: DefenceConfig,
        scores: Mapping[str, float] | None = None,
        streaks: Mapping[str, int] | None = None,
        *,
        recovering: Iterable[str] = (),
        last_round: int | None = None,
        debts: Mapping[str, int] | None = None,
        runs: Mapping[str, int] | None = None,
    ) -> None:
        if not isinstance(config, DefenceConfig):
            raise TypeError(f"config: must be a DefenceConfig, got {type(config).__name__}")
        self.config = config
        self._scores: dict[str, float] = check_scores(scores) if scores is not None else {}
        self._streaks: dict[str, int] = _check_counts(streaks, "streaks") if streaks is not None else {}
        self._recovering: set[str] = {_check_node(node, "recovering") for node in recovering}
        self._debts: dict[str, int] = _check_counts(debts, "debts") if debts is not None else {}
        self._runs: dict[str, int] = _check_counts(runs, "runs") if runs is not None else {}
        if last_round is not None and (
            isinstance(last_round, bool) or not isinstance(last_round, int) or last_round < 0
        ):
            raise ParameterError(f"last_round: must be a non-negative integer or None, got {last_round!r}")
        self._last_round = last_round

    def __repr__(self) -> str:
        return f"ReputationLedger({len(self._scores)} nodes, last_round={self._last_round})"

    # -- reading -------------------------------------------------------------------------------------------------

    @property
    def last_round(self) -> int | None:
        """The last round :meth:`update` applied, or ``None``."""
        return self._last_round

    @property
    def scores(self) -> dict[str, float]:
        """Every known node's reputation (a copy)."""
        return dict(self._scores)

    def score(self, node: str) -> float:
        """A node's reputation; ``REPUTATION_INITIAL`` for a node not seen yet."""
        return self._scores.get(node, self.config.reputation_initial)

    def streak(self, node: str) -> int:
        """A node's current run of consecutive good rounds."""
        return self._streaks.get(node, 0)

    def debt(self, node: str) -> int:
        """Good rounds a node still owes before it earns reputation again (its probation)."""
        return self._debts.get(node, 0)

    def recovering(self, node: str) -> bool:
        """Whether a node was penalised and has not yet earned its recovery bonus."""
        return node in self._recovering

    def excluded(self, node: str) -> bool:
        """Whether a node's reputation is below ``REPUTATION_EXCLUSION_THRESHOLD``."""
        return self.score(node) < self.config.reputation_exclusion_threshold

    def weights(self, nodes: Sequence[str]) -> npt.NDArray[np.float64]:
        """Aggregation weights for ``nodes``, in their order: reputation, zero when excluded, summing to 1.

        Nodes not seen yet count with ``REPUTATION_INITIAL``.

        Raises
        ------
        PreconditionError
            Every node is excluded (or has reputation 0), so no weighting
            exists; the caller decides what a round without trusted updates
            does.
        """
        w = np.array([self.score(_check_node(node, "nodes")) for node in nodes], dtype=np.float64)
        w[w < self.config.reputation_exclusion_threshold] = 0.0
        if w.size == 0:
            return w
        total = float(w.sum())
        if total <= 0.0:
            raise PreconditionError(
                f"weights: all {len(w)} nodes are below REPUTATION_EXCLUSION_THRESHOLD "
                f"{self.config.reputation_exclusion_threshold} (or at reputation 0)"
            )
        normalised: npt.NDArray[np.float64] = w / total
        return normalised

    # -- updating ------------------------------------------------------------------------------------------------

    def update(self, round: int, flagged: Mapping[str, bool]) -> dict[str, float]:
        """Apply one round's verdicts (see the module docstring for the rule).

        Parameters
        ----------
        round : int
            The round, greater than :attr:`last_round`: applying a round
            twice (say, when resuming after a crash) would count it twice, so
            a resumed run compares its round with :attr:`last_round` first.
        flagged : mapping of str to bool
            For every node that took part in the round, whether it was
            flagged. Nodes not listed are left unchanged.

        Returns
        -------
        dict of str to float
            The new reputation of every node listed.

        Raises
        ------
        ParameterError
            ``round`` not an integer >= 0, not after :attr:`last_round`, a
            verdict that is not a bool, an empty node id.
        """
        if isinstance(round, bool) or not isinstance(round, numbers.Integral) or int(round) < 0:
            raise ParameterError(f"round: must be a non-negative integer, got {round!r}")
        round = int(round)
        if self._last_round is not None and round <= self._last_round:
            raise ParameterError(f"round: {round} is not after the last round applied ({self._last_round})")
        if not isinstance(flagged, Mapping):
            raise TypeError(f"flagged: must be a mapping of node id to bool, got {type(flagged).__name__}")
        verdicts: dict[str, bool] = {}
        for node, bad in flagged.items():
            _check_node(node, "flagged")
            if not isinstance(bad, (bool, np.bool_)):
                raise ParameterError(f"flagged[{node!r}]: must be a bool, got {bad!r}")
            verdicts[node] = bool(bad)

        c = self.config
        out: dict[str, float] = {}
        for node, bad in verdicts.items():
            r = self.score(node)
            if bad:
                # The m-th flag of a run (no good round since the last flag) owes probation x (m - 1) rounds.
                run = self._runs.get(node, 0) + 1
                self._runs[node] = run
                r *= 1.0 - c.reputation_penalty
                self._streaks[node] = 0
                self._recovering.add(node)
                if run > 1 and c.reputation_probation > 0:
                    self._debts[node] = self._debts.get(node, 0) + c.reputation_probation * (run - 1)
            else:
                self._runs.pop(node, None)
                streak = self._streaks.get(node, 0) + 1
                self._streaks[node] = streak
                owed = self._debts.get(node, 0)
                if owed > 0:  # on probation: this round repays the record and earns nothing
                    if owed == 1:
                        del self._debts[node]
                    else:
                        self._debts[node] = owed - 1
                    self._scores[node] = r
                    out[node] = r
                    continue
                r = min(1.0, r + c.reputation_reward)
                if node in self._recovering and streak >= c.behavior_recovery_threshold:
                    r = min(1.0, r + c.behavior_recovery_bonus)
                    self._recovering.discard(node)
            # Clamp against rounding so the backend's [0, 1] check always holds.
            r = min(1.0, max(0.0, r))
            self._scores[node] = r
            out[node] = r
        self._last_round = round
        return out

    # -- persistence ---------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything the ledger knows, JSON-able: scores, streaks, recovering nodes, debts, runs and the last
        round."""
        return {
            "version": STATE_VERSION,
            "last_round": self._last_round,
            "scores": dict(sorted(self._scores.items())),
            "streaks": dict(sorted(self._streaks.items())),
            "recovering": sorted(self._recovering),
            "debts": dict(sorted(self._debts.items())),
            "runs": dict(sorted(self._runs.items())),
        }

    @classmethod
    def from_state(cls, config: DefenceConfig, state: Mapping[str, Any]) -> ReputationLedger:
        """Rebuild a ledger from :meth:`state`.

        Raises
        ------
        ParameterError
            The state is not one :meth:`state` wrote, naming the field.
        """
        if not isinstance(state, Mapping):
            raise ParameterError(f"state: must be a mapping, got {type(state).__name__}")
        version = state.get("version")
        if isinstance(version, bool) or version not in READABLE_VERSIONS:
            raise ParameterError(f"state.version: expected one of {READABLE_VERSIONS}, got {version!r}")
        fields: tuple[tuple[str, type], ...] = (("scores", Mapping), ("streaks", Mapping), ("recovering", list))
        if version >= 2:
            fields += (("debts", Mapping),)
        if version >= 3:
            fields += (("runs", Mapping),)
        for key, kind in fields:
            if not isinstance(state.get(key), kind):
                raise ParameterError(f"state.{key}: missing or of the wrong type ({type(state.get(key)).__name__})")
        last = state.get("last_round")
        if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 0):
            raise ParameterError(f"state.last_round: must be a non-negative integer or null, got {last!r}")
        return cls(
            config,
            state["scores"],
            state["streaks"],
            recovering=state["recovering"],
            last_round=last,
            debts=state.get("debts"),
            runs=state.get("runs"),
        )


async def load_ledger(backend: Backend, config: DefenceConfig) -> ReputationLedger:
    """The ledger a backend holds: its saved state, else its latest scores, else an empty ledger.

    Scores without a state (a store written by something other than
    :func:`save_ledger`) start with no streaks and nothing recovering.
    """
    state = await backend.get_meta(STATE_KEY)
    if state is not None:
        return ReputationLedger.from_state(config, state)
    scores = await backend.get_reputations()
    return ReputationLedger(config, scores)


async def save_ledger(backend: Backend, ledger: ReputationLedger, round: int) -> None:
    """Store the ledger: this round's scores in the reputation history, then the full state.

    The state is written last, so it is the commit point: after a crash
    between the two writes the stored state is still the previous round's,
    the round is re-run, and rewriting its scores is idempotent.
    """
    await backend.put_reputations(round, ledger.scores)
    await backend.put_meta(STATE_KEY, ledger.state())
