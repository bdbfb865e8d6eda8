"""A SIGKILL during the final COG conversion leaves nothing under the final name (issue 11)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from resnet_apps.io import GeoMeta, read_geotiff, write_geotiff

REPO = Path(__file__).resolve().parents[2]

LIKE = GeoMeta(
    path="-",
    crs="EPSG:32633",
    transform=(10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0),
    res=(10.0, 10.0),
    nodata=None,
    band_names=["p"],
    dtype="float32",
    width=64,
    height=64,
    window=(0, 0, 64, 64),
)

# The child writes a map; its COG conversion writes part of the file and then hangs, as a conversion of a
# large scene would when the process is killed. The old code converted straight into the final name.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    import rasterio.shutil
    from resnet_apps.io import GeoMeta, write_geotiff

    def stalled_copy(src, dst, **kwargs):
        Path(dst).write_bytes(b"II*\\x00" + b"\\x00" * 4096)  # a partial TIFF
        Path(str(dst) + ".ovr.tmp").write_bytes(b"partial overview")  # what GDAL leaves beside it
        print("CONVERTING", flush=True)
        time.sleep(60)

    rasterio.shutil.copy = stalled_copy
    like = GeoMeta(**eval(sys.argv[2]))
    write_geotiff(sys.argv[1], np.ones((1, 64, 64), np.float32), like=like)
    """
)


def test_sigkill_during_cog_conversion_leaves_no_final_file(tmp_path: Path) -> None:
    out = tmp_path / "map.tif"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out), repr(LIKE.__dict__)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "CONVERTING", child.stderr.read() if child.stderr else ""
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        if child.stdout:
            child.stdout.close()
        if child.stderr:
            child.stderr.close()
    assert not out.exists()  # never a partial map under the final name
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers and all(name.startswith(".map.tif.") for name in leftovers), leftovers  # recognisable

    # the next run of the same output writes it whole and removes what the killed one left
    write_geotiff(out, np.full((1, 64, 64), 0.25, np.float32), like=LIKE)
    back, _ = read_geotiff(out)
    assert back.shape == (1, 64, 64) and float(back.mean()) == 0.25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif"]
