"""Scene prediction: tiles/s, ratio to a bare forward on the same tiles, and peak RSS for two scene sizes.

``resnet-apps bench predict`` writes a synthetic ``--size`` x ``--size`` x 13-band uint16 scene (strip by
strip, never whole in memory) and a ``--small`` one into a temporary folder, saves a randomly initialised
FPN resnet18 checkpoint, and predicts each scene in a fresh subprocess that reports:

- ``tiles_per_s``: tiles predicted by the whole streaming pass (read, normalise, MONAI blend, write COG)
  per wall-clock second, after the process's one-time costs (MONAI's import and a first forward, as a
  worker predicting many scenes pays them once), which are reported apart as ``startup_seconds``;
- ``bare_tiles_per_s``: ``model(x)`` alone on ``--forward-tiles`` tiles read from the same scene at the same
  size and batch, in the same process, cycled for ``--bare-seconds``; the mean of one timing before and one
  after the pass; ``ratio`` = tiles_per_s / bare_tiles_per_s. This machine's speed moves by about 10 %
  between 15 s windows, so ``--repeat N`` runs N passes, each between two bare timings, lists each pass's
  ratio under ``passes`` and reports the median pass; ``steal_share`` (and ``bare_steal_share_before_after``)
  is the share of the machine's CPU time its hypervisor gave to other guests during the pass (and during
  each bare timing), from ``/proc/stat``: on a shared cloud machine it is one cause of that movement;
- ``peak_rss_mb``: the most any pass held, the subprocess's VmHWM from ``/proc/self/status`` (its own peak,
  not a sum), reset before each pass (``peak_rss_scope`` "pass"; "process" where Linux's reset is refused:
  then the bare timing before the first pass is inside it); each pass's own under ``passes``;
  ``peak_rss_mb_incl_bare_forward`` is the process's lifetime peak;
- ``redundant_tile_factor``: tile pixels run / scene pixels (``tiles * tile**2 / area``: overlap and block
  halos; 1.0 = each pixel through the model once); ``halo_factor``: tiles run / tiles of one whole-scene pass;
- ``split``: seconds per stage (read, forward, blend, write); with the threaded pipeline read and write run
  beside the forward, so ``forward_share`` = forward seconds / wall seconds is what tells an idle model.

``--max-seconds 0`` (or leaving it out) runs every scene to completion; ``--serial`` measures the serial path.
``fill_seconds`` and ``drain_seconds`` are the time before the first forward and after the last one (the maps'
COG copies included); ``--timeline DIR`` also writes every stage interval of the reported pass, per thread, to
``DIR/timeline_<size>.json``: on a GPU, where the forward is short, it shows which stages fail to overlap.
``--remote`` predicts each scene as a COG, from the local file (the figures above) and over loopback HTTP, and
reports tiles/s, bytes read against the file size and the bytes of its blocks, and peak RSS side by side
(:mod:`resnet_apps.bench.predict_remote`).

By default every scene is predicted in full and no figure is extrapolated. On 2 shared CPU cores the
10 000 px scene takes hours; ``--size`` makes a quicker run, and ``--max-seconds`` stops each scene after
whole blocks: its tiles/s and peak RSS are then measured on the blocks done (all full-size blocks, so the
memory figure is the scene's), and ``extrapolated_full_scene_seconds`` is labelled as extrapolated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("--size", type=int, default=10_000, help="side of the large scene in px (10000)")
    parser.add_argument(
        "--small", type=int, default=2_500, help="side of the small scene in px (2500); 0 skips it"
    )
    parser.add_argument("--bands", type=int, default=13, help="uint16 bands (13)")
    parser.add_argument("--classes", type=int, default=10, help="segmentation classes (10)")
    parser.add_argument("--tile", type=int, default=256, help="tile side (256)")
    parser.add_argument("--overlap", type=float, default=0.25, help="tile overlap (0.25)")
    parser.add_argument("--block", type=int, default=1536, help="block side (1536)")
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per forward (8)")
    parser.add_argument(
        "--forward-tiles",
        type=int,
        default=96,
        help="tiles timed for the bare forward, before and after the pass (96)",
    )
    parser.add_argument(
        "--bare-seconds",
        type=float,
        default=20.0,
        help="time the bare forward for at least this long, cycling its tiles (20)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="passes per scene, each between two bare timings; the median pass is reported (1)",
    )
    parser.add_argument(
        "--probabilities", choices=("float32", "uint8"), default=None, help="also write probabilities"
    )
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--workdir", default=None, help="folder for scenes and outputs (default: a temporary one)"
    )
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument(
        "--timeline",
        default=None,
        help="folder: write every stage interval of each scene's reported pass to timeline_<size>.json "
        "([stage, thread, start, end] seconds from the pass's start), to see which stages overlap",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="stop each scene after the block passing this time; the report then says "
        "complete: false and gives the full-scene time only as an EXTRAPOLATED figure",
    )
    parser.add_argument(
        "--serial", action="store_true", help="run the serial path (no reader/writer threads), for comparison"
    )
    parser.add_argument(
        "--writer-decides",
        action="store_true",
        help="the writer thread makes each block's classes from its float32 probabilities (before the "
        "eighth session; for comparison) instead of the forward's thread as the block finishes",
    )
    parser.add_argument(
        "--readers",
        type=int,
        default=None,
        help="blocks read at once (predict --readers; default: predict's, 1 on the CPU)",
    )
    parser.add_argument(
        "--remote",
        action="store_true",
        help="also predict each scene as a COG, from the file and over loopback HTTP (bytes read, tiles/s)",
    )
    parser.add_argument("--child", nargs=3, metavar=("RUN", "SCENE", "OUT"), help=argparse.SUPPRESS)


def write_scene(path: Path, size: int, bands: int, strip: int = 512, seed: int = 0) -> float:
    """Write a smooth-plus-noise uint16 scene strip by strip (tiled, DEFLATE level 1); returns seconds."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=bands,
        dtype="uint16",
        nodata=0,
        crs="EPSG:32633",
        transform=from_origin(300_000, 5_000_000, 10, 10),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        zlevel=1,
        predictor=2,
        BIGTIFF="YES",
    )
    cols = np.arange(size, dtype=np.float32)[None, :]
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, strip):
            rows = np.arange(r0, min(r0 + strip, size), dtype=np.float32)[:, None]
            data = np.empty((bands, rows.shape[0], size), dtype=np.uint16)
            for b in range(
                bands
            ):  # land-cover-like smooth fields per band, plus sensor noise; never 0 (nodata)
                field = np.sin(cols / (200 + 13 * b) + b) * np.cos(rows / (310 + 7 * b) - b)
                noise = rng.integers(0, 60, size=data.shape[1:], dtype=np.uint16)
                data[b] = (1500 + 900 * field).astype(np.uint16) + noise
            dst.write(data, window=Window(0, r0, size, rows.shape[0]))
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> int:
    if args.child:
        from resnet_apps.bench.predict_child import measure

        return measure(args)
    if args.repeat < 1 or (args.remote and args.repeat > 1):
        # a second pass over a URL would read from GDAL's download cache, not the server
        raise SystemExit("bench predict: --repeat takes 1 or more, and only 1 with --remote")
    import torch

    from resnet_apps.models.checkpoint import save_checkpoint
    from resnet_apps.models.heads import build_model

    tmp = None
    if args.workdir:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench_predict_")
        work = Path(tmp.name)
    torch.manual_seed(0)
    model = build_model("segmentation", "resnet18", in_chans=args.bands, num_classes=args.classes)
    meta = {
        "classes": [f"class{k}" for k in range(args.classes)],
        "operating_threshold": 0.5,
        "preprocessing": {
            "bands": None,
            "scale": 1e-4,
            "mean": [0.15] * args.bands,
            "std": [0.1] * args.bands,
            "image_size": args.tile,
        },
    }
    save_checkpoint(work / "run" / "checkpoints" / "best", model, meta)
    report: dict[str, Any] = {
        "settings": {
            k: getattr(args, k)
            for k in (
                "size",
                "small",
                "bands",
                "classes",
                "tile",
                "overlap",
                "block",
                "batch_size",
                "device",
                "probabilities",
                "max_seconds",
                "serial",
                "writer_decides",
                "remote",
            )
        },
        "cpu_count": os.cpu_count(),
        "scenes": [],
    }
    for size in [s for s in (args.small, args.size) if s]:
        scene = work / f"scene_{size}.tif"
        if not scene.is_file():
            print(
                f"writing {scene.name} ({size} x {size} x {args.bands} uint16) ...",
                file=sys.stderr,
                flush=True,
            )
            write_seconds = write_scene(scene, size, args.bands)
            print(f"  written in {write_seconds:.1f} s", file=sys.stderr, flush=True)
        cog_seconds = None
        if args.remote:  # the local figures are then those of the COG that is also served
            from resnet_apps.bench.predict_remote import make_cog

            scene, cog_seconds = make_cog(scene)
        command = [
            sys.executable,
            "-m",
            "resnet_apps",
            "bench",
            "predict",
            "--child",
            str(work / "run"),
            str(scene),
            str(work / f"out_{size}"),
            "--tile",
            str(args.tile),
            "--overlap",
            str(args.overlap),
            "--block",
            str(args.block),
            "--batch-size",
            str(args.batch_size),
            "--device",
            args.device,
            "--forward-tiles",
            str(args.forward_tiles),
            "--bare-seconds",
            str(args.bare_seconds),
            "--repeat",
            str(args.repeat),
            "--threads",
            str(args.threads),
        ]
        if args.probabilities:
            command += ["--probabilities", args.probabilities]
        if args.max_seconds:
            command += ["--max-seconds", str(args.max_seconds)]
        if args.serial:
            command.append("--serial")
        if args.writer_decides:
            command.append("--writer-decides")
        if args.readers:
            command += ["--readers", str(args.readers)]
        if args.timeline:
            Path(args.timeline).mkdir(parents=True, exist_ok=True)
            command += ["--timeline", str(Path(args.timeline) / f"timeline_{size}.json")]
        print(f"predicting {scene.name} in a fresh process ...", file=sys.stderr, flush=True)
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        if args.remote:
            from resnet_apps.bench.predict_remote import remote_figures, summary

            figures["remote"] = remote_figures(command, scene, work, figures, cog_seconds)
            print(summary(figures["scene"], figures["remote"]), flush=True)
        report["scenes"].append(figures)
        print(json.dumps(figures), flush=True)
        split = figures["split"]
        print(
            f"{figures['scene']}: ratio to a bare forward {figures['ratio']:.3f}, forward share of wall time "
            f"{figures['forward_share']:.3f}, split (s) read {split['read']}, forward {split['forward']}, "
            f"blend {split['blend']}, write {split['write']}; redundant tile factor "
            f"{figures['redundant_tile_factor']}",
            flush=True,
        )
    if len(report["scenes"]) == 2:
        small, large = report["scenes"]
        report["rss_ratio_large_to_small"] = round(large["peak_rss_mb"] / small["peak_rss_mb"], 3)
        print(
            f"peak RSS {small['scene']}: {small['peak_rss_mb']:.0f} MiB, {large['scene']}: "
            f"{large['peak_rss_mb']:.0f} MiB (x{report['rss_ratio_large_to_small']})",
            flush=True,
        )
    if report["scenes"]:  # the last (largest) scene's headline figures at the top level
        last = report["scenes"][-1]
        for key in ("tiles_per_s", "ratio", "split", "forward_share", "peak_rss_mb", "redundant_tile_factor"):
            report[key] = last[key]
        if "remote" in last:
            report["remote"] = last["remote"]
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0
