"""Property tests of the chip grid, halo and blend arithmetic (pure functions)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.tiling import (
    ChipGrid,
    blend_weights,
    blend_weights_1d,
    block_chips,
    chunk_bounds,
    overlap_factor,
    pad_to_multiple,
)

grids = st.builds(
    ChipGrid,
    chip=st.sampled_from([32, 64, 128]),
    overlap=st.sampled_from([0, 8, 16]),
).filter(lambda g: g.overlap <= g.chip // 2)


@given(grid=grids, size=st.integers(1, 900))
def test_weights_sum_to_one_on_every_pixel(grid: ChipGrid, size: int) -> None:
    total = np.zeros(size + 2 * grid.chip)
    w = blend_weights_1d(grid.chip, grid.overlap)
    for k in range(grid.n_chips(size)):
        s = grid.chip_start(k) + grid.chip  # shift so negative starts fit
        total[s : s + grid.chip] += w
    np.testing.assert_allclose(total[grid.chip : grid.chip + size], 1.0, atol=1e-12)


@given(grid=grids)
def test_weights_positive_and_symmetric(grid: ChipGrid) -> None:
    w = blend_weights_1d(grid.chip, grid.overlap)
    assert (w > 0).all() and (w <= 1).all()
    np.testing.assert_array_equal(w, w[::-1])
    w2 = blend_weights(grid.chip, grid.overlap)
    assert w2.shape == (grid.chip, grid.chip) and not w2.flags.writeable


@given(grid=grids, size=st.integers(1, 700), a=st.integers(0, 700), length=st.integers(1, 400))
def test_chips_touching_is_exactly_the_intersecting_set(
    grid: ChipGrid, size: int, a: int, length: int
) -> None:
    a = min(a, size - 1)
    b = min(a + length, size)
    found = set(grid.chips_touching(a, b, size))
    brute = {
        k for k in range(grid.n_chips(size)) if grid.chip_start(k) < b and grid.chip_start(k) + grid.chip > a
    }
    assert found == brute


@given(
    grid=grids,
    shape=st.tuples(st.integers(1, 600), st.integers(1, 600)),
    block=st.sampled_from([64, 128, 256]),
    by=st.integers(0, 10),
    bx=st.integers(0, 10),
)
def test_block_chips_lie_inside_the_halo_extended_block(
    grid: ChipGrid, shape: tuple[int, int], block: int, by: int, bx: int
) -> None:
    y0, x0 = (
        min(by * block, (shape[0] - 1) // block * block),
        min(bx * block, (shape[1] - 1) // block * block),
    )
    core_y = (y0, min(y0 + block, shape[0]))
    core_x = (x0, min(x0 + block, shape[1]))
    chips = block_chips(grid, core_y, core_x, shape)
    ext_h = core_y[1] - core_y[0] + 2 * grid.halo
    ext_w = core_x[1] - core_x[0] + 2 * grid.halo
    assert chips.count >= 1
    for s in chips.starts_y:
        assert 0 <= s and s + grid.chip <= ext_h
    for s in chips.starts_x:
        assert 0 <= s and s + grid.chip <= ext_w


@settings(max_examples=30, deadline=None)
@given(
    grid=grids,
    shape=st.tuples(st.integers(40, 300), st.integers(40, 300)),
    blocks=st.tuples(st.sampled_from([64, 96, 128, 192]), st.sampled_from([64, 96, 128, 192])),
    seed=st.integers(0, 2**16),
)
def test_blended_mosaic_does_not_depend_on_the_block_size(
    grid: ChipGrid, shape: tuple[int, int], blocks: tuple[int, int], seed: int
) -> None:
    """Blend per-chip values with blocks of two sizes: identical mosaics.

    Each chip gets a value that depends only on its global position (as a model's output depends
    only on the chip's pixels), so this is the arithmetic the sweep relies on.
    """
    rng = np.random.default_rng(seed)
    ny, nx = grid.n_chips(shape[0]), grid.n_chips(shape[1])
    chip_values = rng.random((ny, nx, grid.chip, grid.chip))
    w = blend_weights(grid.chip, grid.overlap).astype(np.float64)

    def mosaic(block: int) -> np.ndarray:
        out = np.zeros(shape)
        for y0 in range(0, shape[0], block):
            for x0 in range(0, shape[1], block):
                cy, cx = (y0, min(y0 + block, shape[0])), (x0, min(x0 + block, shape[1]))
                acc = np.zeros((cy[1] - cy[0], cx[1] - cx[0]))
                ks_y = grid.chips_touching(*cy, shape[0])
                ks_x = grid.chips_touching(*cx, shape[1])
                for ky in ks_y:
                    for kx in ks_x:
                        sy, sx = grid.chip_start(ky), grid.chip_start(kx)
                        ay, by_ = max(sy, cy[0]), min(sy + grid.chip, cy[1])
                        ax, bx_ = max(sx, cx[0]), min(sx + grid.chip, cx[1])
                        acc[ay - cy[0] : by_ - cy[0], ax - cx[0] : bx_ - cx[0]] += (w * chip_values[ky, kx])[
                            ay - sy : by_ - sy, ax - sx : bx_ - sx
                        ]
                out[cy[0] : cy[1], cx[0] : cx[1]] = acc
        return out

    a, b = mosaic(blocks[0]), mosaic(blocks[1])
    np.testing.assert_allclose(a, b, atol=1e-12)
    assert a.min() >= chip_values.min() - 1e-9 and a.max() <= chip_values.max() + 1e-9


@given(chunks=st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_chunk_bounds_partition_the_axis(chunks: list[int]) -> None:
    bounds = chunk_bounds(tuple(chunks))
    assert bounds[0][0] == 0 and bounds[-1][1] == sum(chunks)
    assert all(b0[1] == b1[0] for b0, b1 in itertools.pairwise(bounds))


@given(size=st.integers(1, 10_000), multiple=st.integers(1, 512))
def test_pad_to_multiple(size: int, multiple: int) -> None:
    p = pad_to_multiple(size, multiple)
    assert p % multiple == 0 and size <= p < size + multiple


def test_overlap_factor_of_default_grid_meets_the_target_for_large_blocks() -> None:
    grid = ChipGrid()
    # 16 km2-scale and regional areas at the default 2048-px block.
    assert overlap_factor(grid, (4096, 4096), 2048) <= 1.3
    # Small blocks pay for seams twice: the factor grows, as documented.
    assert overlap_factor(grid, (4096, 4096), 256) > overlap_factor(grid, (4096, 4096), 2048)


@pytest.mark.parametrize("bad", [dict(chip=100), dict(overlap=12), dict(chip=64, overlap=40)])
def test_invalid_grid_rejected(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ChipGrid(**bad)
