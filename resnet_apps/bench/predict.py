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
  ratio under ``passes`` and reports the median pass;
- ``peak_rss_mb``: the subprocess's VmHWM from ``/proc/self/status`` (its own peak, not a sum);
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
import math
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


def _peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(args: argparse.Namespace) -> int:
    """Predict one scene and time a bare forward on tiles of it; print one JSON line."""
    import torch

    from resnet_apps.io.geotiff import is_remote
    from resnet_apps.models.checkpoint import load_run
    from resnet_apps.predict.raster import SceneReader
    from resnet_apps.predict.scene import predict_scene
    from resnet_apps.predict.tiling import blend_weights, file_tiles_read, plan_grid

    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir, out = Path(args.child[0]), Path(args.child[2])
    scene = args.child[1]  # a path or a URL (bench predict --remote)
    model, meta = load_run(run_dir, map_location=args.device)
    # one-time costs of a process, timed apart from the pass (a worker predicting many scenes pays them
    # once): MONAI's import, which the first scene's blend weights trigger (seconds on 2 cores), and the
    # first forward (allocator, oneDNN/cuDNN plans), which the bare forward below also gets as warm-up
    started = time.perf_counter()
    device = torch.device(args.device)
    blend_weights(plan_grid(args.tile, args.overlap, args.block), "gaussian", device)
    with torch.no_grad():
        chans = meta.require_preprocessing().in_chans or args.bands
        warm = torch.zeros(args.batch_size, chans, args.tile, args.tile)
        model.to(device).eval()(warm.to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    startup = time.perf_counter() - started
    # bare forward: the same tile size and batch, tiles read from the scene (first rows of the grid), timed
    # before and after the pass; the ratio uses the mean of the two rates (the machine's speed drifts by
    # several per cent over a minute, even idle, and one timing after the pass made the ratio swing by as much)
    grid = plan_grid(args.tile, args.overlap, args.block)
    pre = meta.require_preprocessing()

    def bare_rate() -> float:
        """Tiles/s of the bare forward; its tiles are read anew and freed after, so they never sit in
        memory during the pass (``peak_rss_mb`` is the pass's)."""
        reader = SceneReader(scene, pre)  # opened here: a URL is first opened by the pass (GDAL's stats)
        per_row = max((reader.width - args.tile) // grid.stride + 1, 1)
        batches = []
        for k0 in range(0, args.forward_tiles, args.batch_size):
            # tiles go straight into their batch: no list of tiles beside the stacked copy in memory
            batch = torch.empty(
                (min(args.batch_size, args.forward_tiles - k0), len(reader.indexes), args.tile, args.tile)
            )
            for k in range(k0, k0 + len(batch)):
                r, c = (k // per_row) * grid.stride, (k % per_row) * grid.stride
                x, _ = reader.read_normalised((r, r + args.tile, c, c + args.tile))
                batch[k - k0] = torch.from_numpy(x)
            batches.append(batch)
        with torch.no_grad():
            model(batches[0].to(device))  # warm-up (allocator, kernels), as the pass had
            if device.type == "cuda":
                torch.cuda.synchronize()
            # the batches again and again for --bare-seconds: one short timing samples this machine's speed
            # in one window only, and that speed moves by about 10 % between 15 s windows
            start, timed = time.perf_counter(), 0
            while timed < args.forward_tiles or time.perf_counter() - start < args.bare_seconds:
                for batch in batches:
                    torch.softmax(model(batch.to(device)), dim=1).cpu()  # same work as the pass's predictor
                    timed += len(batch)
                if device.type == "cuda":
                    torch.cuda.synchronize()
            return timed / (time.perf_counter() - start)

    def predict() -> dict[str, Any]:
        return predict_scene(
            model,
            meta,
            scene,
            out,
            tile=args.tile,
            overlap=args.overlap,
            block=args.block,
            batch_size=args.batch_size,
            probabilities=args.probabilities,
            device=args.device,
            progress=sys.stderr.isatty(),
            max_seconds=args.max_seconds or None,  # 0: to completion
            pipeline=not args.serial,
            timeline=bool(args.timeline),
        )

    # not for a URL: reading its tiles first would warm GDAL's download cache and hide the pass's fetches
    bares: list[float | None] = [None if is_remote(scene) else bare_rate()]
    results, peaks = [], []
    for _ in range(args.repeat):  # bare, pass, bare, pass, ..., bare: each pass between two bare timings
        results.append(predict())
        peaks.append(_peak_rss_mb())
        bares.append(bare_rate())
    passes = []
    for k, res in enumerate(results):
        flank = [b for b in bares[k : k + 2] if b is not None]
        passes.append(
            {
                "seconds": round(res["seconds"], 2),
                "tiles_per_s": round(res["tiles_per_s"], 3),
                "forward_share": round(res["forward_seconds"] / res["seconds"], 3),
                # the pipeline's fill (start to the first forward) and drain (last forward to the maps closed)
                "fill_seconds": None if res["fill_seconds"] is None else round(res["fill_seconds"], 3),
                "drain_seconds": None if res["drain_seconds"] is None else round(res["drain_seconds"], 3),
                "bare_tiles_per_s_before_after": [
                    None if b is None else round(b, 3) for b in bares[k : k + 2]
                ],
                "ratio": round(res["tiles_per_s"] / (sum(flank) / len(flank)), 3),
                # the ratio against the faster and the slower of its two bare timings brackets it
                "ratio_range": [
                    round(res["tiles_per_s"] / max(flank), 3),
                    round(res["tiles_per_s"] / min(flank), 3),
                ],
            }
        )
    # the headline figures are the median pass's (by ratio); every pass is listed under "passes"
    median = sorted(range(len(passes)), key=lambda k: passes[k]["ratio"])[(len(passes) - 1) // 2]
    result, chosen = results[median], passes[median]
    height, width = result["shape"]
    tiling = SceneReader(scene, pre).file_tiles
    # internal file tiles decoded per file tile (each block read decodes every tile it touches, whole)
    in_file = math.ceil(height / tiling.rows) * math.ceil(width / tiling.cols)
    decode_factor = file_tiles_read(height, width, grid, tiling) / in_file
    whole = (math.ceil(max(height - args.tile, 0) / grid.stride) + 1) * (
        math.ceil(max(width - args.tile, 0) / grid.stride) + 1
    )
    flank = [b for b in chosen["bare_tiles_per_s_before_after"] if b is not None]
    figures = {
        "scene": f"{height}x{width}x{pre.in_chans}",
        "complete": result["complete"],
        "tiles": result["tiles"],
        "tiles_total": result["tiles_total"],
        "seconds": chosen["seconds"],
        "startup_seconds": round(startup, 2),
        "tiles_per_s": chosen["tiles_per_s"],
        "forward_share": chosen["forward_share"],
        "fill_seconds": chosen["fill_seconds"],
        "drain_seconds": chosen["drain_seconds"],
        "split": {k: round(v, 2) for k, v in result["split"].items()},
        "background_cpu": {k: round(v, 2) for k, v in result["background_cpu"].items()},
        "pipeline": not args.serial,
        "max_blocks_in_flight": result["max_blocks_in_flight"],
        "bare_tiles": args.forward_tiles,
        "bare_seconds": args.bare_seconds,
        "bare_tiles_per_s": round(sum(flank) / len(flank), 3),
        "bare_tiles_per_s_before_after": chosen["bare_tiles_per_s_before_after"],
        "ratio": chosen["ratio"],
        "ratio_range": chosen["ratio_range"],
        "passes": passes,
        "forward_tiles_per_s_in_pass": round(result["tiles"] / max(result["forward_seconds"], 1e-9), 3),
        "redundant_tile_factor": round(result["tiles_total"] * args.tile**2 / (height * width), 3),
        "halo_factor": round(result["tiles_total"] / whole, 3),
        "decode_factor": round(decode_factor, 3),
        "peak_rss_mb": round(max(peaks), 1),
        "bytes_read": result["bytes_read"],
        "peak_rss_mb_incl_bare_forward": round(_peak_rss_mb(), 1),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if args.timeline:
        Path(args.timeline).write_text(json.dumps(result["timeline"]) + "\n")
    if not result["complete"]:
        figures["extrapolated_full_scene_seconds"] = round(result["tiles_total"] / result["tiles_per_s"], 1)
    print(json.dumps(figures))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.child:
        return _child(args)
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
