"""The configuration of a sweep and the only home of its defaults.

Every other place (the CLI's options and help, the flows, the bench) imports these names; no
default is written twice. Building a :class:`SweepConfig` validates it (a config that exists is
valid), with one rule set for the bbox (:class:`pipeline.geo.BBox`).

This module imports nothing heavy: the CLI imports it at start.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import UserError
from pipeline.geo import BBox
from pipeline.tiling import BLOCK_MULTIPLE, ChipGrid

if TYPE_CHECKING:
    from pipeline.cluster import ClusterSpec

#: Side of the model's square input chip (pixels); the area is padded to whole chips.
CHIP = 128
#: Block size of a sweep (pixels): the unit of Dask work and the store's chunk size.
DEFAULT_BLOCK = 2048
#: Block size of ``landslide demo`` (its scene is 640 x 384 px).
DEMO_BLOCK = 512
#: Pixels shared by neighbouring chips (the blend zone).
DEFAULT_OVERLAP = 8
#: Chips per forward pass.
DEFAULT_BATCH_SIZE = 8
#: Maximum scene cloud cover (%) searched for.
DEFAULT_MAX_CLOUD = 80.0
#: Blocks per region side (a region is computed with its own small graph).
DEFAULT_REGION_BLOCKS = 4
#: Zarr format of the store (2: GDAL-readable).
DEFAULT_ZARR_FORMAT = 2
#: Torch device; ``auto`` is resolved where the model runs.
DEFAULT_DEVICE = "auto"
DEVICES = ("auto", "cpu", "cuda")
#: HTTP retries of every COG request (GDAL, exponential backoff), first wait, request timeout.
DEFAULT_READ_RETRIES = 5
DEFAULT_RETRY_DELAY_S = 1.0
DEFAULT_READ_TIMEOUT_S = 60.0
#: Real data loaded around each region: the chip halo (128) plus slack for the cube's own
#: neighbourhood operations (cloud-mask dilation, slope, DEM gap filling).
REGION_MARGIN = 160
#: Pixel size of the sweep's UTM grid (metres).
RESOLUTION = 10.0
#: Largest side (pixels) of a region read as a single chunk (see :func:`pipeline.sweep.plan.read_chunk`).
READ_CHUNK_MAX = 1024
#: The DEM is static: its items carry a production date, so search it over a wide window.
DEM_WINDOW = (dt.date(1990, 1, 1), dt.date(2100, 12, 31))


@dataclass(frozen=True)
class GridSpec:
    """A fixed sweep grid (an event's, :mod:`pipeline.event.mosaic`): north-up, ``resolution`` m.

    Attributes:
        epsg: EPSG code of its CRS (a UTM zone).
        west: West edge (metres).
        north: North edge (metres).
        shape: ``(rows, cols)``, whole chips.
        resolution: Pixel size (metres).
    """

    epsg: int
    west: float
    north: float
    shape: tuple[int, int]
    resolution: float = RESOLUTION

    def key(self) -> list[object]:
        """JSON-able identity (for fingerprints)."""
        return [self.epsg, self.west, self.north, list(self.shape), self.resolution]


def check_block(block: int) -> None:
    """The one rule for a sweep's block size: a positive multiple of ``BLOCK_MULTIPLE``.

    Every such block gives the same mosaic (the U-Net's tile core does not depend on it).

    Raises:
        UserError: For any other block, with the one-line message the CLI prints.
    """
    if block < BLOCK_MULTIPLE or block % BLOCK_MULTIPLE:
        m = BLOCK_MULTIPLE
        raise UserError(
            f"--block {block} is not a multiple of {m}: use {m}, {2 * m}, {4 * m}, ... "
            f"(every multiple of {m} gives the same mosaic)"
        )


def _default_cluster() -> ClusterSpec:
    from pipeline.cluster import ClusterSpec

    return ClusterSpec()


@dataclass(frozen=True)
class SweepConfig:
    """Everything a sweep needs; small and serialisable (the flows pass it around).

    Attributes:
        bbox: Area as WGS84 ``(west, south, east, north)`` (any sequence; stored as a ``BBox``).
        start: First day of the post-event window.
        end: Last day of the window (inclusive).
        out: Output Zarr path.
        catalog: STAC API URL or local catalog file; None for Planetary Computer.
        checkpoint: Model checkpoint; None for the one shipped with the package.
        model: Expected model name (checked against the checkpoint), or None.
        block: Block size in pixels, a multiple of
            :data:`~pipeline.tiling.BLOCK_MULTIPLE` (512): every such block gives the same mosaic.
        overlap: Pixels shared by neighbouring chips (the blend zone).
        batch_size: Chips per forward pass.
        max_cloud: Maximum scene cloud cover (%), or None.
        region_blocks: Blocks per region side.
        zarr_format: 2 (GDAL-readable, default) or 3.
        overwrite: Replace a complete store at ``out``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (``auto`` is resolved on the workers).
        cluster: Where to compute.
        event_id: Optional event identifier recorded in the store.
        progress: Show a progress bar.
        read_retries: HTTP retries of every COG request (GDAL, exponential backoff).
        retry_delay_s: First wait between retries (seconds; doubles each retry).
        read_timeout_s: Timeout of one HTTP request (seconds).
        grid: Sweep this fixed grid instead of the bbox's own UTM grid (an event's grid); the
            bbox then only bounds the catalog search.
        only_regions: Compute only these regions (indices of the plan); every other region is
            taken from ``base`` or, without one, left unwritten (reads as not valid).
        base: A complete store on the same lattice (an earlier version) whose chunks of the
            regions not computed are hard-linked into ``out``, not copied.
        base_rate: Landslide fraction expected over the area: the calibrated probabilities are
            corrected to it (label shift, Saerens et al. 2002); None keeps the training base rate
            stored in the checkpoint (no correction).

    Raises:
        UserError: On construction, naming the first thing that is wrong.
    """

    bbox: BBox
    start: dt.date
    end: dt.date
    out: Path
    catalog: str | None = None
    checkpoint: Path | None = None
    model: str | None = None
    block: int = DEFAULT_BLOCK
    overlap: int = DEFAULT_OVERLAP
    batch_size: int = DEFAULT_BATCH_SIZE
    max_cloud: float | None = DEFAULT_MAX_CLOUD
    region_blocks: int = DEFAULT_REGION_BLOCKS
    zarr_format: int = DEFAULT_ZARR_FORMAT
    overwrite: bool = False
    device: str = DEFAULT_DEVICE
    cluster: ClusterSpec = field(default_factory=_default_cluster)
    event_id: str | None = None
    progress: bool = True
    read_retries: int = DEFAULT_READ_RETRIES
    retry_delay_s: float = DEFAULT_RETRY_DELAY_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    grid: GridSpec | None = None
    only_regions: tuple[int, ...] | None = None
    base: Path | None = None
    base_rate: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bbox", BBox.parse(self.bbox))
        object.__setattr__(self, "out", Path(self.out))
        if self.base is not None:
            object.__setattr__(self, "base", Path(self.base))
            if self.grid is None or self.only_regions is None:
                raise UserError("a base store needs a fixed grid and the regions to compute")
        if self.only_regions is not None:
            object.__setattr__(self, "only_regions", tuple(sorted({int(i) for i in self.only_regions})))
        if self.grid is not None and any(n <= 0 or n % CHIP for n in self.grid.shape):
            raise UserError(f"a sweep grid's shape must be whole {CHIP}-px chips, not {self.grid.shape}")
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        if self.end < self.start:
            raise UserError(f"--end {self.end} is before --start {self.start}")
        check_block(self.block)
        try:
            ChipGrid(chip=CHIP, overlap=self.overlap)
        except ValueError as exc:
            raise UserError(f"--{exc}") from None
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.zarr_format not in (2, 3):
            raise UserError(f"--zarr-format must be 2 or 3, not {self.zarr_format}")
        if self.region_blocks < 1:
            raise UserError("--region-blocks must be at least 1")
        if self.base_rate is not None and not 0.0 < self.base_rate < 1.0:
            raise UserError(f"--base-rate must be a fraction between 0 and 1, not {self.base_rate}")
        if self.device not in DEVICES:
            raise UserError(f"--device must be one of {', '.join(DEVICES)}, not {self.device!r}")
