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
from pathlib import Path

from resnet_apps.errors import WeightsFormatError, WeightsUnavailableError
from resnet_apps.weights.hub import hub_host, hub_reachable, unavailable_message
from resnet_apps.weights.locations import WEIGHT_SUFFIXES, ResolvedWeights, find_local, imagenet_tag
from resnet_apps.weights.store import fetch_weights


def download(tag: str) -> Path:
    """Download ``tag`` from the Hugging Face hub (via timm) into our fetch cache; returns the file.

    Raises:
        WeightsUnavailableError: the hub is unreachable (decided within ~2.5 s) or the download failed.
    """
    if not hub_reachable():
        reason = (
            "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE") else f"{hub_host()} is unreachable"
        )
        raise WeightsUnavailableError(unavailable_message(tag, reason))
    return fetch_weights(tag)


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
    # weights.files imports torch; only an explicit path needs it, so `weights fetch` offline stays light
    from resnet_apps.weights.files import resolve_path  # noqa: PLC0415

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
