"""Training batches from the array cache: equal to the per-sample path, used by the loop, workers chosen."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from train_fixtures import make_geotiff_folder, write_recipe

from resnet_apps.data import ArrayCache, Preprocessing, Record, RecordDataset
from resnet_apps.data.array_cache import shard_for
from resnet_apps.recipe import load_recipe
from resnet_apps.train.batches import (
    BatchSource,
    cache_workers,
    choose_workers,
    decode_workers,
    epoch_batches,
)


def test_batch_source_equals_normalised_per_sample_path(tmp_path: Path) -> None:
    root = make_geotiff_folder(tmp_path / "data", per_class=2, size=16, bands=4)
    paths = sorted(str(p.relative_to(root)) for p in root.rglob("*.tif"))
    prep = Preprocessing(scale=1e-4, mean=(0.1, 0.2, 0.3, 0.4), std=(0.05, 0.06, 0.07, 0.08))
    records = [Record(path=p, label=i % 3) for i, p in enumerate(paths)]
    ds = RecordDataset(records, root, prep, cache=ArrayCache(tmp_path / "cache"))
    shard = shard_for(ds)
    assert shard is not None
    source = BatchSource(shard, None, prep.mean, prep.std, torch.device("cpu"))
    order = [5, 1, 3, 0, 2, 4]
    batches = list(epoch_batches(ds, order, 4, 0, source, seed=0, epoch=1, start_step=0))
    assert [len(b["index"]) for b in batches] == [4, 2]
    for batch in batches:
        assert batch["image"].dtype == torch.float32 and batch["label"].dtype == torch.int64
        for row, i in enumerate(batch["index"].tolist()):
            sample = ds[i]
            np.testing.assert_allclose(
                batch["image"][row].numpy(), sample["image"].numpy(), rtol=1e-6, atol=1e-6
            )
            assert int(batch["label"][row]) == int(sample["label"])
    # a last batch of one image is dropped, as the DataLoader path does (BatchNorm)
    assert [len(b["index"]) for b in epoch_batches(ds, order[:5], 4, 0, source, 0, 1, 0)] == [4]


def test_choose_workers() -> None:
    assert choose_workers("auto", cached=True)[0] == 0
    n, why = choose_workers("auto", cached=False)
    assert n == decode_workers() and 0 <= n <= 4 and "min(4, cpus - 1)" in why
    assert choose_workers(3, cached=True) == (3, "train.num_workers")


def test_cache_workers_use_every_core_up_to_four(monkeypatch: pytest.MonkeyPatch) -> None:
    import resnet_apps.train.batches as batches

    for cpus, want_loader, want_cache in ((1, 0, 1), (2, 1, 2), (3, 2, 3), (16, 4, 4)):
        monkeypatch.setattr(batches, "_cpus", lambda n=cpus: n)
        assert (decode_workers(), cache_workers()) == (want_loader, want_cache)


def test_recipe_num_workers_auto_default(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", tmp_path, train={"num_workers": "auto"})
    assert load_recipe(recipe).train.num_workers == "auto"
    assert load_recipe(recipe, ["train.num_workers=3"]).train.num_workers == 3


def test_train_uses_the_array_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet_apps.train.loop import train

    monkeypatch.setenv("RESNET_APPS_CACHE_DIR", str(tmp_path / "cache"))
    recipe = write_recipe(
        tmp_path / "r.yaml",
        make_geotiff_folder(tmp_path / "data", per_class=4, size=16),
        data={"cache": True, "image_size": 16},
        train={"epochs": 2, "num_workers": "auto"},
        eval={"bootstrap": 0, "gradcam": 0, "report": False},
    )
    lines: list[str] = []
    run_dir = train(recipe, out=tmp_path / "run", log=lines.append)
    said = "\n".join(lines)
    assert "data: array cache int16 [6, 4, 16, 16]" in said, said
    assert "0 loader worker(s) (auto: batches are gathered from the array cache" in said
    assert (run_dir / "metrics.json").is_file()
    assert list((tmp_path / "cache" / "shards").rglob("meta.json"))


def test_fused_flips_rotations_match_the_per_sample_images(tmp_path: Path) -> None:
    from resnet_apps.data.batch_augment import BatchAugment, dihedral

    root = make_geotiff_folder(tmp_path / "data", per_class=3, size=16, bands=4)
    paths = sorted(str(p.relative_to(root)) for p in root.rglob("*.tif"))
    prep = Preprocessing(scale=1e-4, mean=(0.1, 0.2, 0.3, 0.4), std=(0.05, 0.06, 0.07, 0.08))
    ds = RecordDataset([Record(path=p, label=0) for p in paths], root, prep, cache=ArrayCache(tmp_path / "c"))
    shard = shard_for(ds)
    assert shard is not None
    source = BatchSource(
        shard, BatchAugment(hflip=True, vflip=True, rot90=True), prep.mean, prep.std, torch.device("cpu")
    )
    indices = [8, 3, 5, 0, 1, 7, 2, 6, 4]
    batch = source.batch(indices, seed=123)
    assert sorted(batch["index"].tolist()) == sorted(indices)  # rows grouped by draw, index names them
    moved = 0
    for row, i in enumerate(batch["index"].tolist()):
        plain = ds[i]["image"]
        codes = [c for c in range(8) if torch.allclose(dihedral(plain, c), batch["image"][row], atol=1e-5)]
        assert len(codes) == 1
        moved += codes[0] != 0
    assert moved >= 4
    again = source.batch(indices, seed=123)  # the same (seed, epoch, step): the same batch (resume)
    assert torch.equal(again["image"], batch["image"]) and torch.equal(again["index"], batch["index"])


@pytest.mark.parametrize("dtype", ["int16", "uint16", "float16"])
def test_torch_conversion_path_equals_the_numpy_one(tmp_path: Path, dtype: str) -> None:
    """The path a GPU takes (transfer the stored dtype, convert with torch) gives the CPU path's batch."""
    from resnet_apps.data.array_cache import Shard
    from resnet_apps.data.batch_augment import batch_augment

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 40000 if dtype == "uint16" else 30000, (6, 3, 8, 8)).astype(dtype)
    valid = np.ones((6, 8, 8), bool)
    valid[2, :2] = False
    scale = 1.0 if dtype == "float16" else 1e-4
    mean = raw.astype(np.float32).reshape(6, -1).mean(1).astype(np.float64) * scale
    shard = Shard(raw, valid, None, np.arange(6), mean, scale, "k")
    cpu = torch.device("cpu")
    fast = BatchSource(
        shard, batch_augment("nadir"), (0.1, 0.2, 0.3), (2.0, 3.0, 4.0), cpu, numpy_convert=True
    )
    slow = BatchSource(
        shard, batch_augment("nadir"), (0.1, 0.2, 0.3), (2.0, 3.0, 4.0), cpu, numpy_convert=False
    )
    a, b = fast.batch([5, 1, 2, 0, 4, 3], 9), slow.batch([5, 1, 2, 0, 4, 3], 9)
    assert torch.equal(a["index"], b["index"]) and torch.equal(a["valid"], b["valid"])
    torch.testing.assert_close(a["image"], b["image"], rtol=1e-5, atol=1e-5)
    assert float(a["image"][a["index"].tolist().index(2)].abs().sum()) > 0
    row = a["index"].tolist().index(2)
    assert torch.all(a["image"][row][:, ~a["valid"][row]] == 0)  # invalid pixels are 0 after normalising


@pytest.mark.parametrize("dtype", ["int16", "uint8", "uint16", "float32", "float16"])
def test_cpu_batch_is_bitwise_the_single_pass_formula(dtype: str) -> None:
    """Rotate in the stored dtype, cast, multiply, add: bit-for-bit float32(raw) * mul + add per row."""
    from resnet_apps.data.array_cache import Shard
    from resnet_apps.data.batch_augment import batch_augment, dihedral_np

    rng = np.random.default_rng(1)
    raw = rng.integers(0, 250 if dtype == "uint8" else 30000, (9, 3, 8, 8)).astype(dtype)
    scale = 1.0 if dtype == "float16" else 1e-4
    mean = raw.astype(np.float32).reshape(9, -1).mean(1).astype(np.float64) * scale
    shard = Shard(raw, np.ones((9, 8, 8), bool), None, np.arange(9), mean, scale, "k")
    augment = batch_augment("nadir")
    assert augment is not None
    source = BatchSource(shard, augment, (0.1, 0.2, 0.3), (2.0, 3.0, 4.0), torch.device("cpu"))
    indices = [4, 8, 0, 2, 6, 1, 3, 7, 5]
    batch = source.batch(indices, seed=77)
    draws = augment.draw(9, torch.Generator().manual_seed(77), True)
    order = np.argsort(draws.codes.numpy(), kind="stable")
    assert batch["index"].tolist() == [indices[i] for i in order]
    m, s = np.array([0.1, 0.2, 0.3]), np.array([2.0, 3.0, 4.0])
    for row, i in enumerate(order):
        alpha, beta = float(draws.alpha[i]), float(draws.beta[i])
        mul = (alpha * scale / s).astype(np.float32)[:, None, None]
        add = ((beta * mean[indices[i]] - m) / s).astype(np.float32)[:, None, None]
        turned = dihedral_np(raw[indices[i]], int(draws.codes[i])).astype(np.float32)
        assert np.array_equal(batch["image"][row].numpy(), turned * mul + add)
    assert batch["valid"].all()


def test_one_thread_restores_the_thread_count() -> None:
    from resnet_apps.train.batches import one_thread

    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_cpu_affine_kernel_equals_the_torch_augmentation(dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """chest_xray batches: the one-kernel CPU path draws and moves exactly what the torch path does."""
    from resnet_apps.data.array_cache import Shard
    from resnet_apps.data.batch_augment import batch_augment

    rng = np.random.default_rng(5)
    raw = rng.integers(0, 250 if dtype == "uint8" else 60000, (12, 1, 20, 24)).astype(dtype)
    scale = 1 / 255 if dtype == "uint8" else 1e-4
    mean = raw.astype(np.float32).reshape(12, -1).mean(1).astype(np.float64) * scale
    shard = Shard(raw, np.ones((12, 20, 24), bool), None, np.arange(12) % 2, mean, scale, "k")
    augment = batch_augment("chest_xray")
    cpu = torch.device("cpu")
    fused = BatchSource(shard, augment, (0.4,), (0.2,), cpu)
    torch_path = BatchSource(shard, augment, (0.4,), (0.2,), cpu, numpy_convert=False)
    assert fused._fused_affine() and not torch_path._fused_affine()
    indices = [3, 11, 0, 7, 5, 2, 9, 1]
    for seed in (4, 21):
        a, b = fused.batch(indices, seed), torch_path.batch(indices, seed)
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["label"], b["label"])
        assert torch.equal(a["valid"], b["valid"])  # the same float32 comparisons
        assert not bool(a["valid"].all())  # some samples moved: corners from outside the frame
        torch.testing.assert_close(a["image"], b["image"], rtol=1e-5, atol=1e-5)
        assert torch.all(a["image"][~a["valid"][:, None].expand_as(a["image"])] == 0)
    assert shard.whole.all()
    shard = dataclasses.replace(shard)  # a fresh shard: `whole` is computed once per shard
    shard.valid[7, 0, 0] = False  # a batch that is not all valid takes the torch path
    assert not shard.whole[7] and shard.whole[np.arange(12) != 7].all()
    import resnet_apps.train.batches as batches

    monkeypatch.setattr(batches, "gather_affine", None)  # would fail if called
    fused = BatchSource(shard, augment, (0.4,), (0.2,), cpu)
    again = fused.batch(indices, 4)
    assert not bool(again["valid"][3, 0, 0])
