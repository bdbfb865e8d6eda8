"""Where the carried reads' CPU goes: all blocks of a scene on one core (SceneReader.read_into: one dataset per thread, tiles decoded straight into their block where they lie wholly in it)."""
import sys, time, cProfile, pstats, io
import numpy as np, rasterio
from resnet_apps.data.preprocessing import Preprocessing
from resnet_apps.predict.carry import STRIPE_BLOCKS, TileLayout, carry_for
from resnet_apps.predict.raster import SceneReader
from resnet_apps.predict.remote import gdal_env
from resnet_apps.predict.tiling import iter_blocks, plan_grid
path = sys.argv[1]
with gdal_env(False):
    reader = SceneReader(path, Preprocessing())
    grid = plan_grid(256, 0.25, 1536)
    blocks = list(iter_blocks(reader.height, reader.width, grid, reader.file_tiles, STRIPE_BLOCKS))
    layout = TileLayout(reader.file_tiles, reader.height, reader.width)
    def carried():
        carry = carry_for(reader.read_into, layout, [(b.stripe, b.read) for b in blocks], len(reader.indexes), reader.meta.dtype)
        for b in blocks:
            carry.read(b.read, b.stripe)
        return carry
    a = time.thread_time(); c = carried(); print(f"carried: {time.thread_time()-a:.2f} s CPU, {c.decoded} decodes, {c.direct} direct", flush=True)
    # the same tiles, raw rasterio reads through one open dataset, no validity
    keys = list(carry_for(reader.read_into, layout, [(b.stripe, b.read) for b in blocks], 13, "uint16")._left)
    wins = [layout.window_of(k[1:]) for k in keys]
    with rasterio.open(path) as src:
        a = time.thread_time()
        for r0, r1, c0, c1 in wins:
            out = np.empty((13, r1 - r0, c1 - c0), np.uint16)
            src.read(window=((r0, r1), (c0, c1)), out=out)
        print(f"raw decodes ({len(wins)}), one dataset: {time.thread_time()-a:.2f} s", flush=True)
    pr = cProfile.Profile(); pr.enable(); carried(); pr.disable()
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(18); print(s.getvalue())
