"""The measuring side of ``bench predict``: one scene predicted in a fresh process beside bare forwards.

:func:`measure` runs in the subprocess that :mod:`resnet_apps.bench.predict` starts per scene (``--child``):
it times the process's one-time costs apart, then N passes each between two bare-forward timings, and prints
one JSON line of figures (the module docstring of :mod:`resnet_apps.bench.predict` defines them).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any


def _peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window: VmHWM is the process's lifetime high-water mark, which the bare timing
    before the first pass (96 float32 tiles in batches, 327 MB at 13 bands) would otherwise set. Linux resets
    it on writing 5 to ``/proc/self/clear_refs`` (since 4.0); False where that is refused or not Linux."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, all) CPU ticks of the machine since boot from ``/proc/stat``; None where it is not Linux's."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        if fields[:1] != ["cpu"]:
            return None
        # user nice system idle iowait irq softirq steal [guest guest_nice: already counted in user and nice]
        ticks = [int(v) for v in fields[1:9]]
    except (OSError, ValueError):  # no /proc (not Linux), or a line this parser does not know
        return None
    return (ticks[7], sum(ticks)) if len(ticks) == 8 else None


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the machine's CPU time that its hypervisor gave to other guests between two readings
    (``steal`` in ``top``): time when this virtual machine's cores ran nothing of ours, though we asked."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 4)


def measure(args: argparse.Namespace) -> int:
    """Predict one scene and time a bare forward on tiles of it; print one JSON line."""
    import torch

    from resnet_apps.allocator import release_freed_memory
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
        memory during the pass (``peak_rss_mb`` is the passes', from :func:`reset_peak_rss`)."""
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
            readers=args.readers,
            device_decision=not args.writer_decides,
        )

    # not for a URL: reading its tiles first would warm GDAL's download cache and hide the pass's fetches
    # the hypervisor's steal over each timing: on a shared cloud machine it moves this machine's speed
    # between windows, and so the ratio of a pass to the bare timings around it
    ticks = [cpu_ticks()]
    bares: list[float | None] = [None if is_remote(scene) else bare_rate()]
    ticks.append(cpu_ticks())
    results, peaks, scoped = [], [], []
    lifetime = 0.0  # the process's peak: VmHWM is reset before each pass, so kept here across the resets
    for _ in range(args.repeat):  # bare, pass, bare, pass, ..., bare: each pass between two bare timings
        release_freed_memory()  # what the bare timing freed (its float32 batches) does not stay resident
        lifetime = max(lifetime, _peak_rss_mb())
        scoped.append(reset_peak_rss())
        results.append(predict())
        peaks.append(_peak_rss_mb())
        ticks.append(cpu_ticks())
        bares.append(bare_rate())
        ticks.append(cpu_ticks())
    # bare timing k ran from ticks[2k] to ticks[2k + 1], pass k from ticks[2k + 1] to ticks[2k + 2]
    bare_steal = [
        None if bares[k] is None else steal_share(ticks[2 * k], ticks[2 * k + 1])
        for k in range(args.repeat + 1)
    ]
    passes = []
    for k, res in enumerate(results):
        flank = [b for b in bares[k : k + 2] if b is not None]
        passes.append(
            {
                "seconds": round(res["seconds"], 2),
                "tiles_per_s": round(res["tiles_per_s"], 3),
                "forward_share": round(res["forward_seconds"] / res["seconds"], 3),
                "peak_rss_mb": round(peaks[k], 1),
                # the pipeline's fill (start to the first forward) and drain (last forward to the maps closed)
                "fill_seconds": None if res["fill_seconds"] is None else round(res["fill_seconds"], 3),
                "drain_seconds": None if res["drain_seconds"] is None else round(res["drain_seconds"], 3),
                "bare_tiles_per_s_before_after": [
                    None if b is None else round(b, 3) for b in bares[k : k + 2]
                ],
                "ratio": round(res["tiles_per_s"] / (sum(flank) / len(flank)), 3),
                "steal_share": steal_share(ticks[2 * k + 1], ticks[2 * k + 2]),
                "bare_steal_share_before_after": bare_steal[k : k + 2],
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
    # (a complete pass's: where reads carry tiles, predict.carry's plan; else every block's tiles)
    decoded = result["tiles_decoded_plan"]
    decode_factor = (file_tiles_read(height, width, grid, tiling) if decoded is None else decoded) / in_file
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
        "writer_decides": args.writer_decides,
        "max_blocks_in_flight": result["max_blocks_in_flight"],
        "readers": result["readers"],
        "bare_tiles": args.forward_tiles,
        "bare_seconds": args.bare_seconds,
        "bare_tiles_per_s": round(sum(flank) / len(flank), 3),
        "bare_tiles_per_s_before_after": chosen["bare_tiles_per_s_before_after"],
        "ratio": chosen["ratio"],
        "ratio_range": chosen["ratio_range"],
        "steal_share": chosen["steal_share"],
        "bare_steal_share_before_after": chosen["bare_steal_share_before_after"],
        "passes": passes,
        "forward_tiles_per_s_in_pass": round(result["tiles"] / max(result["forward_seconds"], 1e-9), 3),
        "redundant_tile_factor": round(result["tiles_total"] * args.tile**2 / (height * width), 3),
        "halo_factor": round(result["tiles_total"] / whole, 3),
        "decode_factor": round(decode_factor, 3),
        "carried_peak_mb": result["carried_peak_mb"],
        # of the file tiles decoded, those decoded straight into their block (no tile array, no copy)
        "tiles_decoded": result["tiles_decoded"],
        "tiles_decoded_direct": result["tiles_decoded_direct"],
        # the most any pass held: from the RSS at its start (the process's: torch, the model, what the
        # allocator kept), where VmHWM could be reset; else the process's peak so far, bare timings included
        "peak_rss_mb": round(max(peaks), 1),
        "peak_rss_scope": "pass" if all(scoped) else "process",
        "bytes_read": result["bytes_read"],
        "peak_rss_mb_incl_bare_forward": round(max(lifetime, _peak_rss_mb()), 1),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if args.timeline:
        Path(args.timeline).write_text(json.dumps(result["timeline"]) + "\n")
    if not result["complete"]:
        figures["extrapolated_full_scene_seconds"] = round(result["tiles_total"] / result["tiles_per_s"], 1)
    print(json.dumps(figures))
    return 0
