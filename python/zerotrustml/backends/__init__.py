"""Storage backends: one async interface (:class:`Backend`), several stores.

``embedded``
    SQLite in a data directory (:class:`EmbeddedStore`); the default.
``holochain``
    The hApp's DHT on real conductors, one agent per node
    (:class:`HolochainBackend`; a local network is started on loopback).
``mock``
    The same backend over the in-process mock conductor
    (:class:`~zerotrustml.backends.mock_conductor.MockConductor`): the zome's
    functions, payloads and errors, without Holochain.
"""

from __future__ import annotations

import os
from typing import Any

from zerotrustml.backends.base import Backend, RoundRecord, StoreCorruptError, StoreError, StoreLockedError
from zerotrustml.backends.embedded import EmbeddedStore
from zerotrustml.backends.holochain import HolochainBackend
from zerotrustml.exceptions import ParameterError

__all__ = [
    "BACKENDS",
    "Backend",
    "EmbeddedStore",
    "HolochainBackend",
    "RoundRecord",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "open_backend",
]

BACKENDS: tuple[str, ...] = ("embedded", "holochain", "mock")


def open_backend(name: str, data_dir: str | os.PathLike[str], **options: Any) -> Backend:
    """A backend by name, not yet opened: use it as ``async with open_backend(...) as store``.

    Parameters
    ----------
    name
        One of :data:`BACKENDS`.
    data_dir
        Where the backend keeps its files.
    options
        For ``holochain`` and ``mock``: the keyword arguments of :class:`HolochainBackend`
        (``conductors``, ``round_timeout``, ``log``, ...); for ``embedded``:
        ``durable`` (:class:`EmbeddedStore`).

    Raises
    ------
    ParameterError
        The name is not one of :data:`BACKENDS`.
    """
    if name == "embedded":
        unknown = sorted(set(options) - {"durable"})
        if unknown:
            raise ParameterError(f"backend options: the embedded store takes only durable, got {', '.join(unknown)}")
        return EmbeddedStore(data_dir, durable=bool(options.get("durable", True)))
    if name in ("holochain", "mock"):
        return HolochainBackend(data_dir, mode="conductors" if name == "holochain" else "mock", **options)
    raise ParameterError(f"backend: unknown name {name!r}; choose one of {', '.join(BACKENDS)}")
