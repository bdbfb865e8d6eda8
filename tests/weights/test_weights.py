"""Weights: timm / torchvision files, the search order, offline failure, rgb_bands conv1, the store."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from timm.models import adapt_input_conv

from resnet_apps import create_backbone
from resnet_apps.errors import ChecksumError, WeightsFormatError, WeightsUnavailableError
from resnet_apps.weights.conv1 import rgb_band_conv1
from resnet_apps.weights.hub import hub_reachable
from resnet_apps.weights.locations import find_local
from resnet_apps.weights.resolve import resolve_weights
from resnet_apps.weights.store import list_weights, record_file, verify_weights


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # noqa: ANN202
    # On a shared 2-core machine OpenMP threads spin against each other: one thread is ~20x faster here
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A resnet50 checkpoint in timm key layout (random weights stand in for ImageNet's)."""
    torch.manual_seed(1)
    state = timm.create_model("resnet50", pretrained=False).state_dict()
    path = tmp_path_factory.mktemp("w") / "resnet50_timm.safetensors"
    save_file(state, str(path))
    return path, state


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(2)
    return timm.create_model("resnet18", pretrained=False).state_dict()


def _assert_loaded(backbone: torch.nn.Module, state: dict[str, torch.Tensor], conv1: torch.Tensor) -> None:
    loaded = backbone.state_dict()
    assert torch.equal(loaded["conv1.weight"], conv1)
    others = [k for k in loaded if k != "conv1.weight"]
    assert len(others) > 100 and all(torch.equal(loaded[k], state[k]) for k in others)


@pytest.mark.parametrize(
    ("in_chans", "expected_conv1"),
    [
        (13, lambda w: adapt_input_conv(13, w)),  # timm: repeat R, G, B, R, ... and scale by 3 / 13
        (1, lambda w: w.sum(dim=1, keepdim=True)),  # one band: sum of the RGB filters
    ],
)
def test_timm_layout_file(resnet50_file, in_chans: int, expected_conv1) -> None:
    path, state = resnet50_file
    backbone = create_backbone("resnet50", in_chans=in_chans, weights=str(path))
    _assert_loaded(backbone, state, expected_conv1(state["conv1.weight"]))
    assert backbone.conv1.weight.shape == (64, in_chans, 7, 7)
    assert backbone.weights_source == str(path) and backbone.imagenet_weights_used is False
    assert backbone.pretrained_cfg["mean"] == (
        0.485,
        0.456,
        0.406,
    )  # the weights' normalisation travels along
    assert "state_dict" not in backbone.pretrained_cfg
    if in_chans == 13:  # by hand: band i takes RGB filter i % 3, scaled by 3 / 13 so 13 bands respond like 3
        for band in (0, 4, 12):
            assert torch.allclose(backbone.conv1.weight[:, band], state["conv1.weight"][:, band % 3] * 3 / 13)


def test_torchvision_layout_pth(tmp_path: Path) -> None:
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18_tv.pth"
    torch.save(state, path)
    backbone = create_backbone("resnet18", in_chans=4, weights=str(path))
    _assert_loaded(backbone, state, adapt_input_conv(4, state["conv1.weight"]))


def test_wrapped_and_prefixed_pth(tmp_path: Path, resnet18_state) -> None:
    # a training script's checkpoint: {"state_dict": {"module.conv1.weight": ...}, "epoch": 3}
    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in resnet18_state.items()}, "epoch": 3}, path)
    backbone = create_backbone("resnet18", weights=path)
    _assert_loaded(backbone, resnet18_state, resnet18_state["conv1.weight"])


def test_run_directory_backbone(tmp_path: Path) -> None:
    from resnet_apps import build_model
    from resnet_apps.models.checkpoint import save_checkpoint

    model = build_model("segmentation", backbone="resnet18", in_chans=4, num_classes=3, fpn_channels=32)
    save_checkpoint(tmp_path / "run" / "checkpoints" / "best", model, {"task": "segmentation"})
    state = {k: v for k, v in model.backbone.state_dict().items()}
    same = create_backbone("resnet18", in_chans=4, weights=tmp_path / "run")  # 4 bands -> 4 bands: unchanged
    _assert_loaded(same, state, state["conv1.weight"])
    assert same.weights_source == str(tmp_path / "run") and not same.imagenet_weights_used
    fewer = create_backbone(
        "resnet18", in_chans=1, weights=tmp_path / "run"
    )  # adapted from the run's 4 bands
    assert torch.allclose(fewer.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    # the checkpoint file itself works too (its backbone. prefix is stripped)
    direct = create_backbone(
        "resnet18", in_chans=4, weights=tmp_path / "run" / "checkpoints" / "best.safetensors"
    )
    _assert_loaded(direct, state, state["conv1.weight"])


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda p, s18: save_file(s18, str(p / "r18.safetensors")) or p / "r18.safetensors",
            WeightsFormatError,
            "do not fit backbone 'resnet50'",
        ),  # resnet18 tensors into resnet50
        (lambda p, s18: p / "missing.safetensors", WeightsUnavailableError, "does not exist"),
        (
            lambda p, s18: (p / "junk.pth").write_bytes(b"not a checkpoint") and p / "junk.pth",
            WeightsFormatError,
            "cannot read weights file",
        ),
        (
            lambda p, s18: torch.save({"x": object()}, p / "code.pth") or p / "code.pth",
            WeightsFormatError,
            "cannot read weights file",
        ),  # weights_only refuses arbitrary pickles
        (lambda p, s18: p, WeightsFormatError, "not a run directory"),  # a folder without checkpoints
    ],
)
def test_bad_files(tmp_path: Path, resnet18_state, make, error, message: str) -> None:
    with pytest.raises(error, match=message):
        create_backbone("resnet50", weights=make(tmp_path, resnet18_state))


# --- the search order for "imagenet" --------------------------------------------------------------


def test_weights_dir_by_tag_name(tmp_path: Path, monkeypatch, resnet18_state) -> None:
    save_file(resnet18_state, str(tmp_path / "resnet18.a1_in1k.safetensors"))
    monkeypatch.setenv("RESNET_APPS_WEIGHTS_DIR", str(tmp_path))
    backbone = create_backbone("resnet18", in_chans=13, weights="imagenet")
    _assert_loaded(backbone, resnet18_state, adapt_input_conv(13, resnet18_state["conv1.weight"]))
    assert backbone.imagenet_weights_used is True
    assert backbone.weights_source == str(tmp_path / "resnet18.a1_in1k.safetensors")
    assert backbone.pretrained_cfg["tag"] == "a1_in1k"


@pytest.mark.parametrize(
    ("relative", "where"),
    [
        ("resnet18.tv_in1k/model.safetensors", "RESNET_APPS_WEIGHTS_DIR"),  # hub-layout copy
        ("timm/resnet18.tv_in1k/pytorch_model.bin", "RESNET_APPS_WEIGHTS_DIR"),
        ("models--timm--resnet18.tv_in1k/snapshots/abc123/model.safetensors", "RESNET_APPS_WEIGHTS_DIR"),
    ],
)
def test_weights_dir_hub_layouts(tmp_path: Path, monkeypatch, relative: str, where: str) -> None:
    target = tmp_path / relative
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    monkeypatch.setenv("RESNET_APPS_WEIGHTS_DIR", str(tmp_path))
    assert find_local("resnet18.tv_in1k") == (target, where)
    resolved = resolve_weights("resnet18", "tv_in1k")  # a tag given as weights
    assert resolved.path == target and resolved.tag == "resnet18.tv_in1k" and resolved.imagenet


def test_huggingface_cache(tmp_path: Path, monkeypatch, resnet18_state) -> None:
    # the layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/<file>}
    repo = tmp_path / "hf" / "hub" / "models--timm--resnet18.a1_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    save_file(resnet18_state, str(repo / "snapshots" / "0123abcd" / "model.safetensors"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert find_local("resnet18.a1_in1k") == (
        repo / "snapshots" / "0123abcd" / "model.safetensors",
        "huggingface cache",
    )
    backbone = create_backbone("resnet18", weights="imagenet")
    _assert_loaded(backbone, resnet18_state, resnet18_state["conv1.weight"])


def test_torch_hub_cache(tmp_path: Path, monkeypatch, resnet18_state) -> None:
    # torch hub keeps a url's download under its base name: torchvision's resnet18-<hash>.pth here
    url = timm.models.get_pretrained_cfg("resnet18.tv_in1k").url
    assert url.startswith("https://download.pytorch.org/models/resnet18-")
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(resnet18_state, checkpoints / url.rsplit("/", 1)[1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert find_local("resnet18.tv_in1k") == (checkpoints / url.rsplit("/", 1)[1], "torch hub cache")
    backbone = create_backbone("resnet18.tv_in1k", in_chans=3, weights="imagenet")
    _assert_loaded(backbone, resnet18_state, resnet18_state["conv1.weight"])
    assert backbone.pretrained_cfg["interpolation"] == "bilinear"  # the tv weights' own cfg


# --- offline -------------------------------------------------------------------------------------------


@pytest.fixture()
def blocked_sockets(monkeypatch) -> list:
    """No hub offline flag, and every connection attempt fails (as on an air-gapped machine)."""
    attempts: list = []

    def refuse(self, address):  # noqa: ANN001
        attempts.append(address)
        raise OSError("network blocked by test")

    def resolve(host, port, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - DNS answers, connect is refused
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))]

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.mark.parametrize("offline_flag", [False, True])
def test_offline_imagenet_fails_fast(blocked_sockets, monkeypatch, offline_flag: bool) -> None:
    if offline_flag:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as caught:
        create_backbone("resnet50", in_chans=13, weights="imagenet")
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"offline failure took {elapsed:.1f} s"
    message = str(caught.value)
    assert "resnet50.a1_in1k.safetensors" in message
    assert "RESNET_APPS_WEIGHTS_DIR" in message
    assert "resnet-apps weights fetch resnet50.a1_in1k" in message
    assert (blocked_sockets == []) == offline_flag  # HF_HUB_OFFLINE=1: not even a probe


def test_probe_needs_an_http_answer(monkeypatch) -> None:
    """A server that answers (even 404) is reachable; one that accepts and then stalls is not."""
    import http.server
    import threading

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # talk to the local servers directly
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers 501
    threading.Thread(target=server.serve_forever, daemon=True).start()
    staller = socket.create_server(("127.0.0.1", 0))  # accepts connections, never replies
    try:
        assert hub_reachable(f"http://127.0.0.1:{server.server_port}/", timeout=2.0)
        start = time.perf_counter()
        assert not hub_reachable(f"http://127.0.0.1:{staller.getsockname()[1]}/", timeout=0.5)
        assert time.perf_counter() - start < 1.5  # timeout + 0.5 s at most
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert not hub_reachable(f"http://127.0.0.1:{server.server_port}/")  # the flag wins
    finally:
        server.shutdown()
        staller.close()


def test_none_never_touches_network(blocked_sockets) -> None:
    create_backbone("resnet18", weights="none")
    assert blocked_sockets == []


@pytest.mark.subprocess
def test_cli_fetch_offline(tmp_path: Path) -> None:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "resnet_apps", "weights", "fetch", "resnet18.a1_in1k", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)},
    )
    elapsed = time.perf_counter() - start
    assert result.returncode != 0
    assert "resnet18.a1_in1k.safetensors" in result.stderr and "RESNET_APPS_WEIGHTS_DIR" in result.stderr
    assert elapsed < 30  # the probe answers in seconds; start-up on a busy machine is the rest
    assert not list(tmp_path.glob("*.safetensors"))


# --- band-aware conv1 --------------------------------------------------------------------------------


def test_rgb_band_conv1_by_hand() -> None:
    # one output filter, 1x1 kernel, R=1, G=2, B=3 (mean 2); 5 bands with R, G, B at 3, 2, 1
    rgb = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    out = rgb_band_conv1(rgb, 5, (3, 2, 1)).flatten()
    # unscaled: [mean, B, G, R, mean] = [2, 3, 2, 1, 2], sum 10 = 5 * mean; times 3/5 -> sum 6 = R + G + B
    assert torch.allclose(out, torch.tensor([1.2, 1.8, 1.2, 0.6, 1.2]))
    assert torch.isclose(out.sum(), rgb.sum())
    # 3 bands in BGR order: a pure permutation, no scaling
    assert torch.equal(rgb_band_conv1(rgb, 3, (2, 1, 0)).flatten(), torch.tensor([3.0, 2.0, 1.0]))


def test_rgb_bands_in_create_backbone(resnet50_file) -> None:
    path, state = resnet50_file
    bands = (3, 2, 1)  # Sentinel-2 L1C: B04, B03, B02 are bands 3, 2, 1 of 13
    backbone = create_backbone("resnet50", in_chans=13, weights=path, conv1_init="rgb_bands", rgb_bands=bands)
    w = state["conv1.weight"]
    _assert_loaded(backbone, state, rgb_band_conv1(w, 13, bands))
    assert torch.allclose(backbone.conv1.weight[:, 3], w[:, 0] * 3 / 13)  # red filter on B04
    assert torch.allclose(backbone.conv1.weight[:, 0], w.mean(dim=1) * 3 / 13)  # B01: mean filter
    assert backbone.conv1_init == "rgb_bands"


def test_rgb_bands_is_noop_without_weights() -> None:
    torch.manual_seed(0)
    plain = create_backbone("resnet18", in_chans=4).conv1.weight
    torch.manual_seed(0)
    banded = create_backbone("resnet18", in_chans=4, conv1_init="rgb_bands", rgb_bands=(2, 1, 0))
    assert torch.equal(banded.conv1.weight, plain) and banded.conv1_init == "timm"


# --- the store: list, verify ------------------------------------------------------------------------


def test_store_verify_and_list(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RESNET_APPS_WEIGHTS_DIR", str(tmp_path))
    file = tmp_path / "resnet18.a1_in1k.safetensors"
    save_file({"conv1.weight": torch.ones(2, 3, 1, 1)}, str(file))
    entry = record_file(file, "resnet18.a1_in1k", "test")
    manifest = json.loads((tmp_path / "weights.json").read_text())
    assert manifest["resnet18.a1_in1k"]["sha256"] == entry["sha256"] and len(entry["sha256"]) == 64
    assert [r["name"] for r in verify_weights()] == ["resnet18.a1_in1k"]
    rows = {r["name"]: r for r in list_weights("resnet18*")}
    assert rows["resnet18.a1_in1k"]["local"] == str(file) and rows["resnet18.a1_in1k"]["default"]
    assert rows["resnet18.tv_in1k"]["local"] is None
    file.write_bytes(file.read_bytes()[:-1] + b"!")  # one byte changed
    with pytest.raises(ChecksumError, match="differs"):
        verify_weights()
