"""What a finished sweep reports, and the statistics read back from its store."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.sweep.config import CHIP, RESOLUTION


@dataclass(frozen=True)
class SweepSummary:
    """What a finished sweep reports.

    Attributes:
        out: The store.
        area_km2: Area of the store's grid: the requested box on the UTM grid, padded right and
            down to whole chips (what was swept).
        requested_area_km2: Area of the requested box itself.
        valid_fraction: Fraction of the grid's pixels with a valid probability.
        landslide_km2: Area of every valid pixel with probability >= threshold.
            ``landslide export`` sums its polygons instead, which leave out patches smaller
            than its ``--min-area``, so it reports the same or a smaller area.
        threshold: The checkpoint's threshold (moved with the probabilities by ``base_rate``).
        wall_s: Wall time of the whole run (s).
        chips: Chips the model ran in this run.
        chips_per_s: Chips per second of compute.
        overlap_factor: Chips run over chips needed to tile the area once.
        regions_computed: Regions computed by this run.
        regions_total: Regions of the plan.
        scenes: Sentinel-2 scenes used.
        skipped_scenes: Scenes left out as unreadable.
        warnings: What a responder must know about the result.
        base_rate: The ``--base-rate`` the probabilities were corrected to, or None.
    """

    out: str
    area_km2: float
    valid_fraction: float
    landslide_km2: float
    threshold: float
    wall_s: float
    chips: int
    chips_per_s: float
    overlap_factor: float
    regions_computed: int
    regions_total: int
    scenes: list[str]
    skipped_scenes: list[str]
    warnings: list[str] = field(default_factory=list)
    requested_area_km2: float = 0.0
    base_rate: float | None = None

    def lines(self) -> list[str]:
        """Human-readable summary lines (warnings last, each on its own line)."""
        return [
            f"wrote {self.out}",
            f"area swept        {self.area_km2:,.2f} km2 ({self.valid_fraction:.1%} valid): the requested "
            f"{self.requested_area_km2:,.2f} km2 on the UTM grid, padded to whole {CHIP}-px chips",
            f"landslide area    {self.landslide_km2:,.4f} km2 at p >= {self.threshold:.2f} "
            "(every such pixel; 'landslide export' sums polygons, leaving out those under --min-area)",
            *(
                [f"base rate         probabilities corrected to {self.base_rate:g} of pixels (--base-rate)"]
                if self.base_rate is not None
                else []
            ),
            f"scenes            {len(self.scenes)} used, {len(self.skipped_scenes)} skipped",
            f"regions           {self.regions_computed} computed of {self.regions_total}",
            f"wall time         {self.wall_s:,.1f} s; {self.chips} chips, {self.chips_per_s:,.2f} chips/s "
            f"(overlap factor {self.overlap_factor:.2f})",
            *(f"warning: {w}" for w in self.warnings),
        ]

    def to_json(self) -> str:
        """The summary as JSON."""
        return json.dumps(asdict(self), indent=2)


def summary_json(summary: SweepSummary) -> str:
    """The summary as JSON."""
    return summary.to_json()


@dataclass(frozen=True)
class ResultStats:
    """Area, valid fraction and landslide area of a written store."""

    area_km2: float
    valid_fraction: float
    landslide_km2: float


def result_stats(path: Path, threshold: float) -> ResultStats:
    """Statistics of a written store (read back lazily, block by block)."""
    import dask.array as da
    import numpy as np
    import xarray as xr

    ds = xr.open_zarr(str(path), consolidated=False)
    valid = ds["valid"].data.astype(bool)
    prob = ds["probability"].data
    n = int(np.prod(valid.shape))
    n_valid, n_slide = da.compute(valid.sum(), (prob >= threshold).sum())
    px_km2 = RESOLUTION * RESOLUTION / 1e6
    return ResultStats(n * px_km2, float(n_valid) / n if n else 0.0, float(n_slide) * px_km2)


def result_warnings(skipped: dict[str, str], valid_fraction: float) -> list[str]:
    """What a responder must know about a complete result."""
    out = []
    if skipped:
        out.append(
            f"{len(skipped)} scene(s) skipped as unreadable: {', '.join(sorted(skipped))} "
            "(their pixels are not valid unless another scene covers them)"
        )
    if valid_fraction == 0.0:
        out.append(
            "no clear pixels: every pixel is cloud, shadow, no data or outside the scenes; "
            "nothing could be mapped (valid fraction 0); try a later --end"
        )
    return out
