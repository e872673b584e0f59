"""Plug-ins: your own attack, aggregation rule, model or dataset, by name, in the simulator and the CLI.

Register from Python before a run::

    import numpy as np
    import zerotrustml
    from zerotrustml import plugins

    @plugins.attack("scaled_negation", params={"scale": 5.0})
    def scaled_negation(ctx, params):
        # ctx.own: what the Byzantine nodes would have sent if honest, (n_byzantine, d);
        # ctx.honest: the honest updates of the round when the attackers are omniscient, else None.
        return -params["scale"] * ctx.own

    result = zerotrustml.simulate(dataset="synthetic", attack="scaled_negation", attack_params={"scale": 3.0})

or through an entry point, so that ``zerotrustml run --attack scaled_negation`` finds it too: in your
package's ``pyproject.toml``::

    [project.entry-points."zerotrustml.plugins"]
    mine = "my_package.ztml_plugins"    # a module that registers on import, or a function to call

``zerotrustml plugins`` lists what is registered and where it came from.

The four kinds and what a plug-in is called with:

- :func:`attack`: ``fn(ctx: AttackContext, params: dict) -> (n_byzantine, d)`` updates to submit; ``params``
  holds the registered defaults with ``--attack-param`` values over them (an unknown key is refused).
- :func:`aggregator`: ``fn(updates: (n, d) float32, f: int) -> vector`` or ``(vector, kept)`` where ``kept``
  holds the row indices the aggregate was built from; rows left out count as flagged.
  ``precondition(n, f)`` may return a reason the rule cannot run (checked before the run starts).
- :func:`model`: ``fn(n_features, n_classes, **kw) -> Model`` (see :class:`zerotrustml.fl.models.Model`).
- :func:`dataset`: ``fn(seed: int) -> Dataset`` (see :class:`zerotrustml.fl.data.Dataset`).

A plug-in's name cannot shadow a built-in one; what a plug-in returns is checked (shape, dtype, finite
values) and a break is a :class:`~zerotrustml.exceptions.ValidationError` naming the plug-in.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zerotrustml.exceptions import ParameterError

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "Plugin",
    "aggregator",
    "attack",
    "dataset",
    "get",
    "load_entry_points",
    "model",
    "names",
    "registered",
    "unregister",
]

ENTRY_POINT_GROUP = "zerotrustml.plugins"
KINDS = ("attack", "aggregator", "model", "dataset")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Plugin:
    """One registered plug-in."""

    kind: str
    name: str
    fn: Callable[..., Any]
    params: Mapping[str, float | str] = field(default_factory=dict)
    precondition: Callable[[int, int], str | None] | None = None
    description: str = ""
    origin: str = "python"


_REGISTRY: dict[str, dict[str, Plugin]] = {kind: {} for kind in KINDS}
_loaded_entry_points = False


def _builtin_names(kind: str) -> tuple[str, ...]:
    # Imported here: the plug-in module must not import the simulator's modules at import time (they import it).
    if kind == "attack":
        from zerotrustml.fl.attacks import ATTACKS

        return ATTACKS
    if kind == "aggregator":
        from zerotrustml.defence.rules import ALL_DEFENCES

        return ALL_DEFENCES
    if kind == "model":
        from zerotrustml.fl.models import MODELS, TORCH_MODELS

        return MODELS + TORCH_MODELS
    from zerotrustml.fl.data import DATASETS, PATH_DATASETS

    return DATASETS + PATH_DATASETS


def _register(plugin: Plugin) -> None:
    if not _NAME.match(plugin.name):
        raise ParameterError(
            f"{plugin.kind} plug-in name: lower-case letters, digits and _, starting with a letter; got {plugin.name!r}"
        )
    if plugin.name in _builtin_names(plugin.kind):
        raise ParameterError(f"{plugin.kind} plug-in {plugin.name!r}: a built-in {plugin.kind} has that name")
    held = _REGISTRY[plugin.kind].get(plugin.name)
    if held is not None and held.fn is not plugin.fn:
        raise ParameterError(
            f"{plugin.kind} plug-in {plugin.name!r}: already registered (from {held.origin}); unregister it first"
        )
    if not callable(plugin.fn):
        raise ParameterError(f"{plugin.kind} plug-in {plugin.name!r}: must be callable")
    _REGISTRY[plugin.kind][plugin.name] = plugin


def _decorator(kind: str, name: str, **extra: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        _register(Plugin(kind, name, fn, description=(fn.__doc__ or "").strip().split("\n")[0], **extra))
        return fn

    return register


def attack(
    name: str, *, params: Mapping[str, float | str] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(ctx, params)`` as the attack ``name``; ``params`` are its parameters' defaults."""
    defaults = dict(params or {})
    for key, value in defaults.items():
        if not isinstance(key, str) or not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise ParameterError(f"attack plug-in {name!r}: params[{key!r}] must be a number or a string")
    return _decorator("attack", name, params=defaults)


def aggregator(
    name: str, *, precondition: Callable[[int, int], str | None] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(updates, f)`` as the aggregation rule ``name`` (``--aggregator name``)."""
    return _decorator("aggregator", name, precondition=precondition)


def model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(n_features, n_classes, **kw)`` as the model ``name`` (``--model name``)."""
    return _decorator("model", name)


def dataset(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(seed)`` as the dataset ``name`` (``--dataset name``)."""
    return _decorator("dataset", name)


def unregister(kind: str, name: str) -> None:
    """Remove a plug-in (a no-op when none has that name)."""
    _REGISTRY[_kind(kind)].pop(name, None)


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ParameterError(f"kind: one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def names(kind: str) -> tuple[str, ...]:
    """The registered plug-in names of ``kind``, sorted."""
    return tuple(sorted(_REGISTRY[_kind(kind)]))


def get(kind: str, name: str) -> Plugin | None:
    """The plug-in ``name`` of ``kind``, or ``None``."""
    return _REGISTRY[_kind(kind)].get(name)


def registered() -> list[Plugin]:
    """Every registered plug-in, by kind then name."""
    return [_REGISTRY[k][n] for k in KINDS for n in sorted(_REGISTRY[k])]


def load_entry_points(*, force: bool = False) -> list[str]:
    """Load the installed packages' plug-ins (entry point group ``zerotrustml.plugins``), once.

    Each entry point is a module (registering on import) or a callable (called with no arguments). What an
    entry point registers is marked with its name as origin. A broken entry point raises ``ParameterError``
    naming it. Returns the names of the entry points loaded.
    """
    global _loaded_entry_points
    if _loaded_entry_points and not force:
        return []
    _loaded_entry_points = True
    loaded: list[str] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        before = {k: set(v) for k, v in _REGISTRY.items()}
        try:
            target = ep.load()
            if callable(target):
                target()
        except ParameterError:
            raise
        except Exception as e:  # a plug-in's own failure, reported as its own
            raise ParameterError(f"plug-in entry point {ep.name!r} ({ep.value}): {type(e).__name__}: {e}") from e
        for kind, held in _REGISTRY.items():
            for name in set(held) - before[kind]:
                p = held[name]
                held[name] = Plugin(p.kind, p.name, p.fn, p.params, p.precondition, p.description, ep.value)
        loaded.append(ep.name)
    return loaded
