"""The attack matrix: attacks x Byzantine fractions x distributions x defences x seeds.

Every cell of the matrix is one simulated run (:func:`zerotrustml.fl.simulation.run`)
of the base configuration with one attack, one Byzantine fraction, one data
distribution, one defence and one seed. :func:`run_matrix` runs the cells in
parallel processes (or as tasks on Ray, see :data:`EXECUTORS`) and appends each
finished cell to ``cells.jsonl`` as soon as it is done, so an interrupted
matrix resumes where it stopped;
:func:`summarise` averages the cells over the seeds and writes ``matrix.json``,
``MATRIX.md`` (one table per distribution and the targets for the full
pipeline) and ``matrix.png`` (heatmaps of TPR, FPR and accuracy gap).

Seeds
-----
The matrix reports on :data:`REPORT_SEEDS` (101, 102, 103). Defence
parameters are tuned on :data:`TUNING_SEEDS` (1 and 2, the seeds of
``scripts/results.py`` and of tuning runs elsewhere), so no reported figure
comes from a seed a parameter was fitted on. A seed fixes the data split,
which nodes are Byzantine, the model initialisation and every random draw
of the run.

Cell status
-----------
``ok``
    The run finished; its summary is recorded.
``n/a``
    The defence's precondition fails for the fraction (Krum and Multi-Krum
    need ``n >= 2f + 3``, Bulyan ``n >= 4f + 3``, trimmed mean ``n > 2f``):
    recorded with the reason, not run.
``error``
    The run raised. Failures are logged to ``errors.jsonl``, not to
    ``cells.jsonl``, so a re-run retries them.

Only ``ok`` and ``n/a`` cells are finished: a re-run of the same
specification in the same directory skips every cell whose key (a hash of its
full :class:`~zerotrustml.fl.simulation.RunConfig`: attack and its parameters,
fraction, distribution, alpha, defence, seed and the base configuration; and
of the defence settings the runs resolve, see :func:`defence_settings`) is
already in ``cells.jsonl``. The honest-only reference accuracy comes with
every run (the simulator trains it alongside), so nothing else is run.

Files in the output directory
-----------------------------
``spec.json``
    The last specification run there (and the resolved defence settings).
``cells.jsonl``
    One JSON line per finished cell: key, attack, fraction, distribution,
    defence, seed, status, reason, the run's summary figures and its full
    configuration.
``errors.jsonl``
    Cells that raised, with the reason.
``matrix.json``, ``MATRIX.md``, ``matrix.png``
    Written by :func:`summarise`.

Examples
--------
>>> from zerotrustml.matrix import MatrixSpec, run_matrix, summarise  # doctest: +SKIP
>>> run_matrix(MatrixSpec.small(), "results/matrix-small", workers=2)  # doctest: +SKIP
>>> summarise("results/matrix-small")["targets"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from zerotrustml import defence
from zerotrustml.backends import BACKENDS
from zerotrustml.defence import pipeline
from zerotrustml.defence.config import DefenceConfig
from zerotrustml.exceptions import ParameterError, PreconditionError, ValidationError
from zerotrustml.fl import attacks, data, models, partition
from zerotrustml.fl.simulation import RunConfig

__all__ = [
    "EXECUTORS",
    "PIPELINE",
    "PIPELINE_KNOWN_F",
    "PIPELINE_PERSONAL",
    "RAY_INSTALL_HINT",
    "REPORT_SEEDS",
    "TUNING_SEEDS",
    "AttackCase",
    "Cell",
    "CellProgress",
    "MatrixRun",
    "MatrixSpec",
    "ProgressCallback",
    "available_defences",
    "check_executor",
    "defence_settings",
    "default_attacks",
    "distribution_label",
    "parse_attack",
    "parse_attacks",
    "parse_defences",
    "parse_distribution",
    "parse_distributions",
    "parse_fractions",
    "split_list",
    "run_matrix",
    "summarise",
]

log = logging.getLogger(__name__)

#: The full detection pipeline: the defence the targets are measured on.
PIPELINE = "pipeline"

#: The pipeline as if it knew the true f: ``assumed_f`` is the cell's Byzantine count (an oracle no real network
#: has), where :data:`PIPELINE` assumes ``ASSUMED_BYZANTINE_FRACTION`` of the nodes whatever the fraction. Beside
#: it, this column shows what knowing f would add.
PIPELINE_KNOWN_F = "pipeline_known_f"

#: The pipeline with the personal view on (``RunConfig.personal_view``): besides the shared decision, every honest
#: agent aggregates with its own evidence first and keeps its own model. Its cells report the honest agents'
#: own models (mean and worst against honest-only) besides the shared view; the targets at fractions of half the
#: nodes and beyond are measured on them.
PIPELINE_PERSONAL = "pipeline_personal"

#: Matrix defences that run another aggregator with other settings: name -> the aggregator they run.
_VARIANTS: dict[str, str] = {PIPELINE_KNOWN_F: PIPELINE, PIPELINE_PERSONAL: PIPELINE}

#: Seeds the matrix reports on (distinct from :data:`TUNING_SEEDS`).
REPORT_SEEDS: tuple[int, ...] = (101, 102, 103)

#: Seeds defence parameters are tuned on; never used for reported figures.
TUNING_SEEDS: tuple[int, ...] = (1, 2)

CELLS_FILE = "cells.jsonl"
ERRORS_FILE = "errors.jsonl"
SPEC_FILE = "spec.json"
JSON_FILE = "matrix.json"
MARKDOWN_FILE = "MATRIX.md"
PNG_FILE = "matrix.png"

#: Short names for attack parameters in labels (``ipm(eps=100)``); either form parses.
_ABBREVIATIONS = {"epsilon": "eps"}
_EXPANSIONS = {short: long for long, short in _ABBREVIATIONS.items()}

#: Summary keys copied from a run into its cell record.
_SUMMARY_KEYS = (
    "final_accuracy",
    "honest_only_accuracy",
    "accuracy_gap",
    "tpr",
    "fpr",
    "attack_success_rate",
    "rounds",
    "n_byzantine",
    "elapsed_s",
    "personal_accuracy",
)

#: The targets (issue 13): thresholds in points (gaps) or rates. TPR, FPR and the 3-point bound apply to the
#: cells at fractions up to 0.4; the personal bounds to the honest agents' own models at 0.5 and beyond.
TARGET_TPR = 0.95
TARGET_FPR = 0.02
TARGET_GAP_UP_TO_04 = 3.0
TARGET_PERSONAL_MEAN_GAP = 5.0
TARGET_PERSONAL_WORST_GAP = 10.0
TARGET_DIRICHLET_CLEAN = 1.0
#: The largest fraction the shared view's TPR, FPR and gap targets cover.
LOW_FRACTION = 0.4


#: What the code makes of a configuration. Cell keys hash the run configuration and the defence settings, not the
#: code, so a change that alters what a run produces without changing a setting (a new rule in the pipeline, an
#: attack that searches differently) must bump this: every cell recorded under another version runs again instead
#: of being silently reused. Version 2: the code of the final issue-13 matrix (quadratic probation, the personal
#: view scaled by the agent's own norm, adaptive attackers searching against the personal view).
RESULTS_VERSION = 2


def _above_low(fraction: float) -> bool:
    """Whether a fraction is above :data:`LOW_FRACTION` (the personal view's targets), with float slack."""
    return fraction > LOW_FRACTION + 1e-9


_BASE = RunConfig()

Param = float | str
Distribution = tuple[str, float | None]


# -- names ----------------------------------------------------------------------------------------------------------
def available_defences() -> tuple[str, ...]:
    """Every defence the matrix can sweep: the plain aggregators, the full pipeline, the pipeline knowing f and the
    pipeline with the personal view.

    Returns
    -------
    tuple of str
        ``defence.ALL_DEFENCES`` when the module defines it, else
        ``defence.DEFENCES``; :data:`PIPELINE`, :data:`PIPELINE_KNOWN_F` and
        :data:`PIPELINE_PERSONAL` are appended when missing.
    """
    names = tuple(cast(Sequence[str], getattr(defence, "ALL_DEFENCES", defence.DEFENCES)))
    return (*names, *(n for n in (PIPELINE, PIPELINE_KNOWN_F, PIPELINE_PERSONAL) if n not in names))


def _fmt_param(value: Param) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


@dataclass(frozen=True, order=True)
class AttackCase:
    """One attack of the matrix: a name from ``attacks.ATTACKS`` and its parameters.

    Attributes
    ----------
    name : str
        The attack.
    params : tuple of (str, float or str)
        Parameter overrides, sorted by key (empty: the attack's defaults).
    """

    name: str
    params: tuple[tuple[str, Param], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(sorted((str(k), v) for k, v in self.params)))

    @property
    def label(self) -> str:
        """The name as tables show it, e.g. ``ipm(eps=100)``; :func:`parse_attack` reads it back."""
        if not self.params:
            return self.name
        inner = ",".join(f"{_ABBREVIATIONS.get(k, k)}={_fmt_param(v)}" for k, v in self.params)
        return f"{self.name}({inner})"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (:meth:`from_json` reads it back)."""
        return {"name": self.name, "params": dict(self.params)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AttackCase:
        """Read :meth:`to_json`'s form."""
        return cls(str(obj["name"]), tuple(dict(obj.get("params", {})).items()))


def default_attacks() -> tuple[AttackCase, ...]:
    """Every attack of the simulator except ``none``, IPM twice (epsilon 0.1 and 100).

    Returns
    -------
    tuple of AttackCase
        In ``attacks.ATTACKS`` order.
    """
    out: list[AttackCase] = []
    for name in attacks.ATTACKS:
        if name == "none":
            continue
        if name == "ipm":
            out += [AttackCase("ipm", (("epsilon", 0.1),)), AttackCase("ipm", (("epsilon", 100.0),))]
        else:
            out.append(AttackCase(name))
    return tuple(out)


_ATTACK_RE = re.compile(r"^\s*([A-Za-z_][\w]*)\s*(?:\((.*)\))?\s*$")


def parse_attack(text: str) -> tuple[AttackCase, ...]:
    """Parse an attack as the CLI and tables write it.

    Parameters
    ----------
    text : str
        A name (``alie``), or a name and parameters (``ipm(eps=100)``,
        ``ipm(epsilon=100)``, ``min_max(perturbation=sign,gamma_init=10)``).
        A bare name the default list holds several times (``ipm``) gives
        all of those variants.

    Returns
    -------
    tuple of AttackCase

    Raises
    ------
    ParameterError
        Unknown attack, malformed text or unknown parameter.
    """
    m = _ATTACK_RE.match(text)
    if m is None:
        raise ParameterError(f"attacks: cannot read {text!r}; write NAME or NAME(KEY=VALUE,...)")
    name, inner = m.group(1), m.group(2)
    if name not in attacks.ATTACKS:
        raise ParameterError(f"attacks: unknown name {name!r}; choose one of {', '.join(attacks.ATTACKS)}")
    if inner is None:
        variants = tuple(a for a in default_attacks() if a.name == name)
        return variants or (AttackCase(name),)
    params: dict[str, Param] = {}
    for item in filter(None, (p.strip() for p in inner.split(","))):
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key or not raw:
            raise ParameterError(f"attacks: expected KEY=VALUE in {text!r}, got {item!r}")
        try:
            params[_EXPANSIONS.get(key, key)] = float(raw)
        except ValueError:
            params[_EXPANSIONS.get(key, key)] = raw
    attacks.resolve_params(name, params)  # unknown keys raise ParameterError naming them
    return (AttackCase(name, tuple(params.items())),)


def parse_distribution(text: str) -> Distribution:
    """Parse ``iid``, ``dirichlet:0.5`` (or ``dirichlet(0.5)``) or ``shards``.

    Parameters
    ----------
    text : str
        A partition scheme from ``partition.PARTITIONS``, with the Dirichlet
        concentration after a colon; ``dirichlet`` alone means alpha 0.5.

    Returns
    -------
    tuple of (str, float or None)
        The scheme and alpha (``None`` for schemes that ignore it).

    Raises
    ------
    ParameterError
        Unknown scheme or alpha that is not a positive number.
    """
    m = re.match(r"^\s*(\w+)\s*(?::\s*([^()\s]+)|\(\s*([^()\s]+)\s*\))?\s*$", text)
    if m is None:
        raise ParameterError(f"distributions: cannot read {text!r}; write iid, dirichlet:ALPHA or shards")
    name, raw = m.group(1), m.group(2) or m.group(3)
    if name not in partition.PARTITIONS:
        raise ParameterError(f"distributions: unknown name {name!r}; choose one of {', '.join(partition.PARTITIONS)}")
    if name != "dirichlet":
        if raw is not None:
            raise ParameterError(f"distributions: {name} takes no alpha (got {text!r})")
        return (name, None)
    try:
        alpha = float(raw) if raw is not None else _BASE.alpha
    except ValueError:
        raise ParameterError(f"distributions: alpha must be a number (got {raw!r})") from None
    if not (math.isfinite(alpha) and alpha > 0):
        raise ParameterError(f"distributions: alpha must be > 0 (got {raw!r})")
    return (name, alpha)


def split_list(text: str) -> list[str]:
    """Split a comma list, keeping commas inside parentheses (``alie,ipm(eps=1,x=2)``); drop empty items."""
    items, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    items.append(current)
    return [item.strip() for item in items if item.strip()]


def parse_attacks(text: str) -> tuple[AttackCase, ...]:
    """A comma list of :func:`parse_attack` items, variants expanded, duplicates dropped."""
    out = [case for item in split_list(text) for case in parse_attack(item)]
    if not out:
        raise ParameterError("attacks: empty list")
    return tuple(dict.fromkeys(out))


def parse_defences(text: str) -> tuple[str, ...]:
    """A comma list of names from :func:`available_defences`."""
    known = available_defences()
    out = split_list(text)
    for name in out:
        if name not in known:
            raise ParameterError(f"defences: unknown name {name!r}; choose one of {', '.join(known)}")
    if not out:
        raise ParameterError("defences: empty list")
    return tuple(dict.fromkeys(out))


def parse_fractions(text: str) -> tuple[float, ...]:
    """A comma list of Byzantine fractions in [0, 1)."""
    out = []
    for item in split_list(text):
        try:
            frac = float(item)
        except ValueError:
            raise ParameterError(f"fractions: not a number: {item!r}") from None
        if not (math.isfinite(frac) and 0.0 <= frac < 1.0):
            raise ParameterError(f"fractions: must be in [0, 1) (got {item})")
        out.append(frac)
    if not out:
        raise ParameterError("fractions: empty list")
    return tuple(dict.fromkeys(out))


def parse_distributions(text: str) -> tuple[Distribution, ...]:
    """A comma list of :func:`parse_distribution` items (``iid,dirichlet:0.5,dirichlet:0.1``)."""
    out = [parse_distribution(item) for item in split_list(text)]
    if not out:
        raise ParameterError("distributions: empty list")
    return tuple(dict.fromkeys(out))


def distribution_label(dist: Distribution) -> str:
    """``iid``, ``dirichlet(0.5)``: the form :func:`parse_distribution` reads back."""
    name, alpha = dist
    return name if alpha is None else f"{name}({alpha:g})"


# -- the specification ----------------------------------------------------------------------------------------------
def defence_settings(path: str | None) -> dict[str, Any]:
    """The defence settings runs resolve: defaults, the file at ``path``, then the environment.

    The simulator reads these (``zerotrustml.defence.config.DefenceConfig``) in every
    run, so two matrices that differ only in a settings file or an
    environment variable are different matrices: the result goes into every
    cell's key, and into ``spec.json`` and ``matrix.json``.

    Parameters
    ----------
    path : str, optional
        ``MatrixSpec.defence_config``.

    Returns
    -------
    dict
        The resolved settings.

    Raises
    ------
    ParameterError
        A bad settings file or environment value.
    """
    return dict(DefenceConfig.load(path).to_json())


@dataclass(frozen=True)
class Cell:
    """One run of the matrix (the seed included).

    Attributes
    ----------
    attack : AttackCase
    fraction : float
        Byzantine fraction (0 for the clean, no-attack cells).
    distribution : str
    alpha : float or None
        Dirichlet concentration (``None`` for schemes that ignore it).
    defence : str
        A name from :func:`available_defences` (:data:`PIPELINE_KNOWN_F` and
        :data:`PIPELINE_PERSONAL` run the pipeline, see :meth:`MatrixSpec.config`).
    seed : int
    """

    attack: AttackCase
    fraction: float
    distribution: str
    alpha: float | None
    defence: str
    seed: int

    @property
    def group(self) -> tuple[str, float, str, float | None, str]:
        """The cell without its seed: what :func:`summarise` averages over."""
        return (self.attack.label, self.fraction, self.distribution, self.alpha, self.defence)

    @property
    def label(self) -> str:
        """A short description for progress lines."""
        dist = distribution_label((self.distribution, self.alpha))
        return f"{self.attack.label} @{self.fraction:g} {dist} {self.defence} seed {self.seed}"


@dataclass(frozen=True)
class MatrixSpec:
    """What the matrix sweeps, and the base configuration of every run.

    Attributes
    ----------
    attacks : tuple of AttackCase
        Default: :func:`default_attacks` (every attack but ``none``; IPM with
        epsilon 0.1 and 100).
    fractions : tuple of float
        Byzantine fractions (default 0.3, 0.4, 0.5, 0.6).
    distributions : tuple of (str, float or None)
        Partition scheme and Dirichlet alpha (default IID, Dirichlet 0.5 and 0.1).
    defences : tuple of str
        Default: :func:`available_defences` (each plain aggregator, the pipeline,
        :data:`PIPELINE_KNOWN_F`, the pipeline given the true f, and
        :data:`PIPELINE_PERSONAL`, the pipeline with the personal view).
    seeds : tuple of int
        Default :data:`REPORT_SEEDS` (101, 102, 103), not the tuning seeds 1 and 2.
    include_clean : bool
        Also run each distribution and defence with no attack (fraction 0):
        the Dirichlet(0.1) no-attack target needs these cells.
    nodes, rounds, dataset, dataset_path, model, local_steps, batch_size, lr, server_lr, momentum, backend,
    omniscient, colluding, holdout_fraction, max_norm
        The base :class:`~zerotrustml.fl.simulation.RunConfig` fields (same
        defaults: 20 nodes, 30 rounds, MNIST, softmax regression, ...).
    defence_config : str, optional
        The defence settings file every run gets (``RunConfig.defence_config``:
        the tuned parameters). The settings it resolves to, environment
        variables included, are part of every cell's key (see
        :func:`defence_settings`).
    """

    attacks: tuple[AttackCase, ...] = field(default_factory=default_attacks)
    fractions: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6)
    distributions: tuple[Distribution, ...] = (("iid", None), ("dirichlet", 0.5), ("dirichlet", 0.1))
    defences: tuple[str, ...] = field(default_factory=available_defences)
    seeds: tuple[int, ...] = REPORT_SEEDS
    include_clean: bool = True
    nodes: int = _BASE.nodes
    rounds: int = _BASE.rounds
    dataset: str = _BASE.dataset
    dataset_path: str | None = _BASE.dataset_path
    model: str = _BASE.model
    local_steps: int = _BASE.local_steps
    batch_size: int | None = _BASE.batch_size
    lr: float = _BASE.lr
    server_lr: float | None = _BASE.server_lr
    momentum: float = _BASE.momentum
    backend: str = _BASE.backend
    omniscient: bool = _BASE.omniscient
    colluding: bool = _BASE.colluding
    holdout_fraction: float = _BASE.holdout_fraction
    max_norm: float = _BASE.max_norm
    defence_config: str | None = None

    @classmethod
    def small(cls, **overrides: Any) -> MatrixSpec:
        """The test preset: synthetic data, 8 nodes, 2 rounds, 2 attacks, 1 fraction, IID, 3 defences, 1 seed.

        The defences are Multi-Krum, Bulyan and the pipeline (so the targets table has data). Bulyan needs
        ``n >= 4f + 3``, which 8 nodes with 2 Byzantine break, so its attack cells are ``n/a``: the preset
        covers that path too. With the clean cells it has 9 cells, 7 of them runs.

        Parameters
        ----------
        **overrides
            Fields to change.

        Returns
        -------
        MatrixSpec
        """
        base: dict[str, Any] = {
            "attacks": (AttackCase("sign_flip"), AttackCase("ipm", (("epsilon", 100.0),))),
            "fractions": (0.3,),
            "distributions": (("iid", None),),
            "defences": ("multi_krum", "bulyan", PIPELINE),
            "seeds": (REPORT_SEEDS[0],),
            "nodes": 8,
            "rounds": 2,
            "dataset": "synthetic",
            "local_steps": 1,
        }
        return cls(**{**base, **overrides})

    # -- cells ---------------------------------------------------------------------------------------------------
    def scenarios(self) -> list[tuple[Distribution, AttackCase, float]]:
        """Table rows in order: per distribution, the clean row first, then attack x fraction."""
        rows: list[tuple[Distribution, AttackCase, float]] = []
        for dist in self.distributions:
            if self.include_clean:
                rows.append((dist, AttackCase("none"), 0.0))
            rows += [(dist, a, frac) for a in self.attacks for frac in self.fractions]
        return rows

    def cells(self) -> list[Cell]:
        """Every cell, seeds included, in a stable order."""
        return [
            Cell(attack, frac, dist[0], dist[1], d, seed)
            for dist, attack, frac in self.scenarios()
            for d in self.defences
            for seed in self.seeds
        ]

    def config(self, cell: Cell) -> RunConfig:
        """The run of ``cell``: the base fields plus the cell's attack, fraction, distribution, defence, seed.

        :data:`PIPELINE_KNOWN_F` runs the pipeline with ``assumed_f`` the cell's
        true Byzantine count (``RunConfig.n_byzantine``);
        :data:`PIPELINE_PERSONAL` runs it with ``personal_view`` on; every other
        name is the aggregator, with ``assumed_f`` left to its default.
        """
        extra: dict[str, Any] = {}
        if self.defence_config is not None:
            extra["defence_config"] = self.defence_config
        config = RunConfig(
            nodes=self.nodes,
            rounds=self.rounds,
            byzantine_fraction=cell.fraction,
            attack=cell.attack.name,
            aggregator=_VARIANTS.get(cell.defence, cell.defence),
            dataset=self.dataset,
            dataset_path=self.dataset_path,
            distribution=cell.distribution,
            alpha=_BASE.alpha if cell.alpha is None else cell.alpha,
            model=self.model,
            local_steps=self.local_steps,
            batch_size=self.batch_size,
            lr=self.lr,
            server_lr=self.server_lr,
            momentum=self.momentum,
            seed=cell.seed,
            backend=self.backend,
            omniscient=self.omniscient,
            colluding=self.colluding,
            holdout_fraction=self.holdout_fraction,
            max_norm=self.max_norm,
            attack_params=dict(cell.attack.params),
            **extra,
        )
        if cell.defence == PIPELINE_KNOWN_F:
            config = dataclasses.replace(config, assumed_f=config.n_byzantine)
        elif cell.defence == PIPELINE_PERSONAL:
            config = dataclasses.replace(config, personal_view=True)
        return config

    def key(self, cell: Cell, settings: Mapping[str, Any] | None = None) -> str:
        """The cell's stable key: a hash of its full run configuration and the resolved defence settings.

        Parameters
        ----------
        cell : Cell
        settings : mapping, optional
            What :func:`defence_settings` returned for this specification
            (``None``: the run configuration alone).

        Returns
        -------
        str
            24 hex digits.

        Notes
        -----
        A defence that runs another aggregator (:data:`PIPELINE_KNOWN_F`,
        :data:`PIPELINE_PERSONAL`) adds
        its name to what is hashed, so its cells never share a key with that
        aggregator's; the other defences' keys are their configuration alone.
        With ``settings``, the key also hashes :data:`RESULTS_VERSION`, so a
        recorded cell is reused only by the code version that produced it.
        """
        obj: Any = self.config(cell).to_json()
        if cell.defence in _VARIANTS:
            obj = {**obj, "matrix_defence": cell.defence}
        if settings is not None:
            obj = {"run": obj, "defence_settings": dict(settings), "results_version": RESULTS_VERSION}
        blob = json.dumps(obj, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def validate(self) -> None:
        """Raise ``ParameterError`` naming the first bad field, before anything runs.

        Unknown names (attacks, defences, distributions, dataset, model,
        backend) and empty sweeps are errors; a defence whose precondition
        fails for a fraction is not (that cell is ``n/a``).
        """
        for name in ("attacks", "fractions", "distributions", "defences", "seeds"):
            if not getattr(self, name):
                raise ParameterError(f"{name}: must not be empty")
        known = available_defences()
        for d in self.defences:
            if d not in known:
                raise ParameterError(f"defences: unknown name {d!r}; choose one of {', '.join(known)}")
        for a in self.attacks:
            if a.name not in attacks.ATTACKS:
                raise ParameterError(f"attacks: unknown name {a.name!r}; choose one of {', '.join(attacks.ATTACKS)}")
            attacks.resolve_params(a.name, dict(a.params))
        for frac in self.fractions:
            if not (math.isfinite(frac) and 0.0 <= frac < 1.0):
                raise ParameterError(f"fractions: must be in [0, 1) (got {frac})")
        for dist in self.distributions:
            parse_distribution(distribution_label(dist))
        for label, group in (("defences", self.defences), ("seeds", self.seeds)):
            if len(set(group)) != len(group):
                raise ParameterError(f"{label}: listed twice in {', '.join(map(str, group))}")
        if len({a.label for a in self.attacks}) != len(self.attacks):
            raise ParameterError("attacks: an attack is listed twice")
        for s in self.seeds:
            if s < 0:
                raise ParameterError(f"seeds: must be >= 0 (got {s})")
        if self.dataset not in data.DATASETS + data.PATH_DATASETS:
            raise ParameterError(f"dataset: unknown name {self.dataset!r}")
        if self.model not in models.available_models():
            names = ", ".join(models.available_models())
            raise ParameterError(f"model: unknown name {self.model!r}; choose one of {names}")
        if self.backend not in BACKENDS:
            raise ParameterError(f"backend: unknown name {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        defence_settings(self.defence_config)  # a bad settings file or environment value raises here
        # The base fields: checked once with a rule that has no precondition.
        probe = dataclasses.replace(
            self.config(self.cells()[0]), aggregator="mean", byzantine_fraction=0.0, assumed_f=None
        )
        probe = dataclasses.replace(probe, attack="none", attack_params={})
        probe.check()

    # -- JSON ----------------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (:meth:`from_json` reads it back)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["attacks"] = [a.to_json() for a in self.attacks]
        d["fractions"] = list(self.fractions)
        d["distributions"] = [list(x) for x in self.distributions]
        d["defences"] = list(self.defences)
        d["seeds"] = list(self.seeds)
        return d

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> MatrixSpec:
        """Read :meth:`to_json`'s form; unknown keys are ignored, missing ones take the defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw: dict[str, Any] = {k: v for k, v in obj.items() if k in names}
        if "attacks" in kw:
            kw["attacks"] = tuple(AttackCase.from_json(a) for a in kw["attacks"])
        if "distributions" in kw:
            kw["distributions"] = tuple((str(n), None if a is None else float(a)) for n, a in kw["distributions"])
        for name, conv in (("fractions", float), ("seeds", int), ("defences", str)):
            if name in kw:
                kw[name] = tuple(conv(x) for x in kw[name])
        return cls(**kw)

    def command(self, out_dir: str | Path) -> str:
        """The ``zerotrustml matrix`` command that reruns this specification.

        Fields the CLI has no option for are mentioned as a note (``spec.json``
        holds every field).
        """
        cli_fields = {
            "seeds": lambda s: " ".join(f"--seeds {x}" for x in s.seeds),
            "rounds": lambda s: f"--rounds {s.rounds}",
            "nodes": lambda s: f"--nodes {s.nodes}",
            "dataset": lambda s: f"--dataset {s.dataset}",
            "model": lambda s: f"--model {s.model}",
            "attacks": lambda s: f"--attacks '{','.join(a.label for a in s.attacks)}'",
            "defences": lambda s: f"--defences {','.join(s.defences)}",
            "fractions": lambda s: f"--fractions {','.join(format(f, 'g') for f in s.fractions)}",
            "defence_config": lambda s: f"--defence-config {s.defence_config}",
            "distributions": lambda s: (
                "--distributions " + ",".join(n if a is None else f"{n}:{a:g}" for n, a in s.distributions)
            ),
        }
        candidates: list[tuple[bool, int, list[str]]] = []
        for flag, base in (("", MatrixSpec()), ("--small", MatrixSpec.small())):
            diff = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(base, f.name)]
            args = ([flag] if flag else []) + [cli_fields[n](self) for n in diff if n in cli_fields]
            other = [n for n in diff if n not in cli_fields]
            if other:
                args.append(f"# plus {', '.join(other)} (see {SPEC_FILE})")
            candidates.append((bool(other), len(args), args))
        best = min(candidates, key=lambda c: (c[0], c[1]))[2]
        return " ".join(["zerotrustml matrix", f"--out {out_dir}", *best])


# -- running --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CellProgress:
    """What :func:`run_matrix` tells its ``progress`` callback.

    Attributes
    ----------
    done : int
        Cells finished, including those reused from ``cells.jsonl``.
    total : int
        Cells in the specification.
    label : str
        The cell just finished (empty for the first call, made before any work).
    status : str
        ``"start"`` (first call), ``"ok"``, ``"n/a"`` or ``"error"``.
    record : dict or None
        The cell's record (``None`` for ``"start"``).
    """

    done: int
    total: int
    label: str
    status: str
    record: Mapping[str, Any] | None = None


ProgressCallback = Callable[[CellProgress], None]


@dataclass(frozen=True)
class MatrixRun:
    """What one :func:`run_matrix` call did.

    Attributes
    ----------
    total : int
        Cells in the specification.
    reused : int
        Cells already finished in ``cells.jsonl`` (skipped).
    ran : int
        Cells simulated by this call.
    not_applicable : int
        Cells recorded ``n/a`` by this call (precondition fails).
    failed : int
        Cells that raised (logged to ``errors.jsonl``; retried next time).
    elapsed_s : float
    out_dir : Path
    """

    total: int
    reused: int
    ran: int
    not_applicable: int
    failed: int
    elapsed_s: float
    out_dir: Path


#: Where :func:`run_matrix` runs the cells: ``local`` (a pool of spawned processes on this machine, the default)
#: or ``ray`` (Ray tasks, on a local Ray instance or a cluster; the ``ray`` extra).
EXECUTORS: tuple[str, ...] = ("local", "ray")

#: How to get Ray for ``executor="ray"``.
RAY_INSTALL_HINT = "pip install 'zerotrustml[ray]'"

#: ``ray_address`` values that start a local Ray instance rather than connect to a cluster.
_RAY_LOCAL = (None, "local")

#: A cell to run: its configuration (what the worker gets) and its record (what :func:`run_matrix` writes).
_Job = tuple[dict[str, Any], dict[str, Any]]


def _import_ray() -> Any:
    """Ray, imported on first use; ``ParameterError`` naming the option and the install hint if it is missing."""
    try:
        return importlib.import_module("ray")
    except ImportError as e:
        raise ParameterError(f"executor: 'ray' needs Ray, which is not installed ({e}); {RAY_INSTALL_HINT}") from None


def check_executor(executor: str, ray_address: str | None = None) -> None:
    """Raise ``ParameterError`` naming the field if :func:`run_matrix` cannot run cells this way.

    Parameters
    ----------
    executor : str
        One of :data:`EXECUTORS`.
    ray_address : str, optional
        Only with ``executor="ray"``; see :func:`run_matrix`.

    Raises
    ------
    ParameterError
        An unknown executor; ``ray_address`` without ``executor="ray"`` or
        empty; Ray not installed (the message gives :data:`RAY_INSTALL_HINT`);
        ``ray_address`` given while this process is already connected to Ray.
    """
    if executor not in EXECUTORS:
        raise ParameterError(f"executor: unknown name {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if ray_address is not None and executor != "ray":
        raise ParameterError(f"ray_address: only with executor='ray' (got executor={executor!r})")
    if ray_address is not None and not ray_address.strip():
        raise ParameterError("ray_address: must not be empty (None or 'local' starts a local Ray instance)")
    if executor == "ray":
        ray = _import_ray()
        if ray_address is not None and ray.is_initialized():
            raise ParameterError(
                f"ray_address: this process is already connected to Ray, so {ray_address!r} cannot be used; "
                "pass None to run the cells on that connection"
            )


def _run_local(jobs: Sequence[_Job], finish: Callable[[dict[str, Any]], None], workers: int | None) -> None:
    """Run ``jobs`` in a pool of spawned processes, calling ``finish`` with each record as its cell ends."""
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    # spawn, not fork: threads of the parent (rayon's pool, a progress bar) do not survive a fork.
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures: dict[Future[dict[str, Any]], dict[str, Any]] = {
            pool.submit(_run_cell, config_json): record for config_json, record in jobs
        }
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except Exception as e:  # a worker died (out of memory, killed)
                result = {"status": "error", "reason": f"{type(e).__name__}: {e}"}
            finish({**futures[fut], **result})
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ray_failure(ray: Any, error: Exception) -> str:
    """An error record's reason for a Ray task that raised or whose worker died."""
    cause = getattr(error, "cause", None) if isinstance(error, ray.exceptions.RayTaskError) else None
    if isinstance(cause, BaseException):  # the task's own exception, without Ray's wrapper and traceback text
        return f"{type(cause).__name__}: {cause}"
    return f"{type(error).__name__}: {error}"


def _run_ray(
    jobs: Sequence[_Job],
    finish: Callable[[dict[str, Any]], None],
    workers: int | None,
    address: str | None,
) -> None:
    """Run ``jobs`` as Ray tasks, calling ``finish`` with each record as its cell ends (see :func:`run_matrix`)."""
    ray = _import_ray()
    opened = not ray.is_initialized()
    if not opened:  # the caller's connection: used as it is, and left open
        limit = workers or len(jobs)
    elif address in _RAY_LOCAL:
        limit = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
        _ray_init(ray, address="local", num_cpus=limit, include_dashboard=False)
    else:
        limit = workers or len(jobs)
        try:
            _ray_init(ray, address=address)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
            raise ParameterError(f"ray_address: cannot connect to Ray at {address!r}: {e}") from None
    # One CPU per cell, as a local worker process; no retries: a cell whose worker dies is an error record,
    # retried by the next call, as with the local pool.
    task = ray.remote(num_cpus=1, max_retries=0)(_run_cell)
    pending: dict[Any, dict[str, Any]] = {}
    queue = iter(jobs)
    try:
        while True:
            # At most `limit` cells in flight: on a cluster, --workers caps this matrix's share of it.
            for config_json, record in itertools.islice(queue, limit - len(pending)):
                pending[task.remote(config_json)] = record
            if not pending:
                break
            [ref], _ = ray.wait(list(pending), num_returns=1)
            record = pending.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as e:  # the task raised, or its worker died (out of memory, killed, node lost)
                result = {"status": "error", "reason": _ray_failure(ray, e)}
            finish({**record, **result})
    finally:
        for ref in pending:  # interrupted: the unfinished cells stay unfinished (the next call runs them)
            try:
                ray.cancel(ref, force=True)
            except Exception as e:  # the connection may be gone already
                log.debug("could not cancel a Ray task: %s", e)
        if opened:
            ray.shutdown()  # stops the local instance we started, or closes our connection to a cluster


def _ray_init(ray: Any, **kwargs: Any) -> None:
    with warnings.catch_warnings():
        # Ray's tip about GPU environment variables: the cells use no GPU.
        warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
        ray.init(logging_level=logging.WARNING, **kwargs)


def _run_cell(config_json: dict[str, Any]) -> dict[str, Any]:
    """Worker: run one cell in a temporary store; never raises (errors come back as a record)."""
    from zerotrustml.fl.simulation import run

    try:
        config = RunConfig(**config_json)
        # The cell's store is deleted when the cell ends, so it skips the fsyncs (same results, less time).
        options = {"durable": False} if config.backend == "embedded" else {}
        with tempfile.TemporaryDirectory(prefix="ztml-matrix-") as tmp:
            summary = run(config, tmp, metrics_path=Path(tmp) / "metrics.jsonl", backend_options=options)
            # Per-round TPR, for plots over the run (a node that keeps attacking must stay caught).
            rows = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines() if line]
        out = {k: summary.get(k) for k in _SUMMARY_KEYS}
        return {"status": "ok", "reason": None, **out, "tpr_per_round": [row.get("tpr") for row in rows]}
    except Exception as e:  # reported per cell, the matrix goes on
        return {"status": "error", "reason": f"{type(e).__name__}: {e}"}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s:%d: not a JSON line (an interrupted write?); ignored", path, i)
            continue
        if isinstance(row, dict) and isinstance(row.get("key"), str):
            rows.append(row)
    return rows


def _finished(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(r["key"]): dict(r) for r in rows if r.get("status") in ("ok", "n/a")}


def _append(path: Path, record: Mapping[str, Any]) -> None:
    # A line cut short by a crash must not swallow the next one.
    prefix = ""
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                prefix = "\n"
    with path.open("a") as fh:
        fh.write(prefix + json.dumps(record) + "\n")
        fh.flush()


def _base_record(spec: MatrixSpec, cell: Cell, config: RunConfig, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "key": spec.key(cell, settings),
        "label": cell.label,
        "attack": cell.attack.name,
        "attack_params": dict(cell.attack.params),
        "attack_label": cell.attack.label,
        "fraction": cell.fraction,
        "distribution": cell.distribution,
        "alpha": cell.alpha,
        "defence": cell.defence,
        "seed": cell.seed,
        "config": config.to_json(),
    }


def _describe(record: Mapping[str, Any]) -> str:
    if record["status"] == "ok":
        parts = [f"accuracy {record['final_accuracy']:.3f} (gap {100 * record['accuracy_gap']:+.1f})"]
        for k in ("tpr", "fpr"):
            if record.get(k) is not None:
                parts.append(f"{k.upper()} {record[k]:.2f}")
        return ", ".join(parts) + f" in {record['elapsed_s']:.1f} s"
    return f"{record['status']}: {record['reason']}"


def run_matrix(
    spec: MatrixSpec,
    out_dir: str | Path,
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> MatrixRun:
    """Run every unfinished cell of ``spec``, appending each to ``out_dir/cells.jsonl`` as it finishes.

    Parameters
    ----------
    spec : MatrixSpec
        What to sweep; :meth:`MatrixSpec.validate` runs first.
    out_dir : str or Path
        Created if needed. Holds ``spec.json`` (the last specification run),
        ``cells.jsonl`` (one JSON line per finished cell) and
        ``errors.jsonl`` (cells that raised).
    workers : int, optional
        Worker processes (default: ``os.cpu_count()``); each cell runs in a
        temporary store that is deleted after it. With ``executor="ray"``:
        the CPUs of the local Ray instance started here, or on a cluster the
        most cells in flight at once (default: all of them, as the cluster's
        CPUs allow).
    progress : callable, optional
        Called with a :class:`CellProgress` once before any work
        (``status="start"``) and once per cell finished by this call.
    executor : {"local", "ray"}
        ``"local"`` (default): a pool of processes on this machine.
        ``"ray"``: each cell is a Ray task (one CPU, no retries) running the
        same worker function; needs the ``ray`` extra
        (``pip install 'zerotrustml[ray]'``). Records, files, progress calls
        and resuming are the same either way.
    ray_address : str, optional
        Only with ``executor="ray"``. ``None`` or ``"local"``: start a local
        Ray instance with ``workers`` CPUs, shut down when the cells are done.
        Anything else is passed to ``ray.init(address=...)``: ``"auto"``, a
        head node's ``host:port``, or a Ray Client address
        ``ray://host:10001``; the connection is closed afterwards, the cluster
        is left running. If this process is already connected to Ray
        (``ray.is_initialized()``), pass ``None``: the cells run on that
        connection, which is left open.

    Returns
    -------
    MatrixRun
        Counts of reused, run, ``n/a`` and failed cells.

    Raises
    ------
    ParameterError
        A bad specification, executor or ``ray_address``, or Ray missing
        (nothing runs; see :func:`check_executor`); a cluster that cannot be
        reached (``ray_address``).

    Notes
    -----
    Workers are spawned, not forked (the Rust kernels' thread pool and a
    progress bar's thread do not survive a fork), so a script that calls this
    must guard its entry point with ``if __name__ == "__main__":``. Cells are
    independent runs, so their results do not depend on ``workers`` or on
    the executor.

    Ray runs the cells with the interpreter and packages of the process that
    started it, so a local instance needs nothing more. On a cluster, every
    node must have ``zerotrustml`` installed (the same version, with its
    compiled extension) and the data the cells read: no code is shipped to
    the nodes. Ray is imported only when ``executor="ray"`` is chosen, and
    started only if some cell is left to run.
    """
    spec.validate()
    check_executor(executor, ray_address)
    settings = defence_settings(spec.defence_config)
    t0 = time.perf_counter()
    out = Path(out_dir)
    check_report_is_ours(spec, out)
    out.mkdir(parents=True, exist_ok=True)
    (out / SPEC_FILE).write_text(json.dumps({**spec.to_json(), "defence_settings": settings}, indent=1) + "\n")
    cells_path, errors_path = out / CELLS_FILE, out / ERRORS_FILE
    done_keys = set(_finished(_read_jsonl(cells_path)))

    cells = spec.cells()
    total = len(cells)
    todo: list[tuple[Cell, RunConfig, dict[str, Any]]] = []
    reused = 0
    for cell in cells:
        key = spec.key(cell, settings)
        if key in done_keys:
            reused += 1
            continue
        done_keys.add(key)  # a specification listing a cell twice runs it once
        config = spec.config(cell)
        todo.append((cell, config, _base_record(spec, cell, config, settings)))
    log.info("matrix: %d cells, %d already in %s, %d to do", total, reused, cells_path, len(todo))

    done, ran, n_a, failed = reused, 0, 0, 0
    if progress is not None:
        progress(CellProgress(done, total, "", "start"))

    def finish(record: dict[str, Any]) -> None:
        nonlocal done, ran, n_a, failed
        done += 1
        status = record["status"]
        if status == "error":
            failed += 1
            _append(errors_path, {**record, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
            log.error("[%d/%d] %s: %s", done, total, record["label"], record["reason"])
        else:
            if status == "ok":
                ran += 1
            else:
                n_a += 1
            _append(cells_path, record)
            log.info("[%d/%d] %s: %s", done, total, record["label"], _describe(record))
        if progress is not None:
            progress(CellProgress(done, total, str(record["label"]), status, record))

    runnable: list[tuple[Cell, RunConfig, dict[str, Any]]] = []
    for cell, config, record in todo:
        try:
            config.check()
        except PreconditionError as e:
            # The message's CLI hint ("; lower --byzantine-fraction ...") does not apply to a matrix cell.
            finish({**record, "status": "n/a", "reason": str(e).split("; lower ")[0]})
            continue
        except ValidationError as e:  # e.g. a defence the aggregator does not know yet
            finish({**record, "status": "error", "reason": f"{type(e).__name__}: {e}"})
            continue
        runnable.append((cell, config, record))

    jobs = [(config.to_json(), record) for _, config, record in runnable]
    if jobs and executor == "ray":
        _run_ray(jobs, finish, workers, ray_address)
    elif jobs:
        _run_local(jobs, finish, workers)

    elapsed = time.perf_counter() - t0
    log.info(
        "matrix: %d run, %d n/a, %d failed, %d reused, in %.1f s; cells in %s",
        ran,
        n_a,
        failed,
        reused,
        elapsed,
        cells_path,
    )
    return MatrixRun(total, reused, ran, n_a, failed, elapsed, out)


# -- summarising ----------------------------------------------------------------------------------------------------
def _mean(values: Iterable[float | None]) -> float | None:
    real = [float(v) for v in values if v is not None]
    return sum(real) / len(real) if real else None


def _group_status(records: list[dict[str, Any]], n_seeds: int) -> str:
    statuses = [r["status"] for r in records]
    if not statuses:
        return "missing"
    if all(s == "n/a" for s in statuses):
        return "n/a"
    n_ok = statuses.count("ok")
    return "ok" if n_ok == n_seeds else "partial"


def _aggregate(
    spec: MatrixSpec,
    records: Mapping[str, dict[str, Any]],
    errors: Mapping[str, str],
    settings: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    rows = []
    for dist, attack, frac in spec.scenarios():
        for d in spec.defences:
            cells = [Cell(attack, frac, dist[0], dist[1], d, s) for s in spec.seeds]
            keys = [spec.key(c, settings) for c in cells]
            found = [records[k] for k in keys if k in records]
            ok = [r for r in found if r["status"] == "ok"]
            status = _group_status(found, len(spec.seeds))
            reason = next((r.get("reason") for r in found if r.get("reason")), None)
            if reason is None:
                reason = next((errors[k] for k in keys if k in errors), None)
                if reason is not None and status == "missing":
                    status = "error"
            accuracy = _mean(r["final_accuracy"] for r in ok)
            honest = _mean(r["honest_only_accuracy"] for r in ok)
            gap = _mean(r["accuracy_gap"] for r in ok)
            # The personal view's runs: the honest agents' own models against honest-only, per run, then averaged.
            own = [(r["honest_only_accuracy"], r["personal_accuracy"]) for r in ok if r.get("personal_accuracy")]
            own_gap = _mean(h - p["mean"] for h, p in own)
            own_worst = _mean(h - p["min"] for h, p in own)
            rows.append(
                {
                    "attack_label": attack.label,
                    "attack": attack.name,
                    "attack_params": dict(attack.params),
                    "fraction": frac,
                    "distribution": dist[0],
                    "alpha": dist[1],
                    "defence": d,
                    "status": status,
                    "reason": reason,
                    "n_seeds": len(ok),
                    "seeds": [r["seed"] for r in ok],
                    "accuracy": accuracy,
                    "honest_only_accuracy": honest,
                    "gap_points": None if gap is None else 100.0 * gap,
                    "tpr": _mean(r["tpr"] for r in ok),
                    "fpr": _mean(r["fpr"] for r in ok),
                    "attack_success_rate": _mean(r["attack_success_rate"] for r in ok),
                    "personal_gap_points": None if own_gap is None else 100.0 * own_gap,
                    "personal_worst_gap_points": None if own_worst is None else 100.0 * own_worst,
                    "elapsed_s": sum(float(r.get("elapsed_s") or 0.0) for r in ok),
                }
            )
    return rows


def _target(
    name: str, value: float | None, threshold: float, *, at_most: bool, unit: str, detail: str
) -> dict[str, Any]:
    if value is None:
        status = "NO DATA"
    else:
        status = "PASS" if (value <= threshold if at_most else value >= threshold) else "MISS"
    return {
        "name": name,
        "value": value,
        "threshold": threshold,
        "comparison": "<=" if at_most else ">=",
        "unit": unit,
        "status": status,
        "detail": detail,
    }


def _targets(spec: MatrixSpec, rows: list[dict[str, Any]], defence_name: str) -> list[dict[str, Any]]:
    mine = [r for r in rows if r["defence"] == defence_name and r["n_seeds"] > 0]
    low = [r for r in mine if not _above_low(r["fraction"])]
    attacked = [r for r in low if r["fraction"] > 0 and r["attack"] != "none"]
    expected_attacked = (
        sum(1 for _, a, f in spec.scenarios() if 0 < f and not _above_low(f) and a.name != "none")
        if (defence_name in spec.defences)
        else 0
    )
    coverage = f"{len(attacked)} of {expected_attacked} attack cells at fractions <= {LOW_FRACTION:g} measured"

    def where(r: Mapping[str, Any]) -> str:
        return f"{r['attack_label']} @{r['fraction']:g} {distribution_label((r['distribution'], r['alpha']))}"

    def worst(cands: list[dict[str, Any]], key: str = "gap_points") -> tuple[float | None, str]:
        measured = [r for r in cands if r[key] is not None]
        if not measured:
            return None, "no cell measured"
        w = max(measured, key=lambda r: r[key])
        return float(w[key]), f"worst: {where(w)}; {len(measured)} cells"

    tpr = _mean(r["tpr"] for r in attacked)
    fpr = _mean(r["fpr"] for r in attacked)
    low_gap, low_where = worst(low)
    # Half the nodes and beyond: the honest agents' own models under the personal view.
    personal = [r for r in rows if r["defence"] == PIPELINE_PERSONAL and _above_low(r["fraction"]) and r["n_seeds"] > 0]
    own_mean, own_mean_where = worst(personal, "personal_gap_points")
    own_worst, own_worst_where = worst(personal, "personal_worst_gap_points")
    if PIPELINE_PERSONAL not in spec.defences or not any(_above_low(f) for f in spec.fractions):
        own_mean_where = own_worst_where = f"needs {PIPELINE_PERSONAL} and a fraction above {LOW_FRACTION:g}"

    # Dirichlet(0.1), no attack: the defence against plain (example-weighted) averaging in the same cell.
    def clean(d: str) -> dict[str, Any] | None:
        return next(
            (
                r
                for r in rows
                if r["defence"] == d
                and r["attack"] == "none"
                and r["distribution"] == "dirichlet"
                and r["alpha"] is not None
                and abs(r["alpha"] - 0.1) < 1e-9
                and r["n_seeds"] > 0
            ),
            None,
        )

    mine_clean, mean_clean = clean(defence_name), clean("mean")
    diri: float | None = None
    diri_detail = "no Dirichlet(0.1) no-attack cell measured"
    if mine_clean is not None and mine_clean["accuracy"] is not None:
        if mean_clean is not None and mean_clean["accuracy"] is not None:
            diri = 100.0 * (mean_clean["accuracy"] - mine_clean["accuracy"])
            diri_detail = f"mean {mean_clean['accuracy']:.4f} vs {defence_name} {mine_clean['accuracy']:.4f}"
        else:  # with no attack, honest-only averaging is plain averaging of every node
            diri = mine_clean["gap_points"]
            diri_detail = f"against the honest-only reference (no mean cell): {mine_clean['accuracy']:.4f}"

    return [
        _target(
            f"mean TPR over attack cells at fractions <= {LOW_FRACTION:g}",
            tpr,
            TARGET_TPR,
            at_most=False,
            unit="",
            detail=coverage,
        ),
        _target(
            f"mean FPR over attack cells at fractions <= {LOW_FRACTION:g}",
            fpr,
            TARGET_FPR,
            at_most=True,
            unit="",
            detail=coverage,
        ),
        _target(
            f"worst accuracy gap at fractions <= {LOW_FRACTION:g} (no-attack cells included)",
            low_gap,
            TARGET_GAP_UP_TO_04,
            at_most=True,
            unit=" pts",
            detail=low_where,
        ),
        _target(
            f"fractions > {LOW_FRACTION:g}: worst cell, honest agents' own models (mean over agents) "
            f"below honest-only ({PIPELINE_PERSONAL})",
            own_mean,
            TARGET_PERSONAL_MEAN_GAP,
            at_most=True,
            unit=" pts",
            detail=own_mean_where,
        ),
        _target(
            f"fractions > {LOW_FRACTION:g}: worst cell, worst honest agent's own model below honest-only "
            f"({PIPELINE_PERSONAL})",
            own_worst,
            TARGET_PERSONAL_WORST_GAP,
            at_most=True,
            unit=" pts",
            detail=own_worst_where,
        ),
        _target(
            "Dirichlet(0.1) no attack: accuracy below plain mean",
            diri,
            TARGET_DIRICHLET_CLEAN,
            at_most=True,
            unit=" pts",
            detail=diri_detail,
        ),
    ]


def _per_defence(spec: MatrixSpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each defence's attack cells summarised: detection, and the accuracy gap against the targets' bounds."""
    out = []
    for d in spec.defences:
        mine = [r for r in rows if r["defence"] == d and r["attack"] != "none" and r["status"] == "ok"]
        entry: dict[str, Any] = {
            "defence": d,
            "cells": len(mine),
            "n/a": sum(1 for r in rows if r["defence"] == d and r["status"] == "n/a"),
            "tpr": _mean(r["tpr"] for r in mine),
            "fpr": _mean(r["fpr"] for r in mine),
        }
        for name, half, bound in (("low", False, TARGET_GAP_UP_TO_04), ("half", True, TARGET_PERSONAL_MEAN_GAP)):
            part = [r for r in mine if _above_low(r["fraction"]) == half]
            gaps = [float(r["gap_points"]) for r in part]
            entry[f"{name}_cells"] = len(gaps)
            entry[f"{name}_tpr"] = _mean(r["tpr"] for r in part)
            entry[f"{name}_fpr"] = _mean(r["fpr"] for r in part)
            entry[f"{name}_mean_gap"] = _mean(gaps)
            entry[f"{name}_worst_gap"] = max(gaps) if gaps else None
            entry[f"{name}_within"] = sum(g <= bound for g in gaps)
        out.append(entry)
    return out


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def _cell_text(row: Mapping[str, Any], n_seeds: int) -> str:
    status = row["status"]
    if status == "n/a":
        return "n/a"
    if row["n_seeds"] == 0:
        return "error" if row["reason"] else "—"
    parts = [_fmt(row["gap_points"], "+.1f"), _fmt(row["tpr"], ".2f"), _fmt(row["fpr"], ".2f")]
    if row.get("personal_gap_points") is not None:
        parts.append(f"own {row['personal_gap_points']:+.1f}, worst {row['personal_worst_gap_points']:+.1f}")
    if row["attack_success_rate"] is not None:
        parts.append(f"ASR {row['attack_success_rate']:.2f}")
    text = " / ".join(parts)
    return text if row["n_seeds"] == n_seeds else f"{text} †"


def _pipeline_f_text(spec: MatrixSpec, settings: Mapping[str, Any] | None) -> str:
    """The f the pipeline assumes in ``spec``'s runs, as report text (generic when ``settings`` do not resolve)."""
    generic = "f = floor(ASSUMED_BYZANTINE_FRACTION x nodes)"
    if settings is None:
        return generic
    try:
        config = DefenceConfig.from_json(settings)
    except (TypeError, ValueError):  # settings recorded by another version (ParameterError is a ValueError)
        return generic
    f = pipeline.assumed_f(config, spec.nodes)
    return f"f = {f} of the {spec.nodes} nodes (ASSUMED_BYZANTINE_FRACTION {config.assumed_byzantine_fraction:g})"


def _markdown(spec: MatrixSpec, doc: Mapping[str, Any], out_dir: Path, defence_name: str) -> str:
    rows: list[dict[str, Any]] = doc["cells"]
    n_seeds = len(spec.seeds)
    by_key = {(r["distribution"], r["alpha"], r["attack_label"], r["fraction"], r["defence"]): r for r in rows}
    seeds = ", ".join(map(str, spec.seeds))
    lines = [
        "# Attack matrix",
        "",
        f"{spec.dataset}, {spec.model}, {spec.nodes} nodes, {spec.rounds} rounds, {spec.local_steps} local steps; "
        f"mean over report seeds {seeds} (parameters are tuned on seeds "
        f"{', '.join(map(str, TUNING_SEEDS))}, never reported).",
        "",
        f"Command: `{spec.command(out_dir)}`",
        "",
        f"Defence settings: {spec.defence_config or 'the defaults'}, with any environment overrides "
        "(resolved values under `defence_settings` in matrix.json).",
        "",
        "Each cell: **accuracy gap / TPR / FPR** (plus the backdoor's attack success rate). Gap = honest-only "
        "averaging's test accuracy minus the defence's, in points (positive: the defence lost accuracy). "
        "TPR and FPR count nodes the defence flagged, averaged over rounds (mean, median and trimmed mean flag "
        "none by construction). `n/a`: the defence's precondition fails at this fraction (not run); "
        "`—`: not run yet; `error`: the run failed (see errors.jsonl); †: fewer seeds than listed.",
        "",
    ]
    if PIPELINE_KNOWN_F in spec.defences:
        lines += [
            f"`{PIPELINE}` assumes {_pipeline_f_text(spec, doc.get('defence_settings'))} whatever the true "
            f"fraction; `{PIPELINE_KNOWN_F}` is the same pipeline given each cell's true Byzantine count as its f "
            "(an oracle no real network has): beside it, what knowing f would add.",
            "",
        ]
    if PIPELINE_PERSONAL in spec.defences:
        lines += [
            f"`{PIPELINE_PERSONAL}` is the pipeline with the personal view on: besides the shared view (the cell's "
            "first three figures), every honest agent aggregates with its own evidence first and keeps its own "
            "model. **own** is how far the honest agents' own models fall below honest-only (mean over agents), "
            "**worst** the same for the worst honest agent; both in points, averaged over seeds.",
            "",
        ]
    header = "| attack | fraction | " + " | ".join(spec.defences) + " |"
    rule = "|---|---|" + "---|" * len(spec.defences)
    for dist in spec.distributions:
        lines += [f"## {distribution_label(dist)}", "", header, rule]
        for d2, attack, frac in spec.scenarios():
            if d2 != dist:
                continue
            cells = [_cell_text(by_key[(dist[0], dist[1], attack.label, frac, d)], n_seeds) for d in spec.defences]
            lines.append(f"| {attack.label} | {frac:g} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Per defence",
        "",
        "Over each defence's attack cells that ran (n/a cells left out, so the columns cover different cells "
        f"where preconditions differ). Gap bounds: {TARGET_GAP_UP_TO_04:g} points at fractions up to "
        f"{LOW_FRACTION:g} (the target), {TARGET_PERSONAL_MEAN_GAP:g} points above (the shared view; the target "
        "there is on the personal view's own models).",
        "",
        f"| defence | attack cells | n/a | mean TPR | mean FPR | <= {LOW_FRACTION:g}: TPR | FPR | mean gap | worst "
        f"| within {TARGET_GAP_UP_TO_04:g} pts | > {LOW_FRACTION:g}: TPR | FPR | mean gap | worst "
        f"| within {TARGET_PERSONAL_MEAN_GAP:g} pts |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in doc["defences"]:
        lines.append(
            f"| {e['defence']} | {e['cells']} | {e['n/a']} | {_fmt(e['tpr'], '.2f')} | {_fmt(e['fpr'], '.3f')} "
            + "".join(
                f"| {_fmt(e[f'{p}_tpr'], '.2f')} | {_fmt(e[f'{p}_fpr'], '.3f')} | {_fmt(e[f'{p}_mean_gap'], '+.1f')} "
                f"| {_fmt(e[f'{p}_worst_gap'], '+.1f')} | {e[f'{p}_within']}/{e[f'{p}_cells']} "
                for p in ("low", "half")
            )
            + "|"
        )
    lines += ["", f"## Targets for `{defence_name}`", ""]
    if spec.dataset != "mnist":
        lines += [f"The targets are defined on MNIST; this matrix ran on {spec.dataset}, so they are indicative.", ""]
    if defence_name not in spec.defences:
        lines += [f"`{defence_name}` is not among this matrix's defences.", ""]
    lines += ["| target | measured | threshold | status | detail |", "|---|---|---|---|---|"]
    for t in doc["targets"]:
        value = "–" if t["value"] is None else f"{t['value']:.3f}{t['unit']}"
        lines.append(
            f"| {t['name']} | {value} | {t['comparison']} {t['threshold']:g}{t['unit']} | **{t['status']}** "
            f"| {t['detail']} |"
        )
    c = doc["counts"]
    lines += [
        "",
        f"Cells: {c['ok']} run, {c['n/a']} n/a, {c['missing']} missing, {c['error']} failed "
        f"(of {c['total']}); simulation time {_duration(doc['elapsed_s'])} (summed over cells).",
        "",
    ]
    return "\n".join(lines)


def _heatmap(spec: MatrixSpec, rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scen = spec.scenarios()
    labels = [f"{a.label} @{f:g} {distribution_label(d)}" for d, a, f in scen]
    by_key = {(r["distribution"], r["alpha"], r["attack_label"], r["fraction"], r["defence"]): r for r in rows}
    grid = [[by_key[(d[0], d[1], a.label, f, dd)] for dd in spec.defences] for d, a, f in scen]
    n_rows, n_cols = len(scen), len(spec.defences)
    panels = (
        ("TPR", "tpr", "RdYlGn", 0.0, 1.0),
        ("FPR", "fpr", "RdYlGn_r", 0.0, 0.2),
        ("accuracy gap (points)", "gap_points", "RdYlGn_r", 0.0, 20.0),
    )
    annotate = n_rows * n_cols <= 2500
    fig, axes = plt.subplots(
        1,
        3,
        figsize=(3 * (0.55 * n_cols + 1.6) + 3.0, 0.24 * n_rows + 2.2),
        sharey=True,
        constrained_layout=True,
    )
    for ax, (title, key, cmap_name, vmin, vmax) in zip(axes, panels, strict=True):
        values = np.full((n_rows, n_cols), np.nan)
        for i, row in enumerate(grid):
            for j, cell in enumerate(row):
                if cell["n_seeds"] > 0 and cell[key] is not None:
                    values[i, j] = cell[key]
        cmap = plt.get_cmap(cmap_name).with_extremes(bad="lightgrey")
        im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        extend = {"gap_points": "both", "fpr": "max"}.get(key, "neither")
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02, extend=extend)
        for i in range(1, n_rows):  # a line between distributions
            if scen[i][0] != scen[i - 1][0]:
                ax.axhline(i - 0.5, color="black", linewidth=1.0)
        ax.set_title(title)
        ax.set_xticks(range(n_cols), spec.defences, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(n_rows), labels, fontsize=6)
        if annotate:
            for i, row in enumerate(grid):
                for j, cell in enumerate(row):
                    if cell["status"] == "n/a":
                        text = "n/a"
                    elif np.isnan(values[i, j]):
                        text = "–"
                    else:
                        text = format(values[i, j], ".1f" if key == "gap_points" else ".2f")
                    colour = "black"
                    if not np.isnan(values[i, j]):
                        r, g, b, _ = cmap(im.norm(values[i, j]))
                        colour = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.45 else "black"
                    ax.text(j, i, text, ha="center", va="center", fontsize=5, color=colour)
    fig.suptitle(
        f"Attack matrix: {spec.dataset}, {spec.nodes} nodes, {spec.rounds} rounds, seeds "
        f"{', '.join(map(str, spec.seeds))} (grey: n/a or not measured; FPR scale 0 to 0.2, gap 0 to 20 points)"
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_report_is_ours(spec: MatrixSpec, out_dir: str | Path) -> None:
    """Refuse to write ``spec``'s report over the report of another specification in ``out_dir``.

    Cells of any specification can share ``cells.jsonl`` (each is keyed by its whole configuration), but
    ``MATRIX.md``, ``matrix.json`` and ``matrix.png`` are one specification's report: another one goes to
    another directory. Raises ``ParameterError`` naming the fields that differ.
    """
    spec_path = Path(out_dir) / SPEC_FILE
    if not spec_path.exists():
        return
    try:
        held = MatrixSpec.from_json(json.loads(spec_path.read_text())).to_json()
    except (ValueError, KeyError, TypeError):
        return  # an unreadable spec.json belongs to nobody; run_matrix rewrites it
    mine = spec.to_json()
    differ = [k for k in mine if held.get(k) != mine[k]]
    if differ:
        parts = "; ".join(f"{k}: {held.get(k)!r} there, {mine[k]!r} here" for k in differ)
        raise ParameterError(
            f"out: {out_dir} holds the report of another matrix ({parts}); give another --out, or the same "
            "options to resume or summarise that one"
        )


def pending_cells(spec: MatrixSpec, out_dir: str | Path) -> int:
    """How many of ``spec``'s cells are not in ``out_dir``'s ``cells.jsonl`` yet (what a run would start)."""
    settings = defence_settings(spec.defence_config)
    done = set(_finished(_read_jsonl(Path(out_dir) / CELLS_FILE)))
    return len({spec.key(cell, settings) for cell in spec.cells()} - done)


def summarise(out_dir: str | Path, *, spec: MatrixSpec | None = None, target_defence: str = PIPELINE) -> dict[str, Any]:
    """Average the cells over seeds and write ``matrix.json``, ``MATRIX.md`` and ``matrix.png``.

    Parameters
    ----------
    out_dir : str or Path
        A :func:`run_matrix` directory.
    spec : MatrixSpec, optional
        The specification to summarise (default: ``out_dir/spec.json``, the
        last one run there). Only its cells are read from ``cells.jsonl``.
    target_defence : str
        The defence the targets are computed for (default the pipeline; the personal-view targets read
        :data:`PIPELINE_PERSONAL`'s cells).

    Returns
    -------
    dict
        The ``matrix.json`` document: ``spec``, ``cells`` (one per cell
        averaged over seeds: accuracy, honest-only accuracy, gap in points,
        TPR, FPR, attack success rate, seeds, status), ``targets``,
        ``defences`` (per defence over its attack cells: TPR and FPR, and at
        fractions up to 0.4 and above, TPR, FPR, mean and worst gap and the
        cells within the targets' bounds), ``counts``, ``paths``.

    Raises
    ------
    FileNotFoundError
        No ``spec`` given and no ``spec.json`` in ``out_dir``.
    ParameterError
        ``spec`` is not the specification whose report ``out_dir`` holds (:func:`check_report_is_ours`).
    """
    out = Path(out_dir)
    spec_path = out / SPEC_FILE
    if spec is not None:
        check_report_is_ours(spec, out)
    saved: dict[str, Any] | None = json.loads(spec_path.read_text()) if spec_path.exists() else None
    if spec is None:
        if saved is None:
            raise FileNotFoundError(f"{spec_path}: no matrix specification; run the matrix into {out} first")
        spec = MatrixSpec.from_json(saved)
    # The settings the cells ran with (recorded by run_matrix), else those this environment resolves.
    if saved is not None and "defence_settings" in saved and MatrixSpec.from_json(saved) == spec:
        settings = saved["defence_settings"]
    else:
        settings = defence_settings(spec.defence_config)
    records = _finished(_read_jsonl(out / CELLS_FILE))
    errors = {str(r["key"]): str(r.get("reason")) for r in _read_jsonl(out / ERRORS_FILE)}
    rows = _aggregate(spec, records, errors, settings)
    statuses = [r["status"] for r in rows]
    keys = [spec.key(c, settings) for c in spec.cells()]
    per_run = [records[k]["status"] if k in records else ("error" if k in errors else "missing") for k in keys]
    paths = {name: str(out / f) for name, f in (("json", JSON_FILE), ("markdown", MARKDOWN_FILE), ("png", PNG_FILE))}
    doc: dict[str, Any] = {
        "spec": spec.to_json(),
        "command": spec.command(out),
        "report_seeds": list(spec.seeds),
        "tuning_seeds": list(TUNING_SEEDS),
        "target_defence": target_defence,
        "defence_settings": settings,
        "results_version": RESULTS_VERSION,
        "counts": {
            "total": len(keys),
            "ok": per_run.count("ok"),
            "n/a": per_run.count("n/a"),
            "error": per_run.count("error"),
            "missing": per_run.count("missing"),
            "groups": len(rows),
            "groups_complete": statuses.count("ok") + statuses.count("n/a"),
        },
        "elapsed_s": sum(r["elapsed_s"] for r in rows),
        "targets": _targets(spec, rows, target_defence),
        "defences": _per_defence(spec, rows),
        "cells": rows,
        "paths": paths,
    }
    (out / JSON_FILE).write_text(json.dumps(doc, indent=1) + "\n")
    (out / MARKDOWN_FILE).write_text(_markdown(spec, doc, out, target_defence))
    _heatmap(spec, rows, out / PNG_FILE)
    log.info("matrix: wrote %s, %s and %s", paths["json"], paths["markdown"], paths["png"])
    return doc
