"""The embedded demo sample and `resnet-apps demo`."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "resnet_apps" / "demo_data"


def test_embedded_sample_is_byte_identical_to_its_listing() -> None:
    rows = re.findall(r"\| (\w+) \| (\w+_\d+\.tif) \| `([0-9a-f]{64})` \|", (DEMO / "README.md").read_text())
    files = sorted(
        p.relative_to(DEMO / "eurosat_ms_sample").as_posix() for p in DEMO.glob("eurosat_ms_sample/*/*.tif")
    )
    assert len(rows) == len(files) == 50  # 5 chips x 10 classes
    for cls, name, digest in rows:
        assert hashlib.sha256((DEMO / "eurosat_ms_sample" / cls / name).read_bytes()).hexdigest() == digest
    assert "MIT" in (DEMO / "LICENSE").read_text() and "Helber" in (DEMO / "CITATION").read_text()
    assert sum(p.stat().st_size for p in DEMO.rglob("*")) < 8 * 2**20


def test_embedded_sample_matches_shared_data(shared_data: Path) -> None:
    for path in DEMO.glob("eurosat_ms_sample/*/*.tif"):
        assert path.read_bytes() == (shared_data / "eurosat_ms" / path.parent.name / path.name).read_bytes()


def test_demo_card_statistics_are_those_of_the_sample() -> None:
    import numpy as np
    import rasterio

    from resnet_apps.cards import load_card

    card = load_card("eurosat_ms_sample")
    values = []
    for path in sorted(DEMO.glob("eurosat_ms_sample/*/*.tif")):
        with rasterio.open(path) as src:
            values.append(src.read(4).astype(np.float64) * 0.0001)  # band 4 = B04 (red)
    red = np.stack(values)
    assert card.band_stats["B04"]["mean"] == pytest.approx(red.mean(), abs=1e-5)
    assert card.band_stats["B04"]["std"] == pytest.approx(red.std(), abs=1e-5)


def test_demo_recipe_is_the_packaged_one_and_checks_without_torch() -> None:
    from resnet_apps.cli.train import demo_recipe_path
    from resnet_apps.recipe import load_recipe

    recipe = load_recipe(demo_recipe_path())
    assert recipe.model.on_missing_weights == "scratch" and recipe.model.backbone == "resnet18"
    assert Path(recipe.data.root) == DEMO / "eurosat_ms_sample"
    repo_copy = Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml"
    assert repo_copy.resolve() == demo_recipe_path()


@pytest.mark.slow
@pytest.mark.subprocess
def test_demo_command_ends_with_the_report_path(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "resnet_apps", "demo", "--runs-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("report: ") and last.endswith("report.html") and Path(last[8:]).is_file()
    assert "RANDOM weights" in done.stdout
