"""Chip grid, halo and blend weights: the pure arithmetic of seamless block inference.

The mosaic is defined by one **global chip grid**, independent of how the area is cut into Dask
blocks, so the result does not depend on the block size:

* chips of ``chip`` pixels start at ``s_k = k * stride - overlap`` for ``k = 0, 1, ...`` along
  each axis, with ``stride = chip - overlap``; the first chip starts ``overlap`` pixels before
  the area so that every pixel of the area lies in the weighted interior of the grid;
* each chip's probabilities are weighted by ``w(i) * w(j)`` (:func:`blend_weights_1d`), a
  ``sin^2`` ramp over ``overlap`` pixels at each edge and 1 inside, so that the weights of all
  chips covering a pixel sum to exactly 1 (``sin^2 + cos^2 = 1``);
* a block with core ``[a, a + B)`` runs every chip that intersects its core and keeps only its
  core pixels; those chips lie within ``halo = chip`` pixels of the core, which is the
  ``map_overlap`` depth. Chips straddling a block border run in both blocks (the price of
  blending; counted by :func:`overlap_factor`).

All functions are pure and property-tested (tests/test_tiling.py).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class ChipGrid:
    """The global chip grid.

    Attributes:
        chip: Chip size in pixels (the model's input size).
        overlap: Pixels shared by neighbouring chips (the blend zone); a multiple of 8 keeps
            Clay's 8-pixel patches aligned.
    """

    chip: int = 128
    overlap: int = 8

    def __post_init__(self) -> None:
        if self.chip <= 0 or self.chip % 8:
            raise ValueError(f"chip size {self.chip} must be a positive multiple of 8")
        if not 0 <= self.overlap < self.chip // 2 + 1 or self.overlap % 8:
            raise ValueError(f"overlap {self.overlap} must be a multiple of 8 in [0, chip/2]")

    @property
    def stride(self) -> int:
        """Distance between chip starts: ``chip - overlap``."""
        return self.chip - self.overlap

    @property
    def halo(self) -> int:
        """``map_overlap`` depth that gives every chip touching a block its full input: ``chip``."""
        return self.chip

    def chip_start(self, k: int) -> int:
        """Start of chip ``k`` along an axis: ``k * stride - overlap``."""
        return k * self.stride - self.overlap

    def n_chips(self, size: int) -> int:
        """Chips along an axis of ``size`` pixels.

        The fewest chips whose unramped interiors reach the end of the axis,
        ``s_{n-1} + chip - overlap >= size``, so every pixel's weights sum to 1:
        ``n = max(1, ceil((size + 2 * overlap - chip) / stride) + 1)``.
        """
        return max(1, math.ceil((size + 2 * self.overlap - self.chip) / self.stride) + 1)

    def chips_touching(self, start: int, stop: int, size: int) -> range:
        """Indices ``k`` of the chips that intersect pixels ``[start, stop)`` of an axis.

        Chip ``k`` covers ``[s_k, s_k + chip)``; it intersects ``[start, stop)`` iff
        ``s_k < stop`` and ``s_k + chip > start``, so
        ``k_min = floor((start - chip + overlap) / stride) + 1`` and
        ``k_max = ceil((stop + overlap) / stride) - 1``, clipped to ``[0, n_chips(size))``.
        """
        if stop <= start:
            return range(0)
        k_min = (start - self.chip + self.overlap) // self.stride + 1
        k_max = -((-(stop + self.overlap)) // self.stride) - 1
        return range(max(k_min, 0), min(k_max, self.n_chips(size) - 1) + 1)


def blend_weights_1d(chip: int, overlap: int) -> NDArray[np.float64]:
    """One-axis blend weights of a chip.

    ``w(i) = sin^2(pi/2 * (i + 0.5) / overlap)`` for ``i < overlap``, the mirror image for
    ``i >= chip - overlap`` and 1 between. In the zone shared by chips ``k`` and ``k + 1`` the
    weights are ``cos^2(t)`` and ``sin^2(t)`` of the same ``t``, so they sum to 1; every weight
    is strictly positive. With ``overlap = 0`` all weights are 1.
    """
    w = np.ones(chip, dtype=np.float64)
    if overlap:
        ramp = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        w[:overlap] = ramp
        w[chip - overlap :] = ramp[::-1]
    return w


@lru_cache(maxsize=8)
def blend_weights(chip: int, overlap: int) -> NDArray[np.float32]:
    """Two-axis blend weights ``w(i) * w(j)`` as float32 ``[chip, chip]`` (read-only, cached)."""
    w = blend_weights_1d(chip, overlap)
    out = np.outer(w, w).astype(np.float32)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class BlockChips:
    """The chips one block runs, in the coordinates of its halo-extended input.

    Attributes:
        starts_y: Chip starts along y, relative to the extended block's first row.
        starts_x: Chip starts along x, relative to the extended block's first column.
    """

    starts_y: tuple[int, ...]
    starts_x: tuple[int, ...]

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
        Chip starts relative to the extended block, whose first pixel is
        ``(core_y[0] - halo, core_x[0] - halo)``. Every start is in
        ``[0, core + 2 * halo - chip]``.
    """
    ys = tuple(grid.chip_start(k) - core_y[0] + grid.halo for k in grid.chips_touching(*core_y, shape[0]))
    xs = tuple(grid.chip_start(k) - core_x[0] + grid.halo for k in grid.chips_touching(*core_x, shape[1]))
    return BlockChips(ys, xs)


def chunk_bounds(chunks: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk along an axis given Dask's chunk sizes."""
    edges = np.concatenate([[0], np.cumsum(chunks)]).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def chips_to_tile_once(shape: tuple[int, int], chip: int = 128) -> int:
    """Chips needed to tile an area once without overlap: ``ceil(H/chip) * ceil(W/chip)``."""
    return math.ceil(shape[0] / chip) * math.ceil(shape[1] / chip)


def planned_chips(grid: ChipGrid, shape: tuple[int, int], block: int) -> int:
    """Chips run over an area cut into ``block``-pixel blocks (before skipping empty chips)."""
    ny = [len(grid.chips_touching(a, min(a + block, shape[0]), shape[0])) for a in range(0, shape[0], block)]
    nx = [len(grid.chips_touching(a, min(a + block, shape[1]), shape[1])) for a in range(0, shape[1], block)]
    return sum(ny) * sum(nx)


def overlap_factor(grid: ChipGrid, shape: tuple[int, int], block: int) -> float:
    """Chips run over chips needed to tile the area once (the cost of seamlessness)."""
    return planned_chips(grid, shape, block) / chips_to_tile_once(shape, grid.chip)


def pad_to_multiple(size: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is ``>= size``."""
    return -(-size // multiple) * multiple
