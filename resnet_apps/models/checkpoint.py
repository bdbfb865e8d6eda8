"""Checkpoints as safetensors + JSON (``save_checkpoint`` / ``load_run``). Nothing is pickled, so loading
a checkpoint never runs code.

A run directory holds ``checkpoints/best.{safetensors,json}`` and ``last.{safetensors,json}``. Every file is
written to a temporary name in the same folder and moved into place with ``os.replace``, so a crash leaves
the old file whole. The resume state (optimizer, scaler, loop position) is ``train.state``'s own single file,
not written here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet_apps.errors import CheckpointError
from resnet_apps.io.atomic import atomic_write
from resnet_apps.models.meta import FORMAT_VERSION, CheckpointMeta

__all__ = ["FORMAT_VERSION", "CheckpointMeta", "find_checkpoint", "load_run", "save_checkpoint"]


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

    Raises:
        TypeError: a value that is not JSON data.
        CheckpointError: metadata that :class:`CheckpointMeta` (hence ``load_run``) would refuse, e.g. a class
            list whose length differs from the model's outputs; nothing is written then.
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
    # fail on a non-JSON value or metadata that load_run would refuse before anything is replaced on disk
    CheckpointMeta.from_dict(
        json.loads(json.dumps(meta, default=_json_default)), source=f"{stem}.json (being written)"
    )
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
) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild a trained model from its checkpoint (no network: the backbone is built with weights="none").

    Args:
        run_dir_or_stem: a run directory, or a checkpoint stem / .json / .safetensors path.
        which: "best" or "last" (run directories only).
        map_location: device for the tensors.

    Returns:
        (model in eval mode, its checked metadata; also a read-only mapping over the stored JSON).

    Raises:
        CheckpointError: missing files, unreadable or invalid metadata (:class:`CheckpointMeta`), an empty,
            truncated or corrupt ``.safetensors``, tensors that do not fit the model; each names the file.
    """
    from safetensors.torch import load_file

    from resnet_apps.models.heads import build_model

    stem = find_checkpoint(run_dir_or_stem, which)
    meta = CheckpointMeta.read(stem.with_suffix(".json"))
    if not meta.model.backbone:
        raise CheckpointError(
            f"{meta.source} lacks 'model.backbone' (the timm name the weights belong to); it was not written by "
            "save_checkpoint: add it, or re-save the checkpoint"
        )
    model = build_model(meta.task, backbone=meta.model.backbone, weights="none", **meta.model.build_kwargs())
    tensors = stem.with_suffix(".safetensors")
    try:
        state = load_file(str(tensors), device=str(map_location))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own, OSError or ValueError by case
        size = tensors.stat().st_size if tensors.is_file() else 0
        raise CheckpointError(
            f"{tensors}: not a readable safetensors file ({size} bytes; {type(error).__name__}: {error}); "
            "it is empty, truncated or corrupt: restore it from the run, or retrain"
        ) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{tensors} does not fit the model described in {meta.source}: {error}"
        ) from error
    backbone: Any = model.backbone
    backbone.weights_source = meta.raw.get("weights_source", str(stem))
    backbone.imagenet_weights_used = meta.imagenet_weights_used
    return model.to(map_location).eval(), meta
