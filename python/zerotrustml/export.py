"""Take a trained model away from a run's store: numpy ``.npz`` always, a torch ``state_dict`` for torch models.

``zerotrustml export runs/x`` writes ``runs/x/model.npz``: one array per named part of the model
(``W``, ``b`` for softmax; ``W1``, ``b1``, ``W2``, ``b2`` for the MLPs; the torch module's parameter names for
the torch models), the flat vector as ``params``, and a JSON string ``meta`` naming the model, the round and
the run's parameters. For a torch model it also writes ``model.pt``, the ``state_dict`` that
``torch.nn.Module.load_state_dict`` takes for the network the model describes.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from zerotrustml.backends.embedded import DB_NAME, EmbeddedStore
from zerotrustml.exceptions import ParameterError

__all__ = ["export_model", "load_model_npz"]


async def _read(data_dir: Path, round: int | None) -> tuple[dict[str, Any], int, np.ndarray]:
    async with EmbeddedStore(data_dir) as store:
        params = await store.get_meta("run")
        last = await store.last_completed_round()
        if params is None or last is None:
            raise ParameterError(f"{data_dir}: no completed round to export yet")
        chosen = last if round is None else round
        if not 0 <= chosen <= last:
            raise ParameterError(f"round: the store holds rounds 0-{last}, got {chosen}")
        record = await store.get_round_record(chosen)
        if record is None:
            raise ParameterError(f"round: no record of round {chosen} in {data_dir}")
        return params, chosen, np.asarray(record.model, dtype=np.float32)


def export_model(data_dir: str | Path, out: str | Path | None = None, *, round: int | None = None) -> list[Path]:
    """Write the model after ``round`` (default: the last completed one) of the run in ``data_dir``.

    Returns the files written: ``out`` (default ``<data_dir>/model.npz``) and, for a torch model, the
    ``state_dict`` beside it (``.pt``).

    Raises
    ------
    ParameterError
        Not a run's store, no completed round, a round outside the run, or a model the run's parameters no
        longer build.
    """
    from zerotrustml.fl import data, models
    from zerotrustml.fl.simulation import RunConfig

    directory = Path(data_dir)
    if not (directory / DB_NAME).exists():
        raise ParameterError(f"{directory}: not a run's data directory (no {DB_NAME})")
    params, chosen, flat = asyncio.run(_read(directory, round))
    config = RunConfig(**params)
    ds = data.load_dataset(config.dataset, seed=config.seed, path=config.dataset_path)
    model = models.make_model(config.model, ds.n_features, ds.n_classes, image_shape=ds.image_shape)
    if model.dims != flat.shape[0]:
        raise ParameterError(f"model: {config.model} has {model.dims} parameters, the store's model {flat.shape[0]}")
    parts = model.unflatten(flat) if hasattr(model, "unflatten") else {}
    meta = {
        "model": config.model,
        "dims": int(model.dims),
        "n_features": int(ds.n_features),
        "n_classes": int(ds.n_classes),
        "image_shape": list(ds.image_shape) if ds.image_shape else None,
        "round": chosen,
        "run": params,
    }
    target = Path(out) if out is not None else directory / "model.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {name.replace(".", "_"): np.asarray(v, dtype=np.float32) for name, v in parts.items()}
    np.savez(target, params=flat, meta=np.asarray(json.dumps(meta)), **arrays)
    written = [target]
    if config.model in models.TORCH_MODELS:
        import torch

        state = model.to_module(flat).state_dict()  # type: ignore[attr-defined]
        pt = target.with_suffix(".pt")
        torch.save(state, pt)
        written.append(pt)
    return written


def load_model_npz(path: str | Path) -> tuple[np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    """Read an exported ``.npz``: the flat parameters, the metadata and the named parts."""
    with np.load(Path(path), allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        parts = {k: z[k] for k in z.files if k not in ("params", "meta")}
        return np.asarray(z["params"]), meta, parts
