"""Export a trained model to ONNX or TorchScript, with its preprocessing beside it and a parity check.

``export_run(run_dir, "onnx")`` writes ``model.onnx`` and ``model.onnx.json`` (task, classes,
operating threshold, preprocessing: bands, scale, mean, std, input shape) into ``RUN_DIR/export/``, then
runs sample inputs through onnxruntime (or the reloaded TorchScript module) and through PyTorch and
records the largest difference; beyond tolerance it raises :class:`ExportError`.

The exported graph has a dynamic batch axis and a fixed spatial size (the tile or chip size): the
segmentation head's pad-to-32 and upsampling sizes are traced as constants, so other sizes are refused
by the runtime rather than silently misaligned.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from resnet_apps.errors import ExportError
from resnet_apps.io.atomic import atomic_write, atomic_write_json
from resnet_apps.models.meta import CheckpointMeta

ExportFormat = Literal["onnx", "torchscript"]
FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


def sample_inputs(in_chans: int, size: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Normalised-looking sample inputs [batch, in_chans, size, size] (standard normal, seeded)."""
    return torch.randn(batch, in_chans, size, size, generator=torch.Generator().manual_seed(seed))


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # tracer warnings about shape arithmetic become constants (see module doc)
        atomic_write(
            path,
            lambda tmp: torch.onnx.export(
                model,
                (example,),
                str(tmp),
                dynamo=False,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
            ),
        )


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example)
    atomic_write(path, lambda tmp: traced.save(str(tmp)))


def run_exported(path: str | Path, fmt: str, x: torch.Tensor) -> np.ndarray:
    """Outputs of an exported model for inputs [B, C, H, W], as numpy."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"image": x.numpy().astype(np.float32)})[0]
    loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(x).numpy()


def parity(
    model: nn.Module,
    path: str | Path,
    fmt: str,
    inputs: list[torch.Tensor],
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> dict[str, Any]:
    """Compare exported and PyTorch outputs on each input batch.

    Returns:
        ``{"max_abs_diff", "atol", "rtol", "batches": [batch sizes], "ok"}``; ``ok`` means
        ``|exported - torch| <= atol + rtol * |torch|`` everywhere.
    """
    worst, ok = 0.0, True
    for x in inputs:
        with torch.no_grad():
            expected = model(x).numpy()
        got = run_exported(path, fmt, x)
        if got.shape != expected.shape:
            raise ExportError(f"{path}: output shape {got.shape} differs from PyTorch's {expected.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
        ok &= bool(np.allclose(got, expected, atol=atol, rtol=rtol))
    return {
        "max_abs_diff": worst,
        "atol": atol,
        "rtol": rtol,
        "batches": [int(x.shape[0]) for x in inputs],
        "ok": ok,
    }


def export_model(
    model: nn.Module,
    meta: CheckpointMeta | Mapping[str, Any],
    out: str | Path,
    fmt: str = "onnx",
    size: int | None = None,
    opset: int = 17,
    atol: float = 1e-4,
) -> dict[str, Any]:
    """Write the model to ``out`` (+ ``out.json``) and check parity on sample inputs.

    Args:
        model: from ``load_run``.
        meta: its checkpoint metadata (a plain dict is checked by :class:`CheckpointMeta`).
        out: the model file (``.onnx`` or ``.pt``).
        fmt: ``onnx`` or ``torchscript``.
        size: spatial input size; default the checkpoint's ``image_size`` (classification) or 256
            (segmentation tiles; ``resnet-apps predict`` uses the same default tile).
        opset: ONNX opset.
        atol: absolute tolerance of the parity check (plus 1e-3 relative).

    Returns:
        The metadata written beside the model (with its ``parity`` block).

    Raises:
        ExportError: outputs differ beyond tolerance.
        CheckpointError: invalid metadata.
    """
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r} is not supported; use one of {FORMATS}")
    checked = CheckpointMeta.coerce(meta)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pre = checked.require_preprocessing()
    task = checked.task
    in_chans = checked.model.in_chans
    if size is None:
        chip = pre.image_size if isinstance(pre.image_size, int) else None
        size = (chip or 64) if task == "classification" else 256
    model = model.cpu().eval()
    example = sample_inputs(in_chans, size, batch=1, seed=0)
    try:
        if fmt == "onnx":
            _export_onnx(model, example, out, opset)
        else:
            _export_torchscript(model, example, out)
    except Exception as error:  # noqa: BLE001 - exporter failures come in many types; name the file
        raise ExportError(f"{out}: {fmt} export failed ({type(error).__name__}: {error})") from error
    check = parity(
        model,
        out,
        fmt,
        [sample_inputs(in_chans, size, batch=b, seed=s) for b, s in ((1, 1), (3, 2))],
        atol=atol,
    )
    info = {
        "format": fmt,
        "file": out.name,
        "opset": opset if fmt == "onnx" else None,
        "input": {
            "name": "image",
            "shape": ["batch", in_chans, size, size],
            "dtype": "float32",
            "layout": "NCHW",
            "normalised": True,
        },
        "output": {
            "name": "logits",
            "task": task,
            "shape": ["batch", "K"] if task == "classification" else ["batch", "K", size, size],
        },
        "task": task,
        "classes": list(checked.classes),
        "positive_class": checked.positive_class,
        # multi-label: one threshold per class, in ``classes`` order, on each class's sigmoid
        "operating_threshold": (
            list(checked.thresholds()) if checked.model.multilabel else checked.operating_threshold
        ),
        "multilabel": checked.model.multilabel,
        "preprocessing": pre.to_dict(),
        "how_to_prepare_input": "x = (raw * scale - mean) / std per band in 'bands' order; nodata pixels -> 0",
        "model": checked.raw.get("model"),
        "versions": checked.raw.get("versions"),
        "parity": check,
    }
    atomic_write_json(out.with_name(out.name + ".json"), info, indent=2, default=str)
    if not check["ok"]:
        raise ExportError(
            f"{out}: {fmt} outputs differ from PyTorch by up to {check['max_abs_diff']:.3g} (> atol {atol} + "
            f"rtol 1e-3); the export is kept for inspection but should not be used"
        )
    return info


def export_run(
    run_dir: str | Path,
    fmt: str = "onnx",
    out: str | Path | None = None,
    which: str = "best",
    size: int | None = None,
) -> dict[str, Any]:
    """Export a run's checkpoint to ``out`` (default ``RUN_DIR/export/model.onnx`` or ``model.pt``)."""
    from resnet_apps.models.checkpoint import load_run

    model, meta = load_run(run_dir, which=which)
    if out is None:
        out = Path(run_dir) / "export" / f"model{SUFFIX.get(fmt, '')}"
    elif Path(out).is_dir() or not Path(out).suffix:
        out = Path(out) / f"model{SUFFIX.get(fmt, '')}"
    info = export_model(model, meta, out, fmt=fmt, size=size)
    info["path"] = str(out)
    return info
