"""The one-pass batch kernel: its pixel geometry is dihedral_np's, its arithmetic the torch sequence's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from resnet_apps.data.batch_augment import dihedral_np
from resnet_apps.data.batch_kernels import dihedral_steps, fusable, gather_dihedral


@pytest.mark.parametrize(("h", "w"), [(5, 5), (4, 7)])
def test_steps_address_the_dihedral_view(h: int, w: int) -> None:
    flat = np.arange(h * w).reshape(h, w)
    codes = range(8) if h == w else (0, 2, 4, 6)  # odd turns need square images
    for code in codes:
        origin, sy, sx = dihedral_steps(code, h, w)
        view = dihedral_np(flat, code)
        ys, xs = np.indices(view.shape)
        assert np.array_equal(origin + ys * sy + xs * sx, view), code


def test_kernel_equals_cast_multiply_add_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    src = rng.integers(0, 60000, (7, 3, 6, 6)).astype(np.uint16)
    rows = np.array([6, 0, 3, 3, 1, 5, 2, 4], dtype=np.int64)
    codes = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    mul = rng.random((8, 3)).astype(np.float32) * 1e-3
    add = (rng.random((8, 3)).astype(np.float32) - 0.5) * 4
    out = gather_dihedral(src, rows, codes, mul, add)
    for i in range(8):
        turned = torch.from_numpy(dihedral_np(src[rows[i]], int(codes[i])).astype(np.float32))
        expected = turned.mul_(torch.from_numpy(mul[i])[:, None, None]).add_(
            torch.from_numpy(add[i])[:, None, None]
        )
        assert np.array_equal(out[i], expected.numpy()), i


def test_kernel_refuses_rows_outside_the_shard_and_turns_of_oblong_images() -> None:
    src = np.zeros((2, 1, 4, 6), np.int16)
    ones = np.ones((1, 1), np.float32)
    with pytest.raises(IndexError, match="2 images"):
        gather_dihedral(src, np.array([2]), np.array([0]), ones, ones)
    with pytest.raises(ValueError, match="square"):
        gather_dihedral(src, np.array([1]), np.array([1]), ones, ones)
    assert gather_dihedral(src, np.array([1]), np.array([2]), ones, ones).shape == (1, 1, 4, 6)


def test_fusable_dtypes() -> None:
    assert all(fusable(np.dtype(d)) for d in ("uint8", "int16", "uint16", "float32"))
    assert not fusable(np.dtype("float16"))
