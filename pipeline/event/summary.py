"""``summary.json`` of one map version, modelled on the USGS Ground Failure ``info.json``.

Ground Failure reports *modelled* landslide hazard from the ShakeMap; we report landslides
*observed* in post-event imagery by the model. The fields:

* ``event`` (id, magnitude, time, place, epicentre) and ``version`` (map version, its creation
  time, the post-event ``window``, the ``scenes`` used);
* ``area``: where it comes from (``shakemap`` with its version and rule, or ``keefer``), the land
  area, the tiles swept and the flat ones skipped;
* ``coverage``: share of the planned area (flat tiles excluded) with clear post-event data,
  from the stores' ``valid``;
* ``observed``: landslide area (km²) and count above the model's threshold, the largest
  polygons, and, when a ShakeMap exists, area and count by PGA bin (PGA at each polygon's centre);
* ``alert``: Ground Failure's bins applied to the *observed* area: green < 1 km², yellow 1-10,
  orange 10-100, red >= 100. With partial coverage it is a lower bound (stated in ``alert.note``);
* ``model``: name, checkpoint and its SHA-256, threshold, and the checkpoint's calibration when it
  records one.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.event.config import PGA_BINS_G
from pipeline.event.shakemap import ShakeGrid

#: Ground Failure's alert bins on landslide area (km²): green below 1, yellow to 10, orange to 100.
ALERT_BINS_KM2 = (1.0, 10.0, 100.0)
ALERT_LEVELS = ("green", "yellow", "orange", "red")
LARGEST = 10


def alert_level(landslide_km2: float) -> str:
    """Ground Failure's alert colour for an aggregate landslide area (km²)."""
    for edge, level in zip(ALERT_BINS_KM2, ALERT_LEVELS, strict=False):
        if landslide_km2 < edge:
            return level
    return ALERT_LEVELS[-1]


def pga_bin_label(pga_g: float, edges: Sequence[float] = PGA_BINS_G) -> str:
    """``"0.1-0.2"`` style label of the PGA bin holding ``pga_g`` (``"<0.1"``, ``">=0.8"``, ``"unknown"``)."""
    if pga_g != pga_g:  # NaN: outside the grid
        return "unknown"
    if pga_g < edges[0]:
        return f"<{edges[0]:g}"
    for lo, hi in itertools.pairwise(edges):
        if pga_g < hi:
            return f"{lo:g}-{hi:g}"
    return f">={edges[-1]:g}"


def model_info(attrs: dict[str, Any], checkpoint: str | None) -> dict[str, Any]:
    """Model, checkpoint, threshold from a store's attributes; calibration from the checkpoint."""
    out: dict[str, Any] = {
        "name": attrs.get("landslide:model"),
        "checkpoint": attrs.get("landslide:checkpoint"),
        "sha256": attrs.get("landslide:checkpoint_sha256"),
        "threshold": attrs.get("landslide:threshold"),
        "calibration": attrs.get("landslide:calibration"),
    }
    if out["calibration"] is None:
        from pipeline.models.checkpoint import read_meta, shipped_checkpoint

        try:
            meta = read_meta(Path(checkpoint) if checkpoint else shipped_checkpoint())
        except (UserError, OSError):  # an unreadable checkpoint only loses the calibration entry
            return out
        cal = getattr(meta, "calibration", None)
        out["calibration"] = (
            dataclasses.asdict(cal) if dataclasses.is_dataclass(cal) and not isinstance(cal, type) else cal
        )
    return out


def observed(polygons: Any, grid: ShakeGrid | None) -> dict[str, Any]:
    """Landslide area and count, the largest polygons, and area by PGA bin.

    Args:
        polygons: A GeoDataFrame in EPSG:4326 with ``area_m2``, ``mean_probability``,
            ``mean_slope_deg`` (as :func:`pipeline.products.polygons.landslide_polygons` gives).
        grid: The ShakeMap grid, or None.
    """
    total_m2 = float(polygons["area_m2"].sum()) if len(polygons) else 0.0
    rows = polygons.sort_values("area_m2", ascending=False) if len(polygons) else polygons
    pts = rows.geometry.representative_point() if len(rows) else []
    pga = [grid.value_at(grid.pga_g, p.x, p.y) if grid is not None else float("nan") for p in pts]
    largest = [
        {
            "area_m2": round(float(r.area_m2), 1),
            "lon": round(p.x, 6),
            "lat": round(p.y, 6),
            "mean_probability": round(float(r.mean_probability), 3),
            "mean_slope_deg": round(float(r.mean_slope_deg), 1),
            **({"pga_g": round(g, 3)} if grid is not None else {}),
            **{k: round(float(getattr(r, k)), 3) for k in ("ndvi_pre", "ndvi_drop") if hasattr(r, k)},
        }
        for r, p, g in list(zip(rows.itertuples(), pts, pga, strict=False))[:LARGEST]
    ]
    out: dict[str, Any] = {
        "landslide_km2": round(total_m2 / 1e6, 6),
        "count": len(polygons),
        "largest": largest,
    }
    if grid is not None:
        bins: dict[str, dict[str, float]] = {}
        for r, g in zip(rows.itertuples(), pga, strict=False):
            b = bins.setdefault(pga_bin_label(g), {"landslide_km2": 0.0, "count": 0})
            b["landslide_km2"] += float(r.area_m2) / 1e6
            b["count"] += 1
        out["by_pga_g"] = {
            k: {"landslide_km2": round(v["landslide_km2"], 6), "count": int(v["count"])}
            for k, v in bins.items()
        }
    return out


def alert(landslide_km2: float, coverage: float) -> dict[str, Any]:
    """The alert block: level from the observed area, with the bins and a coverage caveat."""
    note = "observed area over the covered part only: a lower bound" if coverage < 0.95 else ""
    return {
        "level": alert_level(landslide_km2),
        "basis": "observed landslide area (km2)",
        "bins_km2": list(ALERT_BINS_KM2),
        "note": note,
    }
