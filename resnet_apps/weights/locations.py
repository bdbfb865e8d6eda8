"""Where starting weights may live on disk, and the type a resolved request becomes (a leaf: no torch).

Folders searched, in order: ``$RESNET_APPS_WEIGHTS_DIR``, our fetch cache (``$RESNET_APPS_CACHE_DIR/weights``,
default ``~/.cache/resnet_apps/weights``), then the Hugging Face and torch hub caches at the places timm's
pretrained cfg names for the tag. Nothing here touches the network.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from resnet_apps.errors import WeightsUnavailableError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin")
# file names a hub snapshot of a timm model may hold, best first
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth")

if TYPE_CHECKING:  # torch is imported only where tensors are touched: the offline path stays fast
    import torch


@functools.lru_cache(maxsize=1)
def resnet_family() -> tuple[str, ...]:
    """Every architecture name in timm's ``resnet.py`` (the family whose key layout we rely on)."""
    import timm  # noqa: PLC0415 - timm's registry only when a name must be checked

    return tuple(name for name in timm.list_models(module="resnet") if not name.startswith("test_"))


@functools.lru_cache(maxsize=1)
def resnet_family_offline() -> tuple[str, ...] | None:
    """``resnet_family()`` read from the installed timm's ``models/resnet.py`` source, without importing
    timm (which imports torch): for ``resnet-apps check``, which stays torch-free. None: timm not found.
    """
    spec = importlib.util.find_spec("timm")  # locates the package; does not import it
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        source = Path(folder) / "models" / "resnet.py"
        if source.is_file():
            names = re.findall(r"@register_model\s*\ndef (\w+)\(", source.read_text(encoding="utf-8"))
            return tuple(name for name in names if not name.startswith("test_")) or None
    return None


@dataclass
class ResolvedWeights:
    """A weights request resolved to something local (or to nothing, for ``"none"``).

    Attributes:
        kind: "none" (random init), "file" (timm loads ``path``) or "state_dict" (already in memory).
        source: what the checkpoint meta records: "none", a path, or "hf-hub:timm/<tag>".
        imagenet: True for ImageNet weights (any tag), False for files of ours and random init.
        tag: the timm pretrained tag when known ("resnet50.a1_in1k"), else None.
        path: the file timm loads (kind "file").
        state_dict: the tensors in timm layout (kind "state_dict"); not kept on the model.
        source_in_chans: input channels of the source conv1 (3 for ImageNet, 13 for a 13-band run).
        shapes: key -> shape of every tensor in the source (files and runs), checked against the model.
    """

    kind: str
    source: str
    imagenet: bool = False
    tag: str | None = None
    path: Path | None = None
    state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    source_in_chans: int = 3
    shapes: dict[str, tuple[int, ...]] | None = field(default=None, repr=False)


def fetch_dir() -> Path:
    """Folder ``resnet-apps weights fetch`` writes to: $RESNET_APPS_WEIGHTS_DIR, else our cache."""
    explicit = os.environ.get("RESNET_APPS_WEIGHTS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("RESNET_APPS_CACHE_DIR")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache" / "resnet_apps"
    return base / "weights"


def search_dirs() -> list[Path]:
    """Folders searched for ``<tag>.safetensors``, in order (duplicates removed)."""
    dirs: list[Path] = []
    explicit = os.environ.get("RESNET_APPS_WEIGHTS_DIR")
    if explicit:
        dirs.append(Path(explicit).expanduser())
    cache = os.environ.get("RESNET_APPS_CACHE_DIR")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache" / "resnet_apps"
    if base / "weights" not in dirs:
        dirs.append(base / "weights")
    return dirs


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "huggingface"
    )
    return Path(hf_home).expanduser() / "hub"


def torch_hub_checkpoints() -> Path:
    """torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``), where timm's ``url`` lands."""
    if "torch" in sys.modules:  # honours torch.hub.set_dir()
        return Path(sys.modules["torch"].hub.get_dir()) / "checkpoints"
    # torch.hub.get_dir's rule, without importing torch
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "torch"
    )
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def _in_hf_cache(repo_id: str) -> Path | None:
    """A complete file of ``repo_id`` in the Hugging Face cache, looked up on disk only."""
    from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415 - hub client only when needed

    for filename in HUB_FILENAMES:
        hit = try_to_load_from_cache(repo_id, filename, cache_dir=str(hf_cache_dir()))
        if isinstance(hit, str) and os.path.isfile(hit):
            return Path(hit)
    return None


def find_local(tag: str) -> tuple[Path, str] | None:
    """Look for ImageNet weights ``tag`` on disk, without network.

    Args:
        tag: timm name with pretrained tag, e.g. "resnet50.a1_in1k".

    Returns:
        (file, where) for the first copy found (where: "RESNET_APPS_WEIGHTS_DIR", "resnet_apps cache",
        "huggingface cache", "torch hub cache"), or None.
    """
    from timm.models import get_pretrained_cfg  # noqa: PLC0415

    explicit = os.environ.get("RESNET_APPS_WEIGHTS_DIR")
    for folder in search_dirs():
        is_env_dir = bool(explicit) and folder == Path(str(explicit)).expanduser()
        where = "RESNET_APPS_WEIGHTS_DIR" if is_env_dir else "resnet_apps cache"
        candidates = [folder / f"{tag}{suffix}" for suffix in WEIGHT_SUFFIXES]
        for sub in (folder / tag, folder / "timm" / tag):
            candidates += [sub / name for name in HUB_FILENAMES]
        for snapshot in sorted((folder / f"models--timm--{tag}" / "snapshots").glob("*")):
            candidates += [snapshot / name for name in HUB_FILENAMES]
        for candidate in candidates:
            if candidate.is_file():
                return candidate, where
    cfg = get_pretrained_cfg(tag)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        hit = _in_hf_cache(cfg.hf_hub_id.split("@")[0])
        if hit is not None:
            return hit, "huggingface cache"
    url = cfg.url[0] if isinstance(cfg.url, (tuple, list)) else cfg.url
    if url:
        cached = torch_hub_checkpoints() / os.path.basename(urlparse(url).path)
        if cached.is_file():
            return cached, "torch hub cache"
    return None


def imagenet_tag(name: str) -> str:
    """timm's ImageNet tag for a backbone name: "resnet50" -> "resnet50.a1_in1k"; tags pass through."""
    from timm.models import get_pretrained_cfg  # noqa: PLC0415

    cfg = get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise WeightsUnavailableError(
            f"timm has no pretrained weights for {name!r}; pick a tagged name from "
            "`resnet-apps weights list`, or train from scratch with `--set model.weights=none` (Python: "
            "weights='none')"
        )
    arch = name.split(".")[0]
    return f"{arch}.{cfg.tag}" if cfg.tag else arch
