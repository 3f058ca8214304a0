"""The plan of a sweep: a pure function from the configuration and the catalog's answers.

:func:`plan_sweep` turns a :class:`~pipeline.sweep.config.SweepConfig`, the checkpoint's
identity and the scenes found into a frozen :class:`SweepPlan`: the area's UTM grid (padded to
whole chips), its regions, the scenes, the model reference the workers get, the run metadata the
store records, and the fingerprint that decides whether an existing store may be resumed.
Nothing here reads pixels, searches or writes; the arithmetic is property-tested.

The area's grid is cut into **regions** of ``region_blocks x region_blocks`` blocks (row-major).
A region's cube is loaded with a margin of ``REGION_MARGIN`` pixels of real data around it, so
the halo of its border blocks is real imagery and the mosaic does not depend on the cut.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pystac
from affine import Affine
from odc.geo.geobox import GeoBox

from pipeline import __version__, cube
from pipeline.geo import BBox, bbox_area_km2
from pipeline.models.ref import ModelRef
from pipeline.store.schema import RunMeta
from pipeline.sweep.config import CHIP, READ_CHUNK_MAX, RESOLUTION, GridSpec, SweepConfig
from pipeline.tiling import ChipGrid, grid_for_model, pad_to_multiple

if TYPE_CHECKING:  # the plan is pure and imports no torch (tested in tests/test_predict.py)
    from pipeline.models.checkpoint import CheckpointMeta

COMPOSITE = "median of clear observations (SCL-masked, dilated)"


@dataclass(frozen=True)
class Region:
    """A rectangle of whole blocks, in pixel coordinates of the area.

    Attributes:
        index: Position in the plan (row-major).
        rows: ``(start, stop)`` rows.
        cols: ``(start, stop)`` columns.
    """

    index: int
    rows: tuple[int, int]
    cols: tuple[int, int]

    @property
    def window(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``(rows, cols)``."""
        return (self.rows, self.cols)


@dataclass(frozen=True)
class Scenes:
    """The catalog's answers: post-event Sentinel-2 items and DEM tiles over the area."""

    s2: tuple[pystac.Item, ...]
    dem: tuple[pystac.Item, ...]

    @property
    def ids(self) -> list[str]:
        """Every item id, Sentinel-2 first."""
        return [it.id for it in (*self.s2, *self.dem)]


@dataclass(frozen=True)
class Checkpoint:
    """The checkpoint a sweep uses: its path, metadata and SHA-256 (nothing unpickled)."""

    path: Path
    meta: CheckpointMeta
    sha256: str


@dataclass(frozen=True)
class SweepPlan:
    """Everything decided before any pixel is read.

    Attributes:
        config: The sweep's configuration.
        checkpoint: The checkpoint.
        scenes: The scenes found (a resumed store may narrow them to those it planned).
        gbox: The area's UTM grid, padded right and down to whole chips.
        grid: The global chip grid.
        regions: The regions, row-major.
        fingerprint: Identity of the output: a store with the same fingerprint may be resumed.
        model: The reference the workers load the model from.
        prior_shift: Logit offset of the ``--base-rate`` correction (0: none).
    """

    config: SweepConfig
    checkpoint: Checkpoint
    scenes: Scenes
    gbox: GeoBox
    grid: ChipGrid
    regions: tuple[Region, ...]
    fingerprint: str
    model: ModelRef
    prior_shift: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the area's grid."""
        return (int(self.gbox.shape[0]), int(self.gbox.shape[1]))

    @property
    def threshold(self) -> float:
        """The checkpoint's threshold, moved with the probabilities by ``--base-rate`` (same pixels)."""
        if not self.prior_shift:
            return self.checkpoint.meta.threshold
        from pipeline.models.checkpoint import shift_probability  # torch: not at import time

        return float(shift_probability(np.asarray(self.checkpoint.meta.threshold), self.prior_shift))

    def run_meta(self) -> RunMeta:
        """What the store records about the run when it is created."""
        cfg, meta = self.config, self.checkpoint.meta
        return RunMeta(
            model=meta.model, checkpoint=self.checkpoint.path.name, checkpoint_sha256=self.checkpoint.sha256,
            threshold=self.threshold, bands=tuple(meta.bands), start=cfg.start.isoformat(),
            end=cfg.end.isoformat(), bbox=cfg.bbox.corners, event_id=cfg.event_id, block=cfg.block,
            overlap=cfg.overlap, composite=COMPOSITE, software_version=__version__,
            regions_total=len(self.regions), base_rate=cfg.base_rate,
            training_base_rate=meta.calibration_or_identity.base_rate,
        )  # fmt: skip


def plan_regions(shape: tuple[int, int], block: int, region_blocks: int) -> list[Region]:
    """Cut an area into regions of ``region_blocks`` blocks a side (row-major order)."""
    step = block * region_blocks
    out: list[Region] = []
    for r0 in range(0, shape[0], step):
        for c0 in range(0, shape[1], step):
            out.append(Region(len(out), (r0, min(r0 + step, shape[0])), (c0, min(c0 + step, shape[1]))))
    return out


def area_geobox(bbox: tuple[float, float, float, float], chip: int = CHIP) -> GeoBox:
    """The area's UTM grid at 10 m, padded right and down to whole chips."""
    gbox = cube.utm_geobox(bbox, RESOLUTION)
    rows, cols = gbox.shape
    return GeoBox((pad_to_multiple(rows, chip), pad_to_multiple(cols, chip)), gbox.transform, gbox.crs)


def spec_geobox(spec: GridSpec) -> GeoBox:
    """The GeoBox of a fixed grid."""
    transform = Affine(spec.resolution, 0.0, spec.west, 0.0, -spec.resolution, spec.north)
    return GeoBox(spec.shape, transform, f"EPSG:{spec.epsg}")


def window_geobox(gbox: GeoBox, rows: tuple[int, int], cols: tuple[int, int], margin: int) -> GeoBox:
    """Sub-grid of ``gbox`` for a pixel window grown by ``margin`` (may extend past ``gbox``)."""
    r0, c0 = rows[0] - margin, cols[0] - margin
    shape = (rows[1] - rows[0] + 2 * margin, cols[1] - cols[0] + 2 * margin)
    return GeoBox(shape, gbox.transform * Affine.translation(c0, r0), gbox.crs)


def read_chunk(load_box: GeoBox, block: int) -> int:
    """Chunk size of a region's cube: the whole region when it is small, else the block size.

    Reading and cube tasks cost about a millisecond of scheduling each; a region of small blocks
    read in block-sized chunks spends most of its time there. Regions up to ``READ_CHUNK_MAX``
    pixels a side are read as one chunk (at most ~55 MB of float32 bands); larger ones in chunks
    of ``max(block, READ_CHUNK_MAX)``. The cube is chunk-invariant, so this changes no value.
    """
    return max(block, min(max(int(n) for n in load_box.shape), READ_CHUNK_MAX))


def margin_chunks(size: int, block: int, margin: int) -> tuple[int, ...]:
    """Chunks along an axis of a region loaded with a margin: ``(m, B, ..., B, rest, m)``."""
    core = [block] * (size // block) + ([size % block] if size % block else [])
    return (margin, *core, margin)


def fingerprint(cfg: SweepConfig, sha256: str, shape: tuple[int, int], crs: str) -> str:
    """Identity of a sweep's output: a re-run with the same fingerprint may resume."""
    key: dict[str, object] = {
        "bbox": list(cfg.bbox), "start": cfg.start.isoformat(), "end": cfg.end.isoformat(),
        "catalog": cfg.catalog, "checkpoint": sha256, "block": cfg.block, "overlap": cfg.overlap,
        "max_cloud": cfg.max_cloud, "zarr_format": cfg.zarr_format, "shape": list(shape), "crs": crs,
        "region_blocks": cfg.region_blocks,
    }  # fmt: skip
    if cfg.grid is not None:  # an event's sweep; other sweeps keep their fingerprints
        base = str(cfg.base) if cfg.base else None
        key.update(grid=cfg.grid.key(), only_regions=cfg.only_regions, base=base)
    if cfg.base_rate is not None:  # absent by default, so stores written before it still resume
        key["base_rate"] = cfg.base_rate
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def requested_area_km2(bbox: BBox) -> float:
    """Area of a WGS84 box on the WGS84 ellipsoid (km²): what was asked, before any padding."""
    return bbox_area_km2(bbox)


def plan_sweep(cfg: SweepConfig, checkpoint: Checkpoint, scenes: Scenes) -> SweepPlan:
    """The plan of a sweep (pure: no search, no read, no write)."""
    gbox = spec_geobox(cfg.grid) if cfg.grid is not None else area_geobox(cfg.bbox)
    shape = (int(gbox.shape[0]), int(gbox.shape[1]))
    model = ModelRef(str(checkpoint.path), checkpoint.sha256, cfg.device, cfg.batch_size)
    return SweepPlan(
        config=cfg, checkpoint=checkpoint, scenes=scenes, gbox=gbox,
        grid=grid_for_model(checkpoint.meta.model, cfg.block, cfg.overlap),
        regions=tuple(plan_regions(shape, cfg.block, cfg.region_blocks)),
        fingerprint=fingerprint(cfg, checkpoint.sha256, shape, str(gbox.crs)), model=model,
        prior_shift=checkpoint.meta.calibration_or_identity.prior_shift(cfg.base_rate),
    )  # fmt: skip
