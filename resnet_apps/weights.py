"""Where a backbone's starting weights come from: one resolver, offline first.

``resolve_weights(name, weights)`` turns the user's ``weights`` argument into a local source, looking in
this order and stopping at the first hit:

1. an explicit file (``.safetensors``, ``.pth``, ``.bin``; timm or torchvision key layout, which are the
   same for ResNets) or a run directory of ours (``checkpoints/best.safetensors``: its backbone part);
2. ``$RESNET_APPS_WEIGHTS_DIR`` and our fetch cache (``$RESNET_APPS_CACHE_DIR/weights``, default
   ``~/.cache/resnet_apps/weights``): ``<tag>.safetensors`` / ``.pth`` / ``.bin`` or a hub-layout copy
   (``<tag>/model.safetensors``, ``timm/<tag>/...``, ``models--timm--<tag>/snapshots/*/...``);
3. the Hugging Face cache and the torch hub cache, at the places timm's pretrained cfg names for the tag
   (``hf_hub_id``, ``url``), looked up without any network call;
4. the network (Hugging Face hub through timm), only after a 2 s reachability probe; offline, a
   ``WeightsUnavailableError`` says which file to put where, within a few seconds instead of the
   minute of retries the hub client would spend.

The loading itself is timm's (``pretrained_cfg_overlay=dict(file=...)``), so conv1 is adapted to
``in_chans`` and the classifier dropped exactly as timm does. ``weights="none"`` never reaches step 2.
Fetch / verify / list for the ``resnet-apps weights`` commands live in ``weights_store.py``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from resnet_apps.errors import WeightsFormatError, WeightsUnavailableError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin")
# file names a hub snapshot of a timm model may hold, best first
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth")
REACHABILITY_TIMEOUT_S = 2.0

if TYPE_CHECKING:  # torch is imported only where tensors are touched: the offline path stays fast
    import torch


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


# --- where local copies may live -------------------------------------------------------------------


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


# --- the network, only when reachable ---------------------------------------------------------------


def hub_endpoint() -> str:
    """The Hugging Face endpoint (honours HF_ENDPOINT mirrors)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_host() -> str:
    """Host name of the Hugging Face endpoint."""
    return urlparse(hub_endpoint()).hostname or "huggingface.co"


def hub_reachable(url: str | None = None, timeout: float = REACHABILITY_TIMEOUT_S) -> bool:
    """Whether the hub answers an HTTPS HEAD request within about ``timeout`` seconds.

    ``HF_HUB_OFFLINE=1`` answers False at once, without a packet. A TCP connect alone is not enough:
    sandboxes and captive proxies accept connections to any address and then stall, which would send the
    hub client into its minute of retries. Any HTTP answer (even 404) counts as reachable; proxies named in
    HTTPS_PROXY are used as the hub client would. The probe runs in a daemon thread so that a hanging DNS
    lookup (getaddrinfo ignores socket timeouts) cannot hold the caller past ``timeout + 0.5`` s.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    import urllib.error  # noqa: PLC0415 - only on the way to the network
    import urllib.request  # noqa: PLC0415

    result: list[bool] = []

    def probe() -> None:
        request = urllib.request.Request(url or hub_endpoint(), method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                result.append(True)
        except urllib.error.HTTPError:  # the server answered, with an error status: reachable
            result.append(True)
        except Exception:  # DNS failure, refused, blocked, TLS stall, timeout: not reachable
            result.append(False)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(result and result[0])


def unavailable_message(tag: str, reason: str) -> str:
    """The offline error text: the file expected, where to put it, how to get it."""
    dirs = ", ".join(str(d) for d in search_dirs())
    env = os.environ.get("RESNET_APPS_WEIGHTS_DIR") or "unset"
    return (
        f"ImageNet weights {tag!r} are not available: {reason}. Looked in {dirs}, the Hugging Face cache "
        f"({hf_cache_dir()}) and the torch hub cache ({torch_hub_checkpoints()}). Fix: on a connected "
        f"machine run `resnet-apps weights fetch {tag}`, then copy `{tag}.safetensors` into the folder "
        f"named by RESNET_APPS_WEIGHTS_DIR (now {env}) here; or pass weights='none' to train from scratch."
    )


def download(tag: str) -> Path:
    """Download ``tag`` from the Hugging Face hub (via timm) into our fetch cache; returns the file.

    Raises:
        WeightsUnavailableError: the hub is unreachable (decided within ~2.5 s) or the download failed.
    """
    from resnet_apps.weights_store import fetch_weights  # noqa: PLC0415 - avoids an import cycle

    if not hub_reachable():
        reason = (
            "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE") else f"{hub_host()} is unreachable"
        )
        raise WeightsUnavailableError(unavailable_message(tag, reason))
    return fetch_weights(tag)


# --- the resolver -------------------------------------------------------------------------------------


def imagenet_tag(name: str) -> str:
    """timm's ImageNet tag for a backbone name: "resnet50" -> "resnet50.a1_in1k"; tags pass through."""
    from timm.models import get_pretrained_cfg  # noqa: PLC0415

    cfg = get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise WeightsUnavailableError(
            f"timm has no pretrained weights for {name!r}; pick a tagged name from "
            "`resnet-apps weights list` or use weights='none'"
        )
    arch = name.split(".")[0]
    return f"{arch}.{cfg.tag}" if cfg.tag else arch


def looks_like_path(weights: str | os.PathLike[str]) -> bool:
    text = os.fspath(weights)
    return os.path.exists(text) or os.sep in text or text.endswith(WEIGHT_SUFFIXES)


def resolve_weights(name: str, weights: str | os.PathLike[str] = "none") -> ResolvedWeights:
    """Turn a ``weights`` request into a local source, in the order given in the module docstring.

    Args:
        name: timm backbone name, optionally tagged ("resnet50", "resnet50.tv_in1k").
        weights: "none", "imagenet", a timm tag ("resnet50.tv_in1k"), a weights file or a run directory.

    Raises:
        WeightsUnavailableError: ImageNet weights are neither on disk nor downloadable now.
        WeightsFormatError: a file that cannot be read.
    """
    from resnet_apps.weights_files import resolve_path  # noqa: PLC0415

    request = os.fspath(weights)
    if request == "none":
        return ResolvedWeights(kind="none", source="none")
    if request != "imagenet" and looks_like_path(request):
        return resolve_path(Path(request).expanduser())
    if request == "imagenet":
        tag = imagenet_tag(name)
    else:  # a timm tag given as weights: "resnet50.tv_in1k" or just "tv_in1k"
        tag = imagenet_tag(request if "." in request else f"{name.split('.')[0]}.{request}")
        if tag.split(".")[0] != name.split(".")[0]:
            raise WeightsFormatError(
                f"weights={request!r} are for {tag.split('.')[0]}, not backbone {name!r}; fix the backbone "
                "or the weights field"
            )
    hit = find_local(tag)
    path = hit[0] if hit else download(tag)
    return ResolvedWeights(kind="file", source=str(path), imagenet=True, tag=tag, path=path)


# --- band-aware conv1 ---------------------------------------------------------------------------------


def rgb_band_conv1(rgb_weight: torch.Tensor, in_chans: int, rgb_bands: Sequence[int]) -> torch.Tensor:
    """conv1 weights for ``in_chans`` bands from an RGB-trained kernel, knowing which bands are R, G, B.

    The R, G and B filters are copied onto bands ``rgb_bands``; every other band gets the mean RGB
    filter. Arithmetic of the scale: for an input whose bands all carry the same value v (after
    normalisation), the RGB model responds v * (W_r + W_g + W_b) = v * 3 * mean. Unscaled, the new kernel
    would respond v * (W_r + W_g + W_b + (N - 3) * mean) = v * N * mean, i.e. N/3 times stronger, so
    every band is multiplied by 3/N. The per-filter sum over input channels then equals the original
    3-channel sum, and batch norm statistics see activations of the magnitude they were trained on.
    (timm's default scales its repeated R, G, B, R, G, ... copies by the same 3/N.)

    Args:
        rgb_weight: [O, 3, k, k] ImageNet kernel in (R, G, B) order.
        in_chans: N >= 3, the input bands.
        rgb_bands: (index of red, index of green, index of blue) among the N input bands.

    Returns:
        [O, N, k, k] kernel, same dtype as ``rgb_weight``.
    """
    if rgb_weight.ndim != 4 or rgb_weight.shape[1] != 3:
        raise WeightsFormatError(
            "conv1_init='rgb_bands' needs a 3-channel RGB source kernel, got shape "
            f"{tuple(rgb_weight.shape)}; "
            "use conv1_init='timm' for weights trained on other bands"
        )
    bands = [int(i) for i in rgb_bands]
    if len(bands) != 3 or len(set(bands)) != 3 or not all(0 <= i < in_chans for i in bands):
        raise ValueError(
            f"rgb_bands must be 3 distinct band indices in [0, {in_chans}), got {tuple(rgb_bands)}; "
            "fix data.rgb_bands in the recipe (e.g. [B04, B03, B02] for Sentinel-2)"
        )
    weight = rgb_weight.float()
    out = weight.mean(dim=1, keepdim=True).repeat(1, in_chans, 1, 1)
    for rgb_index, band in enumerate(bands):
        out[:, band] = weight[:, rgb_index]
    return (out * (3.0 / in_chans)).to(rgb_weight.dtype)


def first_conv_weight(resolved: ResolvedWeights, first_conv: str) -> torch.Tensor:
    """The untouched source conv1 kernel [O, C_src, k, k] of a resolved request (one tensor read)."""
    key = f"{first_conv}.weight"
    if resolved.state_dict is not None:
        return resolved.state_dict[key]
    assert resolved.path is not None
    from resnet_apps.weights_files import read_tensor  # noqa: PLC0415

    return read_tensor(resolved.path, key)
