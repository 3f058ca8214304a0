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
    grid_for_model,
    overlap_factor,
    pad_to_multiple,
    planned_pixels,
)

blended = st.builds(
    ChipGrid,
    chip=st.sampled_from([32, 64, 128]),
    overlap=st.sampled_from([0, 8, 16]),
).filter(lambda g: g.overlap <= g.chip // 2)
#: Cropped tiles as :func:`grid_for_model` makes them: a core of 32..256 px, a margin of 8 or 16.
cropped = st.builds(
    lambda core, margin: ChipGrid(chip=core + 2 * margin, overlap=0, margin=margin),
    core=st.sampled_from([32, 64, 128, 256]),
    margin=st.sampled_from([8, 16]),
)
grids = st.one_of(blended, cropped)


def _weights_1d(grid: ChipGrid, k: int, size: int) -> np.ndarray:
    """Weights of tile ``k`` cut to its size (:meth:`ChipGrid.tile_size`)."""
    return blend_weights_1d(grid.chip, grid.overlap, grid.margin)[: grid.tile_size(k, size)]


@given(grid=grids, size=st.integers(1, 900))
def test_weights_sum_to_one_on_every_pixel(grid: ChipGrid, size: int) -> None:
    total = np.zeros(size + 2 * grid.chip)
    for k in range(grid.n_chips(size)):
        w = _weights_1d(grid, k, size)
        s = grid.chip_start(k) + grid.chip  # shift so negative starts fit
        total[s : s + len(w)] += w
    np.testing.assert_allclose(total[grid.chip : grid.chip + size], 1.0, atol=1e-12)


@given(grid=cropped, size=st.integers(1, 900))
def test_cropped_tiles_cover_each_pixel_exactly_once_and_fit_the_unet(grid: ChipGrid, size: int) -> None:
    cover = np.zeros(size + 2 * grid.chip, dtype=int)
    for k in range(grid.n_chips(size)):
        n = grid.tile_size(k, size)
        assert n % 16 == 0 and grid.margin < n <= grid.chip  # the U-Net needs multiples of 16
        s = grid.chip_start(k) + grid.chip
        cover[s + grid.margin : s + min(n, grid.margin + grid.core)] += 1
        # Cut tiles still hold the area's end plus the margin of context.
        assert grid.chip_start(k) + n >= min(size + grid.margin, grid.chip_start(k) + grid.chip)
    assert (cover[grid.chip : grid.chip + size] == 1).all()


@given(grid=grids)
def test_weights_positive_and_symmetric(grid: ChipGrid) -> None:
    w = blend_weights_1d(grid.chip, grid.overlap, grid.margin)
    inner = w[grid.margin : grid.chip - grid.margin]
    assert (inner > 0).all() and (w <= 1).all() and (w[: grid.margin] == 0).all()
    np.testing.assert_array_equal(w, w[::-1])
    w2 = blend_weights(grid.chip, grid.overlap, grid.margin)
    assert w2.shape == (grid.chip, grid.chip) and not w2.flags.writeable


@given(grid=grids, size=st.integers(1, 700), a=st.integers(0, 700), length=st.integers(1, 400))
def test_chips_touching_is_exactly_the_intersecting_set(
    grid: ChipGrid, size: int, a: int, length: int
) -> None:
    a = min(a, size - 1)
    b = min(a + length, size)
    found = set(grid.chips_touching(a, b, size))
    m = grid.margin  # the weighted part of tile k is [start + m, start + chip - m)
    brute = {
        k
        for k in range(grid.n_chips(size))
        if grid.chip_start(k) + m < b and grid.chip_start(k) + grid.chip - m > a
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
    if grid.cropped:
        block = grid.stride * max(1, block // grid.stride)  # cropped tiles need stride | block
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
    # Only the area's last block may hand its last tile an input past its halo (< 16 px).
    for starts, sizes, ext, last in (
        (chips.starts_y, chips.sizes_y, ext_h, core_y[1] == shape[0]),
        (chips.starts_x, chips.sizes_x, ext_w, core_x[1] == shape[1]),
    ):
        for s, n in zip(starts, sizes, strict=True):
            assert 0 <= s and s + n <= ext + (15 if last else 0)
    if grid.cropped:  # no tile runs in two blocks
        assert grid.halo == grid.margin


@given(grid=cropped, size=st.integers(300, 900), block=st.sampled_from([40, 100]))
def test_misaligned_blocks_are_refused_by_cropped_grids(grid: ChipGrid, size: int, block: int) -> None:
    """A cropped grid's halo is only its margin: a block border inside a tile must fail loudly."""
    a = block * (grid.stride // block + 1)  # a block start that is not a tile border
    if a % grid.stride == 0 or a + block >= size:
        return
    with pytest.raises(ValueError, match="do not fit"):
        block_chips(grid, (a, a + block), (0, block), (size, size))


@settings(max_examples=30, deadline=None)
@given(
    grid=grids,
    shape=st.tuples(st.integers(40, 300), st.integers(40, 300)),
    blocks=st.tuples(st.sampled_from([1, 2, 3, 4]), st.sampled_from([1, 2, 3, 4])),
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
    w = blend_weights(grid.chip, grid.overlap, grid.margin).astype(np.float64)
    # Blocks of 1..4 x 32 px (blended chips) or 1..4 strides (cropped tiles, which need stride | block).
    unit = grid.stride if grid.cropped else 32

    def mosaic(n_units: int) -> np.ndarray:
        block = n_units * unit
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
                        ay, by_ = max(sy, cy[0]), min(sy + grid.tile_size(ky, shape[0]), cy[1])
                        ax, bx_ = max(sx, cx[0]), min(sx + grid.tile_size(kx, shape[1]), cx[1])
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


def test_unet_tiles_meet_the_overlap_target_and_clay_keeps_128px_chips() -> None:
    unet = grid_for_model("unet", 2048)
    assert unet.cropped and unet.chip % 16 == 0 and 2048 % unet.stride == 0
    for shape in ((4096, 4096), (768, 1280), (3072, 5120)):
        assert overlap_factor(unet, shape, 2048) <= 1.1, shape
    # Any block that is a multiple of 512 gives the same grid, hence the same mosaic.
    assert grid_for_model("unet", 512) == grid_for_model("unet", 1024) == unet
    for name in ("unet", "clay"):  # other blocks would change the U-Net's tiles: refused for all
        for block in (128, 256, 640, 0):
            with pytest.raises(ValueError, match="multiple of 512"):
                grid_for_model(name, block)
    for name in ("clay", "hybrid"):
        assert grid_for_model(name, 2048) == ChipGrid(chip=128, overlap=8)
    # Tiles cut at the area's edge are counted as what they are.
    assert planned_pixels(unet, (512, 512), 2048) == 528**2
    assert planned_pixels(unet, (640, 512), 2048) == (528 + 144) * 528


def test_overlap_factor_of_default_grid_meets_the_target_for_large_blocks() -> None:
    grid = ChipGrid()
    # 16 km2-scale and regional areas at the default 2048-px block.
    assert overlap_factor(grid, (4096, 4096), 2048) <= 1.3
    # Small blocks pay for seams twice: the factor grows, as documented.
    assert overlap_factor(grid, (4096, 4096), 256) > overlap_factor(grid, (4096, 4096), 2048)


@pytest.mark.parametrize(
    "bad",
    [dict(chip=100), dict(overlap=12), dict(chip=64, overlap=40), dict(chip=32, margin=16), dict(margin=4)],
)
def test_invalid_grid_rejected(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ChipGrid(**bad)
