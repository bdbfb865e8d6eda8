"""Smoke run of `resnet-apps study degradation` on a generated folder of 32-px images, and its resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_apps.cli import main
from resnet_apps.study.data import augment
from resnet_apps.study.degradation import Protocol
from resnet_apps.study.runner import StudyConfig, run_study
from resnet_apps.study.summary import mean_interval

CLASSES = ("bright", "dark", "striped")


def _dataset(root: Path, per_class: int = 10) -> Path:
    """Three classes of 36-px RGB PNGs that differ in brightness or texture (resized to 32 px on load)."""
    rng = np.random.default_rng(0)
    for index, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            base = rng.normal(60 + 70 * index, 20, size=(36, 36, 3))
            if name == "striped":
                base[::4] = 250
            Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(folder / f"{name}_{i}.png")
    return root


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = _dataset(tmp_path_factory.mktemp("data") / "folder")
    out = tmp_path_factory.mktemp("study") / "full"
    code = main(
        [
            "study",
            "degradation",
            str(root),
            "--depths",
            "8,14",
            "--seeds",
            "0,1",
            "--epochs",
            "2",
            "--jobs",  # two worker processes: the resume test compares the in-process path against them
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return root, out


def test_study_json_holds_every_network_seed_and_epoch(smoke: tuple[Path, Path]) -> None:
    _, out = smoke
    doc = json.loads((out / "study.json").read_text())
    assert doc["kind"] == "degradation_study"
    assert doc["data"]["n_train"] + doc["data"]["n_test"] == 30
    assert doc["data"]["test_per_class"] == [2, 2, 2]  # stratified 80/20 of 10 per class
    assert set(doc["networks"]) == {"plain-8", "resnet-8", "plain-14", "resnet-14"}
    assert doc["networks"]["plain-14"]["params"] == doc["networks"]["resnet-14"]["params"]
    for name, net in doc["networks"].items():
        assert set(net["seeds"]) == {"0", "1"}
        for seed_doc in net["seeds"].values():
            history = seed_doc["history"]
            assert [h["epoch"] for h in history] == [1, 2]
            assert [h["lr"] for h in history] == pytest.approx([0.1, 0.01])  # /10 at 50 % of 2 epochs
            for h in history:
                for key in ("train_error", "test_error"):
                    assert 0.0 <= h[key] <= 1.0
                assert h["train_loss"] > 0 and h["grad_norm_first_conv"] > 0
            assert 0.0 <= history[-1]["train_error_clean"] <= 1.0
            first = seed_doc["grad_profile"][0]
            assert first["point"] == "first step"
            assert len(first["by_layer"]) == net["depth"] - 1  # every conv; the classifier is the last layer
        final = doc["summary"]["final"][name]
        assert final["train_error"]["n"] == 2 and final["train_error"]["std"] is not None
        assert (
            final["train_error"]["ci_low"] <= final["train_error"]["mean"] <= final["train_error"]["ci_high"]
        )
    assert doc["summary"]["final"]["resnet-8"]["paper_test_error_percent"] is None
    rows = doc["summary"]["ordering"]
    assert {(r["family"], r["metric"]) for r in rows} >= {
        ("plain", "train_error_clean"),
        ("resnet", "train_error"),
    }
    for row in rows:
        assert row["deep"].endswith("-14") and row["shallow"].endswith("-8")
        assert len(row["differences"]) == 2
        assert row["found"]  # a verdict in words, whatever it is
    effect = {(r["residual"], r["metric"]): r for r in doc["summary"]["shortcut_effect"]}
    assert set(effect) == {(f"resnet-{d}", m) for d in (8, 14) for m in ("train_error_clean", "test_error")}
    finals = {
        n: [doc["networks"][n]["seeds"][s]["history"][-1]["test_error"] for s in ("0", "1")]
        for n in ("plain-14", "resnet-14")
    }
    want = [r - p for r, p in zip(finals["resnet-14"], finals["plain-14"], strict=True)]
    assert effect[("resnet-14", "test_error")]["differences"] == pytest.approx(want)
    assert doc["timing"]["wall_seconds"] > 0 and doc["timing"]["jobs"] == 2
    grads = doc["summary"]["gradient_norm_by_depth"]["plain-14"]["points"]["first step"]
    assert grads["seeds"] == 2 and len(grads["by_layer"]) == 13


def test_report_and_figures_are_written(smoke: tuple[Path, Path]) -> None:
    _, out = smoke
    html = (out / "report.html").read_text()
    assert "Fig. 6" in html and "data:image/png;base64," in html
    assert "compare the ordering, not the values" in html
    assert "8.75" in html  # the paper's ResNet-20 test error beside ours
    assert (out / "fig6.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "gradnorm.png").read_bytes().startswith(b"\x89PNG")


def test_resume_continues_and_matches_an_uninterrupted_run(smoke: tuple[Path, Path], tmp_path: Path) -> None:
    root, full = smoke
    config = StudyConfig(data_root=str(root), depths=(8,), seeds=(1,), protocol=Protocol(epochs=2, flip=True))
    out = tmp_path / "interrupted"

    def stop_after_first_epoch(line: str) -> None:
        if "epoch 1/2" in line:
            raise KeyboardInterrupt  # a kill right after epoch 1 was saved

    with pytest.raises(KeyboardInterrupt):
        run_study(config, out, log=stop_after_first_epoch)
    saved = json.loads((out / "runs" / "plain-8_seed1" / "record.json").read_text())
    assert len(saved["history"]) == 1
    with pytest.raises(Exception, match="--resume"):
        run_study(config, out)  # an existing study is never overwritten silently
    assert main(["study", "degradation", "--resume", str(out)]) == 0
    doc = json.loads((out / "study.json").read_text())
    assert set(doc["networks"]) == {"plain-8", "resnet-8"}
    resumed = doc["networks"]["plain-8"]["seeds"]["1"]["history"]
    assert resumed[0]["seconds"] == saved["history"][0]["seconds"]  # epoch 1 was not trained again
    reference = json.loads((full / "study.json").read_text())["networks"]["plain-8"]["seeds"]["1"]["history"]
    # randomness comes from (seed, epoch): the resumed run takes the same batches as the uninterrupted one
    got, want = _without_seconds(resumed), _without_seconds(reference)
    for a, b in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)


def test_augment_crops_and_flips_within_the_padding() -> None:
    batch = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) + 1
    generator = torch.Generator().manual_seed(0)
    out = augment(batch, generator, flip=True)
    assert out.shape == batch.shape
    for image, source in zip(out, batch, strict=True):
        values = set(image.flatten().tolist()) - {0.0}
        assert values <= set(source.flatten().tolist())  # only shifted (or mirrored) pixels and zero padding
    same = augment(batch, torch.Generator().manual_seed(0), flip=True)
    assert torch.equal(out, same)


def test_mean_interval_is_a_t_interval() -> None:
    stats = mean_interval([0.1, 0.2, 0.3])
    assert stats["mean"] == pytest.approx(0.2) and stats["std"] == pytest.approx(0.1)
    assert stats["ci_high"] - stats["mean"] == pytest.approx(4.302653 * 0.1 / 3**0.5, rel=1e-5)
    assert mean_interval([0.5])["ci_low"] is None
