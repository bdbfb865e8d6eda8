"""Checkpoints of a run: weights + metadata (via resnet_apps.models.checkpoint) and the resume state.

``checkpoints/last.state.safetensors`` is ONE file holding the model, the optimiser tensors and, in its
safetensors metadata, the loop position (epoch, step), history, best metric and GradScaler state. One
file written atomically (temp file + ``os.replace``) means a SIGKILL at any moment leaves either the
previous state or the new one, never a mix. No pickles anywhere.

Why not ``checkpoint.save_state``: it writes ``<stem>.state.safetensors`` and then ``<stem>.state.json``, each
atomically but not together. A SIGKILL between the two replaces leaves the new tensors beside the old JSON,
and ``load_state`` loads that pair without complaint (weights of step n+1, loop position of step n), so a
resumed run would silently diverge. The resume test also reads the loop position from this file's
safetensors header while the run is being killed. No RNG state is stored: randomness is re-derived from
(seed, epoch, step / sample index).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet_apps.errors import CheckpointError
from resnet_apps.io.atomic import atomic_write, atomic_write_text, clean_stale_temps
from resnet_apps.io.writable import writing
from resnet_apps.train.run import LoopState

STATE_NAME = "last.state.safetensors"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model under DDP and torch.compile wrappers (what checkpoints store)."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with writing(path, "checkpoint"):  # a full disk: typed, naming the checkpoint; the old one stays
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def _model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in unwrap(model).state_dict().items()}


def save_weights(stem: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """``<stem>.safetensors`` + ``<stem>.json`` through ``resnet_apps.models.checkpoint.save_checkpoint``."""
    try:
        from resnet_apps.models.checkpoint import save_checkpoint
    except ImportError:  # the checkpoint module is another layer's; this keeps the same file layout
        stem.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save(_model_tensors(model), stem.with_suffix(".safetensors"), {"format": "pt"})
        atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1, default=str))
        return
    save_checkpoint(stem, unwrap(model), meta)


def save_state(
    ckpt_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loop: LoopState,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Write the resume state (model, optimiser, loop position) as one atomic safetensors file."""
    tensors = {f"model.{k}": v for k, v in _model_tensors(model).items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, float]] = {}
    for pid, slots in opt["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value) and value.ndim > 0:
                tensors[f"opt.{pid}.{name}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = float(value)
    groups = [
        {k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in opt["param_groups"]
    ]
    meta = {
        "loop": loop.to_dict(),
        "param_groups": groups,
        "scalars": scalars,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
    }
    _atomic_save(tensors, ckpt_dir / STATE_NAME, {"resnet_apps_state": json.dumps(meta, default=float)})


def load_state(
    ckpt_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
) -> LoopState:
    """Restore model, optimiser and GradScaler from the resume state; returns the loop position."""
    from safetensors import safe_open

    path = ckpt_dir / STATE_NAME
    # a writer SIGKILLed mid-save leaves a temporary as big as the state; the run directory is locked
    # (rundir.lock_run_dir), so nothing else is writing here now
    clean_stale_temps(ckpt_dir)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no resume state; this run never finished a checkpoint (start it anew)"
        )
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads((handle.metadata() or {})["resnet_apps_state"])
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    unwrap(model).load_state_dict(model_sd)
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, slots in meta["scalars"].items():
        for name, value in slots.items():
            state.setdefault(int(pid), {})[name] = torch.tensor(value)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    return LoopState.from_dict(meta["loop"], origin=str(path))


def load_weights_into(model: nn.Module, stem: Path) -> None:
    """Load ``<stem>.safetensors`` into ``model`` (the best weights, for the final evaluation)."""
    from safetensors.torch import load_file

    path = stem.with_suffix(".safetensors")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint missing; the run may not have finished an epoch")
    unwrap(model).load_state_dict(load_file(str(path)))
