"""Configuration of the defence: similarity detection, committee and reputation.

Every parameter has a documented default, an environment variable named after
it (upper case; the names of issue 4, such as ``LABEL_SKEW_COS_MIN``), and a
range it is checked against. :meth:`DefenceConfig.load` layers three sources,
each overriding the one before:

1. the defaults of :class:`DefenceConfig`;
2. a file, when a path is given: ``.env``-style ``KEY=VALUE`` lines (blank
   lines, ``#`` comments, an optional ``export`` prefix and optional single or
   double quotes are allowed, so ``.env.optimal`` files written for a shell
   work unchanged), or a JSON object when the name ends in ``.json``;
3. the environment: only the known names, bare (``LABEL_SKEW_COS_MIN``) or
   prefixed (``ZEROTRUSTML_LABEL_SKEW_COS_MIN``); the prefixed form wins when
   both are set, because it is the more specific.

A file is checked strictly: an unknown key is an error naming the key and the
file, because a typo that silently ran the defaults would invalidate a whole
experiment. The environment is not, since it holds many unrelated variables.
Bad values (not a number, outside the range, a minimum above its maximum)
raise :class:`~zerotrustml.exceptions.ParameterError` naming the key.

Example ``.env.optimal``::

    # tuned on seeds 100-102
    export LABEL_SKEW_COS_MIN=-0.5
    export LABEL_SKEW_COS_MAX="0.95"
    BEHAVIOR_RECOVERY_THRESHOLD=2   # rounds
    BEHAVIOR_RECOVERY_BONUS=0.12
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from zerotrustml.exceptions import ParameterError

__all__ = ["DefenceConfig", "ENV_PREFIX", "parse_env_file"]

#: Optional prefix of the environment variables (``ZEROTRUSTML_LABEL_SKEW_COS_MIN``).
ENV_PREFIX = "ZEROTRUSTML_"


def _param(
    default: float | int, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False, doc: str
) -> Any:
    """A dataclass field carrying its allowed range and description."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "doc": doc})


_INF = math.inf


@dataclass(frozen=True)
class DefenceConfig:
    """Every parameter of similarity detection, the committee and reputation.

    Field names are the lower-case environment variable names. The defaults
    and the reasons for them:

    Similarity detection (:mod:`zerotrustml.defence.detection`)
        label_skew_cos_min : float, default -0.5
            Lower bound of the tolerated band of cosines to the coordinate
            median (and to the previous aggregate). Below it an update points
            against the consensus. Under non-IID data honest cosines spread
            widely; -0.5 is the value issue 4 pins (the seed system measured
            a 16x higher false-positive rate at -0.3 under label skew).
        label_skew_cos_max : float, default 0.95
            Upper bound of the band. A cosine above it is not suspicious by
            itself (IID honest updates are often that aligned), only together
            with membership in a near-duplicate cluster. Issue 4's value.
        similarity_z_threshold : float, default 3.5
            Robust z-score (median/MAD, scaled by 1.4826) above which the
            distance to the median or the Krum score is an outlier. 3.5 is
            Iglewicz and Hoaglin's cut-off for modified z-scores.
        similarity_mad_floor : float, default 0.2
            Floor on the MAD, as a share of the median: in high dimension
            honest distances concentrate (the MAD can be nearly zero), and a
            z-score over a vanishing MAD would flag harmless 1% differences.
            With 0.2 and z 3.5, a distance or norm must be more than 1.7
            times the typical one before it can count as an outlier: honest
            nodes' gradient norms differ by that much with their data sizes
            and class mixes (0.1 flagged honest nodes in the label-skew tests).
        sybil_cos_threshold : float, default 0.99
            Pairwise cosine above which two updates may be near-duplicates.
        sybil_distance_ratio : float, default 0.1
            Two updates are near-duplicates when, besides the cosine, their
            distance is at most this share of the median nearest-neighbour
            distance (the scale of honest sampling noise). Honest nodes with
            their own data are never that close; copies are.
        reference_agreement_min : float, default 0.0
            The previous aggregate is used as a reference only when the
            median cosine of the round's updates to it is at least this, so
            a stale reference (training turned, or overshot) flags no one.
        suspicion_threshold : float, default 0.5
            A node is flagged when its suspicion reaches this. Each test
            scores 0.5 exactly at its own threshold, so 0.5 flags a node that
            fails any one test.

        assumed_byzantine_fraction : float, default 0.4
            The share of a round's updates the pipeline assumes Byzantine
            when nobody names f (``--assumed-f``): the largest share its
            shared view claims to tolerate. A real network never knows the
            true count, so the pipeline's f does not follow it; it sets the
            Krum neighbourhood and the core the Krum z-score is standardised
            on (``n - f`` lowest scores).

    Committee (issue 4, item 2)
        committee_size : int, default 5
            Peers drawn per round to re-score updates: an odd number, so a
            strict majority always exists, and small enough for small devices.
        committee_quality_min : float, default 0.0
            A member accepts an update whose quality score (relative loss
            improvement on the member's held-out data) is at least this; 0.0
            accepts anything that does not make the member's loss worse.

    Stages (issue 13, item 7)
        stage_proofs, stage_similarity, stage_committee, stage_reputation : int, default 1
            1 runs the stage, 0 switches it off, so an ablation can measure
            what each stage earns (``scripts/ablation.py``). With similarity
            off the committee flags nothing either (it only tips updates
            similarity doubts); with reputation off nobody is excluded and
            kept updates weigh by their counts alone. A deployment keeps
            them all on.

    Reputation (:mod:`zerotrustml.defence.reputation`)
        reputation_initial : float, default 0.7
            A new node's reputation: trusted enough to count, but one flag
            below the fully trusted level, so that a newcomer that misbehaves
            three rounds running (0.7 -> 0.49 -> 0.34 -> 0.24) is excluded.
        reputation_penalty : float, default 0.3
            Share of the reputation lost in a flagged round (multiplicative,
            so repeated offences compound and the score never goes negative).
        reputation_reward : float, default 0.05
            Reputation gained in a good round (additive, capped at 1): slower
            than the penalty, so that a node flagged one round in two sinks to
            the fixed point 0.05 / 0.3 = 0.17, below the exclusion threshold.
        reputation_exclusion_threshold : float, default 0.3
            Below it a node's update gets zero aggregation weight (it is
            still scored every round, so an honest node can recover).
        behavior_recovery_threshold : int, default 2
            Consecutive good rounds after a penalty that earn the recovery
            bonus (issue 4's value).
        reputation_probation : int, default 2
            Probation's unit (0: off): the m-th flagged round of a run of
            consecutive flags costs this many times (m - 1) good rounds
            without reward, so a run of M flags owes probation x M(M-1)/2.
            A run of flags is repaid before reputation grows again, and a
            long one never is (forty flags running: 1,560 rounds), while an
            isolated false flag costs nothing and a run of three 6 rounds.
            Tuned on seeds 1-2 with 100-round runs (see DETECTION.md).
        behavior_recovery_bonus : float, default 0.12
            The one-off bonus (issue 4's value): with the defaults an honest
            node falsely flagged once is back above its old score after two
            good rounds (0.7 -> 0.49 -> 0.54 -> 0.71).
    """

    label_skew_cos_min: float = _param(-0.5, -1.0, 1.0, doc="lower bound of the tolerated cosine band")
    label_skew_cos_max: float = _param(0.95, -1.0, 1.0, doc="upper bound of the tolerated cosine band")
    similarity_z_threshold: float = _param(3.5, 0.0, _INF, lo_open=True, doc="robust z-score of an outlier")
    similarity_mad_floor: float = _param(0.2, 0.0, _INF, doc="floor on the MAD, as a share of the median")
    sybil_cos_threshold: float = _param(0.99, -1.0, 1.0, doc="pairwise cosine of near-duplicates")
    sybil_distance_ratio: float = _param(
        0.1, 0.0, _INF, doc="near-duplicate distance, as a share of the median nearest-neighbour distance"
    )
    reference_agreement_min: float = _param(0.0, -1.0, 1.0, doc="median cosine to trust the reference")
    suspicion_threshold: float = _param(0.5, 0.0, 1.0, lo_open=True, doc="suspicion at which a node is flagged")
    assumed_byzantine_fraction: float = _param(
        0.4, 0.0, 0.5, hi_open=True, doc="share of updates the pipeline assumes Byzantine when f is not given"
    )
    committee_size: int = _param(5, 1, _INF, doc="peers drawn per round to re-score updates")
    committee_quality_min: float = _param(0.0, -_INF, _INF, doc="quality score a member accepts")
    reputation_initial: float = _param(0.7, 0.0, 1.0, doc="reputation of a new node")
    reputation_penalty: float = _param(0.3, 0.0, 1.0, doc="share of reputation lost in a flagged round")
    reputation_reward: float = _param(0.05, 0.0, 1.0, doc="reputation gained in a good round")
    reputation_exclusion_threshold: float = _param(0.3, 0.0, 1.0, doc="reputation below which a node is excluded")
    behavior_recovery_threshold: int = _param(2, 1, _INF, doc="good rounds after a penalty that earn the bonus")
    behavior_recovery_bonus: float = _param(0.12, 0.0, 1.0, doc="one-off recovery bonus")
    reputation_probation: int = _param(
        2, 0, _INF, doc="probation's unit: the m-th flag of a run costs this x (m - 1) unrewarded good rounds"
    )
    aggregation_clip: float = _param(
        2.0, 0.0, _INF, doc="kept updates are clipped to this multiple of their median norm (0: off)"
    )
    stage_proofs: int = _param(1, 0, 1, doc="1: edge proofs are checked; 0: the stage is off (ablations only)")
    stage_similarity: int = _param(1, 0, 1, doc="1: similarity tests run; 0: the stage is off (ablations only)")
    stage_committee: int = _param(
        1, 0, 1, doc="1: a committee is drawn and votes; 0: the stage is off (ablations only)"
    )
    stage_reputation: int = _param(
        1, 0, 1, doc="1: reputation excludes and weighs; 0: the stage is off (ablations only)"
    )

    def __post_init__(self) -> None:
        # Checked here as well as in load(), so a config built in code is held
        # to the same ranges as one read from a file.
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _check(f, getattr(self, f.name), f.name.upper()))
        if self.label_skew_cos_min > self.label_skew_cos_max:
            raise ParameterError(
                f"LABEL_SKEW_COS_MIN: {self.label_skew_cos_min} is above LABEL_SKEW_COS_MAX "
                f"{self.label_skew_cos_max}; the band would be empty"
            )
        if self.reputation_initial < self.reputation_exclusion_threshold:
            raise ParameterError(
                f"REPUTATION_INITIAL: {self.reputation_initial} is below REPUTATION_EXCLUSION_THRESHOLD "
                f"{self.reputation_exclusion_threshold}; every new node would start excluded"
            )

    # -- sources ------------------------------------------------------------------------------------------------

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The environment variable names, in field order."""
        return tuple(f.name.upper() for f in dataclasses.fields(cls))

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Self:
        """Defaults, overridden by the file at ``path``, overridden by the environment.

        Parameters
        ----------
        path : str or PathLike, optional
            A ``.env``-style file, or a JSON object when the name ends in
            ``.json``. Keys are the variable names (case-insensitive, the
            ``ZEROTRUSTML_`` prefix allowed).
        environ : mapping, optional
            The environment to read; ``os.environ`` when omitted. Pass ``{}``
            to ignore the environment.

        Raises
        ------
        ParameterError
            An unknown key in the file (naming the key and the file), a line
            that is not ``KEY=VALUE``, a value that is not a number or is out
            of range, or a minimum above its maximum (naming the key).
        """
        values: dict[str, Any] = {}
        if path is not None:
            values.update(_read_file(Path(path)))
        env = os.environ if environ is None else environ
        values.update(_from_environment(env))
        return cls(**values)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "mapping") -> Self:
        """Build from a mapping such as :meth:`to_json` returns; unknown keys are errors naming ``source``."""
        return cls(**_from_mapping(data, source))

    def to_json(self) -> dict[str, float | int]:
        """Every parameter by field name (lower case), JSON-able; :meth:`from_json` reads it back."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_env(self) -> str:
        """Every parameter as ``.env`` lines, one per variable, each with its description as a comment."""
        lines = []
        for f in dataclasses.fields(self):
            lines.append(f"# {f.metadata['doc']}")
            lines.append(f"{f.name.upper()}={getattr(self, f.name)!r}")
        return "\n".join(lines) + "\n"


_FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(DefenceConfig)}
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _check(f: dataclasses.Field[Any], value: Any, key: str) -> float | int:
    """Converts ``value`` to the field's type and checks its range; errors name ``key``."""
    if isinstance(value, str):
        text = value.strip()
        if not _NUMBER.fullmatch(text):
            raise ParameterError(f"{key}: must be a number, got {value!r}")
        value = float(text) if f.type == "float" else _int_text(text, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"{key}: must be a number, got {value!r}")
    number: float | int
    if f.type == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ParameterError(f"{key}: must be an integer, got {value!r}")
        number = int(value)
    else:
        number = float(value)
        if not math.isfinite(number):
            raise ParameterError(f"{key}: must be finite, got {value!r}")
    md = f.metadata
    lo_ok = number > md["lo"] if md["lo_open"] else number >= md["lo"]
    hi_ok = number < md["hi"] if md["hi_open"] else number <= md["hi"]
    if not (lo_ok and hi_ok):
        lo = "(" if md["lo_open"] else "["
        hi = ")" if md["hi_open"] else "]"
        raise ParameterError(f"{key}: must be in {lo}{md['lo']}, {md['hi']}{hi}, got {value!r}")
    return number


def _int_text(text: str, key: str) -> int:
    number = float(text)
    if not number.is_integer():
        raise ParameterError(f"{key}: must be an integer, got {text!r}")
    return int(number)


def _field_for(key: str) -> str | None:
    """The field name a key refers to (case-insensitive, prefix optional), or ``None``."""
    name = key.strip().upper()
    if name.startswith(ENV_PREFIX):
        name = name[len(ENV_PREFIX) :]
    lower = name.lower()
    return lower if lower in _FIELDS else None


def _from_mapping(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ParameterError(f"{source}: must hold an object of KEY: value pairs, got {type(data).__name__}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = _field_for(str(key))
        if name is None:
            raise ParameterError(f"{key}: unknown key in {source}; known keys: {', '.join(DefenceConfig.names())}")
        out[name] = _check(_FIELDS[name], value, f"{key} ({source})")
    return out


def parse_env_file(text: str, source: str = "<string>") -> dict[str, str]:
    """Parse ``.env`` text into ``{KEY: value}`` (later lines win, as in a shell).

    Accepts blank lines, ``#`` comments (whole-line, or after an unquoted
    value following whitespace), an ``export`` prefix, and values in single
    or double quotes.

    Raises
    ------
    ParameterError
        A line that is not ``KEY=VALUE``, or an unterminated quote, naming
        ``source`` and the line number.
    """
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export") :].strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ParameterError(f"{source}, line {number}: expected KEY=VALUE, got {raw.strip()!r}")
        value = value.strip()
        if value[:1] in ("'", '"'):
            quote = value[0]
            end = value.find(quote, 1)
            if end < 0:
                raise ParameterError(f"{source}, line {number}: {key}: unterminated {quote} quote")
            rest = value[end + 1 :].strip()
            if rest and not rest.startswith("#"):
                raise ParameterError(f"{source}, line {number}: {key}: unexpected text after the quoted value")
            value = value[1:end]
        else:
            # An unquoted "#" after whitespace starts a comment, as in a shell.
            value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
        out[key] = value
    return out


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ParameterError(f"config file {path}: cannot read it ({err.strerror or err})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ParameterError(f"config file {path}: not valid JSON ({err})") from None
        return _from_mapping(data, f"config file {path}")
    return _from_mapping(parse_env_file(text, f"config file {path}"), f"config file {path}")


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Bare names first, prefixed second: the prefixed form is more specific and wins.
    for prefix in ("", ENV_PREFIX):
        for name, f in _FIELDS.items():
            key = prefix + name.upper()
            if key in environ:
                out[name] = _check(f, environ[key], f"{key} (environment)")
    return out
