"""data.rgb_bands picks conv1's RGB channels by name or by 1-based band number, like data.bands (items 1-2)."""

from __future__ import annotations

import pytest

from resnet_apps.errors import RecipeError
from resnet_apps.recipe import Recipe, recipe_from_dict
from resnet_apps.train.setup import rgb_positions


def _recipe(bands: list[str] | list[int] | None, rgb: list[str] | list[int]) -> Recipe:
    return recipe_from_dict(
        {
            "name": "t",
            "task": "classification",
            "data": {"root": ".", "bands": bands, "rgb_bands": rgb},
            "model": {"conv1_init": "rgb_bands"},
        }
    )


@pytest.mark.parametrize(
    ("bands", "rgb", "names", "expected"),
    [
        (
            ["B02", "B03", "B04", "B08"],
            ["B04", "B03", "B02"],
            ["B02", "B03", "B04", "B08"],
            [2, 1, 0],
        ),  # names
        (
            [2, 3, 4, 8],
            [4, 3, 2],
            ["band2", "band3", "band4", "band8"],
            [2, 1, 0],
        ),  # numbers among data.bands
        (None, [3, 2, 1], ["band1", "band2", "band3", "band4"], [2, 1, 0]),  # file numbers, all bands read
    ],
)
def test_rgb_bands_by_name_or_number(
    bands: object, rgb: list[object], names: list[str], expected: list[int]
) -> None:
    assert rgb_positions(_recipe(bands, rgb), names) == expected


def test_rgb_band_not_read_is_refused() -> None:
    with pytest.raises(RecipeError, match="rgb_bands"):
        rgb_positions(_recipe(None, [3, 2, 9]), ["band1", "band2", "band3"])
