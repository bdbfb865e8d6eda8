"""Images/s of the training data path alone (no model): first epoch (decode + write the array cache) and cached.

``resnet-apps bench data RECIPE [--set KEY=VALUE ...] [--seconds S] [--json OUT]``

- **first epoch**: every training image decoded (up to ``min(4, cpus)`` processes, or ``--workers``; cheap
  decodes stay in this process: ``data.array_cache.CHEAP_DECODE_S``) and
  written to a fresh array cache in a temporary folder, so the figure never depends on an earlier run.
- **cached**: whole epochs of the loop's own batches (``train.batches.epoch_batches``: one gather from
  the memory-mapped shard, transfer, float conversion, the recipe's batch augmentation and normalisation
  on the device), repeated for at least ``--seconds``. JSON key ``images_per_s``.
- **gather alone**: the shard gathers without conversion or augmentation: what the CPU still does per
  batch when the training device is a GPU (conversion, augmentation and normalisation run there).
- **per-sample** (for comparison, a few batches): the ``DataLoader`` path reading the per-file cache and
  running albumentations per sample, as before the array cache.

The load average is printed and written: on a shared machine it says how much the figures are disturbed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench data``."""
    parser.add_argument("recipe", type=Path, help="recipe YAML")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="recipe override"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="least time spent on cached epochs")
    parser.add_argument("--workers", type=int, default=None, help="decode processes (default min(4, cpus))")
    parser.add_argument("--per-sample-batches", type=int, default=5, help="batches of the per-sample path")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")


def run(args: argparse.Namespace) -> int:
    import torch

    from resnet_apps.data import ArrayCache
    from resnet_apps.data.array_cache import shard_for
    from resnet_apps.io.atomic import atomic_write_text
    from resnet_apps.recipe import load_recipe
    from resnet_apps.train.batches import cache_workers, epoch_batches, train_batch_source
    from resnet_apps.train.datasets import normalisation, recipe_dataset, split_records

    recipe = load_recipe(args.recipe, [*args.overrides, "data.cache=true"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    split = split_records(recipe)
    _, mean, std, _ = normalisation(recipe, split.train, split.classes)
    batch = recipe.train.batch_size
    workers = cache_workers() if args.workers is None else args.workers
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        dataset = recipe_dataset(split.train, recipe, (mean, std), split.classes, train=True)
        dataset.cache = ArrayCache(tmp)  # a fresh cache: the first epoch really decodes
        started = time.perf_counter()
        shard = shard_for(dataset, workers, progress=False)
        first = len(dataset) / (time.perf_counter() - started)
        if shard is None:
            print(f"recipe {recipe.name}: the training images cannot form one array (sizes differ)")
            return 1
        source = train_batch_source(recipe, dataset, device, log=lambda *_: None)
        assert source is not None  # the shard exists: the source opens it
        images, epoch, spent, cpu_spent = 0, 0, 0.0, 0.0
        order = list(range(len(dataset)))
        while spent < args.seconds or epoch < 2:
            epoch += 1
            started, cpu = time.perf_counter(), time.process_time()
            for sample in epoch_batches(dataset, order, batch, 0, source, recipe.train.seed, epoch, 0):
                images += len(sample["index"])
            if device.type == "cuda":
                torch.cuda.synchronize()
            spent += time.perf_counter() - started
            cpu_spent += time.process_time() - cpu
            if epoch == 1:  # the first pass warms the page cache and the allocator: not counted
                images, spent, cpu_spent = 0, 0.0, 0.0
        cached = images / spent
        gathered = _gather_rate(shard, order, batch, args.seconds / 2)
        per_cpu_s = images / max(cpu_spent, 1e-9)  # less disturbed by other jobs than wall time
        _per_sample(dataset, batch, args.per_sample_batches)  # decodes and fills the per-file cache
        per_sample = _per_sample(dataset, batch, args.per_sample_batches)  # reads it
    load = os.getloadavg()
    figures: dict[str, Any] = {
        "recipe": recipe.name,
        "images": len(dataset),
        "shape": list(shard.image.shape[1:]),
        "stored_dtype": str(shard.image.dtype),
        "batch_size": batch,
        "device": str(device),
        "augment": recipe.data.augment,
        "decode_workers": workers,
        "first_epoch_images_per_s": round(first, 1),
        "images_per_s": round(cached, 1),
        "images_per_cpu_s": round(per_cpu_s, 1),
        "gather_images_per_s": round(gathered, 1),
        "per_sample_images_per_s": round(per_sample, 1),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in load],
        "cpus": os.cpu_count(),
    }
    print(
        f"recipe {recipe.name}: {len(dataset)} training images {figures['shape']} stored as "
        f"{figures['stored_dtype']}, batch {batch}, augment {recipe.data.augment}, {device}"
    )
    print(f"  first epoch (<= {workers} decode proc, write): {first:10.1f} images/s")
    print(f"  cached (gather + augment + normalise):     {cached:10.1f} images/s")
    print(f"  cached, per CPU-second of this process:    {per_cpu_s:10.1f} images/s")
    print(f"  gather alone (the CPU's share on a GPU):   {gathered:10.1f} images/s")
    print(f"  per-sample path (per-file cache, 0 work.): {per_sample:10.1f} images/s")
    print(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cpus")
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(figures, indent=2) + "\n")
    return 0


def _gather_rate(shard: Any, order: list[int], batch: int, seconds: float) -> float:
    """Images/s of the shard gathers alone (the part of the cached path that stays on the CPU)."""
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or images == 0:
        for start in range(0, len(order), batch):
            images += len(shard.gather(order[start : start + batch])["index"])
    return images / (time.perf_counter() - started)


def _per_sample(dataset: Any, batch: int, batches: int) -> float:
    """Images/s of the per-sample ``DataLoader`` path over ``batches`` batches (after one warm-up batch)."""
    from torch.utils.data import DataLoader

    from resnet_apps.train.datasets import collate

    if batches <= 0:
        return 0.0
    n = min(len(dataset), batch * (batches + 1))
    loader = iter(DataLoader(dataset, batch_size=batch, sampler=list(range(n)), collate_fn=collate))
    next(loader)  # fills the per-file cache for the first batch; counted batches may still decode
    started, images = time.perf_counter(), 0
    for sample in loader:
        images += len(sample["index"])
    return images / max(time.perf_counter() - started, 1e-9)
