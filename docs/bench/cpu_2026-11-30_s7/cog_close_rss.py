"""Peak RSS of the class map's COG writer alone: 1 536 px blocks of uint8 classes written over an N x N grid, then
the COG copy at close. Usage: cog_close_rss.py GDAL_CACHE_MB N (a scratch file under /tmp/bp)."""
import sys, resource, numpy as np, rasterio
from pathlib import Path
from resnet_apps.predict import remote
remote.GDAL_CACHE_MB = int(sys.argv[1])
from resnet_apps.io import GeoMeta, open_geotiff_writer
from resnet_apps.predict.remote import gdal_env
def rss():
    for l in open('/proc/self/status'):
        if l.startswith('VmRSS'): return int(l.split()[1]) / 1024
N = int(sys.argv[2])
meta = GeoMeta(path='x', crs='EPSG:32633', transform=(10.0, 0.0, 300000.0, 0.0, -10.0, 5000000.0), res=(10.0, 10.0), nodata=None,
               band_names=['c'], dtype='uint8', width=N, height=N, window=(0, 0, N, N), georeferenced=True, valid=None,
               band_numbers=[1], alpha_band=None, block_shape=(512, 512))
rng = np.random.default_rng(0)
with gdal_env(False):
    r0 = rss()
    w = open_geotiff_writer(Path('/tmp/bp/cache_test.tif'), like=meta, count=1, dtype='uint8', nodata=255, band_names=['class'], legend=[str(i) for i in range(10)], tags={})
    with w:
        starts = [0, *range(1728, N, 1536)]
        peak = 0
        for a, a1 in zip(starts, starts[1:] + [N]):
            for b, b1 in zip(starts, starts[1:] + [N]):
                blk = (rng.integers(0, 10, size=(1, (a1 - a) // 8 + 1, (b1 - b) // 8 + 1)).astype(np.uint8).repeat(8, 1).repeat(8, 2))[:, : a1 - a, : b1 - b]
                w.write(np.ascontiguousarray(blk), (a, b, a1 - a, b1 - b))
                peak = max(peak, rss())
        print(f"cache {sys.argv[1]} MB, {N} px: RSS before {r0:.0f}, peak during writes +{peak - r0:.0f} MB", flush=True)
    print(f"after close +{rss() - r0:.0f} MB; VmHWM {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f}")
