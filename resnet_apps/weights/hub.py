"""The network, only when reachable: a bounded HTTPS probe of the Hugging Face endpoint and the offline message."""

from __future__ import annotations

import os
import threading
from urllib.parse import urlparse

from resnet_apps.weights.locations import hf_cache_dir, search_dirs, torch_hub_checkpoints

REACHABILITY_TIMEOUT_S = 2.0


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
    # an untagged name gets timm's default tag at fetch time (resnet50 -> resnet50.a1_in1k)
    file = f"`{tag}.safetensors`" if "." in tag else f"the `{tag}.<tag>.safetensors` file it writes"
    return (
        f"ImageNet weights {tag!r} are not available: {reason}. Looked in {dirs}, the Hugging Face cache "
        f"({hf_cache_dir()}) and the torch hub cache ({torch_hub_checkpoints()}). Fix: on a connected "
        f"machine run `resnet-apps weights fetch {tag}`, then copy {file} into the folder "
        f"named by RESNET_APPS_WEIGHTS_DIR (now {env}) here; or train from scratch: `--set model.weights=none` "
        "on the command line (recipe: model.weights: none; Python: weights='none'), or let a recipe fall back "
        "with model.on_missing_weights: scratch."
    )


def _any_local_copy(arch: str) -> bool:
    """Whether any file that could hold ``arch`` weights is on disk (a loose, timm-free look)."""
    patterns = [f"{arch}.*", f"{arch}_*", f"timm/{arch}.*", f"models--timm--{arch}.*"]
    places = [*search_dirs(), hf_cache_dir(), torch_hub_checkpoints()]
    return any(next(place.glob(pattern), None) is not None for place in places for pattern in patterns)


def offline_early(backbone: str, weights: str) -> str | None:
    """The offline error message, decided before torch and timm are imported (they take 5-20 s cold).

    A ``train`` that asks for ImageNet weights used to build its records, read its statistics and import
    torch and timm before the resolver said "offline": 17 s on a busy machine. This look needs only the
    file system and the bounded probe. None means "no verdict": a local copy may exist (the full resolver
    decides) or the hub answers.

    Args:
        backbone: the recipe's ``model.backbone`` ("resnet50", "resnet50.a1_in1k").
        weights: the recipe's ``model.weights``.
    """
    if weights == "none" or os.sep in weights or weights.endswith((".safetensors", ".pth", ".bin")):
        return None
    if os.path.exists(weights):
        return None
    arch = backbone.split(".")[0]
    if _any_local_copy(arch) or hub_reachable():
        return None
    tag = backbone if "." in backbone else (f"{arch}.{weights}" if weights != "imagenet" else arch)
    reason = "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE") else f"{hub_host()} is unreachable"
    return unavailable_message(tag, reason)
