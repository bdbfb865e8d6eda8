"""Training throughput: the full pipeline (read, augment, step) against a bare timm step on the same tensors.

``resnet-apps bench train RECIPE [--steps 20] [--set model.backbone=resnet18]`` prints images/s of

* ``pipeline``: our DataLoader (file reading, scaling, normalisation, augmentation) + our model, stepped
  by ``resnet_apps.train.step.train_step``: the function the training loop calls for every batch
  (transfer, ``channels_last``, autocast, loss, GradScaler, gradient clipping, optimiser step);
* ``bare timm``: ``timm.create_model(backbone, in_chans, num_classes)`` with a plain AdamW, stepped by the
  same ``train_step`` with the same settings, on the very batches the pipeline produced, already in
  memory (no loading at all);

and their ratio, which is then the cost of the data path and of our model's head and parameter groups
(the aim is >= 0.9 once the OS file cache is warm: a first pass over the batches warms it).
Weights do not change speed, so the model is built with ``weights: none`` (no network, no files).
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any, cast


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("recipe", help="recipe YAML")
    parser.add_argument("--steps", type=int, default=20, help="timed optimiser steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (allocator, caches)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override, e.g. --set model.backbone=resnet18 --set train.batch_size=16",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating measurements, best of each kept")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")


class _GpuBusy:
    """NVML's GPU utilisation sampled every 50 ms in a thread between :meth:`start` and :meth:`stop` (CUDA only).

    NVML's figure is the share of each sample period in which at least one kernel ran, so its mean over the
    timed steps is how busy the loop kept the GPU. ``None`` where NVML is missing (no ``pynvml``) or on CPU.
    """

    def __init__(self, device: Any) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._device = device

    def start(self) -> None:
        import torch

        if self._device.type != "cuda":
            return
        try:
            torch.cuda.utilization(self._device)
        except Exception:  # no pynvml / NVML: report nothing rather than a guess
            return

        def sample() -> None:
            while not self._stop.wait(0.05):
                self.samples.append(float(torch.cuda.utilization(self._device)))

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def run(args: argparse.Namespace) -> int:
    import itertools
    import json
    import os

    import timm
    import torch
    from torch.utils.data import DataLoader

    from resnet_apps.io.atomic import atomic_write_text
    from resnet_apps.recipe import load_recipe
    from resnet_apps.train import step as train_steps  # the loop's own step, looked up at call time
    from resnet_apps.train.batches import choose_workers, epoch_batches, train_batch_source
    from resnet_apps.train.datasets import collate, normalisation, recipe_dataset, split_records
    from resnet_apps.train.setup import build_loss, build_optimizer, build_recipe_model, task_mode

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, [*args.overrides, "model.weights=none"])
    settings = recipe.train
    split = split_records(recipe)
    names, mean, std, _ = normalisation(recipe, split.train, split.classes)
    k = len(split.classes)
    mode = task_mode(recipe, k)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def quiet(*_: object) -> None:
        return None

    def place(net: torch.nn.Module) -> torch.nn.Module:
        """On the device, in ``channels_last`` when the recipe says so (as ``train`` does)."""
        net.to(device)
        return net.to(memory_format=torch.channels_last) if settings.channels_last else net

    def compiled(net: torch.nn.Module) -> torch.nn.Module:
        """``torch.compile`` as the loop applies it when ``train.compile`` is set (both sides alike)."""
        return cast(torch.nn.Module, torch.compile(net)) if settings.compile else net

    model, info = build_recipe_model(recipe, len(names), k, names, log=quiet)
    place(model)
    criterion = build_loss(recipe, mode, None).to(device)
    optimizer = build_optimizer(recipe, model)
    dataset = recipe_dataset(split.train, recipe, (mean, std), split.classes, train=True)
    batch = settings.batch_size
    needed = args.warmup + args.steps
    order = list(itertools.islice(itertools.cycle(range(len(dataset))), needed * batch))
    key = "mask" if mode == "segmentation" else "label"

    source = train_batch_source(recipe, dataset, device, log=quiet)
    workers, why = choose_workers(settings.num_workers, source is not None)

    def loader() -> Any:
        if source is not None:  # the loop's own path: array cache gathers, augmentation on the device
            return epoch_batches(dataset, order, batch, 0, source, settings.seed, 1, 0)
        return DataLoader(
            dataset,
            batch_size=batch,
            sampler=order,
            num_workers=workers,
            collate_fn=collate,
            drop_last=True,
        )

    batches = [(b["image"], b[key]) for b in loader()]  # also warms the OS file cache
    bare: torch.nn.Module
    if mode == "segmentation":
        # timm has no FPN: the bare reference is our own segmentation model on in-memory tensors
        bare, name = build_recipe_model(recipe, len(names), k, names, log=quiet)[0], "bare model"
    else:
        bare = timm.create_model(
            recipe.model.backbone, pretrained=False, in_chans=len(names), num_classes=info["num_classes"]
        )
        name = "bare timm"
    place(bare).train()
    model.train()
    bare_opt = torch.optim.AdamW(bare.parameters(), lr=settings.lr)
    stepped_model, stepped_bare = compiled(model), compiled(bare)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(
        source: Any, net: torch.nn.Module, opt: torch.optim.Optimizer, busy: _GpuBusy | None = None
    ) -> float:
        # synchronised only where the clock starts and stops, as the loop never waits per step: the next
        # batch's gather overlaps the queued kernels exactly as it does in training
        scaler = train_steps.make_scaler(settings.precision, device)
        started = time.perf_counter()
        for i, (images, target) in enumerate(source):
            if i == args.warmup:
                sync()
                started = time.perf_counter()
                if busy is not None:
                    busy.start()
            train_steps.train_step(net, criterion, opt, scaler, images, target, settings, device)
        sync()
        seconds = time.perf_counter() - started
        if busy is not None:
            busy.stop()
        return args.steps * batch / seconds

    def pipeline_batches() -> Any:
        return ((b["image"], b[key]) for b in loader())

    # alternate the two measurements and keep each one's best round: on a shared machine the load
    # changes from one minute to the next, and the best round is the least disturbed
    pipeline = reference = 0.0
    busy: list[float] = []
    bare_busy: list[float] = []
    for _ in range(args.rounds):
        meter, bare_meter = _GpuBusy(device), _GpuBusy(device)
        pipeline = max(pipeline, timed(pipeline_batches(), stepped_model, optimizer, meter))
        reference = max(reference, timed(batches, stepped_bare, bare_opt, bare_meter))
        busy += [] if meter.mean is None else [meter.mean]
        bare_busy += [] if bare_meter.mean is None else [bare_meter.mean]

    shape = tuple(batches[0][0].shape)
    print(
        f"recipe {recipe.name}: {recipe.model.backbone}, batch {shape} ({settings.precision}), "
        f"{args.steps} timed steps, {torch.get_num_threads()} torch threads, "
        f"{workers} loader workers ({why}), {device}"
    )
    print(f"  pipeline (read + augment + step): {pipeline:8.1f} images/s")
    print(f"  {name} step on the same tensors:  {reference:8.1f} images/s")
    print(f"  ratio pipeline / {name}:          {pipeline / reference:8.2f}")
    gpu_busy = max(busy) if busy else None
    bare_gpu_busy = max(bare_busy) if bare_busy else None
    if gpu_busy is not None and bare_gpu_busy is not None:
        print(f"  GPU busy (NVML), pipeline / {name}:  {gpu_busy:5.1f} % / {bare_gpu_busy:5.1f} %")
    if args.json is not None:
        figures = {
            "recipe": recipe.name,
            "backbone": recipe.model.backbone,
            "batch_shape": list(shape),
            "precision": settings.precision,
            "channels_last": settings.channels_last,
            "compile": settings.compile,
            "steps": args.steps,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch_threads": torch.get_num_threads(),
            "loader_workers": workers,
            "images_per_s": round(pipeline, 3),
            "bare_images_per_s": round(reference, 3),
            "ratio": round(pipeline / reference, 4),
            "gpu_busy_percent": None if gpu_busy is None else round(gpu_busy, 1),
            "bare_gpu_busy_percent": None if bare_gpu_busy is None else round(bare_gpu_busy, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        atomic_write_text(args.json, json.dumps(figures, indent=2) + "\n")
    return 0
