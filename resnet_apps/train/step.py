"""One optimiser step: what ``train`` runs for every batch, and what ``bench train`` times.

Kept apart from the loop so that the benchmark measures the very function the loop calls (transfer,
``channels_last``, autocast, loss, the divergence check, GradScaler, gradient clipping, optimiser step),
not a copy that drifts from it. The schedule (learning rate, per-step seeding, frozen backbone) is the
loop's business and stays there.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from resnet_apps.errors import TrainingDivergedError
from resnet_apps.recipe import Precision, TrainConfig
from resnet_apps.train.setup import autocast_context


def make_scaler(precision: Precision, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 on CUDA (bf16 and fp32 need no loss scaling)."""
    return torch.amp.GradScaler("cuda", enabled=precision == "fp16" and device.type == "cuda")


def train_step(
    net: nn.Module,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    images: torch.Tensor,
    target: torch.Tensor,
    settings: TrainConfig,
    device: torch.device,
) -> float:
    """Forward, loss, backward, clipping and one optimiser step on one batch.

    Args:
        net: the model as trained (possibly wrapped by DDP or ``torch.compile``); its parameters are
            the ones clipped.
        criterion: ``(logits.float(), target) -> scalar loss``.
        scaler: from :func:`make_scaler` (a disabled scaler is a plain backward and step).
        images: ``[B, C, H, W]`` float, on any device (moved to ``device`` here, ``channels_last`` when
            ``settings.channels_last``).
        target: ``[B]`` class indices, ``[B, K]`` multi-label targets (NaN: unknown) or ``[B, H, W]`` masks.
        settings: the recipe's ``train`` section (precision, channels_last, grad_clip).

    Returns:
        The batch's mean loss (a Python float: one device synchronisation per step).

    Raises:
        TrainingDivergedError: the loss is NaN or infinite; nothing was stepped (the caller adds where).
    """
    images = images.to(device, non_blocking=True)
    if settings.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    target = target.to(device, non_blocking=True)
    with autocast_context(settings.precision, device):
        logits = net(images)
    loss = criterion(logits.float(), target)
    value = float(loss.item())
    if not math.isfinite(value):
        error = TrainingDivergedError(f"loss is {value}")
        error.loss = value  # the caller's message (train.diverged) names it
        raise error
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if settings.grad_clip > 0:
        scaler.unscale_(optimizer)  # clip the true gradients, not the fp16-scaled ones
        nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return value
