"""Data cards: YAML front matter plus Markdown, read by people and by code (no torch).

A card lives at ``data_cards/<name>.md`` (or, for the embedded demo sample, in ``resnet_apps/demo_data/``)::

    ---
    name: eurosat_ms
    title: EuroSAT multispectral (Sentinel-2, 13 bands)
    ...
    statistics:
      B01: {mean: 0.13, std: 0.02, p01: 0.1, p50: 0.13, p99: 0.19, min: 0.08, max: 0.3}
    ---
    # EuroSAT-MS
    Free text for people.

``load_card`` validates the front matter (required keys, the shape of ``bands``, ``classes`` and
``statistics``) and raises :class:`~resnet_apps.errors.DataCardError` naming the file, the field and the fix.
Recipes name a card through ``data.card``; ``data.normalize: card`` takes each band's mean/std from
``DataCard.band_stats`` by band name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from resnet_apps.errors import DataCardError

# Keys every card must have (ARCHITECTURE.md 5b). Values may be null only where NULLABLE says so.
REQUIRED_FIELDS: tuple[str, ...] = (
    "name",
    "title",
    "citation",
    "licence",
    "source_url",
    "checksum",
    "modality",
    "file_format",
    "bands",
    "classes",
    "split",
    "scale",
    "statistics",
    "known_limits",
)
# checksum: unknown until the first fetch records it; statistics: no local copy to compute them from;
# scale: images that are windowed (DICOM) rather than scaled.
NULLABLE_FIELDS: frozenset[str] = frozenset({"checksum", "statistics", "scale"})
# classes may be an empty list (DICOM test films carry no labels); the others must not be empty.
MAY_BE_EMPTY: frozenset[str] = frozenset({"classes"})
STAT_KEYS: tuple[str, ...] = ("mean", "std", "p01", "p50", "p99", "min", "max")

_REPO_CARDS = Path(__file__).resolve().parents[1] / "data_cards"
_DEMO_CARDS = Path(__file__).resolve().parent / "demo_data"


def default_search_path() -> list[Path]:
    """Folders searched for cards by name: the repo's ``data_cards/``, then ``resnet_apps/demo_data/``."""
    return [_REPO_CARDS, _DEMO_CARDS]


@dataclass(frozen=True)
class DataCard:
    """A parsed, validated data card.

    Attributes:
        name: the card's name (equals the file stem).
        front_matter: the YAML mapping, as written.
        markdown: the text after the front matter.
        band_stats: band name -> {mean, std, p01, p50, p99, min, max} of *scaled* values ({} if unknown).
        path: the file it was read from.
    """

    name: str
    front_matter: dict[str, Any]
    markdown: str
    band_stats: dict[str, dict[str, float]]
    path: Path

    def mean_std(self, bands: Sequence[str]) -> tuple[list[float], list[float]]:
        """Per-band mean and std for ``bands`` (in that order), for ``data.normalize: card``.

        Raises:
            DataCardError: a band without statistics in this card (names the card, the band and the fix).
        """
        missing = [b for b in bands if b not in self.band_stats]
        if missing:
            raise DataCardError(
                f"{self.path}: field 'statistics' has no entry for band(s) {missing} "
                f"(it has {sorted(self.band_stats)}); run `resnet-apps data stats DIR --bands ...` "
                "and add them, or use data.normalize: none"
            )
        return ([self.band_stats[b]["mean"] for b in bands], [self.band_stats[b]["std"] for b in bands])


def split_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    """Split a card's text into (front matter mapping, Markdown body).

    Raises:
        DataCardError: no ``---`` block at the top, invalid YAML, or front matter that is not a mapping.
    """
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise DataCardError(f"{path}: a data card must start with a '---' line (YAML front matter); add one")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        raise DataCardError(f"{path}: the front matter has no closing '---' line; add one after the YAML")
    try:
        front = yaml.safe_load("".join(lines[1:end]))
    except yaml.YAMLError as error:
        raise DataCardError(
            f"{path}: the front matter is not valid YAML ({error}); fix the syntax"
        ) from error
    if not isinstance(front, dict):
        raise DataCardError(f"{path}: the front matter must be a mapping of keys (name, title, ...)")
    return front, "".join(lines[end + 1 :]).lstrip("\n")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate_statistics(stats: Any, band_names: set[str], path: Path) -> dict[str, dict[str, float]]:
    if stats is None:
        return {}
    if not isinstance(stats, dict) or not stats:
        raise DataCardError(f"{path}: field 'statistics' must map band name -> {{{', '.join(STAT_KEYS)}}}")
    out: dict[str, dict[str, float]] = {}
    for band, values in stats.items():
        band = str(band)
        if band_names and band not in band_names:
            raise DataCardError(
                f"{path}: field 'statistics.{band}' names a band not in 'bands' ({sorted(band_names)}); "
                "add the band or rename the entry"
            )
        if not isinstance(values, dict):
            raise DataCardError(f"{path}: field 'statistics.{band}' must be a mapping of {STAT_KEYS}")
        for key in STAT_KEYS:
            if key not in values:
                raise DataCardError(
                    f"{path}: field 'statistics.{band}.{key}' is missing; recompute: `resnet-apps data stats`"
                )
            if not _is_number(values[key]):
                raise DataCardError(f"{path}: field 'statistics.{band}.{key}' must be a finite number")
        if not values["min"] <= values["p01"] <= values["p50"] <= values["p99"] <= values["max"]:
            raise DataCardError(
                f"{path}: field 'statistics.{band}' must satisfy min <= p01 <= p50 <= p99 <= max"
            )
        if values["std"] < 0:
            raise DataCardError(f"{path}: field 'statistics.{band}.std' is negative")
        out[band] = {key: float(values[key]) for key in STAT_KEYS}
    return out


def validate_front_matter(front: dict[str, Any], path: Path) -> dict[str, dict[str, float]]:
    """Check the required keys and the shape of bands/classes/statistics; return the band statistics.

    Raises:
        DataCardError: naming the file and the first field that is missing or malformed.
    """
    for key in REQUIRED_FIELDS:
        if key not in front:
            raise DataCardError(
                f"{path}: required field '{key}' is missing; add it to the front matter "
                f"(required: {', '.join(REQUIRED_FIELDS)})"
            )
        value = front[key]
        if value is None:
            if key not in NULLABLE_FIELDS:
                raise DataCardError(f"{path}: field '{key}' is null; give it a value")
        elif key not in MAY_BE_EMPTY and value in ("", [], {}):
            raise DataCardError(f"{path}: field '{key}' is empty; give it a value")
    if front["name"] != path.stem:
        raise DataCardError(
            f"{path}: field 'name' is {front['name']!r} but the file is {path.name}; they must match"
        )
    if front["scale"] is not None and (not _is_number(front["scale"]) or front["scale"] <= 0):
        raise DataCardError(f"{path}: field 'scale' must be a positive number (raw -> physical), or null")
    bands = front["bands"]
    if not isinstance(bands, list) or not all(isinstance(b, dict) and b.get("name") for b in bands):
        raise DataCardError(f"{path}: field 'bands' must be a list of mappings, each with a 'name'")
    classes = front["classes"]
    if not isinstance(classes, list) or not all(
        isinstance(c, dict) and c.get("name") and c.get("definition") for c in classes
    ):
        raise DataCardError(f"{path}: field 'classes' must be a list of {{name, definition}} mappings")
    if not isinstance(front["known_limits"], list):
        raise DataCardError(f"{path}: field 'known_limits' must be a list of sentences")
    return _validate_statistics(front["statistics"], {str(b["name"]) for b in bands}, path)


def read_card(path: str | Path) -> DataCard:
    """Parse and validate one card file.

    Raises:
        DataCardError: unreadable file, bad front matter or a missing/malformed field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DataCardError(f"{path}: cannot read the data card ({error})") from error
    front, markdown = split_front_matter(text, path)
    band_stats = validate_front_matter(front, path)
    return DataCard(
        name=str(front["name"]), front_matter=front, markdown=markdown, band_stats=band_stats, path=path
    )


def _candidates(folder: Path, name: str) -> list[Path]:
    # demo_data may keep its card one level down (demo_data/<sample>/<name>.md).
    return [folder / f"{name}.md", *sorted(folder.glob(f"*/{name}.md"))]


def load_card(name_or_path: str | Path, search: Sequence[str | Path] | None = None) -> DataCard:
    """Load a card by name (``eurosat_ms``) or by path (``data_cards/eurosat_ms.md``).

    Args:
        name_or_path: a card name looked up in ``search``, or a path to a ``.md`` file.
        search: folders to look in; default :func:`default_search_path`.

    Raises:
        DataCardError: no such card (lists the folders searched and the cards found) or an invalid card.
    """
    text = str(name_or_path)
    as_path = Path(text)
    if as_path.suffix == ".md" or as_path.is_file():
        if not as_path.is_file():
            raise DataCardError(f"{as_path}: data card file not found; check the path")
        return read_card(as_path)
    folders = [Path(p) for p in (search if search is not None else default_search_path())]
    for folder in folders:
        for candidate in _candidates(folder, text):
            if candidate.is_file():
                return read_card(candidate)
    raise DataCardError(
        f"data card {text!r} not found in {[str(f) for f in folders]} (available: {list_cards(folders)}); "
        f"write data_cards/{text}.md or fix the recipe's data.card"
    )


def list_cards(search: Sequence[str | Path] | None = None) -> list[str]:
    """Names of the cards found in ``search`` (files that open with a ``---`` front matter line), sorted."""
    folders = [Path(p) for p in (search if search is not None else default_search_path())]
    names: set[str] = set()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in [*folder.glob("*.md"), *folder.glob("*/*.md")]:
            try:
                with path.open(encoding="utf-8") as handle:
                    first = handle.readline()
            except (OSError, UnicodeDecodeError):
                continue
            if first.strip() == "---":
                names.add(path.stem)
    return sorted(names)
