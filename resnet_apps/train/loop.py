"""The training loop: ``resnet-apps train RECIPE`` (and ``torchrun ... -m resnet_apps train RECIPE``).

Reads top to bottom: ``train`` sets up (recipe, run directory, data, model, optimiser), loops over
epochs (``train_one_epoch``, validation, checkpoints, early stopping), then finishes (evaluate the best
checkpoint on val and test, write metrics.json and the report; finish.py). Each batch is one call of
``step.train_step``, the same function ``bench train`` times. Helpers live in setup.py (model, loss,
optimiser, schedule), datasets.py (records, splits, datasets), state.py (checkpoints and the resume
state), run.py (``Run`` and the loop position ``LoopState``), distributed.py (DDP) and evaluate.py
(predictions -> metrics).

Determinism: the learning rate is a function of the global step; each step reseeds torch from
(seed, epoch, step) and each sample's augmentation from (seed, epoch, index); the shuffling of an
epoch comes from (seed, epoch). So a run resumed from any saved step continues exactly as the
uninterrupted run would have (bit-for-bit with ``train.deterministic: true`` on the same machine).
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DistributedSampler

from resnet_apps.data.dataset import RecordDataset
from resnet_apps.errors import TrainingDivergedError
from resnet_apps.recipe import Recipe, TaskMode, load_recipe
from resnet_apps.train.batches import BatchSource, choose_workers, epoch_batches, train_batch_source
from resnet_apps.train.datasets import (
    SplitData,
    balanced_weights,
    class_counts,
    drop_unreadable,
    normalisation,
    recipe_dataset,
    split_records,
)
from resnet_apps.train.distributed import (
    all_reduce_mean,
    barrier,
    broadcast,
    init_distributed,
    is_main,
    shutdown,
)
from resnet_apps.train.diverged import loss_not_finite_error
from resnet_apps.train.evaluate import evaluate_block, headline_value, predict
from resnet_apps.train.finish import finish
from resnet_apps.train.run import LoopState, Run, checkpoint_meta, eval_loader
from resnet_apps.train.rundir import (
    check_resumable,
    launch_overrides,
    new_run_dir,
    refuse_existing,
    release_run_dir,
    write_json,
)
from resnet_apps.train.setup import (
    build_loss,
    build_optimizer,
    build_recipe_model,
    lr_factor,
    milestone_steps,
    set_backbone_frozen,
    set_lr,
    task_mode,
)
from resnet_apps.train.state import load_state, save_state, save_weights
from resnet_apps.train.step import make_scaler, train_step


def train(
    recipe_path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    out: str | Path | None = None,
    resume: str | Path | None = None,
    runs_root: str | Path = "runs",
    log: Callable[[str], object] = print,
) -> Path:
    """Train a recipe into a new run directory (or continue one); returns the run directory.

    Raises:
        RecipeError, DatasetError, WeightsUnavailableError: bad input, before any training.
        RunDirError: ``out`` exists and is not being resumed.
        TrainingDivergedError: NaN/inf loss (the last good checkpoint, if any, is kept); DatasetError
            when the cause is a segmentation batch without a labelled pixel.
    """
    held: list[Path] = []  # the run directory whose lock this call took, released however it ends
    try:
        return _train(recipe_path, overrides, out, resume, runs_root, log, held)
    finally:
        for run_dir in held:  # a notebook or a test calling train() twice must not lock itself out
            release_run_dir(run_dir)


def _train(
    recipe_path: str | Path | None,
    overrides: list[str] | tuple[str, ...],
    out: str | Path | None,
    resume: str | Path | None,
    runs_root: str | Path,
    log: Callable[[str], object],
    held: list[Path],
) -> Path:
    """The body of :func:`train`; appends the run directory to ``held`` once its lock is taken."""
    rank, world, device = init_distributed()
    log = log if rank == 0 else (lambda *a, **k: None)  # only rank 0 speaks
    if resume is not None:
        run_dir = check_resumable(resume)
        held.append(run_dir)
        recipe = load_recipe(run_dir / "recipe.yaml", overrides)
    else:
        if recipe_path is None:
            raise ValueError("give a recipe path, or resume= a run directory")
        recipe = load_recipe(recipe_path, overrides)
        refuse_existing(out)  # before any work; the folder itself is made once data and model are ready
    seed_everything(recipe.train.seed, recipe.train.deterministic)

    # --- data and model ---------------------------------------------------------------------------
    split = split_records(recipe)
    skipped = drop_unreadable(split, recipe, log) if recipe.data.on_error == "skip" else []
    band_names, mean, std, norm_source = normalisation(recipe, split.train, split.classes)
    mode = task_mode(recipe, len(split.classes))
    model, model_info = build_recipe_model(recipe, len(band_names), len(split.classes), band_names, log)
    if resume is None:  # a run that fails on its data or weights leaves no empty folder behind
        run_dir = Path(broadcast(str(new_run_dir(recipe.name, out, runs_root)) if is_main() else None))
        held.append(run_dir)
    run = Run(
        recipe,
        run_dir,
        device,
        world,
        split,
        mode,
        band_names,
        (mean, std),
        norm_source,
        model,
        model_info,
        skipped=skipped,
        overrides=launch_overrides(run_dir, overrides, resume is not None),
    )
    if is_main() and resume is None:
        (run_dir / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
        write_json(run_dir / "split.json", split_json(run))
        write_json(run_dir / "overrides.json", run.overrides)
    log(f"run directory: {run_dir}")
    log(
        f"data: {split.info['sizes']} images, {len(split.classes)} classes, bands {band_names} "
        f"(normalised with {norm_source})"
    )

    model.to(device)
    if recipe.train.channels_last:
        model.to(memory_format=torch.channels_last)
    weights = _class_weights(recipe, split, mode)
    criterion = build_loss(recipe, mode, weights).to(device)
    optimizer = build_optimizer(recipe, model)
    scaler = make_scaler(recipe.train.precision, device)
    if recipe.train.precision == "fp16" and device.type != "cuda":
        log("note: fp16 needs CUDA; using bf16 autocast on CPU instead")
    loop = LoopState()
    if resume is not None:
        loop = load_state(run_dir / "checkpoints", model, optimizer, scaler)
        if loop.complete:  # saved at an epoch's end: the next one starts from its first step
            loop.epoch += 1
            loop.reset_epoch()
        log(f"resuming at epoch {loop.epoch}, step {loop.step}")
    run.loop = loop
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if recipe.train.compile:
        net = cast(nn.Module, torch.compile(net))  # an OptimizedModule: an nn.Module that compiles on call

    train_set = recipe_dataset(split.train, recipe, (mean, std), split.classes, train=True)
    batches = train_batch_source(recipe, train_set, device, log)
    val_loader = eval_loader(recipe_dataset(split.val, recipe, (mean, std), split.classes, False), run)
    n_order = len(_epoch_order(run, train_set, 1))
    batch = recipe.train.batch_size
    # 30 images, batch 16 -> 2 steps; 33 -> still 2 (a last batch of one image is dropped: BatchNorm)
    per_epoch = n_order // batch + int(n_order % batch > 1)
    if recipe.train.max_steps_per_epoch:
        per_epoch = min(per_epoch, recipe.train.max_steps_per_epoch)
    schedule = Schedule(
        per_epoch,
        per_epoch * recipe.train.epochs,
        int(round(recipe.train.warmup_epochs * per_epoch)),
        milestone_steps(recipe.train, per_epoch),
    )
    writer = _tensorboard(run) if is_main() else None

    # --- the loop ---------------------------------------------------------------------------------
    for epoch in range(loop.epoch, recipe.train.epochs + 1):
        loop.epoch = epoch  # a mid-epoch state names the epoch it is in
        frozen = epoch <= recipe.train.freeze_backbone_epochs
        if world == 1:
            set_backbone_frozen(model, frozen)
        lr = train_one_epoch(
            run, net, train_set, criterion, optimizer, scaler, schedule, frozen, log, batches
        )

        # validation, checkpoints, early stopping
        val = predict(
            net,
            val_loader,
            mode,
            len(split.classes),
            device,
            recipe.train.precision,
            recipe.train.channels_last,
            criterion,
        )
        # every rank holds the gathered predictions, so every rank takes the same early-stopping decision
        block = evaluate_block(val, mode, split.classes, threshold=0.5 if mode == "binary" else None)
        metric = headline_value(block, recipe.eval.metric, mode)
        # the mean over every rank's images (equal shard sizes under DistributedSampler)
        train_loss = all_reduce_mean(loop.loss_sum / max(loop.loss_n, 1))
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val["loss"],
            "val_metric": None if math.isnan(metric) else metric,
            "metric": recipe.eval.metric,
            "lr": lr,
            "seconds": round(loop.seconds, 3),
            "images_per_s": round(loop.loss_n * world / max(loop.seconds, 1e-9), 2),
            "backbone_frozen": frozen,
        }
        improved = loop.end_epoch(row, metric)
        if is_main():
            meta = checkpoint_meta(run, epoch, {"val": {recipe.eval.metric: row["val_metric"]}})
            if improved:
                save_weights(run_dir / "checkpoints" / "best", model, meta)
            save_weights(run_dir / "checkpoints" / "last", model, meta)
            save_state(run_dir / "checkpoints", model, optimizer, loop, scaler)
            write_json(run_dir / "history.json", loop.history)
            (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in loop.history))
            if writer is not None:
                writer.add_scalar("loss/train", row["train_loss"], epoch)
                writer.add_scalar(f"val/{recipe.eval.metric}", metric, epoch)
        log(
            f"epoch {epoch}/{recipe.train.epochs}  train_loss {train_loss:.4f}  "
            f"val_{recipe.eval.metric} {metric:.4f}  {row['images_per_s']:.1f} img/s  {row['seconds']:.1f} s"
            + ("  *best*" if improved else "")
        )
        loop.reset_epoch()
        patience = recipe.train.early_stop_patience
        if patience and loop.bad_epochs >= patience:
            log(f"early stop: no improvement of val {recipe.eval.metric} for {patience} epochs")
            break
    barrier()
    if writer is not None:
        writer.close()

    finish(run, net, log)
    # leave the process group explicitly: a gloo group still alive at interpreter exit can abort a rank
    # ("terminate called without an active exception") after all the work is done
    barrier()
    shutdown()
    return run_dir


@dataclass(frozen=True)
class Schedule:
    """Steps of the run: the learning rate is a function of the global step ``(epoch - 1) * per_epoch + step``."""

    per_epoch: int  # optimiser steps per epoch (per rank)
    total: int  # per_epoch * epochs: where the cosine reaches 0
    warmup: int  # linear warm-up steps
    milestones: list[int] | None = None  # train.schedule multistep: global steps where lr *= train.gamma


def train_one_epoch(
    run: Run,
    net: nn.Module,
    train_set: RecordDataset,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    schedule: Schedule,
    frozen: bool,
    log: Callable[[str], object],
    batches: BatchSource | None = None,
) -> float:
    """Train the rest of epoch ``run.loop.epoch`` from step ``run.loop.step``; returns the last learning rate.

    Batches come from ``batches`` (the array cache, augmented on the device) when given, else from a
    ``DataLoader`` over ``train_set`` (per-sample decoding and albumentations).

    Updates ``run.loop`` (step, loss sums, seconds) after every step and, every
    ``train.checkpoint_every_steps`` steps, saves the resume state mid-epoch.

    Raises:
        TrainingDivergedError: a NaN/inf loss, naming the epoch and step; the last good checkpoint stays.
    """
    loop, t = run.loop, run.recipe.train
    epoch, batch, per_epoch = loop.epoch, t.batch_size, schedule.per_epoch
    train_set.set_epoch(epoch)
    order = _epoch_order(run, train_set, epoch)[loop.step * batch :]
    workers, _ = choose_workers(t.num_workers, batches is not None)
    loader = epoch_batches(train_set, order, batch, workers, batches, t.seed, epoch, loop.step)
    net.train()
    lr = max(g["lr"] for g in optimizer.param_groups)
    started = epoch_start = time.perf_counter()
    seen = 0
    bar = _progress(loader, epoch, t.epochs, per_epoch - loop.step)
    for step, sample in enumerate(bar, start=loop.step):
        if step >= per_epoch:
            break
        torch.manual_seed(_step_seed(t.seed, epoch, step))
        lr = set_lr(
            optimizer,
            lr_factor(
                (epoch - 1) * per_epoch + step,
                schedule.total,
                schedule.warmup,
                schedule.milestones,
                run.recipe.train.gamma,
            ),
        )
        if frozen:
            for group in optimizer.param_groups:
                group["lr"] = 0.0 if group["backbone"] else group["lr"]
        target = sample["mask"] if run.mode == "segmentation" else sample["label"]
        try:
            loss = train_step(net, criterion, optimizer, scaler, sample["image"], target, t, run.device)
        except TrainingDivergedError as error:  # an unlabelled batch or divergence: the error says which
            raise loss_not_finite_error(
                run.run_dir, error.loss, epoch, step, target, sample, train_set, run.recipe.task
            ) from None
        n = len(sample["image"])
        loop.loss_sum += loss * n
        loop.loss_n += n
        seen += n
        loop.step = step + 1
        rate = seen / max(time.perf_counter() - epoch_start, 1e-9)  # this rank's images per second
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
        elif (step + 1) % max(1, per_epoch // 4) == 0 and step + 1 < per_epoch:
            eta = (per_epoch - step - 1) * batch / max(rate, 1e-9)
            log(
                f"  epoch {epoch} step {step + 1}/{per_epoch}  loss {loss:.4f}  "
                f"{rate * run.world:.1f} img/s  eta {eta:.0f} s"
            )
        every = t.checkpoint_every_steps
        if every and loop.step % every == 0 and loop.step < per_epoch and is_main():
            now = time.perf_counter()
            loop.seconds, started = loop.seconds + now - started, now
            save_state(run.run_dir / "checkpoints", run.model, optimizer, loop, scaler)
    loop.seconds += time.perf_counter() - started
    return lr


# --- small pieces of the loop ----------------------------------------------------------------------


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def _step_seed(seed: int, epoch: int, step: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + step) % (2**63)


def _epoch_order(run: Run, dataset: RecordDataset, epoch: int) -> list[int]:
    """This rank's sample order for ``epoch``: a seeded permutation, or weighted draws (sampler: weighted)."""
    n, world = len(dataset), run.world
    t = run.recipe.train
    if world > 1 and t.sampler == "none":
        sampler: DistributedSampler[int] = DistributedSampler(dataset, shuffle=True, seed=t.seed)
        sampler.set_epoch(epoch)
        return list(sampler)
    generator = torch.Generator().manual_seed(t.seed * 7919 + epoch)
    if t.sampler == "weighted":
        counts = class_counts(run.split.train, len(run.split.classes))
        per_class = np.array(balanced_weights(counts))
        weights = torch.tensor([per_class[r.label] if r.label is not None else 1.0 for r in run.split.train])
        order = torch.multinomial(weights, n, replacement=True, generator=generator).tolist()
    else:
        order = torch.randperm(n, generator=generator).tolist()
    if world > 1:
        order += order[: (-n) % world]  # pad like DistributedSampler, then shard
        order = order[int(os.environ.get("RANK", "0")) :: world]
    return order


def _class_weights(recipe: Recipe, split: SplitData, mode: TaskMode) -> list[float] | None:
    cw = recipe.train.class_weights
    if isinstance(cw, list):
        return [float(x) for x in cw]
    if cw == "balanced" and mode != "segmentation":
        return balanced_weights(class_counts(split.train, len(split.classes)))
    return None


def _progress(loader: Iterable[Any], epoch: int, epochs: int, total: int) -> Any:
    """tqdm with loss, throughput and ETA on a terminal; the bare loader (plain epoch lines) otherwise."""
    if is_main() and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(loader, total=total, desc=f"epoch {epoch}/{epochs}", leave=False, dynamic_ncols=True)
    return loader


def _tensorboard(run: Run) -> Any:
    if not run.recipe.train.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print(
            "note: train.tensorboard is on but tensorboard is not installed "
            "(pip install resnet-apps[tensorboard])"
        )
        return None
    return SummaryWriter(str(run.run_dir / "tensorboard"))


def split_json(run: Run) -> dict[str, Any]:
    """split.json: the split's summary plus every record's path and split (groups stay hashed)."""
    records = {
        name: [{"path": r.path, "group": r.group} for r in getattr(run.split, name)]
        for name in ("train", "val", "test")
    }
    return {**run.split.info, "classes": run.split.classes, "records": records}
