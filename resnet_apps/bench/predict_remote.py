"""``bench predict --remote``: the same scene predicted from a local file and over loopback HTTP.

The benchmark scene is copied into a Cloud-Optimised GeoTIFF (rio-cogeo, 512 px tiles, overviews: what an
archive serves) and predicted in fresh subprocesses: from the file (``bench predict``'s own run), then from
``http://127.0.0.1:PORT/scene.cog.tif`` served by :class:`~resnet_apps.bench.http_server.RangeServer` in this
process. Figures per scene (``remote``): tiles/s of both and their ratio (the issue's goal: >= 0.9 on
loopback), ``bytes_read`` (GDAL's count of bytes downloaded during the prediction; the server's count is
``bytes_served``, which also holds the bare-forward tiles read afterwards), its ratio to the file size and
to ``block_bytes`` (the compressed full-resolution tiles the predicted part covers: the least a reader
must fetch; goal <= 1.1), and peak RSS of both.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def make_cog(scene: Path) -> tuple[Path, float]:
    """``scene.cog.tif`` beside ``scene`` (deflate, 512 px tiles, overviews); returns it and the seconds."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    cog = scene.with_name(f"{scene.stem}.cog.tif")
    started = time.perf_counter()
    if not cog.is_file():
        profile = dict(cog_profiles.get("deflate"), blockxsize=512, blockysize=512, predictor=2, zlevel=1)
        cog_translate(str(scene), str(cog), profile, quiet=True, in_memory=False)
    return cog, time.perf_counter() - started


def _child(command: list[str], scene: str, out: Path) -> dict[str, Any]:
    """Run the benchmark child on ``scene`` (a path or URL); its JSON figures."""
    argv = list(command)
    at = argv.index("--child")
    argv[at + 2], argv[at + 3] = scene, str(out)
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def remote_figures(
    command: list[str], cog: Path, work: Path, local: dict[str, Any], cog_seconds: float | None
) -> dict[str, Any]:
    """Loopback-HTTP figures of one COG beside its local-file figures (see the module docstring).

    Args:
        command: the benchmark child's command line (``--child RUN SCENE OUT`` is filled in here).
        cog: the COG (:func:`make_cog`).
        work: folder for the outputs.
        local: the child's figures for the local COG.
        cog_seconds: what making the COG took.
    """
    from resnet_apps.bench.http_server import RangeServer
    from resnet_apps.predict.remote import block_bytes

    with RangeServer(cog.parent) as server:
        print(f"predicting {server.url(cog.name)} over loopback HTTP ...", file=sys.stderr, flush=True)
        remote = _child(command, server.url(cog.name), work / f"out_{cog.stem}_remote")
        served = server.bytes_served
    rows, cols = (int(v) for v in remote["scene"].split("x")[:2])
    size = cog.stat().st_size
    blocks = block_bytes(cog, (0, 0, rows, cols))
    read = remote.get("bytes_read")
    complete = bool(local["complete"] and remote["complete"])
    return {
        "cog_bytes": size,
        "cog_seconds": None if cog_seconds is None else round(cog_seconds, 1),
        "complete": complete,
        "local_tiles_per_s": local["tiles_per_s"],
        "remote_tiles_per_s": remote["tiles_per_s"],
        "remote_to_local_tiles_per_s": round(remote["tiles_per_s"] / local["tiles_per_s"], 3),
        "bytes_read": read,
        "bytes_served": served,
        "block_bytes": blocks,
        "bytes_read_to_file": None if read is None else round(read / size, 3),
        # a run stopped by --max-seconds read part of the scene: no ratio to the whole scene's blocks
        "bytes_read_to_blocks": None if read is None or not complete else round(read / blocks, 3),
        "local_peak_rss_mb": local["peak_rss_mb"],
        "remote_peak_rss_mb": remote["peak_rss_mb"],
        "local_split": local["split"],
        "remote_split": remote["split"],
    }


def summary(scene: str, figures: dict[str, Any]) -> str:
    """One line of text for the remote figures of a scene."""
    read = figures["bytes_read"]
    fetched = (
        "bytes read not measurable here"
        if read is None
        else f"read {read / 2**20:.1f} MiB = {figures['bytes_read_to_file']} x the file "
        f"({figures['cog_bytes'] / 2**20:.1f} MiB), {figures['bytes_read_to_blocks']} x its blocks"
    )
    return (
        f"{scene} remote (loopback HTTP COG): {figures['remote_tiles_per_s']} tiles/s vs local "
        f"{figures['local_tiles_per_s']} (x{figures['remote_to_local_tiles_per_s']}); {fetched}; peak RSS "
        f"{figures['remote_peak_rss_mb']:.0f} MiB vs {figures['local_peak_rss_mb']:.0f} MiB"
    )
