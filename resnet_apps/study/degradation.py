"""One (network, seed) run of the degradation study: the paper's CIFAR-10 protocol, resumable per epoch.

Protocol (He et al. 2016, Section 4.2, scaled to the epoch budget): SGD with momentum 0.9, weight
decay 1e-4, batch 128, learning rate 0.1 divided by 10 at 50 % and 75 % of the epochs, 4-px padding
+ random 32-px crop (+ horizontal flip where the modality allows it), MSRA init.

After every epoch the run saves ONE safetensors file (weights, momentum buffers, and the history as
JSON in its metadata) through temp file + ``os.replace``: a kill at any moment leaves the previous
epoch or the new one, and ``train_run`` continues from it. Randomness is re-derived from
(seed, epoch), so a resumed run takes the same batches as an uninterrupted one.

Recorded per epoch: training error and loss (running, on the augmented batches, in train mode, as
the paper's Fig. 6 curves), test error and loss (eval mode), the mean gradient norm of the first
convolution, the seconds taken. Per-layer gradient norms of every convolution are kept for the
first step and averaged over a few epochs (``grad_profile``): the vanishing-gradient probe.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from resnet_apps.errors import CheckpointError
from resnet_apps.models.cifar import CifarNet, cifar_net, parameter_count
from resnet_apps.study.data import augment

STATE_FILE = "state.safetensors"
RECORD_FILE = "record.json"


@dataclass(frozen=True)
class Protocol:
    """The optimisation protocol shared by every network of a study."""

    epochs: int = 12
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    flip: bool = True

    def milestones(self) -> tuple[int, int]:
        """Epochs (1-based, first epoch at the lower rate) where lr drops by 10: 50 % and 75 % of the schedule."""
        # round half up (Python's round() would send 4.5 to 4)
        return (max(1, int(0.5 * self.epochs + 0.5)) + 1, max(1, int(0.75 * self.epochs + 0.5)) + 1)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 1-based ``epoch``."""
        first, second = self.milestones()
        return self.lr * (0.1 ** ((epoch >= first) + (epoch >= second)))

    def grad_epochs(self) -> list[int]:
        """Epochs whose per-layer gradient norms are kept: first, middle, last."""
        return sorted({1, max(1, self.epochs // 2), self.epochs})


@dataclass(frozen=True)
class RunSpec:
    """One network and seed."""

    depth: int
    residual: bool
    seed: int

    @property
    def net(self) -> str:
        return f"{'resnet' if self.residual else 'plain'}-{self.depth}"

    @property
    def name(self) -> str:
        return f"{self.net}_seed{self.seed}"


def _conv_grad_norms(net: CifarNet) -> torch.Tensor:
    """[L] L2 norm of each convolution's weight gradient, in forward order (stem first)."""
    grads = [conv.weight.grad for conv in net.conv_layers()]
    return torch.stack([g.norm() if g is not None else torch.zeros(()) for g in grads])


@torch.no_grad()
def evaluate(net: CifarNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> tuple[float, float]:
    """(error rate, mean cross-entropy) of ``net`` in eval mode on x [N, C, H, W], y [N]."""
    net.eval()
    wrong, loss = 0, 0.0
    for start in range(0, len(y), batch_size):
        logits = net(x[start : start + batch_size])
        target = y[start : start + batch_size]
        loss += float(F.cross_entropy(logits, target, reduction="sum"))
        wrong += int((logits.argmax(1) != target).sum())
    return wrong / len(y), loss / len(y)


def _save(path: Path, net: CifarNet, optimizer: torch.optim.SGD, record: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    for index, param in enumerate(net.parameters()):
        buffer = optimizer.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"momentum.{index}"] = buffer.detach().contiguous()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"record": json.dumps(record)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _write_json(path.parent / RECORD_FILE, record)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=1)
    os.replace(tmp, path)


def load_record(run_dir: Path) -> dict[str, Any] | None:
    """The record (history so far) stored with a run's state, or None when the run has not saved yet."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(json.loads(handle.metadata()["record"]))
    except Exception as error:  # noqa: BLE001 - any unreadable state gets the same typed advice
        raise CheckpointError(
            f"{path}: unreadable study state ({error}); delete the file to restart this run"
        ) from error


def _restore(path: Path, net: CifarNet, optimizer: torch.optim.SGD) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    net.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    for index, param in enumerate(net.parameters()):
        buffer = tensors.get(f"momentum.{index}")
        if buffer is not None:
            optimizer.state[param]["momentum_buffer"] = buffer


def train_run(
    spec: RunSpec,
    protocol: Protocol,
    data: dict[str, torch.Tensor],
    run_dir: Path,
    log: Any = print,
) -> dict[str, Any]:
    """Train (or continue) one network for ``protocol.epochs`` and return its record.

    Args:
        spec: depth, residual or plain, seed.
        protocol: the optimisation protocol.
        data: ``train_x`` [N, C, 32, 32], ``train_y`` [N], ``test_x``, ``test_y`` (standardised).
        run_dir: this run's folder; ``state.safetensors`` there is resumed from.
        log: a print-like callable for one line per epoch.

    Returns:
        The record: spec, parameter count, ``history`` (one dict per epoch), ``grad_profile``, ``final``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    train_x, train_y = data["train_x"], data["train_y"]
    classes = int(max(int(train_y.max()), int(data["test_y"].max()))) + 1
    torch.manual_seed(spec.seed)
    net = cifar_net(spec.depth, spec.residual, in_chans=int(train_x.shape[1]), num_classes=classes)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=protocol.lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay
    )
    record = load_record(run_dir)
    if record is not None:
        if record.get("protocol") != asdict(protocol) or record.get("spec") != asdict(spec):
            raise CheckpointError(
                f"{run_dir}: saved with another protocol or network ({record.get('protocol')}); "
                "resume with the same --epochs/--depths, or start a new --out folder"
            )
        _restore(run_dir / STATE_FILE, net, optimizer)
    else:
        record = {
            "spec": asdict(spec),
            "net": spec.net,
            "protocol": asdict(protocol),
            "params": parameter_count(net),
            "history": [],
            "grad_profile": [],
        }
    n = len(train_y)
    steps = math.ceil(n / protocol.batch_size)
    for epoch in range(len(record["history"]) + 1, protocol.epochs + 1):
        if record.get("diverged"):
            break
        started = time.perf_counter()
        lr = protocol.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        generator = torch.Generator().manual_seed(spec.seed * 100_003 + epoch)
        order = torch.randperm(n, generator=generator)
        net.train()
        wrong, loss_sum, norm_sum = 0, 0.0, torch.zeros(len(net.conv_layers()))
        for step in range(steps):
            index = order[step * protocol.batch_size : (step + 1) * protocol.batch_size]
            x = augment(train_x[index], generator, protocol.flip)
            target = train_y[index]
            optimizer.zero_grad(set_to_none=True)
            logits = net(x)
            loss = F.cross_entropy(logits, target)
            loss.backward()
            norms = _conv_grad_norms(net)
            if epoch == 1 and step == 0:
                record["grad_profile"].append({"point": "first step", "epoch": 1, "by_layer": norms.tolist()})
            norm_sum += norms
            optimizer.step()
            loss_sum += float(loss.detach()) * len(index)
            wrong += int((logits.detach().argmax(1) != target).sum())
        if not math.isfinite(loss_sum):
            record["diverged"] = True
        mean_norms = norm_sum / steps
        if epoch in protocol.grad_epochs():
            record["grad_profile"].append(
                {"point": f"epoch {epoch} mean", "epoch": epoch, "by_layer": mean_norms.tolist()}
            )
        test_error, test_loss = evaluate(net, data["test_x"], data["test_y"])
        entry = {
            "epoch": epoch,
            "lr": lr,
            "train_error": wrong / n,
            "train_loss": loss_sum / n,
            "test_error": test_error,
            "test_loss": test_loss,
            "grad_norm_first_conv": float(mean_norms[0]),
            "seconds": round(time.perf_counter() - started, 2),
        }
        if epoch == protocol.epochs:
            # the clean training error (eval mode, no augmentation) once, at the end: it costs a forward pass
            clean_error, clean_loss = evaluate(net, train_x, train_y)
            entry["train_error_clean"] = clean_error
            entry["train_loss_clean"] = clean_loss
        record["history"].append(entry)
        _save(run_dir / STATE_FILE, net, optimizer, record)
        log(
            f"{spec.name} epoch {epoch}/{protocol.epochs} lr {lr:g} train err {entry['train_error']:.3f} "
            f"test err {test_error:.3f} loss {entry['train_loss']:.3f} ({entry['seconds']:.1f} s)"
        )
    return record
