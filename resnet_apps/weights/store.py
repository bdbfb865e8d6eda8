"""Our local weights store: ``fetch`` (download + sha256 manifest), ``verify`` and ``list``.

A store is a folder (``$RESNET_APPS_WEIGHTS_DIR``, else ``~/.cache/resnet_apps/weights``) of
``<tag>.safetensors`` files and a ``weights.json`` manifest::

    {"resnet18.a1_in1k": {"file": "resnet18.a1_in1k.safetensors", "sha256": "...", "bytes": 46830571,
                          "source": "hf-hub:timm/resnet18.a1_in1k"}}

Copy the folder to an offline machine and point ``RESNET_APPS_WEIGHTS_DIR`` at it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from resnet_apps.errors import ChecksumError, FetchError, WeightsUnavailableError
from resnet_apps.io.atomic import atomic_write, atomic_write_json
from resnet_apps.weights.hub import hub_host, hub_reachable, unavailable_message
from resnet_apps.weights.locations import fetch_dir, find_local, imagenet_tag, resnet_family

MANIFEST = "weights.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_json_atomic(path: Path, data: Any) -> None:
    atomic_write_json(path, data, indent=2, sort_keys=True)


def fetch_weights(name: str, dest: Path | None = None) -> Path:
    """Download ImageNet weights ``name`` (a timm tag) as ``<dest>/<tag>.safetensors`` and record its sha256.

    The hub is probed first (2 s), so offline this fails in seconds rather than after the hub client's
    retries. The download itself is timm's ``load_state_dict_from_hf`` (safetensors preferred, the
    repository's ``pytorch_model.bin`` read with ``weights_only=True`` otherwise); tensors are re-saved as
    safetensors so that loading never unpickles.

    Args:
        name: "resnet18" (default tag) or "resnet18.a1_in1k".
        dest: target folder; default :func:`resnet_apps.weights.resolve.fetch_dir`.

    Returns:
        The written file.

    Raises:
        WeightsUnavailableError: the hub is unreachable (message names the file and RESNET_APPS_WEIGHTS_DIR).
        FetchError: the download started but failed.
    """

    folder = Path(dest) if dest is not None else fetch_dir()
    # Probe before importing timm (and torch): offline, a tagged name fails in ~2 s even on a busy machine.
    if not hub_reachable():
        reason = (
            "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE") else f"{hub_host()} is unreachable"
        )
        tag = name if "." in name else imagenet_tag(name)
        raise WeightsUnavailableError(unavailable_message(tag, reason))
    tag = imagenet_tag(name)

    from safetensors.torch import save_file  # noqa: PLC0415
    from timm.models import get_pretrained_cfg  # noqa: PLC0415
    from timm.models._hub import load_state_dict_from_hf  # noqa: PLC0415

    cfg = get_pretrained_cfg(tag)
    assert cfg is not None  # imagenet_tag checked it
    try:
        if cfg.hf_hub_id:
            source = f"hf-hub:{cfg.hf_hub_id}"
            state = load_state_dict_from_hf(cfg.hf_hub_id, weights_only=True)
        else:  # old tags with a release URL only: torch hub download, verified by timm's hash prefix
            from torch.hub import load_state_dict_from_url  # noqa: PLC0415

            url = cfg.url[0] if isinstance(cfg.url, (tuple, list)) else cfg.url
            source = str(url)
            state = load_state_dict_from_url(str(url), map_location="cpu", weights_only=True, check_hash=True)
    except Exception as error:  # network drop, 404, ... after the probe succeeded
        raise FetchError(
            f"download of {tag} from {cfg.hf_hub_id or cfg.url} failed: {error}; retry"
        ) from error

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{tag}.safetensors"
    tensors = {k: v.contiguous() for k, v in state.items()}
    atomic_write(target, lambda tmp: save_file(tensors, str(tmp), metadata={"source": source}))
    manifest = read_manifest(folder)
    manifest[tag] = {
        "file": target.name,
        "sha256": sha256_file(target),
        "bytes": target.stat().st_size,
        "source": source,
    }
    _write_json_atomic(folder / MANIFEST, manifest)
    return target


def record_file(path: Path, tag: str, source: str) -> dict[str, Any]:
    """Add an existing file of the store folder to its manifest (for copies made by hand)."""
    entry = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size, "source": source}
    manifest = read_manifest(path.parent)
    manifest[tag] = entry
    _write_json_atomic(path.parent / MANIFEST, manifest)
    return entry


def verify_weights(folder: Path | None = None) -> list[dict[str, Any]]:
    """Recompute the sha256 of every manifest entry.

    Returns:
        One row per entry: {"name", "file", "sha256", "ok"}.

    Raises:
        ChecksumError: a file is missing or its sha256 differs (names the file and the fix).
    """

    folder = Path(folder) if folder is not None else fetch_dir()
    rows = []
    for name, entry in sorted(read_manifest(folder).items()):
        path = folder / entry["file"]
        if not path.is_file():
            raise ChecksumError(
                f"{path} is listed in {folder / MANIFEST} but missing; run "
                f"`resnet-apps weights fetch {name}` again"
            )
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise ChecksumError(
                f"{path}: sha256 {actual} differs from {entry['sha256']} recorded in {folder / MANIFEST}; "
                f"the file is corrupt or was replaced: delete it and run `resnet-apps weights fetch {name}`"
            )
        rows.append({"name": name, "file": str(path), "sha256": actual, "ok": True})
    return rows


def list_weights(pattern: str = "*") -> list[dict[str, Any]]:
    """Every ImageNet tag of the ResNet family with the local copy, if any.

    Returns:
        Rows {"name": "resnet50.a1_in1k", "default": bool, "local": path or None, "where": str or None}.
    """
    import timm  # noqa: PLC0415

    family = set(resnet_family())
    rows = []
    defaults = {name: imagenet_default for name in family if (imagenet_default := _default_tag(name))}
    for tag in timm.list_pretrained(pattern):
        arch = tag.split(".")[0]
        if arch not in family:
            continue
        hit = find_local(tag)
        rows.append(
            {
                "name": tag,
                "default": defaults.get(arch) == tag,
                "local": str(hit[0]) if hit else None,
                "where": hit[1] if hit else None,
            }
        )
    return rows


def _default_tag(arch: str) -> str | None:
    from timm.models import get_pretrained_cfg  # noqa: PLC0415

    cfg = get_pretrained_cfg(arch)
    return f"{arch}.{cfg.tag}" if cfg is not None and cfg.tag else None
