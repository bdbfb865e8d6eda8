"""Scene manifests and the deterministic split of their scenes between workers (no torch).

A manifest is a text file of scenes, one a line: a local GeoTIFF path (relative paths are relative to the
manifest's folder), a GeoTIFF URL (``https://``, ``s3://``, ``gs://``, ``/vsi...``) or a STAC item
(``item.json`` or an item URL of a STAC API). Blank lines, ``#`` lines and `` #`` comments after an entry
are ignored.

The split: the entries are de-duplicated and sorted by their text *as written* (relative paths stay relative,
so machines that mount the data at different places still agree), and entry ``n`` of that sorted list
belongs to worker ``n mod N``. Every machine that reads the same manifest computes the same split without
talking to the others; shares differ in size by at most one scene. Workers are numbered from 0:

- ``--shard i/N`` (``0 <= i < N``): a Slurm array task (``--array=0-(N-1)``, ``--shard
  $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``) or a Kubernetes indexed job (``$JOB_COMPLETION_INDEX``);
- under ``torchrun`` each rank takes ``RANK/WORLD_SIZE`` from the environment. No process group is
  joined: scenes are independent, so no rank waits on another, and a rank that dies hangs nobody;
- both at once (a Slurm array of torchrun nodes): worker ``i * WORLD_SIZE + RANK`` of ``N * WORLD_SIZE``.

Each entry gets an output key: the file name's stem (the item id for a STAC API item URL), or, when two
entries share a stem, ``<stem>-<8 hex of sha256(entry text)>`` for each of them, so names stay readable and
never clash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

from resnet_apps.errors import ManifestError

EntryKind = Literal["local", "url", "stac_item"]
RASTER_SUFFIXES = (".tif", ".tiff")
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|/vsi[a-z0-9]+/)", re.IGNORECASE)
_COMMENT = re.compile(r"(?:^|\s)#.*$")  # a '#' inside a path or URL (no space before it) is kept
MANIFEST_COPY = "manifest.json"  # the entries (text, source, kind, key), written into OUT by every worker


@dataclass(frozen=True)
class ManifestEntry:
    """One scene of a manifest."""

    text: str  # as written in the manifest (normalised): what the split sorts and keys hash
    source: str  # the local path (absolute) or the URL, as GDAL / pystac would open it
    kind: EntryKind
    key: str  # the output name: OUT/<key>/ holds the map, done.json or failed.json

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    def to_dict(self) -> dict[str, str]:
        return {"text": self.text, "source": self.source, "kind": self.kind, "key": self.key}


@dataclass(frozen=True)
class Shard:
    """Worker ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, entries: Sequence[ManifestEntry]) -> list[ManifestEntry]:
        """This worker's share of the sorted entries: every ``count``-th one from ``index``."""
        return list(entries[self.index :: self.count])


def parse_shard(text: str) -> Shard:
    """``"i/N"`` -> ``Shard(i, N)``, with ``0 <= i < N``.

    Raises:
        ManifestError: not two integers, N < 1, or i outside 0..N-1 (a 1-based Slurm array needs
            ``$((SLURM_ARRAY_TASK_ID - 1))``).
    """
    match = re.fullmatch(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*", text)
    if not match:
        raise ManifestError(
            f"--shard {text!r}: expected INDEX/COUNT such as 0/4 (0-based); fix: pass "
            "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with #SBATCH --array=0-(COUNT-1)"
        )
    index, count = int(match[1]), int(match[2])
    if count < 1:
        raise ManifestError(f"--shard {text}: COUNT must be at least 1")
    if not 0 <= index < count:
        raise ManifestError(
            f"--shard {text}: INDEX must be in 0..{count - 1} (shards are 0-based); fix: an array numbered "
            f"1..{count} passes $((SLURM_ARRAY_TASK_ID - 1))/{count}"
        )
    return Shard(index, count)


def torchrun_shard(environ: Mapping[str, str] | None = None) -> Shard:
    """``Shard(RANK, WORLD_SIZE)`` from torchrun's variables; ``Shard(0, 1)`` outside torchrun.

    Raises:
        ManifestError: RANK / WORLD_SIZE that are not integers, or a rank outside the world.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return Shard(0, 1)
    try:
        rank, world = int(env.get("RANK", "0")), int(env["WORLD_SIZE"])
    except ValueError as error:
        raise ManifestError(
            f"RANK={env.get('RANK')!r} WORLD_SIZE={env.get('WORLD_SIZE')!r}: not integers; fix: launch with "
            "torchrun, which sets them, or unset them"
        ) from error
    if world < 1 or not 0 <= rank < world:
        raise ManifestError(f"RANK={rank} is outside WORLD_SIZE={world}; fix: launch with torchrun")
    return Shard(rank, world)


def worker_shard(shard: Shard | None, environ: Mapping[str, str] | None = None) -> Shard:
    """The worker this process is: ``--shard`` combined with the torchrun rank (see the module doc)."""
    rank = torchrun_shard(environ)
    if shard is None:
        return rank
    return Shard(shard.index * rank.count + rank.index, shard.count * rank.count)


def entry_kind(source: str) -> EntryKind:
    """``local`` for a file path; ``url`` for a remote GeoTIFF; ``stac_item`` for JSON or a suffix-less URL."""
    remote = bool(_REMOTE.match(source))
    suffix = PurePosixPath(urlsplit(source).path if remote else source).suffix.lower()
    if suffix in RASTER_SUFFIXES:
        return "url" if remote else "local"
    if suffix == ".json" or remote:
        return "stac_item"  # an item file, or a STAC API item URL (.../collections/C/items/ID)
    return "local"  # a GeoTIFF without the usual suffix: read_geotiff sniffs it


def _stem(source: str, kind: EntryKind) -> str:
    path = urlsplit(source).path if kind != "local" else source
    stem = PurePosixPath(path.rstrip("/")).stem if kind != "local" else Path(path).stem
    return stem or hashlib.sha256(source.encode("utf-8")).hexdigest()[:8]


def manifest_entries(lines: Sequence[str], base: Path | None = None) -> list[ManifestEntry]:
    """Entries of manifest lines, de-duplicated, sorted and keyed (see the module doc).

    Args:
        lines: the manifest's lines (comments and blank lines are skipped).
        base: folder that relative local paths are relative to (the manifest's); None: the working folder.
    """
    sources: dict[str, str] = {}  # text -> source
    for line in lines:
        text = _COMMENT.sub("", line).strip()  # "# ..." lines, and " # ..." after an entry
        if not text or text.startswith("#"):
            continue
        if _REMOTE.match(text):
            sources[text] = text
            continue
        text = os.path.normpath(text)  # "./a.tif" and "a.tif" are one entry
        path = Path(text).expanduser()
        sources[text] = os.path.normpath(
            path if path.is_absolute() else (base or Path.cwd()).absolute() / path
        )
    ordered = sorted(sources)
    stems = [_stem(sources[t], entry_kind(t)) for t in ordered]
    counts = Counter(stems)
    return [
        ManifestEntry(
            text=t,
            source=sources[t],
            kind=entry_kind(t),
            key=stem if counts[stem] == 1 else f"{stem}-{hashlib.sha256(t.encode('utf-8')).hexdigest()[:8]}",
        )
        for t, stem in zip(ordered, stems, strict=True)
    ]


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """The entries of a manifest file (see :func:`manifest_entries`).

    Raises:
        ManifestError: the file cannot be read or holds no entry.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(
            f"{path}: cannot read the manifest ({type(error).__name__}: {error}); fix: pass a UTF-8 text "
            "file with one scene path or URL a line"
        ) from error
    entries = manifest_entries(lines, base=path.parent.absolute())
    if not entries:
        raise ManifestError(f"{path}: no scene in the manifest; fix: one path or URL a line (# comments)")
    return entries


def manifest_copy(entries: Sequence[ManifestEntry]) -> str:
    """The text of ``OUT/manifest.json``: every entry with its key, as the workers computed them."""
    return json.dumps({"entries": [e.to_dict() for e in entries]}, indent=1) + "\n"


def read_manifest_copy(path: Path) -> list[ManifestEntry]:
    """The entries of an ``OUT/manifest.json`` written by :func:`manifest_copy`.

    Raises:
        ManifestError: the file is not such a copy.
    """
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["entries"]
        return [ManifestEntry(r["text"], r["source"], r["kind"], r["key"]) for r in rows]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ManifestError(
            f"{path}: not a manifest copy written by `predict --manifest` ({type(error).__name__}); fix: pass "
            "--manifest FILE to `predict summarize`"
        ) from error
