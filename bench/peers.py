"""What a user would write instead of the sweep, on the same scene and model.

* :func:`plain_loop`: rasterio windowed reads of each non-overlapping 128-px chip, one chip at a
  time through the eager PyTorch model, written window by window to a GeoTIFF.
* :func:`map_blocks_peer`: the Planetary Computer land-cover notebook pattern: the same lazy
  odc-stac cube the sweep uses, chunked to 128-px chips, ``dask.array.map_blocks`` running one
  chip per task through the eager model (loaded once per worker process), no batching and no
  overlap, on the same kind of ``LocalCluster``.

Both use the model the way user code does (``load_checkpoint``, ``eval()``, ``torch.no_grad()``,
torch's default threads), not the sweep's optimised inference path. Both tile the area once
(overlap factor 1.0), so their mosaics have seams at chip borders.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
import torch
from numpy.typing import NDArray
from rasterio.windows import Window

from bench.memory import PeakTreeRSS
from bench.scene import BenchScene
from pipeline import catalog, cube
from pipeline.bands import L4S_DIVISORS
from pipeline.cluster import ClusterSpec, dask_client
from pipeline.cube import DEM_COLLECTION, S2_COLLECTION
from pipeline.demo import scene as demo
from pipeline.models.checkpoint import CheckpointMeta, load_checkpoint
from pipeline.sweep import DEM_WINDOW, area_geobox

CHIP = 128


@dataclass(frozen=True)
class PeerRun:
    """Figures of one peer run (model loading excluded, as for the sweep's compute time)."""

    chips: int
    seconds: float
    area_km2: float
    overlap_factor: float = 1.0
    foreign_cores: float = 0.0

    @property
    def chips_per_s(self) -> float:
        """Chips per second."""
        return self.chips / self.seconds

    @property
    def km2_per_s(self) -> float:
        """Output area per second."""
        return self.area_km2 / self.seconds


@lru_cache(maxsize=2)
def eager_model(checkpoint: str) -> tuple[torch.nn.Module, CheckpointMeta]:
    """The checkpoint's model as user code would hold it (eval mode, eager), cached per process."""
    model, meta = load_checkpoint(checkpoint, device="cpu")
    return model.eval(), meta


def predict_chip(
    model: torch.nn.Module, meta: CheckpointMeta, chip: NDArray[np.float32]
) -> NDArray[np.float32]:
    """One L4S-scaled chip ``[C, h, w]`` -> probabilities ``[h, w]`` (padded to 128 px for the model)."""
    mean = np.asarray(meta.norm_mean, dtype=np.float32)[:, None, None]
    std = np.asarray(meta.norm_std, dtype=np.float32)[:, None, None]
    h, w = chip.shape[1:]
    x = np.zeros((chip.shape[0], CHIP, CHIP), dtype=np.float32)
    x[:, :h, :w] = np.nan_to_num((chip - mean) / std, nan=0.0, posinf=0.0, neginf=0.0)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None])
    return torch.sigmoid(logits)[0, 0, :h, :w].numpy()


def _read_chip(
    sources: dict[str, rasterio.DatasetReader], bands: tuple[str, ...], win: Window
) -> NDArray[np.float32]:
    layers = []
    dem = sources["dem"].read(1, window=win).astype(np.float64)
    for band in bands:
        if band == "dem":
            layers.append(dem / L4S_DIVISORS["dem"])
        elif band == "slope":
            dz_dy, dz_dx = np.gradient(dem, 10.0)
            layers.append(np.degrees(np.arctan(np.hypot(dz_dx, dz_dy))) / L4S_DIVISORS["slope"])
        else:
            dn = sources[band].read(1, window=win).astype(np.float64)
            layers.append(np.where(dn > 0, dn, np.nan) / L4S_DIVISORS[band])
    return np.stack(layers).astype(np.float32)


def plain_loop(scene: BenchScene, checkpoint: Path, out: Path) -> PeerRun:
    """Chip-by-chip windowed reads, one chip per forward pass, windowed GeoTIFF writes."""
    model, meta = eager_model(str(checkpoint))
    paths = {**scene.band_files, "dem": next(p for p in scene.files if p.stem == "dem")}
    rows, cols = scene.shape
    monitor = PeakTreeRSS().__enter__()
    t0 = time.perf_counter()
    chips = 0
    sources = {name: rasterio.open(p) for name, p in paths.items()}
    try:
        profile = {
            **sources["B02"].profile, "driver": "GTiff", "dtype": "float32", "nodata": None, "count": 1,
            "tiled": True, "blockxsize": CHIP, "blockysize": CHIP, "compress": "deflate",
        }  # fmt: skip
        with rasterio.open(out, "w", **profile) as dst:
            for r in range(0, rows, CHIP):
                for c in range(0, cols, CHIP):
                    win = Window(c, r, min(CHIP, cols - c), min(CHIP, rows - r))
                    prob = predict_chip(model, meta, _read_chip(sources, meta.bands, win))
                    dst.write(prob, 1, window=win)
                    chips += 1
    finally:
        for src in sources.values():
            src.close()
        monitor.__exit__(None, None, None)
    return PeerRun(chips=chips, seconds=time.perf_counter() - t0, area_km2=rows * cols * 1e-4,
                   foreign_cores=monitor.foreign_cores)  # fmt: skip


def _map_block(block: NDArray[np.float32], checkpoint: str) -> NDArray[np.float32]:
    if block.size == 0:
        return np.empty(block.shape[1:], dtype=np.float32)
    model, meta = eager_model(checkpoint)
    return predict_chip(model, meta, block)


def _load_on_worker(checkpoint: str) -> None:
    eager_model(checkpoint)


def map_blocks_peer(scene: BenchScene, checkpoint: Path, out: Path, workers: int) -> PeerRun:
    """``map_blocks`` over 128-px chunks of the sweep's own lazy cube, one chip per task."""
    _, meta = eager_model(str(checkpoint))
    cat = catalog.open_catalog(str(scene.catalog))
    s2 = cat.search(S2_COLLECTION, scene.bbox, demo.DEMO_START, demo.DEMO_END)
    dem = cat.search(DEM_COLLECTION, scene.bbox, *DEM_WINDOW)
    gbox = area_geobox(scene.bbox)
    stack = cube.stack_bands(cube.build_cube(s2, dem, gbox, chunk=CHIP), meta.bands)
    stack = stack.rechunk((stack.shape[0], CHIP, CHIP))
    prob = da.map_blocks(_map_block, stack, drop_axis=0, dtype=np.float32, checkpoint=str(checkpoint))
    with dask_client(ClusterSpec(n_workers=workers, device="cpu")) as (client, _):
        client.run(_load_on_worker, str(checkpoint))  # load once per worker, outside the timing
        monitor = PeakTreeRSS().__enter__()
        t0 = time.perf_counter()
        result = client.compute(prob).result()
        profile = {"driver": "GTiff", "height": result.shape[0], "width": result.shape[1], "count": 1,
                   "dtype": "float32", "crs": str(gbox.crs), "transform": gbox.transform,
                   "tiled": True, "blockxsize": CHIP, "blockysize": CHIP, "compress": "deflate"}  # fmt: skip
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(result, 1)
        seconds = time.perf_counter() - t0
        monitor.__exit__(None, None, None)
    rows, cols = result.shape
    chips = math.ceil(rows / CHIP) * math.ceil(cols / CHIP)
    return PeerRun(chips=chips, seconds=seconds, area_km2=rows * cols * 1e-4,
                   foreign_cores=monitor.foreign_cores)  # fmt: skip
