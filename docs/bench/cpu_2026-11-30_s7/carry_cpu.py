"""Read CPU of all blocks of a scene: plain block reads (row-major) against carried reads (stripes)."""
import sys, time
from resnet_apps.data.preprocessing import Preprocessing
from resnet_apps.predict.carry import STRIPE_BLOCKS, TileLayout, carry_for
from resnet_apps.predict.raster import SceneReader
from resnet_apps.predict.remote import gdal_env
from resnet_apps.predict.tiling import iter_blocks, plan_grid
path = sys.argv[1]
with gdal_env(False):
    reader = SceneReader(path, Preprocessing())
    grid = plan_grid(256, 0.25, 1536)
    for mode in sys.argv[2:]:
        a = time.thread_time()
        if mode == "plain":
            for b in iter_blocks(reader.height, reader.width, grid, reader.file_tiles):
                reader.read_raw(b.read)
            extra = ""
        else:
            blocks = list(iter_blocks(reader.height, reader.width, grid, reader.file_tiles, STRIPE_BLOCKS))
            carry = carry_for(reader.read_raw, TileLayout(reader.file_tiles, reader.height, reader.width),
                              [(b.stripe, b.read) for b in blocks], len(reader.indexes), reader.meta.dtype)
            for b in blocks:
                carry.read(b.read, b.stripe)
            extra = f" decoded {carry.decoded} peak held {carry.peak_held_bytes/2**20:.0f} MiB"
        print(f"{mode}: {time.thread_time() - a:.2f} s CPU{extra}", flush=True)
