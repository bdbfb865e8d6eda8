"""Checkpoints as safetensors + JSON: models (``save_checkpoint`` / ``load_run``) and resume state
(``save_state`` / ``load_state``). Nothing is pickled, so loading a checkpoint never runs code.

A run directory holds ``checkpoints/best.{safetensors,json}`` and ``last.{safetensors,json}``; ``last`` also
has ``last.state.{safetensors,json}`` (optimizer, scheduler, RNG). Every file is written to a temporary
name in the same folder and moved into place with ``os.replace``, so a crash leaves the old file whole.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet_apps.errors import CheckpointError
from resnet_apps.io.atomic import atomic_write

FORMAT_VERSION = 1


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    atomic_write(path, lambda tmp: write(str(tmp)))


def _json_default(value: Any) -> Any:
    """Plain-data forms of the few non-JSON types a meta dict tends to hold; anything else is an error."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"meta value of type {type(value).__name__} is not JSON data: {value!r}")


def _write_json(path: Path, data: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as handle:
            json.dump(data, handle, indent=2, default=_json_default)
            handle.write("\n")

    _atomic_write(path, write)


def _write_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    # safetensors refuses views sharing storage: give it contiguous CPU copies
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    _atomic_write(path, lambda tmp: save_file(plain, tmp, metadata={"format": "pt"}))


def _stem(path_stem: str | os.PathLike[str]) -> Path:
    path = Path(path_stem)
    return path.with_suffix("") if path.suffix in {".safetensors", ".json"} else path


def save_checkpoint(path_stem: str | os.PathLike[str], model: nn.Module, meta: Mapping[str, Any]) -> None:
    """Write ``<stem>.safetensors`` (the model's state dict) and ``<stem>.json`` (``meta``), atomically.

    ``meta`` follows docs/ARCHITECTURE.md section 2; ``task`` and ``model`` default to the model's own
    ``task`` / ``model_config`` (set by ``build_model``), ``format_version`` to 1. The JSON is written last,
    so a ``.json`` always has its tensors.
    """
    stem = _stem(path_stem)
    meta = dict(meta)
    meta.setdefault("format_version", FORMAT_VERSION)
    if "task" not in meta and hasattr(model, "task"):
        meta["task"] = getattr(model, "task")  # noqa: B009
    if "model" not in meta and hasattr(model, "model_config"):
        meta["model"] = dict(getattr(model, "model_config"))  # noqa: B009
    backbone = getattr(model, "backbone", None)
    meta.setdefault("weights_source", str(getattr(backbone, "weights_source", "none")))
    meta.setdefault("imagenet_weights_used", bool(getattr(backbone, "imagenet_weights_used", False)))
    json.dumps(meta, default=_json_default)  # fail on a non-JSON value before anything is replaced on disk
    _write_tensors(stem.with_suffix(".safetensors"), model.state_dict())
    _write_json(stem.with_suffix(".json"), meta)


def find_checkpoint(run_dir_or_stem: str | os.PathLike[str], which: str = "best") -> Path:
    """The stem (path without suffix) of checkpoint ``which`` in a run directory, or of a given stem/file."""
    path = Path(run_dir_or_stem)
    candidates = [path / "checkpoints" / which, path / which] if path.is_dir() else [_stem(path)]
    for stem in candidates:
        if stem.with_suffix(".json").is_file() and stem.with_suffix(".safetensors").is_file():
            return stem
    raise CheckpointError(
        f"no checkpoint '{which}' at {path}: expected {candidates[0]}.safetensors and {candidates[0]}.json. "
        "Pass a run directory written by `resnet-apps train`, or the checkpoint stem itself"
    )


def load_run(
    run_dir_or_stem: str | os.PathLike[str], which: str = "best", map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained model from its checkpoint (no network: the backbone is built with weights="none").

    Args:
        run_dir_or_stem: a run directory, or a checkpoint stem / .json / .safetensors path.
        which: "best" or "last" (run directories only).
        map_location: device for the tensors.

    Returns:
        (model in eval mode, meta dict).

    Raises:
        CheckpointError: missing files, unknown format version, tensors that do not fit the model.
    """
    from safetensors.torch import load_file

    from resnet_apps.models.heads import build_model

    stem = find_checkpoint(run_dir_or_stem, which)
    meta = json.loads(stem.with_suffix(".json").read_text())
    if meta.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise CheckpointError(f"{stem}.json has format_version {meta['format_version']}; upgrade resnet_apps")
    config = meta.get("model")
    if not isinstance(config, Mapping) or "backbone" not in config or "task" not in meta:
        raise CheckpointError(
            f"{stem}.json lacks 'task' or 'model.backbone'; it was not written by save_checkpoint"
        )
    keys = ("in_chans", "num_classes", "multilabel", "dropout", "pooling", "fpn_channels")
    model = build_model(
        meta["task"],
        backbone=config["backbone"],
        weights="none",
        head=str(config.get("head", "linear")),  # checkpoints before the head option are linear
        **{k: config[k] for k in keys if k in config},
    )
    state = load_file(str(stem.with_suffix(".safetensors")), device=str(map_location))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{stem}.safetensors does not fit the model described in {stem}.json: {error}"
        ) from error
    backbone: Any = model.backbone
    backbone.weights_source = meta.get("weights_source", str(stem))
    backbone.imagenet_weights_used = bool(meta.get("imagenet_weights_used", False))
    return model.to(map_location).eval(), meta


# --- resume state: nested dicts of tensors and plain values -------------------------------------------


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Plain-JSON tree with tensors (and numpy arrays) moved into ``tensors`` under their key path."""
    if isinstance(value, torch.Tensor):
        tensors[path] = value
        return {"__tensor__": path}
    if isinstance(value, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(value))
        return {"__ndarray__": path}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, f"{path}.{k}", tensors) for k, v in value.items()}
        # optimizer state is keyed by int parameter ids: keep the key types
        return {"__items__": [[k, _encode(v, f"{path}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(
        f"cannot store {type(value).__name__} at {path!r} in a resume state: only tensors, numpy arrays, "
        "numbers, strings, None and lists/tuples/dicts of them (no pickles)"
    )


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__ndarray__" in value:
            return tensors[value["__ndarray__"]].numpy()
        if "__tuple__" in value:
            return tuple(_decode(v, tensors) for v in value["__tuple__"])
        if "__items__" in value:
            return {k: _decode(v, tensors) for k, v in value["__items__"]}
        return {k: _decode(v, tensors) for k, v in value.items()}
    return value


def save_state(path_stem: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Write a resume state as ``<stem>.state.safetensors`` (tensors) + ``<stem>.state.json`` (the rest).

    Args:
        path_stem: e.g. ``run/checkpoints/last``.
        state: nested dicts/lists/tuples of tensors, numpy arrays, numbers, strings, None; e.g.
            {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng_state(), "epoch": 3}.
    """
    stem = _stem(path_stem)
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(dict(state), "state", tensors)
    _write_tensors(stem.with_name(stem.name + ".state.safetensors"), tensors)
    _write_json(stem.with_name(stem.name + ".state.json"), {"format_version": FORMAT_VERSION, "state": tree})


def load_state(path_stem: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read what :func:`save_state` wrote (the same nested structure, key types and tuples included)."""
    from safetensors.torch import load_file

    stem = _stem(path_stem)
    json_path = stem.with_name(stem.name + ".state.json")
    tensor_path = stem.with_name(stem.name + ".state.safetensors")
    if not (json_path.is_file() and tensor_path.is_file()):
        raise CheckpointError(
            f"no resume state at {stem}: expected {json_path.name} and {tensor_path.name}; "
            "start without --resume"
        )
    tree = json.loads(json_path.read_text())["state"]
    return _decode(tree, load_file(str(tensor_path), device=str(map_location)))


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states, storable by :func:`save_state`."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
