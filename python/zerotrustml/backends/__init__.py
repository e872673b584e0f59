"""Storage backends: one async interface (:class:`Backend`), several stores.

``embedded``
    SQLite in a data directory (:class:`EmbeddedStore`); the default.

The Holochain backend (conductor websockets) implements the same interface.
"""

from __future__ import annotations

import os

from zerotrustml.backends.base import Backend, RoundRecord, StoreCorruptError, StoreError, StoreLockedError
from zerotrustml.backends.embedded import EmbeddedStore
from zerotrustml.exceptions import ParameterError

__all__ = [
    "BACKENDS",
    "Backend",
    "EmbeddedStore",
    "RoundRecord",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "open_backend",
]

BACKENDS: tuple[str, ...] = ("embedded",)


def open_backend(name: str, data_dir: str | os.PathLike[str]) -> Backend:
    """A backend by name, not yet opened: use it as ``async with open_backend(...) as store``.

    Parameters
    ----------
    name
        One of :data:`BACKENDS`.
    data_dir
        Where the backend keeps its files.

    Raises
    ------
    ParameterError
        The name is not one of :data:`BACKENDS`.
    """
    if name == "embedded":
        return EmbeddedStore(data_dir)
    raise ParameterError(f"backend: unknown name {name!r}; choose one of {', '.join(BACKENDS)}")
