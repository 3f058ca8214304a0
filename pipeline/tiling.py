"""Tile grid, halo and blend weights: the pure arithmetic of seamless block inference.

The mosaic is defined by one **global tile grid**, independent of how the area is cut into Dask
blocks, so the result does not depend on the block size. A tile is the model's input window of
``chip`` pixels; its output is weighted, and the weights of all tiles covering a pixel sum to
exactly 1. Two kinds of grid use the same arithmetic:

* **blended chips** (models with a positional encoding, Clay and the hybrid: 128-px chips): the
  weights are a ``sin^2`` ramp over ``overlap`` pixels at each edge and 1 inside
  (:func:`blend_weights_1d`); neighbouring chips share ``overlap`` pixels and
  ``sin^2 + cos^2 = 1``;
* **cropped tiles** (fully convolutional models, the U-Net): ``overlap = 0`` and a context
  ``margin`` on each side with weight 0: each tile predicts its ``chip - 2 * margin`` core
  from the core plus ``margin`` pixels of real context around it, and the cores tile the plane
  edge to edge. With tiles of 512 px the work per area is ``((512 + 2m) / 512)^2`` (1.06 for
  ``m = 8``) instead of 1.28 for 128-px chips at stride 120 (:func:`grid_for_model`).

Tile ``k`` starts at ``s_k = k * stride - overlap - margin`` along each axis, with
``stride = chip - 2 * margin - overlap``; its weighted part is ``[s_k + margin, s_k + chip -
margin)``. A block with core ``[a, a + B)`` runs every tile whose weighted part intersects its
core and keeps only its core pixels; those tiles lie within :attr:`ChipGrid.halo` pixels of the
core (the ``map_overlap`` depth). Tiles straddling a block border run in both blocks: for
blended chips that is the price of blending (:func:`overlap_factor`); cropped tiles whose
stride divides the block never straddle, and need a halo of only ``margin``.

All functions are pure and property-tested (tests/test_tiling.py).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

#: Side of the 128-px chip in which chip counts and overlap factors are expressed.
UNIT_CHIP = 128
#: Tile core of a fully convolutional model (the U-Net predicts 512 x 512 px per tile).
TILE_CORE = 512
#: Every block size is a multiple of this: the U-Net's tiles then never straddle a block, so one
#: tile grid serves every block size and the mosaic does not depend on it (a block of 256 px
#: would need 256-px tiles, whose smaller context changes the U-Net's output by up to ~0.06).
BLOCK_MULTIPLE = TILE_CORE
#: Cropped tiles cut at the area's edge keep a size that is a multiple of this (the U-Net's
#: downsampling factor).
TILE_MULTIPLE = 16
#: Models that are fully convolutional (no positional encoding): they run on cropped tiles.
FULLY_CONVOLUTIONAL = frozenset({"unet"})


@dataclass(frozen=True)
class ChipGrid:
    """The global tile grid.

    Attributes:
        chip: Tile size in pixels (the model's input size).
        overlap: Pixels over which neighbouring tiles' weights ramp (the blend zone); a multiple
            of 8 keeps Clay's 8-pixel patches aligned.
        margin: Context pixels on each side of a tile with weight 0 (cropped tiles).
    """

    chip: int = UNIT_CHIP
    overlap: int = 8
    margin: int = 0

    def __post_init__(self) -> None:
        if self.chip <= 0 or self.chip % 8:
            raise ValueError(f"chip size {self.chip} must be a positive multiple of 8")
        if self.margin < 0 or self.margin % 8 or self.core <= 0:
            raise ValueError(f"margin {self.margin} must be a multiple of 8 inside a {self.chip}-px chip")
        if not 0 <= self.overlap <= self.core // 2 or self.overlap % 8:
            raise ValueError(f"overlap {self.overlap} must be a multiple of 8 in [0, core/2]")

    @property
    def core(self) -> int:
        """Weighted part of a tile: ``chip - 2 * margin``."""
        return self.chip - 2 * self.margin

    @property
    def stride(self) -> int:
        """Distance between tile starts: ``core - overlap``."""
        return self.core - self.overlap

    @property
    def halo(self) -> int:
        """``map_overlap`` depth that gives every tile touching a block its full input.

        ``chip`` in general; ``margin`` for cropped tiles (``overlap == 0``), which assumes that
        block borders fall on tile borders (the stride divides the block size and the block
        offsets, as :func:`grid_for_model` guarantees; :func:`block_chips` checks it).
        """
        return self.margin if self.overlap == 0 and self.margin else self.chip

    def chip_start(self, k: int) -> int:
        """Start of tile ``k``'s input along an axis: ``k * stride - overlap - margin``."""
        return k * self.stride - self.overlap - self.margin

    def n_chips(self, size: int) -> int:
        """Tiles along an axis of ``size`` pixels.

        The fewest tiles whose unramped weighted interiors reach the end of the axis, so every
        pixel's weights sum to 1: ``n = max(1, ceil((size + 2 * overlap - core) / stride) + 1)``.
        """
        return max(1, math.ceil((size + 2 * self.overlap - self.core) / self.stride) + 1)

    def chips_touching(self, start: int, stop: int, size: int) -> range:
        """Indices ``k`` of the tiles whose weighted part intersects pixels ``[start, stop)``.

        The weighted part of tile ``k`` is ``[w_k, w_k + core)`` with ``w_k = k * stride -
        overlap``; it intersects ``[start, stop)`` iff ``w_k < stop`` and ``w_k + core > start``,
        so ``k_min = floor((start - core + overlap) / stride) + 1`` and
        ``k_max = ceil((stop + overlap) / stride) - 1``, clipped to ``[0, n_chips(size))``.
        """
        if stop <= start:
            return range(0)
        k_min = (start - self.core + self.overlap) // self.stride + 1
        k_max = -((-(stop + self.overlap)) // self.stride) - 1
        return range(max(k_min, 0), min(k_max, self.n_chips(size) - 1) + 1)

    @property
    def cropped(self) -> bool:
        """Whether tiles are cropped (``overlap == 0`` and a context ``margin``) rather than blended."""
        return self.overlap == 0 and self.margin > 0

    def tile_size(self, k: int, size: int) -> int:
        """Input length of tile ``k`` along an axis of ``size`` pixels.

        ``chip``, except that a cropped tile reaching past the end of the axis is cut to what it
        needs: its input up to ``size + margin``, rounded up to a multiple of
        :data:`TILE_MULTIPLE` (the area's far edge costs the pixels it has, not a whole tile).
        It depends only on ``k`` and ``size``, never on the blocks.
        """
        if not self.cropped:
            return self.chip
        need = size + self.margin - self.chip_start(k)
        return min(self.chip, -(-need // TILE_MULTIPLE) * TILE_MULTIPLE)


def grid_for_model(model: str, block: int, overlap: int = 8) -> ChipGrid:
    """The tile grid of a model kind (the checkpoint's ``model`` name) for a block size.

    Fully convolutional models (:data:`FULLY_CONVOLUTIONAL`) run cropped tiles with a core of
    :data:`TILE_CORE` pixels and ``overlap`` pixels of context on each side (so the input,
    ``core + 2 * overlap``, stays a multiple of 16 as the U-Net needs). Other models (Clay's
    positional encoding) run blended 128-px chips. Either grid is the same for every block size
    (a multiple of :data:`BLOCK_MULTIPLE`), so the mosaic is too.

    Args:
        model: Checkpoint model name (``"unet"``, ``"clay"``, ``"hybrid"``).
        block: Block size in pixels (a multiple of :data:`BLOCK_MULTIPLE`).
        overlap: Blend zone of chips, or context margin of cropped tiles (a multiple of 8).

    Raises:
        ValueError: For a block that is not a positive multiple of :data:`BLOCK_MULTIPLE`.
    """
    if block <= 0 or block % BLOCK_MULTIPLE:
        raise ValueError(f"block {block} is not a positive multiple of {BLOCK_MULTIPLE}")
    if model in FULLY_CONVOLUTIONAL:
        return ChipGrid(chip=TILE_CORE + 2 * overlap, overlap=0, margin=overlap)
    return ChipGrid(chip=UNIT_CHIP, overlap=overlap)


def blend_weights_1d(chip: int, overlap: int, margin: int = 0) -> NDArray[np.float64]:
    """One-axis weights of a tile.

    0 over the ``margin`` pixels at each edge; inside, ``w(i) = sin^2(pi/2 * (i + 0.5) /
    overlap)`` for the first ``overlap`` pixels, the mirror image for the last ``overlap`` and 1
    between. In the zone shared by tiles ``k`` and ``k + 1`` the weights are ``cos^2(t)`` and
    ``sin^2(t)`` of the same ``t``, so they sum to 1; every weight of the core is strictly
    positive. With ``overlap = 0`` the core's weights are all 1.
    """
    w = np.zeros(chip, dtype=np.float64)
    core = chip - 2 * margin
    inner = np.ones(core, dtype=np.float64)
    if overlap:
        ramp = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        inner[:overlap] = ramp
        inner[core - overlap :] = ramp[::-1]
    w[margin : margin + core] = inner
    return w


@lru_cache(maxsize=8)
def blend_weights(chip: int, overlap: int, margin: int = 0) -> NDArray[np.float32]:
    """Two-axis weights ``w(i) * w(j)`` as float32 ``[chip, chip]`` (read-only, cached)."""
    w = blend_weights_1d(chip, overlap, margin)
    out = np.outer(w, w).astype(np.float32)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class BlockChips:
    """The chips one block runs, in the coordinates of its halo-extended input.

    Attributes:
        starts_y: Chip starts along y, relative to the extended block's first row.
        starts_x: Chip starts along x, relative to the extended block's first column.
        sizes_y: Input length of each tile along y (:meth:`ChipGrid.tile_size`).
        sizes_x: Same along x.
    """

    starts_y: tuple[int, ...]
    starts_x: tuple[int, ...]
    sizes_y: tuple[int, ...] = ()
    sizes_x: tuple[int, ...] = ()

    @property
    def count(self) -> int:
        """Number of chips (before skipping chips without valid pixels)."""
        return len(self.starts_y) * len(self.starts_x)


def block_chips(
    grid: ChipGrid, core_y: tuple[int, int], core_x: tuple[int, int], shape: tuple[int, int]
) -> BlockChips:
    """Chips that a block with core rows ``core_y`` and columns ``core_x`` must run.

    Args:
        grid: The global chip grid.
        core_y: ``(start, stop)`` rows of the block's core in the area's pixel coordinates.
        core_x: ``(start, stop)`` columns of the block's core.
        shape: ``(rows, cols)`` of the whole area.

    Returns:
        Tile starts relative to the extended block, whose first pixel is
        ``(core_y[0] - halo, core_x[0] - halo)``, and their sizes. Every tile lies inside the
        extended block, except that in the area's last block a cropped tile may reach up to
        ``TILE_MULTIPLE - 1`` pixels past it (the caller pads with NaN, the same for any block
        size).

    Raises:
        ValueError: If a tile does not fit in the extended block (a cropped-tile grid whose
            stride does not divide the block's offset and size).
    """
    axes = []
    for (a, b), size in ((core_y, shape[0]), (core_x, shape[1])):
        ks = grid.chips_touching(a, b, size)
        starts = tuple(grid.chip_start(k) - a + grid.halo for k in ks)
        sizes = tuple(grid.tile_size(k, size) for k in ks)
        ext = b - a + 2 * grid.halo
        # Only the area's last block may hand its last tile an input past its halo (padded).
        if starts and (starts[0] < 0 or (b < size and starts[-1] + sizes[-1] > ext)):
            raise ValueError(f"tiles of {grid} do not fit the halo of a block at [{a}, {b})")
        axes.append((starts, sizes))
    return BlockChips(axes[0][0], axes[1][0], axes[0][1], axes[1][1])


def chunk_bounds(chunks: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk along an axis given Dask's chunk sizes."""
    edges = np.concatenate([[0], np.cumsum(chunks)]).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def chips_to_tile_once(shape: tuple[int, int], chip: int = UNIT_CHIP) -> int:
    """Chips needed to tile an area once without overlap: ``ceil(H/chip) * ceil(W/chip)``."""
    return math.ceil(shape[0] / chip) * math.ceil(shape[1] / chip)


def planned_chips(grid: ChipGrid, shape: tuple[int, int], block: int) -> int:
    """Tiles run over an area cut into ``block``-pixel blocks (before skipping empty tiles)."""
    ny = [len(grid.chips_touching(a, min(a + block, shape[0]), shape[0])) for a in range(0, shape[0], block)]
    nx = [len(grid.chips_touching(a, min(a + block, shape[1]), shape[1])) for a in range(0, shape[1], block)]
    return sum(ny) * sum(nx)


def planned_pixels(grid: ChipGrid, shape: tuple[int, int], block: int) -> int:
    """Model input pixels run over an area cut into ``block``-pixel blocks (tiles cut at the edge)."""
    totals = []
    for size in shape:
        totals.append(sum(
            grid.tile_size(k, size)
            for a in range(0, size, block)
            for k in grid.chips_touching(a, min(a + block, size), size)
        ))  # fmt: skip
    return totals[0] * totals[1]


def overlap_factor(grid: ChipGrid, shape: tuple[int, int], block: int) -> float:
    """Model input run over the area's 128-px chips (the cost of seamlessness; 1.0 is none).

    Both are counted in pixels: for 128-px chips it is chips run over ``ceil(H/128) * ceil(W/128)``.
    """
    return planned_pixels(grid, shape, block) / (chips_to_tile_once(shape) * UNIT_CHIP**2)


def pad_to_multiple(size: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is ``>= size``."""
    return -(-size // multiple) * multiple
