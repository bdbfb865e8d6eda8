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
    return (
        f"ImageNet weights {tag!r} are not available: {reason}. Looked in {dirs}, the Hugging Face cache "
        f"({hf_cache_dir()}) and the torch hub cache ({torch_hub_checkpoints()}). Fix: on a connected "
        f"machine run `resnet-apps weights fetch {tag}`, then copy `{tag}.safetensors` into the folder "
        f"named by RESNET_APPS_WEIGHTS_DIR (now {env}) here; or pass weights='none' to train from scratch."
    )
