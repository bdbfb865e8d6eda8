"""Data cards: every card parses, every recipe's card exists, and each card's statistics match the real data.

The statistics in ``data_cards/*.md`` were produced by ``python tests/test_cards.py`` (the ``__main__`` block
below), which prints each card's ``statistics`` block from ``STATS_PLAN``. The test recomputes them on the
same files with ``resnet_apps.data.stats.compute_band_stats``, and with the
small exact reference below (integer histograms: exact percentiles with numpy's linear interpolation,
no float copies of 300 M pixels).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from resnet_apps.cards import REQUIRED_FIELDS, STAT_KEYS, list_cards, load_card
from resnet_apps.errors import DataCardError

REPO = Path(__file__).resolve().parents[1]
CARDS = REPO / "data_cards"
EXPECTED_CARDS = (
    "eurosat_ms",
    "eurosat_rgb",
    "chest_xray_pneumonia_kermany",
    "nih_chestxray14",
    "cloud38_landsat8",
    "dubai_aerial_landcover",
    "covid_cxr_lung_segmentation",
    "dicom_radiographs",
)


# --- the reference statistics ------------------------------------------------------------------


@dataclass(frozen=True)
class StatsPlan:
    """Which files a card's statistics cover, which bands, and the raw -> physical scale."""

    folder: str  # under ../shared/data
    band_globs: dict[str, str]  # band name -> glob (one band per file) or "glob#index" (0-based band)
    scale: float
    nodata: int | None = None  # raw value excluded as not valid (38-Cloud black borders)


EUROSAT_MS_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")
STATS_PLAN: dict[str, StatsPlan] = {
    "eurosat_ms": StatsPlan("eurosat_ms", {b: f"*/*.tif#{i}" for i, b in enumerate(EUROSAT_MS_BANDS)}, 1e-4),
    "eurosat_rgb": StatsPlan(
        "eurosat_rgb", {b: f"*/*.jpg#{i}" for i, b in enumerate(("red", "green", "blue"))}, 1 / 255
    ),
    "chest_xray_pneumonia_kermany": StatsPlan(
        "chest_xray_pneumonia_kermany",
        {**{b: f"*/*/*.jpeg#{i}" for i, b in enumerate(("red", "green", "blue"))}, "gray": "*/*/*.jpeg#gray"},
        1 / 255,
    ),
    "cloud38_landsat8": StatsPlan(
        "cloud38_landsat8_segmentation",
        {b: f"train_{b}/*.TIF" for b in ("red", "green", "blue", "nir")},
        1 / 65535,
    ),
    "dubai_aerial_landcover": StatsPlan(
        "dubai_aerial_landcover_segmentation",
        {b: f"tile_*/images/*.jpg#{i}" for i, b in enumerate(("red", "green", "blue"))},
        1 / 255,
    ),
    "covid_cxr_lung_segmentation": StatsPlan(
        "covid_cxr_lung_segmentation_generalblockchain", {"gray": "images/*#gray"}, 1 / 255
    ),
}


def _read_bands(path: Path, indices: Sequence[str]) -> list[np.ndarray]:
    """The named bands of one file as raw integer arrays [H, W] (tif via rasterio, others via PIL)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import rasterio

        with rasterio.open(path) as dataset:
            stack = dataset.read()
        return [stack[0 if i == "" else int(i)] for i in indices]
    from PIL import Image

    with Image.open(path) as image:
        if indices == ["gray"]:
            # data.grayscale: the mean of R, G, B (alpha dropped), or the L band itself. Kept exact as the
            # integer sum R + G + B (3 * L for grey files); reference_band_stats divides by 3.
            if image.mode in ("L", "I;16", "I"):
                return [np.asarray(image).astype(np.uint16) * 3]
            rgb = np.asarray(image.convert("RGB"))
            total = rgb[..., 0].astype(np.uint16)  # plane-wise adds: far faster than sum(axis=-1)
            total += rgb[..., 1]
            total += rgb[..., 2]
            return [total]
        rgb = np.asarray(image.convert("RGB"))
    return [rgb[..., int(i)] for i in indices]


def _percentile_from_counts(counts: np.ndarray, q: float) -> float:
    """numpy's default (linear) percentile of the multiset given by integer value -> count."""
    cumulative = np.cumsum(counts)
    rank = q / 100.0 * (cumulative[-1] - 1)
    low, high = math.floor(rank), math.ceil(rank)
    v_low = int(np.searchsorted(cumulative, low, side="right"))
    v_high = int(np.searchsorted(cumulative, high, side="right"))
    return v_low + (rank - low) * (v_high - v_low)


def _stats_from_counts(counts: np.ndarray, scale: float) -> dict[str, float]:
    values = np.arange(counts.size, dtype=np.float64)
    n = counts.sum()
    mean = float((counts * values).sum() / n)
    var = float((counts * (values - mean) ** 2).sum() / n)
    nonzero = np.flatnonzero(counts)
    raw = {
        "mean": mean,
        "std": math.sqrt(var),
        "p01": _percentile_from_counts(counts, 1),
        "p50": _percentile_from_counts(counts, 50),
        "p99": _percentile_from_counts(counts, 99),
        "min": float(nonzero[0]),
        "max": float(nonzero[-1]),
    }
    return {k: v * scale for k, v in raw.items()}


def reference_band_stats(root: Path, plan: StatsPlan) -> dict[str, dict[str, float]]:
    """Exact per-band statistics of scaled values over every file the plan names (valid pixels only)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for band, spec in plan.band_globs.items():
        pattern, _, index = spec.partition("#")
        # grey is read on its own pass (it converts the whole image); bands of one file share a pass
        groups.setdefault(spec if index == "gray" else pattern, []).append((band, index))
    out: dict[str, dict[str, float]] = {}
    for key, members in groups.items():
        pattern = key.partition("#")[0]
        files = sorted(p for p in (root / plan.folder).glob(pattern) if p.is_file())
        assert files, f"no files for {plan.folder}/{pattern}"
        counts = {band: np.zeros(65536, dtype=np.int64) for band, _ in members}
        for path in files:
            for (band, _), raw in zip(members, _read_bands(path, [i for _, i in members]), strict=True):
                counts[band][: 256 if raw.dtype == np.uint8 else 65536] += np.bincount(
                    raw.ravel(), minlength=256 if raw.dtype == np.uint8 else 65536
                )
        for band, _ in members:
            if plan.nodata is not None:
                counts[band][plan.nodata] = 0
            # grey is stored as R + G + B (see _read_bands): a third of it is the mean the data layer uses
            out[band] = _stats_from_counts(counts[band], plan.scale / 3 if band == "gray" else plan.scale)
    return {band: out[band] for band in plan.band_globs}


def _assert_stats_close(card_stats: dict, computed: dict, label: str) -> None:
    assert set(card_stats) == set(computed), (
        f"{label}: bands differ: {sorted(card_stats)} vs {sorted(computed)}"
    )
    for band, values in computed.items():
        for key in STAT_KEYS:
            # cards round to 6 significant digits; allow that plus tiny algorithmic differences
            expected = card_stats[band][key]
            assert values[key] == pytest.approx(expected, rel=1e-4, abs=1e-6), (
                f"{label}: statistics.{band}.{key} = {expected} in the card, {values[key]} recomputed"
            )


# --- the cards themselves ----------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPECTED_CARDS)
def test_card_parses_with_required_fields(name: str) -> None:
    card = load_card(name)
    assert card.name == name
    assert card.path == CARDS / f"{name}.md"
    for key in REQUIRED_FIELDS:
        assert key in card.front_matter
    assert card.markdown.strip(), "a card needs human-readable text after the front matter"
    assert all(b["name"] for b in card.front_matter["bands"])
    # citations are full references, not a bare name
    assert len(card.front_matter["citation"]) > 40


@pytest.mark.subprocess
def test_cards_and_fetch_do_not_import_torch() -> None:
    import subprocess

    code = "import sys, resnet_apps.cards, resnet_apps.fetch; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_list_cards_finds_every_card() -> None:
    assert set(EXPECTED_CARDS) <= set(list_cards())


@pytest.mark.parametrize("name", ["eurosat_ms"])
def test_sentinel2_bands_match_constants(name: str) -> None:
    from resnet_apps.constants import EUROSAT_MS_BANDS as ORDER
    from resnet_apps.constants import SENTINEL2_RESOLUTION_M, SENTINEL2_WAVELENGTH_NM

    bands = load_card(name).front_matter["bands"]
    assert [b["name"] for b in bands] == list(ORDER)
    for band in bands:
        assert band["wavelength_nm"] == SENTINEL2_WAVELENGTH_NM[band["name"]]
        assert band["resolution_m"] == SENTINEL2_RESOLUTION_M[band["name"]]


def test_mean_std_by_band_name_and_missing_band_error() -> None:
    card = load_card("eurosat_ms")
    mean, std = card.mean_std(["B04", "B03"])
    assert mean == [card.band_stats["B04"]["mean"], card.band_stats["B03"]["mean"]]
    assert all(s > 0 for s in std)
    with pytest.raises(DataCardError, match="B99"):
        card.mean_std(["B99"])


# one row per malformed card: (front matter edit, text the error must contain)
BAD_CARDS: list[tuple[Callable[[dict], None], str]] = [
    (lambda fm: fm.pop("licence"), "'licence' is missing"),  # required field absent
    (lambda fm: fm.update(title=None), "'title' is null"),  # null where a value is needed
    (lambda fm: fm.update(name="other"), "'name' is 'other'"),  # name differs from the file stem
    (lambda fm: fm.update(bands=["B01"]), "'bands' must be a list"),  # bands without names
    (lambda fm: fm["statistics"]["B01"].pop("p99"), "statistics.B01.p99"),  # incomplete statistics
    (lambda fm: fm["statistics"].update(B77=fm["statistics"]["B01"]), "statistics.B77"),  # unknown band
]


@pytest.mark.parametrize(("edit", "message"), BAD_CARDS)
def test_invalid_card_names_file_and_field(
    tmp_path: Path, edit: Callable[[dict], None], message: str
) -> None:
    card = load_card("eurosat_ms")
    front = yaml.safe_load(yaml.safe_dump(card.front_matter))
    edit(front)
    path = tmp_path / "eurosat_ms.md"
    path.write_text("---\n" + yaml.safe_dump(front) + "---\n# text\n", encoding="utf-8")
    with pytest.raises(DataCardError) as info:
        load_card(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_unknown_card_and_missing_front_matter(tmp_path: Path) -> None:
    with pytest.raises(DataCardError, match="not found"):
        load_card("no_such_dataset")
    (tmp_path / "plain.md").write_text("# no front matter\n", encoding="utf-8")
    with pytest.raises(DataCardError, match="must start with a '---'"):
        load_card("plain", search=[tmp_path])
    assert list_cards([tmp_path]) == []


def test_every_recipe_names_an_existing_card() -> None:
    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert recipes, f"no recipe found in {REPO / 'recipes'}"
    available = set(list_cards())
    for path in recipes:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
        card = (recipe.get("data") or {}).get("card")
        assert card, f"{path.name}: data.card is missing"
        assert card in available, f"{path.name}: data.card {card!r} has no data_cards/{card}.md"
        load_card(card)


def test_recipes_agree_with_their_cards_on_scale_and_bands() -> None:
    """data.scale is the card's scale, and data.normalize: card finds every band the recipe reads."""
    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert recipes, f"no recipe found in {REPO / 'recipes'}"
    for path in recipes:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))["data"]
        card = load_card(data["card"])
        if card.front_matter["scale"] is not None:
            assert data.get("scale", 1.0) == pytest.approx(card.front_matter["scale"]), (
                f"{path.name}: data.scale {data.get('scale', 1.0)} but data_cards/{card.name}.md says "
                f"{card.front_matter['scale']} (raw -> physical); make them agree"
            )
        bands = data.get("bands") or (["gray"] if data.get("grayscale") else None)
        if data.get("normalize", "card") == "card" and card.band_stats and bands:
            missing = [b for b in bands if b not in card.band_stats]
            assert not missing, (
                f"{path.name}: bands {missing} have no statistics in data_cards/{card.name}.md"
            )


# --- statistics against the real data ---------------------------------------------------------


def test_percentile_from_counts_matches_numpy() -> None:
    values = np.array([0, 3, 3, 7, 7, 7, 9, 200], dtype=np.int64)
    counts = np.bincount(values, minlength=256)
    for q in (1, 50, 99, 37.5):
        assert _percentile_from_counts(counts, q) == pytest.approx(np.percentile(values, q))


# The exact reference re-reads every file; compute_band_stats (below) already checks the cards on all files,
# so by default the reference only runs where compute_band_stats cannot: the grey band of mixed-mode images.
REFERENCE_BY_DEFAULT = {"covid_cxr_lung_segmentation"}


@pytest.mark.parametrize(
    "name",
    [n if n in REFERENCE_BY_DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in sorted(STATS_PLAN)],
)
def test_card_statistics_match_reference(shared_data: Path, name: str) -> None:
    plan = STATS_PLAN[name]
    if not (shared_data / plan.folder).is_dir():
        pytest.skip(f"{plan.folder} not in {shared_data}")
    card = load_card(name)
    assert card.front_matter["scale"] == pytest.approx(plan.scale)
    _assert_stats_close(card.band_stats, reference_band_stats(shared_data, plan), name)


def test_kermany_channels_are_equal(shared_data: Path) -> None:
    """Kermany's gray statistics are its red statistics only if R = G = B: check every 8th file (sorted)."""
    from PIL import Image

    files = sorted((shared_data / STATS_PLAN["chest_xray_pneumonia_kermany"].folder).glob("*/*/*.jpeg"))[::8]
    if not files:
        pytest.skip("Kermany images not in shared data")
    for path in files:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all(), path


def _compute(stats_module: Any, files: list[Path], bands: list[str] | None, scale: float) -> dict[str, Any]:
    return stats_module.compute_band_stats(files, bands=bands, scale=scale)


@pytest.mark.parametrize("name", sorted(STATS_PLAN))
def test_card_statistics_match_compute_band_stats(shared_data: Path, name: str) -> None:
    """The card's numbers are what ``resnet-apps data stats`` (compute_band_stats) gives on the same files.

    compute_band_stats has no grey conversion, so the ``gray`` entries are checked as follows: Kermany stores
    grey as R = G = B, so gray must equal compute_band_stats' red; the COVID set mixes L/RGB/RGBA files, so
    there the exact reference (which applies data.grayscale's mean of R, G, B) is compared with
    compute_band_stats on the files that are already grey (mode L), where the two must agree exactly.
    """
    from resnet_apps.data import stats as stats_module

    plan = STATS_PLAN[name]
    folder = shared_data / plan.folder
    if not folder.is_dir():
        pytest.skip(f"{plan.folder} not in {shared_data}")
    card = load_card(name)
    computed: dict[str, dict[str, float]] = {}
    indexed: dict[str, list[str]] = {}
    for band, spec in plan.band_globs.items():
        pattern, _, index = spec.partition("#")
        if index == "":
            # one band per file (38-Cloud): the file's single band is this band
            (only,) = _compute(stats_module, sorted(folder.glob(pattern)), None, plan.scale).values()
            computed[band] = only
        elif index != "gray":
            indexed.setdefault(pattern, []).append(band)
    for pattern, bands in indexed.items():
        if "gray" in plan.band_globs and bands == ["red", "green", "blue"]:
            bands = ["red"]  # R = G = B (Kermany): one band is enough, and a third of the work
        computed.update(_compute(stats_module, sorted(folder.glob(pattern)), bands, plan.scale))
    if "gray" in plan.band_globs:
        if "red" in computed:  # Kermany: R = G = B (test_kermany_channels_are_equal), so grey is red
            for band in ("green", "blue", "gray"):
                computed[band] = computed["red"]
        else:
            from PIL import Image

            files = sorted(p for p in folder.glob(plan.band_globs["gray"].partition("#")[0]) if p.is_file())
            grey = [p for p in files if Image.open(p).mode == "L"]
            assert grey, "expected some grey (mode L) files"
            subset = StatsPlan(plan.folder, {"gray": "#gray"}, plan.scale)
            reference = _reference_on_files(grey, subset)
            (only,) = _compute(stats_module, grey, None, plan.scale).values()
            _assert_stats_close(reference, {"gray": only}, f"{name} (mode L files)")
            computed["gray"] = card.band_stats["gray"]  # checked against the reference in the other test
    _assert_stats_close(card.band_stats, computed, name)


def _reference_on_files(files: list[Path], plan: StatsPlan) -> dict[str, dict[str, float]]:
    counts = np.zeros(65536, dtype=np.int64)
    for path in files:
        (raw,) = _read_bands(path, ["gray"])
        counts += np.bincount(raw.ravel(), minlength=65536)
    return {"gray": _stats_from_counts(counts, plan.scale / 3)}


def _print_statistics(names: Sequence[str]) -> None:
    """Print the YAML ``statistics`` block of each card (6 significant digits)."""
    root = REPO.parent / "shared" / "data"
    for name in names:
        stats = reference_band_stats(root, STATS_PLAN[name])
        rounded = {b: {k: float(f"{v:.6g}") for k, v in s.items()} for b, s in stats.items()}
        print(
            f"# {name}\n" + yaml.safe_dump({"statistics": rounded}, default_flow_style=None, sort_keys=False)
        )


if __name__ == "__main__":
    _print_statistics(sys.argv[1:] or sorted(STATS_PLAN))
