"""Training batches from the array cache: gather, transfer the compact dtype, then convert and augment on
the device.

A batch is one fancy-index gather from the memory-mapped shard (``data.array_cache``) in the stored dtype
(uint16 EuroSAT chips: 6.8 MB for 64 of them, half of float32), pinned and copied ``non_blocking`` to the
training device, where it becomes float32 (``* scale``), is augmented as a whole
(``data.batch_augment``, seeded from (seed, epoch, step)), normalised ``(x - mean) / std`` and zeroed where
invalid (masks: ``IGNORE_INDEX``) -- the same order of operations as ``RecordDataset`` per sample.

``train.num_workers: auto`` (:func:`choose_workers`): 0 when batches come from the shard (the main
thread gathers faster than worker processes can hand batches over), else ``min(4, cpus - 1)`` for
decoding.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.data.array_cache import Shard, shard_for
from resnet_apps.data.batch_augment import (
    BatchAugment,
    affine_draw,
    batch_augment,
    dihedral,
    dihedral_np,
)
from resnet_apps.data.batch_kernels import fusable, gather_affine, gather_dihedral
from resnet_apps.data.dataset import RecordDataset
from resnet_apps.recipe import Recipe
from resnet_apps.train.datasets import collate
from resnet_apps.train.distributed import barrier, is_main


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def decode_workers() -> int:
    """Loader processes for decoding: ``min(4, cpus - 1)``, at least 0 (leave a core to the main process)."""
    return max(0, min(4, _cpus() - 1))


def cache_workers() -> int:
    """Processes that decode the first epoch into the array cache: ``min(4, cpus)``.

    Unlike loader workers, these run while the main process only collects their arrays and writes the
    shard, so every core can decode: on 2 cores, 2 processes decoded the shared DICOM films 1.6 x as fast
    as one, and 3 no faster (``resnet-apps bench decode``).
    """
    return max(1, min(4, _cpus()))


def choose_workers(setting: int | str, cached: bool) -> tuple[int, str]:
    """``train.num_workers`` as a count, and why (for the log)."""
    if setting != "auto":
        return int(setting), "train.num_workers"
    if cached:
        return 0, "auto: batches are gathered from the array cache in the main process"
    n = decode_workers()
    return n, f"auto: min(4, cpus - 1) = {n} worker(s) decode the images"


@dataclass
class BatchSource:
    """The training split's batches from its shard.

    Attributes:
        shard: the split's memory-mapped arrays.
        augment: the recipe's batch augmentation, or None.
        mean, std: per-band normalisation ``[C]`` (None: not normalised).
        device: the training device.
        segmentation: batches carry ``mask`` (int64) rather than ``label``.
        numpy_convert: flip/rotate and convert on the CPU before any transfer (default: on a CPU
            device); else transfer the stored dtype and do both with torch on the device.
    """

    shard: Shard
    augment: BatchAugment | None
    mean: Sequence[float] | None
    std: Sequence[float] | None
    device: torch.device
    segmentation: bool = False
    numpy_convert: bool | None = None

    def __post_init__(self) -> None:
        self._pin = self.device.type == "cuda"
        self._mean = (
            None if self.mean is None else torch.tensor(self.mean, dtype=torch.float32, device=self.device)
        )
        self._std = (
            None if self.std is None else torch.tensor(self.std, dtype=torch.float32, device=self.device)
        )

    def batch(self, indices: Sequence[int], seed: int) -> dict[str, Any]:
        """One training batch on the device.

        With flips, rotations and brightness only (``nadir``, ``none``) the batch is put in order of its
        draws (samples sharing a flip/rotation are neighbours: the loss and BatchNorm do not depend on the
        order, and ``index`` says which record each row is), so each group is flipped/rotated with one
        copy and converted as ``raw * (alpha * scale / std) + (beta * mean - m) / std``.

        Args:
            indices: dataset indices (one gather).
            seed: augmentation seed, a function of (seed, epoch, step) only.

        Returns:
            ``image`` [B, C, H, W] float32 normalised, ``valid`` [B, H, W] bool, ``index`` [B] (CPU),
            ``label`` [B] int64 | [B, K] float32 or ``mask`` [B, H, W] int64, all but ``index`` on the device.
        """
        if self.augment is not None and not self.augment.dihedral_only:
            return self._general(indices, seed)
        b = len(indices)
        if self.augment is None:
            codes, alpha, beta = np.zeros(b, np.int64), np.ones(b), np.zeros(b)
        else:
            square = self.shard.image.shape[-1] == self.shard.image.shape[-2]
            draws = self.augment.draw(b, torch.Generator().manual_seed(seed), square)
            codes, alpha, beta = draws.codes.numpy(), draws.alpha.numpy(), draws.beta.numpy()
        order = np.argsort(codes, kind="stable")
        rows = np.asarray(indices, dtype=np.int64)[order]
        on_cpu = self._on_cpu
        fused = on_cpu and fusable(self.shard.image.dtype)
        raw = self.shard.gather(rows, pin=self._pin, image=not fused)
        # float64 as before, then float32: bit-for-bit the factors of the earlier torch arithmetic
        alpha, beta = alpha[order].astype(np.float64), beta[order].astype(np.float64)
        mean_c, std_c = self._mean_std(self.shard.image.shape[1])
        mul = (alpha[:, None] * self.shard.scale / std_c[None, :]).astype(np.float32)[:, :, None, None]
        add = ((beta * raw["mean"].numpy())[:, None] - mean_c[None, :]) / std_c[None, :]
        add = add.astype(np.float32)[:, :, None, None]  # mul, add: [B, C, 1, 1]
        spans = _spans(codes[order].tolist())
        all_valid = bool(raw["valid"].numpy().all())  # then flips and rotations leave it as it is
        if fused:  # one pass from the memory map: gather, flip/rotate, convert, normalise
            image = torch.from_numpy(
                gather_dihedral(self.shard.image, rows, codes[order], mul[:, :, 0, 0], add[:, :, 0, 0])
            )
            valid, mask = self._turn_masks(raw, spans, all_valid)
        elif on_cpu:
            image, valid, mask = self._convert_cpu(raw, spans, mul, add, all_valid)
        else:
            image, valid, mask = self._convert_device(
                raw, spans, torch.from_numpy(mul), torch.from_numpy(add)
            )
        return self._batch(raw, image, valid, mask, all_valid)

    def _mean_std(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-band mean and std [C] as float64 (0 and 1 when not normalised)."""
        mean = np.zeros(channels) if self.mean is None else np.asarray(self.mean, dtype=np.float64)
        std = np.ones(channels) if self.std is None else np.asarray(self.std, dtype=np.float64)
        return mean, std

    def _batch(
        self,
        raw: dict[str, torch.Tensor],
        image: torch.Tensor,
        valid: torch.Tensor,
        mask: torch.Tensor | None,
        all_valid: bool | None = None,
    ) -> dict[str, Any]:
        """The batch the step takes: invalid pixels 0 in the image and IGNORE_INDEX in the mask, labels moved."""
        if all_valid is None:  # numpy's reduction of a bool array is several times torch's on a CPU
            all_valid = bool(valid.numpy().all()) if valid.device.type == "cpu" else bool(valid.all())
        if not all_valid:
            image.masked_fill_(~valid[:, None], 0.0)  # invalid pixels are 0, as per sample (in place: ours)
        out: dict[str, Any] = {"image": image, "valid": valid, "index": raw["index"]}
        if mask is not None:
            out["mask"] = torch.where(valid, mask.long(), IGNORE_INDEX)
        if "label" in raw:
            out["label"] = raw["label"].to(self.device, non_blocking=True)
        return out

    def _turn_masks(
        self, raw: dict[str, torch.Tensor], spans: list[tuple[int, int, int]], all_valid: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The valid mask and label mask flipped/rotated like their images (CPU, numpy views, one copy)."""
        valid = raw["valid"] if all_valid else torch.from_numpy(_turned(raw["valid"].numpy(), spans))
        mask = torch.from_numpy(_turned(raw["mask"].numpy(), spans)) if "mask" in raw else None
        return valid, mask

    def _convert_cpu(
        self,
        raw: dict[str, torch.Tensor],
        spans: list[tuple[int, int, int]],
        mul: np.ndarray,
        add: np.ndarray,
        all_valid: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        # float16 shards, which the one-pass kernel cannot read: flips/rotations in the stored dtype
        # (numpy views with negative strides, one copy per group), torch's vectorised cast to float32,
        # then ``x * mul + add`` in place -- the kernel's float32 operations in the same order.
        src = raw["image"].numpy()
        image = torch.from_numpy(np.empty(src.shape, np.float32))
        with one_thread():
            image.copy_(torch.from_numpy(_turned(src, spans)))
            image.mul_(torch.from_numpy(mul)).add_(torch.from_numpy(add))
        valid, mask = self._turn_masks(raw, spans, all_valid)
        return image, valid, mask

    def _convert_device(
        self,
        raw: dict[str, torch.Tensor],
        spans: list[tuple[int, int, int]],
        mul: torch.Tensor,
        add: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        src = raw["image"]
        if src.dtype == torch.uint16:  # few kernels for uint16 on the device: widen after the transfer
            src = src.to(self.device, non_blocking=True).to(torch.int32)
        else:
            src = src.to(self.device, non_blocking=True)
        valid_in = raw["valid"].to(self.device, non_blocking=True)
        mask_in = raw["mask"].to(self.device, non_blocking=True) if "mask" in raw else None
        image = torch.empty(src.shape, dtype=torch.float32, device=self.device)
        valid, mask = torch.empty_like(valid_in), None if mask_in is None else torch.empty_like(mask_in)
        for code, start, stop in spans:
            image[start:stop] = dihedral(src[start:stop], code)
            valid[start:stop] = dihedral(valid_in[start:stop], code)
            if mask is not None and mask_in is not None:
                mask[start:stop] = dihedral(mask_in[start:stop], code)
        image = torch.addcmul(add.to(self.device), image, mul.to(self.device), out=image)
        return image, valid, mask

    def _general(self, indices: Sequence[int], seed: int) -> dict[str, Any]:
        """Crops and affines (segmentation, chest films): float32 on the device, then the batch augmentation."""
        if self._fused_affine():
            rows = np.asarray(indices, dtype=np.int64)
            if bool(self.shard.whole[rows].all()):  # the kernel makes the moved masks itself
                return self._affine_cpu(rows, self.shard.gather(rows, image=False, valid=False), seed)
        raw = self.shard.gather(indices, pin=self._pin)
        if self.device.type == "cpu":  # numpy's allocation (huge pages: few page faults), one thread
            image = torch.from_numpy(np.empty(raw["image"].shape, np.float32))
            with one_thread():
                image.copy_(raw["image"])
                if self.shard.scale != 1.0:
                    image.mul_(self.shard.scale)
                return self._augment_normalise(raw, image, seed)
        image = self.shard.to_float(raw["image"].to(self.device, non_blocking=True))
        return self._augment_normalise(raw, image, seed)

    def _fused_affine(self) -> bool:
        """Whether CPU batches take the one-kernel affine (chest films: affine and brightness only,
        no mask, a dtype the kernel reads); the batch must also be all valid."""
        a = self.augment
        return (
            self._on_cpu
            and a is not None
            and a.affine
            and a.crop is None
            and not (a.hflip or a.vflip or a.rot90 or a.swap)
            and self.shard.mask is None
            and fusable(self.shard.image.dtype)
        )

    @property
    def _on_cpu(self) -> bool:
        """Batches are made with numpy/numba on the CPU (``numpy_convert``; default: a CPU device)."""
        return self.numpy_convert if self.numpy_convert is not None else self.device.type == "cpu"

    def _affine_cpu(self, rows: np.ndarray, raw: dict[str, torch.Tensor], seed: int) -> dict[str, Any]:
        """The affine batch in one kernel: the draws of ``BatchAugment.__call__`` (same generator, same
        order), applied while gathering from the memory map (``batch_kernels.gather_affine``)."""
        assert self.augment is not None
        gen = torch.Generator().manual_seed(seed)
        draws = self.augment.draw(len(rows), gen, self.shard.image.shape[-1] == self.shard.image.shape[-2])
        on, theta = affine_draw(len(rows), gen)
        mean_c, std_c = self._mean_std(self.shard.image.shape[1])
        image, valid = gather_affine(
            self.shard.image,
            rows,
            on.numpy(),
            theta.numpy(),
            self.shard.scale,
            draws.alpha.numpy(),
            draws.beta.numpy(),
            mean_c,
            std_c,
        )
        # all_valid=True: nothing is left to zero, the kernel zeroed the pixels sampled from outside the frame
        return self._batch(raw, torch.from_numpy(image), torch.from_numpy(valid), None, all_valid=True)

    def _augment_normalise(
        self, raw: dict[str, torch.Tensor], image: torch.Tensor, seed: int
    ) -> dict[str, Any]:
        valid = raw["valid"].to(self.device, non_blocking=True)
        mask = raw["mask"].to(self.device, non_blocking=True) if "mask" in raw else None
        if self.augment is not None:
            image, valid, mask = self.augment(image, valid, mask, seed)
        if self._mean is not None and self._std is not None:  # in place: the batch is this call's own
            image.sub_(self._mean[:, None, None]).div_(self._std[:, None, None])
        return self._batch(raw, image, valid, mask)


def _turned(array: np.ndarray, spans: list[tuple[int, int, int]]) -> np.ndarray:
    """``array`` [B, ...] with each span's rows flipped/rotated by its code: one copy (none if nothing moves)."""
    if all(code == 0 for code, _, _ in spans):
        return array
    out = np.empty_like(array)
    for code, start, stop in spans:
        np.copyto(out[start:stop], dihedral_np(array[start:stop], code))
    return out


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch's CPU kernels on this thread alone for the block.

    The batch's copies are memory-bound, so a second thread gains little, and on a shared machine an
    OpenMP team waiting for a descheduled thread costs several times the work itself (measured: an
    in-place multiply of one 13 x 64 x 64 x 64 batch, 6.9 ms with 2 threads under load, 2.4 ms with 1).
    The setting is the calling thread's and is restored on exit.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _spans(codes: list[int]) -> list[tuple[int, int, int]]:
    """(code, start, stop) of each run of equal codes in a sorted list."""
    spans: list[tuple[int, int, int]] = []
    start = 0
    for i in range(1, len(codes) + 1):
        if i == len(codes) or codes[i] != codes[start]:
            spans.append((codes[start], start, i))
            start = i
    return spans


def train_batch_source(
    recipe: Recipe, train_set: RecordDataset, device: torch.device, log: Callable[[str], object] = print
) -> BatchSource | None:
    """The training split's :class:`BatchSource` when it can come from the array cache, else None.

    The shard is written once (rank 0 first under DDP; decoding spread over :func:`cache_workers`
    processes) and opened by every later run. Logs which path feeds the loop and the worker count.
    """
    shard = None
    if recipe.data.cache and train_set.cache is not None:
        progress = is_main() and sys.stderr.isatty()
        if is_main():
            shard = shard_for(train_set, cache_workers(), progress)
        barrier()
        if not is_main():
            shard = shard_for(train_set, cache_workers(), False)
    workers, why = choose_workers(recipe.train.num_workers, shard is not None)
    if shard is None:
        log(f"data: per-sample loading, {workers} loader worker(s) ({why})")
        return None
    crop = recipe.data.image_size if recipe.task == "segmentation" else None
    augment = batch_augment(recipe.data.augment, crop=crop)
    log(
        f"data: array cache {shard.image.dtype} {list(shard.image.shape)} ({shard.key[:12]}), "
        f"augmentation on {device} per batch, {workers} loader worker(s) ({why})"
    )
    prep = train_set.prep
    return BatchSource(shard, augment, prep.mean, prep.std, device, recipe.task == "segmentation")


def epoch_batches(
    train_set: Dataset[Any],
    order: list[int],
    batch_size: int,
    workers: int,
    source: BatchSource | None,
    seed: int,
    epoch: int,
    start_step: int,
) -> Iterable[dict[str, Any]]:
    """The rest of an epoch's batches from ``start_step`` (``order`` already starts there).

    From the shard when ``source`` is given (one gather per batch, augmented on the device, seeded from
    (seed, epoch, step)), else a ``DataLoader`` over the per-sample path. A last batch of one image is
    dropped either way (BatchNorm).
    """
    if source is None:
        return DataLoader(
            train_set,
            batch_size=batch_size,
            sampler=order,
            num_workers=workers,
            collate_fn=collate,
            drop_last=len(order) % batch_size == 1,
        )
    return _shard_batches(source, order, batch_size, seed, epoch, start_step)


def _shard_batches(
    source: BatchSource, order: list[int], batch_size: int, seed: int, epoch: int, start_step: int
) -> Iterator[dict[str, Any]]:
    for n, start in enumerate(range(0, len(order), batch_size)):
        chunk = order[start : start + batch_size]
        if len(chunk) == 1 and len(order) % batch_size == 1:  # as DataLoader(drop_last=...) above
            return
        yield source.batch(chunk, batch_seed(seed, epoch, start_step + n))


def batch_seed(seed: int, epoch: int, step: int) -> int:
    """A 32-bit augmentation seed that depends on (seed, epoch, step) only."""
    return int(np.random.SeedSequence([seed, epoch, step, 0xB47C]).generate_state(1)[0])
