"""Block reads that decode each of the file's tiles once per stripe of blocks and carry the shared ones.

Neighbouring blocks' read windows overlap by their halos. With reads that start on the file's tiles
(``tiling.aligned_shift``), a 1 792 px read over 512 px tiles touches 4 x 4 tiles, of which its core owns
3 x 3: the tiles along the shared edges are decoded again by the next block, 16 / 9 = 1.78 decodes per
tile (``decode_factor`` 1.69 for a 10 000 px scene). GDAL's block cache does not catch the repeats: a read
of all bands of a pixel-interleaved tiled GeoTIFF decodes straight into the caller's buffer (measured on
the 10 000 px 13-band benchmark scene with one dataset kept open: 12.4 s of one core with a 2 GB cache,
12.9 s with 128 MB).

So :class:`CarriedReads` decodes whole file tiles itself, through the scene reader, and assembles each
block's window from them. The blocks come in stripes of :data:`STRIPE_BLOCKS` block columns, row by row
within a stripe (``tiling.iter_blocks(stripe=...)``). A tile is decoded the first time a block of its stripe
needs it, held while later blocks of the stripe still need it (the column shared with the next block,
the row shared with the block below), and dropped after its last use. A tile shared by two stripes is
decoded once in each. Holding a whole row of tiles across the scene would decode every tile once, but
its memory grows with the scene's width; a stripe's does not. Measured on that scene, all block reads on
one core through ``SceneReader.read_raw`` (validity included): 460 tile decodes in 11.3 s, against 676 in
15.1 s for plain block reads, holding at most 10 tiles (68 MiB) between blocks (raw GDAL reads of every tile
once, the floor: 400 decodes in 8.7 s).

Tiles are decoded through ``SceneReader.read_into``: one dataset kept open per thread, and a tile that lies
wholly inside the window that first needs it decoded straight into that window's arrays (GDAL writes through
the view's strides), copied out only if a later read needs it. The same reads then took 9.0 s of one core
instead of 13.2 s (238 of the 460 decodes straight into their block; raw decodes of the 460 tiles through
one dataset, the floor: 7.25 s; ``docs/bench/cpu_2026-11-30_s9/read_prof.txt``).

The results are the same pixels as :meth:`SceneReader.read_raw` of the whole window: the tiles partition
the scene, and each is decoded with the values ``read_raw`` gives (nodata, NaN and alpha folded into
``valid`` per pixel).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from resnet_apps.predict.raster import window_arrays
from resnet_apps.predict.tiling import FileTiles

STRIPE_BLOCKS = (
    2  # block columns per stripe: 7 of every 6 tile columns decoded (the stripes' shared one twice)
)
# the most that the held tiles may take; a plan that would hold more (a file of large tiles, or of strips
# as wide as the scene) reads each block whole instead (plan_carry returns None)
CARRY_BUDGET_BYTES = 128 * 2**20

Window = tuple[int, int, int, int]  # (row0, row1, col0, col1) in scene pixels; may reach outside the scene
TileKey = tuple[int, int, int]  # (stripe, file tile row, file tile column)


@dataclass(frozen=True)
class TileLayout:
    """The file's tiles over the scene: where each lies and which a window touches.

    Args:
        tiles: the file's tile shape and the scene's offset in the file.
        height: scene rows.
        width: scene columns.
    """

    tiles: FileTiles
    height: int
    width: int

    def touching(self, window: Window) -> list[tuple[int, int]]:
        """File tiles ``(row, col)`` that the part of ``window`` inside the scene touches."""
        r0, r1, c0, c1 = window
        r0, r1, c0, c1 = max(r0, 0), min(r1, self.height), max(c0, 0), min(c1, self.width)
        if r1 <= r0 or c1 <= c0:
            return []
        t = self.tiles
        rows = range((r0 + t.row_off) // t.rows, (r1 - 1 + t.row_off) // t.rows + 1)
        cols = range((c0 + t.col_off) // t.cols, (c1 - 1 + t.col_off) // t.cols + 1)
        return [(i, j) for i in rows for j in cols]

    def window_of(self, tile: tuple[int, int]) -> Window:
        """A file tile's window in scene pixels, clipped to the scene."""
        t = self.tiles
        r0, c0 = tile[0] * t.rows - t.row_off, tile[1] * t.cols - t.col_off
        return max(r0, 0), min(r0 + t.rows, self.height), max(c0, 0), min(c0 + t.cols, self.width)


@dataclass(frozen=True)
class CarryPlan:
    """How often each tile of each stripe is needed, and the most tiles held at once, for reads in order."""

    needs: Counter[TileKey]
    peak_tiles: int


def plan_carry(layout: TileLayout, reads: Iterable[tuple[int, Window]]) -> CarryPlan:
    """Count the uses of every (stripe, tile) over ``reads`` (``(stripe, window)`` in read order) and the
    most tiles held at once between two reads, as :class:`CarriedReads` will hold them."""
    order = [(stripe, layout.touching(window)) for stripe, window in reads]
    needs: Counter[TileKey] = Counter((stripe, *tile) for stripe, tiles in order for tile in tiles)
    left = needs.copy()
    held: set[TileKey] = set()
    peak = 0
    for stripe, tiles in order:
        for tile in tiles:
            key = (stripe, *tile)
            left[key] -= 1
            if left[key]:
                held.add(key)
            else:
                held.discard(key)
        peak = max(peak, len(held))
    return CarryPlan(needs, peak)


@dataclass
class _Tile:
    ready: threading.Event = field(default_factory=threading.Event)
    raw: np.ndarray | None = None
    valid: np.ndarray | None = None
    error: BaseException | None = None


ReadInto = Callable[[Window, np.ndarray, np.ndarray], None]


class CarriedReads:
    """Windows assembled from whole file tiles, each decoded once per stripe and held until its last use.

    A tile that lies wholly inside the window that first needs it is decoded straight into that window's
    arrays (and copied out only if later reads need it); the others are decoded whole and their part copied.
    Thread-safe: reading threads that need a tile another thread is decoding wait for it.

    Args:
        read_into: (scene window, raw [C, h, w] out, valid [h, w] bool out) -> None, writing into the
            arrays (views of a block); only called with tiles' windows inside the scene
            (``SceneReader.read_into``).
        layout: the file's tiles over the scene.
        plan: from :func:`plan_carry` over the reads that will follow; a (stripe, tile) not in it is
            decoded for its read and not held.
        bands: C, the bands read.
        dtype: their dtype.
    """

    def __init__(
        self,
        read_into: ReadInto,
        layout: TileLayout,
        plan: CarryPlan,
        bands: int,
        dtype: np.dtype | str,
    ) -> None:
        self._read_into = read_into
        self.layout = layout
        self._left = plan.needs.copy()
        self.planned = len(plan.needs)  # tiles that reads in the planned order decode
        self._bands, self._dtype = bands, np.dtype(dtype)
        self._held: dict[TileKey, _Tile] = {}
        self._lock = threading.Lock()
        self.decoded = 0  # tiles decoded
        self.direct = 0  # ... of which straight into the window that needed them
        self.held_bytes = 0  # held tiles' bytes now
        self.peak_held_bytes = 0  # ... at most, between reads

    def read(
        self, window: Window, stripe: int, out: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw bands and validity of ``window`` (which may reach outside the scene), read in ``stripe``.

        Args:
            window: ``(row0, row1, col0, col1)`` in scene pixels.
            stripe: the stripe of the block reading it (the plan's).
            out: raw [C, h, w] and valid [h, w] arrays (or views) to read into; None: new ones.

        Returns:
            raw [C, h, w] in the file's dtype (0 outside the scene) and valid [h, w] bool, as
            ``SceneReader.read_raw(window)`` returns them (``out``'s arrays where given).
        """
        r0, r1, c0, c1 = window
        # tiles cover every pixel inside the scene: only the padding is zeroed
        raw, valid = window_arrays(
            window, self.layout.height, self.layout.width, self._bands, self._dtype, out
        )
        for tile in self.layout.touching(window):
            key = (stripe, *tile)
            t0, t1, u0, u1 = self.layout.window_of(tile)
            y0, y1, x0, x1 = max(t0, r0), min(t1, r1), max(u0, c0), min(u1, c1)
            rows, cols = slice(y0 - r0, y1 - r0), slice(x0 - c0, x1 - c0)
            whole = (y0, y1, x0, x1) == (t0, t1, u0, u1)
            entry, placed = self._take(key, (raw[:, rows, cols], valid[rows, cols]) if whole else None)
            if not placed:
                assert entry.raw is not None and entry.valid is not None
                part = (slice(y0 - t0, y1 - t0), slice(x0 - u0, x1 - u0))
                raw[:, rows, cols] = entry.raw[:, part[0], part[1]]
                valid[rows, cols] = entry.valid[part]
            self._release(key, entry)
        return raw, valid

    def _take(self, key: TileKey, into: tuple[np.ndarray, np.ndarray] | None) -> tuple[_Tile, bool]:
        """The held tile, or decode it (one thread decodes; others that need it meanwhile wait).

        Args:
            key: the (stripe, tile) wanted.
            into: the reading window's raw and valid views of the whole tile, or None (the tile reaches
                outside the window): a tile this thread decodes goes straight there.

        Returns:
            the tile's entry, and whether its pixels are already in ``into``.
        """
        with self._lock:
            entry = self._held.get(key)
            owner = entry is None
            if entry is None:
                entry = self._held[key] = _Tile()
            # reads after this one need the tile: it is held (a tile decoded into this read's window and
            # needed by no other read is never held)
            later = self._left[key] > 1
            if into is not None and not later and owner:
                del self._held[key]
        if not owner:
            entry.ready.wait()
            if entry.error is not None:
                raise entry.error
            return entry, False
        try:
            if into is None:
                r0, r1, c0, c1 = self.layout.window_of(key[1:])
                raw = np.empty((self._bands, r1 - r0, c1 - c0), dtype=self._dtype)
                valid = np.empty((r1 - r0, c1 - c0), dtype=bool)
                self._read_into((r0, r1, c0, c1), raw, valid)
                entry.raw, entry.valid = raw, valid
            else:
                self._read_into(self.layout.window_of(key[1:]), *into)
                # held for the later reads as a copy: the window's arrays belong to its block
                entry.raw, entry.valid = (into[0].copy(), into[1].copy()) if later else into
        except BaseException as exc:
            entry.error = exc
            with self._lock:
                self._held.pop(key, None)  # a later read decodes it afresh
            raise
        finally:
            entry.ready.set()
        with self._lock:
            self.decoded += 1
            self.direct += into is not None
            if into is None or later:
                self.held_bytes += entry.raw.nbytes + entry.valid.nbytes
        return entry, into is not None

    def _release(self, key: TileKey, entry: _Tile) -> None:
        """One use of ``key`` done: drop the tile after its last."""
        with self._lock:
            left = self._left[key] - 1
            self._left[key] = max(left, 0)
            if left <= 0 and self._held.get(key) is entry:
                del self._held[key]
                assert entry.raw is not None and entry.valid is not None
                self.held_bytes -= entry.raw.nbytes + entry.valid.nbytes
            self.peak_held_bytes = max(self.peak_held_bytes, self.held_bytes)


def carry_for(
    read_into: ReadInto,
    layout: TileLayout,
    reads: Iterable[tuple[int, Window]],
    bands: int,
    dtype: np.dtype | str,
    budget: int = CARRY_BUDGET_BYTES,
) -> CarriedReads | None:
    """:class:`CarriedReads` for ``reads`` (``(stripe, window)`` in order), or None where carrying does not
    fit: the file is not tiled, or its held tiles would take more than ``budget`` bytes."""
    t = layout.tiles
    if t.rows < 16 or t.cols < 16:  # not tiled (a TIFF's tiles are multiples of 16 px; strips may be 1 row)
        return None
    plan = plan_carry(layout, reads)
    tile_bytes = t.rows * t.cols * (bands * np.dtype(dtype).itemsize + 1)  # raw and valid
    if plan.peak_tiles * tile_bytes > budget:
        return None
    return CarriedReads(read_into, layout, plan, bands, dtype)
