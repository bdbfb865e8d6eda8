"""``resnet-apps predict RUN_DIR INPUT... --out OUT`` and ``resnet-apps export RUN_DIR --format onnx|torchscript``.

What each INPUT becomes:
- a folder: every DICOM / PNG / JPEG / TIFF under it (recursively) is one CSV row in ``OUT/predictions.csv``
  (bad files in ``OUT/errors.csv``; rerunning with the same OUT resumes);
- a GeoTIFF file: a scene, streamed block by block to ``OUT/<stem>_class.tif`` (+ ``_prob.tif``; the stem is
  the whole name less ``.tif``; the class map carries a colour table and class names for QGIS) for
  segmentation models, and for classification models when it holds more than 2 x 2 chips (a class map at
  the chip stride); a chip-sized GeoTIFF is one CSV row;
- any other image file (DICOM, PNG, JPEG): one CSV row.
Preprocessing (bands, scale, mean, std, size, DICOM window) always comes from the checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``predict`` and ``export`` to the top-level parser."""
    parser = subparsers.add_parser(
        "predict",
        help="predict GeoTIFF scenes (streamed, georeferenced COG maps) and DICOM/image folders (CSV)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="run directory (or checkpoint stem) from `resnet-apps train`"
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="GeoTIFF scenes, image files or folders")
    parser.add_argument(
        "--out", required=True, help="output folder (an existing one resumes folder predictions)"
    )
    parser.add_argument(
        "--probabilities",
        nargs="?",
        const="float32",
        choices=("float32", "uint8"),
        default=None,
        help="scenes: also write per-class probabilities (float32, or uint8 0..254 = 0..1)",
    )
    parser.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction in [0, 1) (0.25)")
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile side in px (segmentation: 256; classification: the checkpoint's image_size)",
    )
    parser.add_argument(
        "--block", type=int, default=1536, help="scene block side in px: bounds memory (1536)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="tiles or images per forward pass (8)")
    parser.add_argument(
        "--blend",
        choices=("gaussian", "constant"),
        default="gaussian",
        help="how overlapping tiles are blended (MONAI sliding_window_inference mode)",
    )
    parser.add_argument(
        "--gradcam", action="store_true", help="images: also write OUT/gradcam/<image_id>.png"
    )
    parser.add_argument(
        "--which", default="best", choices=("best", "last"), help="checkpoint of the run (best)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_predict)

    export = subparsers.add_parser(
        "export", help="export a run's model to ONNX or TorchScript with a parity check"
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="run directory (or checkpoint stem)")
    export.add_argument("--format", required=True, choices=("onnx", "torchscript"), dest="fmt")
    export.add_argument(
        "--out", default=None, help="model file or folder (default RUN_DIR/export/model.onnx|.pt)"
    )
    export.add_argument(
        "--size",
        type=int,
        default=None,
        help="input side in px (classification: image_size; segmentation: 256)",
    )
    export.add_argument("--which", default="best", choices=("best", "last"))
    export.set_defaults(handler=_export)


def _is_scene(path: Path, task: str, image_size: int | None) -> bool:
    """A TIFF is a scene for segmentation, or for classification when it holds more than 2 x 2 chips."""
    from resnet_apps.io import read_geotiff, sniff_format

    if not path.is_file() or sniff_format(path) != "tiff":
        return False
    if task == "segmentation":
        return True
    _, meta = read_geotiff(path, window=(0, 0, 1, 1))
    chip = image_size or 64
    return meta.height > 2 * chip or meta.width > 2 * chip


def _refuse_clashing_outputs(scenes: list[Path], out: Path) -> None:
    """Two scenes of one call must not write the same ``OUT/<stem>_class.tif`` (the second would replace it)."""
    from resnet_apps.predict.scene import scene_stem

    first: dict[str, Path] = {}
    for scene in scenes:
        stem = scene_stem(scene)
        if stem in first:
            raise SystemExit(
                f"{scene} and {first[stem]} would both write {out / (stem + '_class.tif')}; fix: rename one, "
                "or predict them in separate calls with different --out folders"
            )
        first[stem] = scene


def _predict(args: argparse.Namespace) -> int:
    import torch

    from resnet_apps.models.checkpoint import load_run
    from resnet_apps.predict.folder import predict_folder
    from resnet_apps.predict.scene import predict_scene

    if args.device != "cpu" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: no CUDA device here; use --device cpu")
    model, meta = load_run(args.run_dir, which=args.which, map_location=args.device)
    task = meta.get("task", "classification")
    image_size = (meta.get("preprocessing") or {}).get("image_size")
    out = Path(args.out)
    scenes = [Path(p) for p in args.inputs if _is_scene(Path(p), task, image_size)]
    images = [p for p in args.inputs if Path(p) not in scenes]
    if images and task != "classification":
        raise SystemExit(f"{images[0]}: a {task} model predicts GeoTIFF scenes only; pass .tif scenes")
    _refuse_clashing_outputs(scenes, out)
    results: list[dict[str, Any]] = []
    for scene in scenes:
        results.append(
            predict_scene(
                model,
                meta,
                scene,
                out,
                tile=args.tile,
                overlap=args.overlap,
                block=args.block,
                batch_size=args.batch_size,
                blend=args.blend,
                probabilities=args.probabilities,
                device=args.device,
                progress=not args.no_progress,
            )
        )
    if images:
        results.append(
            predict_folder(
                model,
                meta,
                images,
                out,
                batch_size=args.batch_size,
                gradcam=args.gradcam,
                device=args.device,
                progress=not args.no_progress,
            )
        )
    for result in results:
        print(json.dumps(result, default=str))
    return 0


def _export(args: argparse.Namespace) -> int:
    from resnet_apps.models.export import export_run

    info = export_run(args.run_dir, args.fmt, out=args.out, which=args.which, size=args.size)
    parity = info["parity"]
    print(
        f"wrote {info['path']} (+ {Path(info['path']).name}.json): {args.fmt} vs PyTorch max |diff| "
        f"{parity['max_abs_diff']:.2e} on batches {parity['batches']} (atol {parity['atol']}): ok"
    )
    return 0
