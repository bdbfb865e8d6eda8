"""Reading weights the user points at: a file (timm / torchvision layout, or one of our checkpoints) or a run.

timm's ResNet keys are torchvision's (``conv1.weight``, ``layer1.0.downsample.0.weight``, ``fc.weight``), so
both layouts load unchanged. Files in that layout are handed to timm by path; anything that needs its keys
rewritten first (a ``{"state_dict": ...}`` wrapper, a ``module.`` prefix, our ``backbone.`` prefix) is read
once here and handed over as a state dict.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from resnet_apps.errors import WeightsFormatError, WeightsUnavailableError
from resnet_apps.weights.locations import WEIGHT_SUFFIXES, ResolvedWeights

# prefixes stripped, in order, to reach timm's layout (DDP wrapper, our heads, timm FeatureListNet users)
_PREFIXES = ("module.", "backbone.", "encoder.")
_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")


def _torch_load(path: Path) -> Mapping[str, object]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """key -> shape of every tensor in a weights file, reading only headers for safetensors."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open  # noqa: PLC0415

            with safe_open(str(path), framework="pt") as handle:
                return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        loaded = _torch_load(path)
    except Exception as error:  # corrupt file, pickle with code (weights_only refuses), not a tensor file
        raise WeightsFormatError(
            f"cannot read weights file {path}: {error}. Expected a .safetensors file or a .pth/.bin "
            "state dict "
            "saved with torch.save(model.state_dict())"
        ) from error
    return {k: tuple(v.shape) for k, v in _unwrap(loaded, path).items() if isinstance(v, torch.Tensor)}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a weights file, with any wrapper dict removed (keys not yet normalised)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # noqa: PLC0415

            return load_file(str(path), device="cpu")
        loaded = _torch_load(path)
    except Exception as error:
        raise WeightsFormatError(f"cannot read weights file {path}: {error}") from error
    return {k: v for k, v in _unwrap(loaded, path).items() if isinstance(v, torch.Tensor)}


def read_tensor(path: Path, key: str) -> torch.Tensor:
    """One tensor of a weights file (safetensors: without reading the others)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open  # noqa: PLC0415

        with safe_open(str(path), framework="pt") as handle:
            if key in handle.keys():
                return handle.get_tensor(key)
    state = normalise_keys(read_state_dict(path))
    if key not in state:
        raise WeightsFormatError(f"{path} has no tensor {key!r}; is it a ResNet state dict?")
    return state[key]


def _unwrap(loaded: object, path: Path) -> Mapping[str, object]:
    if not isinstance(loaded, Mapping):
        raise WeightsFormatError(
            f"{path} holds a {type(loaded).__name__}, not a state dict; save model.state_dict() instead"
        )
    for key in _WRAPPER_KEYS:
        inner = loaded.get(key)
        if isinstance(inner, Mapping):
            return inner
    return loaded


def strip_prefix(keys: Iterable[str]) -> str:
    """The prefix to strip so that keys reach timm's layout ("" when they already are)."""
    keys = list(keys)
    prefix = ""
    for candidate in _PREFIXES:
        rest = [k[len(prefix) :] for k in keys if k.startswith(prefix)]
        if (
            rest
            and not any(k.startswith("conv1") for k in rest)
            and any(k.startswith(candidate) for k in rest)
        ):
            prefix += candidate
    return prefix


def normalise_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes (``module.``, ``backbone.``); drop keys outside the prefix (head, decoder)."""
    prefix = strip_prefix(state)
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _conv1_in_chans(shapes: Mapping[str, tuple[int, ...]]) -> int:
    for key in ("conv1.weight", "conv1.0.weight"):  # plain stem, deep stem (resnet*d)
        if key in shapes and len(shapes[key]) == 4:
            return int(shapes[key][1])
    raise WeightsFormatError(
        f"no conv1 kernel among the keys ({', '.join(sorted(shapes)[:5])}, ...); expected a ResNet "
        "state dict "
        "in timm or torchvision layout (conv1.weight, layer1.0.conv1.weight, ...)"
    )


def run_checkpoint(path: Path) -> Path | None:
    """The ``best.safetensors`` of a run directory (or of its ``checkpoints`` folder), if it is one."""
    for folder in (path / "checkpoints", path):
        candidate = folder / "best.safetensors"
        if candidate.is_file() and candidate.with_suffix(".json").is_file():
            return candidate
    return None


def _run_in_chans(meta_path: Path, shapes: Mapping[str, tuple[int, ...]]) -> int:
    """``model.in_chans`` of a run's checkpoint JSON, else the conv1 kernel's input channels.

    Only this field is read: the full checkpoint reader (``models.meta.CheckpointMeta``) is a layer above.
    """
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsFormatError(
            f"{meta_path}: unreadable checkpoint metadata ({type(error).__name__}: {error}); restore it from "
            "the run, or pass the .safetensors weights file itself"
        ) from None
    model = meta.get("model") if isinstance(meta, dict) else None
    in_chans = model.get("in_chans") if isinstance(model, dict) else None
    if in_chans is None:
        return _conv1_in_chans(shapes)
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise WeightsFormatError(
            f"{meta_path}: field 'model.in_chans' = {in_chans!r} is not a positive integer; fix the file, or "
            "pass the .safetensors weights file itself"
        )
    return in_chans


def resolve_path(path: Path) -> ResolvedWeights:
    """Resolve an explicit weights file or run directory.

    Raises:
        WeightsUnavailableError: nothing at ``path``.
        WeightsFormatError: a folder that is not a run of ours, or a file that is not a state dict.
    """
    if path.is_dir():
        checkpoint = run_checkpoint(path)
        if checkpoint is None:
            raise WeightsFormatError(
                f"{path} is a folder but not a run directory of ours (no checkpoints/best.safetensors with "
                "best.json); pass the weights file itself"
            )
        state = normalise_keys(read_state_dict(checkpoint))
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        in_chans = _run_in_chans(checkpoint.with_suffix(".json"), shapes)
        return ResolvedWeights(
            kind="state_dict",
            source=str(path),
            imagenet=False,
            tag=None,
            path=checkpoint,
            state_dict=state,
            source_in_chans=in_chans,
            shapes=shapes,
        )
    if not path.is_file():
        raise WeightsUnavailableError(
            f"weights file {path} does not exist; fix the path in the weights field, or use "
            "'imagenet' / 'none'"
        )
    if path.suffix not in WEIGHT_SUFFIXES:
        raise WeightsFormatError(
            f"{path}: unknown weights format; expected one of {', '.join(WEIGHT_SUFFIXES)}"
        )
    raw_shapes = read_shapes(path)
    prefix = strip_prefix(raw_shapes)
    if not prefix:  # timm / torchvision layout (timm unwraps {"state_dict": ...} itself): timm reads the file
        return ResolvedWeights(
            kind="file",
            source=str(path),
            path=path,
            source_in_chans=_conv1_in_chans(raw_shapes),
            shapes=raw_shapes,
        )
    state = normalise_keys(read_state_dict(path))
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    return ResolvedWeights(
        kind="state_dict",
        source=str(path),
        path=path,
        state_dict=state,
        source_in_chans=_conv1_in_chans(shapes),
        shapes=shapes,
    )
