"""How far tiled inference is from running the model on the whole scene at once.

``python -m bench.seams``: the shipped U-Net on the embedded demo scene (384 x 640 px), as one
whole-scene input (the reference: no tile borders at all) and tiled in several ways: the tiling
a sweep of the shipped checkpoint really uses (``pipeline.tiling.grid_for_model`` at the default
and the demo block with the default overlap: a 512-px core), the old blended 128-px chips (8 or
16 px blend) and cropped tiles (a core of 128, 256 or 512 px with 8, 16 or 32 px of context).
For each, the largest and mean absolute difference of the *calibrated* probability (the
checkpoint's calibration applied to the logits, as a sweep stores it) from the reference and the
share of pixels whose class flips at the checkpoint's threshold (which applies to calibrated
probabilities), over the scene's interior (96 px from its edges, where the reference itself has
real context).
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from pipeline.models.checkpoint import CheckpointMeta, calibrated_probabilities
from pipeline.tiling import ChipGrid, blend_weights

PAD = 512


def _forward(model: torch.nn.Module, meta: CheckpointMeta, x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Calibrated probabilities of ``x`` ``[C, H, W]`` (what a sweep stores and thresholds)."""
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(x))[None])
        out: NDArray[np.float32] = calibrated_probabilities(logits, meta)[0, 0].numpy()
    return out


def tiled(
    model: torch.nn.Module, meta: CheckpointMeta, x: NDArray[np.float32], grid: ChipGrid
) -> NDArray[np.float64]:
    """The model over ``x`` ``[C, H, W]`` on ``grid`` (full tiles; zeros beyond the scene)."""
    h, w = x.shape[1:]
    xp = np.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD)))
    acc = np.zeros((h + 2 * PAD, w + 2 * PAD))
    wsum = np.zeros_like(acc)
    weights = blend_weights(grid.chip, grid.overlap, grid.margin)
    s = grid.chip
    for ky in range(grid.n_chips(h)):
        for kx in range(grid.n_chips(w)):
            sy, sx = grid.chip_start(ky) + PAD, grid.chip_start(kx) + PAD
            acc[sy : sy + s, sx : sx + s] += weights * _forward(model, meta, xp[:, sy : sy + s, sx : sx + s])
            wsum[sy : sy + s, sx : sx + s] += weights
    with np.errstate(invalid="ignore"):  # far outside the scene no tile is weighted
        out: NDArray[np.float64] = (acc / wsum)[PAD : PAD + h, PAD : PAD + w]
    return out


def main() -> None:
    """Print the difference of each tiling from whole-scene inference."""
    import dask

    from pipeline import catalog, cube
    from pipeline.demo import scene as demo
    from pipeline.models.checkpoint import load_checkpoint, shipped_checkpoint
    from pipeline.sweep import DEM_WINDOW, area_geobox
    from pipeline.sweep.config import DEFAULT_BLOCK, DEFAULT_OVERLAP, DEMO_BLOCK
    from pipeline.tiling import grid_for_model

    torch.set_num_threads(1)
    model, meta = load_checkpoint(shipped_checkpoint(), device="cpu")
    model.eval()
    cat = catalog.open_catalog(str(demo.DEMO_CATALOG))
    s2 = cat.search(cube.S2_COLLECTION, demo.DEMO_BBOX, demo.DEMO_START, demo.DEMO_END)
    dem = cat.search(cube.DEM_COLLECTION, demo.DEMO_BBOX, *DEM_WINDOW)
    with dask.config.set(scheduler="synchronous"):
        stack = cube.stack_bands(cube.build_cube(s2, dem, area_geobox(demo.DEMO_BBOX), chunk=512), meta.bands)
        bands = stack.compute()
    mean = np.asarray(meta.norm_mean, np.float32)[:, None, None]
    std = np.asarray(meta.norm_std, np.float32)[:, None, None]
    x = np.where(np.isfinite(bands), (bands - mean) / std, 0).astype(np.float32)
    ref = _forward(model, meta, x)
    inner = (slice(96, -96), slice(96, -96))
    shipped: dict[ChipGrid, list[int]] = {}
    for block in sorted({DEMO_BLOCK, DEFAULT_BLOCK}):
        shipped.setdefault(grid_for_model(meta.model, block, DEFAULT_OVERLAP), []).append(block)
    grids: dict[str, ChipGrid] = {}
    for g, blocks in shipped.items():
        kind = (
            f"{g.core}-px core, {g.margin} px context" if g.cropped else f"{g.chip} px, {g.overlap} px blend"
        )
        grids[f"**as swept (blocks {', '.join(map(str, blocks))})**: {kind}"] = g
    grids |= {"blended 128 px, 8 px blend (before)": ChipGrid(128, 8),
              "blended 128 px, 16 px blend": ChipGrid(128, 16)}  # fmt: skip
    for core in (128, 256, 512):
        for m in (8, 16, 32):
            grids[f"cropped {core}-px core, {m} px context"] = ChipGrid(core + 2 * m, 0, m)
    c = meta.calibration_or_identity
    print(
        f"shipped U-Net ({c.method} calibration, threshold {meta.threshold:.2f} on calibrated "
        f"probabilities), demo scene {x.shape[1]} x {x.shape[2]} px, interior 96 px in from the edges"
    )
    print("| tiling | max abs diff | mean abs diff | class flips |\n|---|---|---|---|")
    for name, grid in grids.items():
        got = tiled(model, meta, x, grid)
        d = np.abs(got - ref)[inner]
        flips = ((got >= meta.threshold) != (ref >= meta.threshold))[inner].mean()
        print(f"| {name} | {d.max():.4f} | {d.mean():.5f} | {flips:.5f} |")


if __name__ == "__main__":
    main()
