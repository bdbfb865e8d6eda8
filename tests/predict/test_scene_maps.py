"""A block's maps decided on the model's device equal those decided on the host, value for value, and a
whole scene predicted either way writes the same files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from resnet_apps.models.decision import Decision
from resnet_apps.predict import scene_run
from resnet_apps.predict.scene import predict_scene
from resnet_apps.predict.scene_maps import BlockMaps, argmax_classes, decide, decide_block, decide_on_device


def _probabilities(k: int, seed: int) -> np.ndarray:
    """[K, 40, 50] float32 softmax-like probabilities with exact ties and values on the thresholds."""
    rng = np.random.default_rng(seed)
    prob = rng.random((k, 40, 50), dtype=np.float32)
    prob /= prob.sum(axis=0, keepdims=True)
    prob[:, :5, :5] = np.float32(1.0 / k)  # all classes tied: the first wins
    if k > 1:  # classes 0 and 1 tied at the top: the first wins
        prob[:, 5:10, :] = np.float32(0.1)
        prob[:2, 5:10, :] = np.float32(0.4)
    prob[:, 10:12, :] = np.float32(0.6)  # exactly on the 0.6 operating point
    prob[:, 12, :3] = np.float32(0.5)  # on the multi-label thresholds
    prob[:, 13, :3] = np.float32(0.5) + np.float32(0.0019685)  # rounds to uint8 128.5 -> 128/129 (half)
    return prob


DECISIONS = {
    "one_logit": Decision.build(["bg", "roof"], 0.6, num_outputs=1),
    "binary": Decision.build(["bg", "roof"], 0.6),
    "binary_first_positive": Decision.build(["roof", "bg"], 0.6, positive_class="roof"),
    "multiclass": Decision.build(["a", "b", "c", "d", "e"]),
    "multilabel": Decision.build(["a", "b", "c"], [0.5, 0.6, 0.4], multilabel=True),
}


@pytest.mark.parametrize("name", sorted(DECISIONS))
@pytest.mark.parametrize("prob_format", [None, "uint8", "float32"])
@pytest.mark.parametrize("class_dtype", ["uint8", "uint16"])
def test_device_decision_equals_host(name: str, prob_format: str | None, class_dtype: str) -> None:
    decision = DECISIONS[name]
    prob = _probabilities(decision.num_outputs, seed=len(name))
    host = decide(prob, decision, class_dtype, prob_format)
    device = decide_on_device(torch.from_numpy(prob.copy()), decision, class_dtype, prob_format)
    assert device.classes.dtype == host.classes.dtype == np.dtype(class_dtype)
    np.testing.assert_array_equal(device.classes, host.classes)
    if name != "one_logit":
        assert len(np.unique(host.classes)) > 1, "a decision that gives one class checks too little"
    if prob_format is None:
        assert host.prob is None and device.prob is None
    else:
        assert host.prob is not None and device.prob is not None
        assert device.prob.dtype == host.prob.dtype == np.dtype(prob_format)
        np.testing.assert_array_equal(device.prob, host.prob)
    if name == "multiclass":
        assert (host.classes[:5, :5] == 0).all() and (host.classes[5:10] == 0).all()
    if name == "binary":
        assert (host.classes[10:12] == 1).all()  # p == threshold counts as positive


def _scene(path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(1, 400, size=(2, 90, 77)).astype(np.uint16)
    data[:, 20:60, 5:50] = 0  # nodata across block seams
    with rasterio.open(
        path, "w", driver="GTiff", height=90, width=77, count=2, dtype="uint16", crs="EPSG:32633",
        transform=from_origin(500000, 4600000, 10, 10), nodata=0,
    ) as dst:  # fmt: skip
        dst.write(data)


def _meta(task: str, classes: int) -> dict:
    return {
        "task": task,
        "model": {"in_chans": 2, "num_classes": classes},
        "classes": [f"c{k}" for k in range(classes)],
        "preprocessing": {"bands": None, "scale": 0.5, "mean": [100.0] * 2, "std": [50.0] * 2},
        "operating_threshold": 0.5,
    }


class _ChipNet(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(2, 3))
        return torch.stack([m[:, 0], m[:, 1], m[:, 0] - m[:, 1]], dim=1)


@pytest.mark.parametrize("name", sorted(DECISIONS))
@pytest.mark.parametrize("prob_format", [None, "uint8"])
def test_decide_block_on_cpu_is_the_hosts_decision(name: str, prob_format: str | None) -> None:
    """A CPU block is decided on its own memory, as the writer would: classes in the map's dtype, no
    float32 probabilities left in what the write stage holds."""
    decision = DECISIONS[name]
    prob = _probabilities(decision.num_outputs, seed=len(name))
    host = decide(prob.copy(), decision, "uint8", prob_format)
    block = decide_block(torch.from_numpy(prob), decision, "uint8", prob_format)
    assert block.classes.dtype == np.uint8
    np.testing.assert_array_equal(block.classes, host.classes)
    if prob_format is None:
        assert block.prob is None
    else:
        assert block.prob is not None and block.prob.dtype == np.uint8
        np.testing.assert_array_equal(block.prob, host.prob)


DECIDERS = ("writer", "forward", "forward_torch")


@pytest.mark.parametrize(
    ("task", "classes", "probabilities"),
    [("segmentation", 3, "uint8"), ("segmentation", 2, "float32"), ("classification", 3, "uint8")],
)
def test_scene_maps_equal_wherever_decided(
    tmp_path: Path, task: str, classes: int, probabilities: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Classes decided by the writer, in the forward's thread on the host (the CPU default), or there with
    the accelerator's torch operations (forced on the CPU): the files' pixels are the same."""
    path = tmp_path / "s.tif"
    _scene(path)
    torch.manual_seed(0)
    model: torch.nn.Module = _ChipNet()
    if task == "segmentation":
        layers = [
            torch.nn.Conv2d(2, 4, 5, padding=2),
            torch.nn.ReLU(),
            torch.nn.Conv2d(4, classes, 3, padding=1),
        ]
        model = torch.nn.Sequential(*layers)
    model.eval()
    kwargs = dict(tile=32, block=40, batch_size=3, probabilities=probabilities, progress=False)
    results = {}
    seen: list[str] = []
    for where in DECIDERS:
        with monkeypatch.context() as patch:
            decider = decide_on_device if where == "forward_torch" else decide_block

            def spy(*args: object, decider: object = decider, where: str = where) -> object:
                seen.append(where)
                return decider(*args)  # type: ignore[operator]

            patch.setattr(scene_run, "decide_block", spy)
            results[where] = predict_scene(
                model,
                _meta(task, classes),
                path,
                tmp_path / where,
                device_decision=where != "writer",
                **kwargs,
            )
    # the writer's run never decides in the forward's thread; the others decide every block there
    assert "writer" not in seen and "forward" in seen and "forward_torch" in seen
    for key in ("class_path", "prob_path"):
        with rasterio.open(results["writer"][key]) as a:
            host = a.read()
        for where in DECIDERS[1:]:
            with rasterio.open(results[where][key]) as b:
                np.testing.assert_array_equal(b.read(), host)
        nodata = 255 if probabilities == "uint8" or key == "class_path" else None
        if nodata is not None:
            assert (host == nodata).any() and (host != nodata).any()  # nodata and predictions both present
        else:
            assert np.isnan(host).any() and np.isfinite(host).any()
    assert len(np.unique(_first_band(results["forward"]["class_path"]))) > 2  # classes beside nodata


def test_cpu_default_decides_before_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU the writer receives each block's classes, not its float32 probabilities."""
    path = tmp_path / "s.tif"
    _scene(path)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1)).eval()
    received: list[object] = []
    stored = scene_run.SceneRun.stored

    def spy(self: scene_run.SceneRun, result: object) -> object:
        received.append(result)
        return stored(self, result)  # type: ignore[arg-type]

    monkeypatch.setattr(scene_run.SceneRun, "stored", spy)
    predict_scene(model, _meta("segmentation", 3), path, tmp_path / "out", tile=32, block=40, progress=False)
    assert len(received) >= 4  # every block of the 90 x 77 scene at 40 px blocks
    for result in received:
        assert isinstance(result, BlockMaps) and result.classes.dtype == np.uint8 and result.prob is None


def _first_band(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


@pytest.mark.parametrize("rows", [1, 7, 32])
def test_argmax_classes_equals_numpy(rows: int) -> None:
    """The chunked running maximum gives numpy's argmax over the classes: ties to the first maximum, a NaN
    where numpy puts it, a last chunk shorter than the others, and a single-class input."""
    rng = np.random.default_rng(0)
    prob = rng.random((5, 45, 33), dtype=np.float32)
    prob[:, 3, :] = 0.25  # every class tied: class 0
    prob[2, 4, 5] = prob[4, 4, 5] = 2.0  # a tie between later classes: the first of them
    prob[3, 40, 8] = np.nan  # numpy returns the NaN's class
    prob[1, 41, 9] = np.nan
    prob[4, 41, 9] = 3.0
    want = prob.argmax(axis=0)
    got = argmax_classes(prob, rows)
    np.testing.assert_array_equal(got, want)
    assert got[3].tolist() == [0] * 33 and got[4, 5] == 2 and got[40, 8] == 3 and got[41, 9] == 1
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(argmax_classes(prob[:1], rows), np.zeros((45, 33), dtype=np.intp))


def test_scene_releases_its_freed_memory_when_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """predict_scene hands the heap's free pages back once its maps are closed (allocator.release_freed_memory),
    so a process predicting an archive scene by scene does not keep every scene's freed arrays."""
    from resnet_apps.predict import scene

    path = tmp_path / "s.tif"
    _scene(path)
    calls: list[bool] = []

    def spy() -> bool:
        calls.append((tmp_path / "out" / "s_class.tif").exists())  # the map is complete by then
        return True

    monkeypatch.setattr(scene, "release_freed_memory", spy)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1)).eval()
    predict_scene(model, _meta("segmentation", 3), path, tmp_path / "out", tile=32, block=40, progress=False)
    assert calls == [True]
