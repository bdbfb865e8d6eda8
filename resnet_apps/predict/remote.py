"""Remote scenes (HTTP(S) COGs, S3): GDAL's network options in one place, bytes fetched, typed read errors.

``predict RUN https://host/scene.tif`` reads the scene through GDAL's ``/vsicurl/`` (``s3://`` through
``/vsis3/``, with the usual AWS_* variables; untested here): every block read becomes HTTP range requests
for the TIFF tiles it covers, so traffic and memory follow what is predicted, not the file size. The
options, all set by :func:`gdal_env` (scene prediction wraps every thread in it):

- ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR``: no listing of the URL's "folder" on open (a request per
  open, and S3 listings are slow and billed);
- ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS``: GDAL never probes side-car files (``.aux.xml``, ``.ovr``,
  ``.msk``) of a URL, one 404 each; a URL whose path ends otherwise (``/download?id=...``) is refused:
  add its ending to the variable (comma-separated) to read it;
- ``GDAL_HTTP_MERGE_CONSECUTIVE_RANGES=YES``: adjacent tiles of one block read come in one request;
- ``GDAL_HTTP_MULTIRANGE=SERIAL``: GDAL's default parallel multi-range read bypasses the download cache
  below, so every block's halo fetched its neighbours' tiles again (12.4 MB served for a 2.6 MB COG,
  block 128 / tile 64, measured); serial range reads go through the cache (2.1 MB: 1.08 x its tiles);
- ``CPL_VSIL_CURL_CACHE_SIZE``: the process-wide cache of downloaded ranges, capped (64 MiB). It is what
  keeps a block's halo, which overlaps the previous block's tiles, off the network; every block read
  opens the file anew, so GDAL's per-handle ``VSI_CACHE`` would only add memory and is off;
- ``GDAL_HTTP_MAX_RETRY`` / ``GDAL_HTTP_RETRY_DELAY``: GDAL retries a request that fails with HTTP
  429/5xx with exponential backoff. A connection cut mid-body ("transfer closed with n bytes remaining")
  is not among GDAL's retryable errors (measured: the same number of requests with 0 or 3 retries), so
  :func:`read_with_retries` retries the whole window read, as many times and with the same doubling
  delay (first clearing GDAL's cache of that URL with ``VSICurlPartialClearCache``: without it GDAL
  answers the retry from the failed download, without a request), then raises a
  :class:`~resnet_apps.errors.RemoteReadError` that names the URL; the writers, closed with that
  exception, leave no map under its final name;
- ``CPL_VSIL_NETWORK_STATS_ENABLED=YES``: GDAL counts the bytes it downloads; :func:`network_bytes`
  reads the count (``VSINetworkStatsGetAsSerializedJSON``, which rasterio does not wrap: it is called
  through ctypes on the libgdal rasterio loaded; None where that library cannot be found).

For a local scene predicted on a GPU, ``GDAL_NUM_THREADS=ALL_CPUS`` (``gdal_env(decode_threads=True)``)
lets GDAL decode the tiles of one block read, and compress those of one output write, on all cores: there
the serial decode set the pace (10 000 x 10 000 x 13 uint16 DEFLATE on an H200: 33.1 s reading against
2.8 s of forward, 6.9 s with the threads; the whole scene 43.7 s -> 18.5 s). On a CPU device the forward
has every core and reading is a few per cent of it, so GDAL stays on one thread there.

Each option can be overridden by the environment variable of the same name (e.g. a longer
``GDAL_HTTP_RETRY_DELAY`` on a flaky link).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import rasterio

from resnet_apps.errors import BandError, GeoTiffError, RemoteReadError
from resnet_apps.io.geotiff import is_remote

_T = TypeVar("_T")
log = logging.getLogger(__name__)
GDAL_CACHE_MB = 128  # GDAL's block cache (decoded blocks); its default, 5 % of RAM, grows with the scene
# name -> default; the environment variable of the same name wins (see the module docstring for each)
NETWORK_OPTIONS: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.vrt,.jp2",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIRANGE": "SERIAL",
    "CPL_VSIL_CURL_CACHE_SIZE": str(64 << 20),
    "VSI_CACHE": "FALSE",
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_TIMEOUT": "60",
    "CPL_VSIL_NETWORK_STATS_ENABLED": "YES",
}


def gdal_options(decode_threads: bool = False) -> dict[str, Any]:
    """The GDAL configuration of scene prediction: block cache cap, :data:`NETWORK_OPTIONS`, and with
    ``decode_threads`` (local scenes only) ``GDAL_NUM_THREADS``.

    Remote scenes stay single-threaded: GDAL's decoding threads fetch their tiles each on its own, past the
    download cache, and a block's halo was fetched again (15.7 MB served for a 1.9 MB COG's blocks, measured).
    """
    options: dict[str, Any] = {"GDAL_CACHEMAX": GDAL_CACHE_MB}
    if decode_threads:
        options["GDAL_NUM_THREADS"] = os.environ.get("GDAL_NUM_THREADS", "ALL_CPUS")
    options.update({name: os.environ.get(name, default) for name, default in NETWORK_OPTIONS.items()})
    return options


def gdal_env(decode_threads: bool = False) -> rasterio.Env:
    """A ``rasterio.Env`` with :func:`gdal_options` (GDAL's configuration is per thread: one per thread)."""
    return rasterio.Env(**gdal_options(decode_threads))


def scene_label(path: str | Path) -> str:
    """What progress bars and messages call a scene: a file's name, a URL as given."""
    return str(path) if is_remote(path) else Path(path).name


def read_with_retries(url: str, read: Callable[[], _T]) -> _T:
    """``read()`` (a window read of ``url``), retried with exponential backoff on a read error.

    Retries ``GDAL_HTTP_MAX_RETRY`` times, waiting ``GDAL_HTTP_RETRY_DELAY`` seconds, doubled each time.
    A :class:`~resnet_apps.errors.BandError` (the file lacks a band) is raised at once: no retry fixes it.

    Raises:
        RemoteReadError: the read still failed after the retries; names the URL and what to do.
    """
    options = gdal_options()
    retries, delay = int(options["GDAL_HTTP_MAX_RETRY"]), float(options["GDAL_HTTP_RETRY_DELAY"])
    for attempt in range(retries + 1):
        try:
            return read()
        except BandError:
            raise
        except GeoTiffError as error:
            if attempt == retries:
                raise RemoteReadError(
                    f"{url}: reading failed after {retries} retries with backoff ({error}); no map was "
                    "written under its final name. Fix: check that the URL is reachable and serves byte "
                    "ranges (curl -r 0-99 URL), then rerun; on a flaky link raise GDAL_HTTP_MAX_RETRY / "
                    "GDAL_HTTP_RETRY_DELAY"
                ) from error
            clear_cache(url)
            wait = delay * 2**attempt
            log.warning("%s: read failed (%s); retry %d/%d in %.1f s", url, error, attempt + 1, retries, wait)
            time.sleep(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")


_LIBGDAL: list[ctypes.CDLL | None] = []


def _libgdal() -> ctypes.CDLL | None:
    """The libgdal this process loaded (rasterio's), found in /proc/self/maps; None where not found."""
    if not _LIBGDAL:
        found = None
        try:
            with open("/proc/self/maps", encoding="utf-8") as maps:
                paths = {line.split()[-1] for line in maps if "libgdal" in line and "/" in line}
            for path in sorted(paths):
                lib = ctypes.CDLL(path)  # the loaded library again (dlopen returns its handle)
                if hasattr(lib, "VSINetworkStatsGetAsSerializedJSON"):
                    lib.VSINetworkStatsGetAsSerializedJSON.restype = ctypes.c_void_p
                    lib.VSINetworkStatsGetAsSerializedJSON.argtypes = [ctypes.c_void_p]
                    lib.VSIFree.argtypes = [ctypes.c_void_p]
                    lib.VSICurlPartialClearCache.argtypes = [ctypes.c_char_p]
                    found = lib
                    break
        except OSError:
            found = None
        _LIBGDAL.append(found)
    return _LIBGDAL[0]


def vsi_path(url: str) -> str:
    """GDAL's name of a URL (rasterio's mapping: ``https://`` -> ``/vsicurl/https://``, ``s3://b/k`` ->
    ``/vsis3/b/k``)."""
    for scheme, prefix in (("s3://", "/vsis3/"), ("gs://", "/vsigs/"), ("az://", "/vsiaz/")):
        if url.startswith(scheme):
            return prefix + url[len(scheme) :]
    return url if url.startswith("/vsi") else f"/vsicurl/{url}"


def clear_cache(url: str) -> None:
    """Forget what GDAL cached of ``url`` (its size, its downloaded ranges, a failed download)."""
    lib = _libgdal()
    if lib is not None:
        lib.VSICurlPartialClearCache(vsi_path(url).encode("utf-8"))


def network_bytes() -> int | None:
    """Bytes GDAL has downloaded in this process (all threads and files), or None where it cannot be read.

    Counted only while ``CPL_VSIL_NETWORK_STATS_ENABLED`` was on (:func:`gdal_env`); take differences.
    """
    lib = _libgdal()
    if lib is None:
        return None
    pointer = lib.VSINetworkStatsGetAsSerializedJSON(None)
    if not pointer:
        return None
    try:
        stats = json.loads(ctypes.string_at(pointer).decode("utf-8"))
    finally:
        lib.VSIFree(pointer)
    return sum(int(m.get("downloaded_bytes", 0)) for m in stats.get("methods", {}).values())


@dataclass
class FetchCounter:
    """Bytes GDAL downloaded since it was entered (None: not remote, or GDAL's count cannot be read).

    Enter it inside :func:`gdal_env` before the scene is opened, so that the header reads count too.
    """

    remote: bool
    before: int | None = None

    def __enter__(self) -> FetchCounter:
        self.before = network_bytes() if self.remote else None
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self) -> int | None:
        """Bytes downloaded so far (all threads of the process, as GDAL counts)."""
        if self.before is None:
            return None
        now = network_bytes()
        return None if now is None else now - self.before


def block_bytes(path: str | Path, window: tuple[int, int, int, int] | None = None) -> int:
    """Compressed bytes of the TIFF blocks (tiles or strips) a window covers: what reading it must fetch.

    Args:
        path: a local file or URL (read inside :func:`gdal_env` for a URL).
        window: ``(row_off, col_off, height, width)``; None for the whole raster.

    Returns:
        the sum of the blocks' byte counts over every band (a pixel-interleaved block holds all bands and
        is counted once).
    """
    with rasterio.open(path) as src:
        bh, bw = src.block_shapes[0]
        r0, c0, h, w = window if window is not None else (0, 0, src.height, src.width)
        bands = [1] if src.interleaving == rasterio.enums.Interleaving.pixel else list(src.indexes)
        total = 0
        for bidx in bands:
            for i in range(r0 // bh, (r0 + h - 1) // bh + 1):
                for j in range(c0 // bw, (c0 + w - 1) // bw + 1):
                    total += int(src.block_size(bidx, i, j))
        return total
