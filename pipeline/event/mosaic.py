"""One grid per event: a fixed 10 m lattice in the epicentre's UTM zone, cut into regions.

An event's map versions are one mosaic each, on one grid (:class:`EventGrid`):

* the **CRS** is the UTM zone of the epicentre (:func:`pipeline.cube.grid.utm_zone_epsg`);
* the **lattice** is anchored at the zone's origin: the grid's west and north edges are
  multiples of ``region * resolution`` metres, its shape a multiple of ``region`` pixels. Two
  grids of one event (the area grew with a later ShakeMap) therefore share pixels, chips and
  chunks: a chunk of the smaller one is a whole chunk of the larger, shifted by whole chunks;
* the **regions** are the sweep's (:func:`pipeline.sweep.plan.plan_regions` with one block per
  region side, so a region is one store chunk of every variable);
* each region of the grid that meets a planned tile **belongs to exactly one tile**, the one
  whose footprint it overlaps most (ties: the smaller tile id). A tile's regions never belong
  to another tile; together, the regions cover every tile's footprint
  (:func:`tile_regions`, property-tested in ``tests/event/test_mosaic.py``).

A version sweeps the regions of the tiles it chooses and reuses every other region of the
previous version (:mod:`pipeline.event.versions_store`). Everything here is pure arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import shapely
from affine import Affine
from pyproj import Transformer
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from pipeline.sweep.config import CHIP, RESOLUTION, GridSpec

if TYPE_CHECKING:
    from pipeline.sweep.plan import Region

BBox = tuple[float, float, float, float]
#: Vertices per edge when a lon/lat box is projected (edges curve in UTM).
_DENSIFY = 16


@dataclass(frozen=True)
class EventGrid:
    """An event's grid: UTM zone, north-west corner on the region lattice, shape, region side.

    Attributes:
        epsg: EPSG code of the UTM zone.
        west: West edge (metres), a multiple of ``region * resolution``.
        north: North edge (metres), a multiple of ``region * resolution``.
        shape: ``(rows, cols)``, multiples of ``region``.
        region: Region side in pixels (a multiple of the chip; one store chunk).
        resolution: Pixel size (metres).
    """

    epsg: int
    west: float
    north: float
    shape: tuple[int, int]
    region: int
    resolution: float = RESOLUTION

    @property
    def transform(self) -> Affine:
        """North-up affine transform of the grid."""
        return Affine(self.resolution, 0.0, self.west, 0.0, -self.resolution, self.north)

    @property
    def spec(self) -> GridSpec:
        """The grid as a sweep takes it (:class:`pipeline.sweep.config.GridSpec`)."""
        return GridSpec(self.epsg, self.west, self.north, self.shape, self.resolution)

    def regions(self) -> list[Region]:
        """The sweep's regions of this grid (row-major, one chunk a side)."""
        from pipeline.sweep.plan import plan_regions

        return plan_regions(self.shape, self.region, 1)

    def region_box(self, r: Region) -> BaseGeometry:
        """A region's footprint in the grid's CRS (metres)."""
        res = self.resolution
        return box(
            self.west + r.cols[0] * res,
            self.north - r.rows[1] * res,
            self.west + r.cols[1] * res,
            self.north - r.rows[0] * res,
        )

    def offset_of(self, other: EventGrid) -> tuple[int, int]:
        """``(rows, cols)`` of ``other``'s north-west corner in this grid's pixels (whole regions).

        Raises:
            ValueError: When the grids are not on one lattice (another zone or region side).
        """
        if (other.epsg, other.region, other.resolution) != (self.epsg, self.region, self.resolution):
            raise ValueError("grids of different zones, region sides or resolutions share no lattice")
        res = self.resolution
        return (round((self.north - other.north) / res), round((other.west - self.west) / res))

    def offset_ok(self, other: EventGrid) -> bool:
        """Whether ``other`` lies on this grid's lattice (same zone, region side, resolution)."""
        return (other.epsg, other.region, other.resolution) == (self.epsg, self.region, self.resolution)

    def to_wgs84(self, geom: BaseGeometry) -> BaseGeometry:
        """A geometry of the grid's CRS in WGS84 (edges densified)."""
        fwd = Transformer.from_crs(f"EPSG:{self.epsg}", "EPSG:4326", always_xy=True)
        dense = shapely.segmentize(geom, max(self.region * self.resolution / _DENSIFY, 1.0))
        return shapely.transform(dense, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))

    def wgs84_bounds(self, regions: Iterable[Region]) -> BBox:
        """WGS84 bounds of some regions (of the whole grid when ``regions`` is empty)."""
        boxes = [self.region_box(r) for r in regions] or [self.region_box(r) for r in self.regions()]
        w, s, e, n = self.to_wgs84(shapely.union_all(boxes)).bounds
        return (float(w), float(s), float(e), float(n))


def footprint(bbox: BBox, epsg: int) -> BaseGeometry:
    """A WGS84 box projected to ``epsg`` (edges densified, so the curved edges are kept)."""
    w, s, e, n = bbox
    ring = shapely.segmentize(box(w, s, e, n), max(e - w, n - s) / _DENSIFY or 1e-9)
    fwd = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    return shapely.transform(ring, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))


def event_grid(
    tiles: Iterable[BBox], epicentre: tuple[float, float], region: int, resolution: float = RESOLUTION
) -> EventGrid:
    """The grid of an event: the epicentre's UTM zone, snapped outward to whole regions.

    Args:
        tiles: WGS84 boxes of the event's tiles (every tile that may ever be swept).
        epicentre: ``(lon, lat)``.
        region: Region side in pixels (a positive multiple of :data:`CHIP`).
        resolution: Pixel size in metres.

    Raises:
        ValueError: No tiles, or a region side that is not a multiple of the chip.
    """
    if region < CHIP or region % CHIP:
        raise ValueError(f"region side {region} must be a positive multiple of {CHIP}")
    boxes = list(tiles)
    if not boxes:
        raise ValueError("an event grid needs at least one tile")
    from pipeline.cube.grid import utm_zone_epsg

    epsg = utm_zone_epsg(*epicentre)
    xmin, ymin, xmax, ymax = shapely.union_all([footprint(b, epsg) for b in boxes]).bounds
    step = region * resolution
    west, east = math.floor(xmin / step) * step, math.ceil(xmax / step) * step
    south, north = math.floor(ymin / step) * step, math.ceil(ymax / step) * step
    east, north = max(east, west + step), max(north, south + step)
    shape = (round((north - south) / resolution), round((east - west) / resolution))
    return EventGrid(epsg, float(west), float(north), shape, region, resolution)


def tile_regions(grid: EventGrid, tiles: Mapping[str, BBox]) -> dict[str, tuple[int, ...]]:
    """Which regions belong to which tile: each region to the tile it overlaps most.

    Args:
        grid: The event's grid.
        tiles: Tile id -> WGS84 box.

    Returns:
        Tile id -> sorted region indices (possibly empty for a sliver tile whose every region
        overlaps a neighbour more). Every region meeting some tile is in exactly one tuple.
    """
    feet = {tid: footprint(b, grid.epsg) for tid, b in sorted(tiles.items())}
    for f in feet.values():
        shapely.prepare(f)
    owned: dict[str, list[int]] = {tid: [] for tid in feet}
    for r in grid.regions():
        rbox = grid.region_box(r)
        best: tuple[float, str] | None = None
        for tid, f in feet.items():
            if not f.intersects(rbox):
                continue
            overlap = f.intersection(rbox).area
            if overlap > 0 and (best is None or overlap > best[0]):
                best = (overlap, tid)
        if best is not None:
            owned[best[1]].append(r.index)
    return {tid: tuple(v) for tid, v in owned.items()}


def regions_for(owned: Mapping[str, tuple[int, ...]], chosen: Iterable[str]) -> tuple[int, ...]:
    """The regions a version sweeps for its chosen tiles (sorted, each once).

    Raises:
        KeyError: A chosen tile the event does not have (an inconsistent record: a bug).
    """
    return tuple(sorted({i for tid in chosen for i in owned[tid]}))


def grown(grid: EventGrid, other: EventGrid | None) -> EventGrid:
    """The smallest grid on ``grid``'s lattice holding both grids (``grid`` when ``other`` is None).

    A later version's grid holds the earlier one, so the earlier chunks map onto it whole.
    """
    if other is None:
        return grid
    grid.offset_of(other)  # same lattice, or ValueError
    res = grid.resolution
    west, north = min(grid.west, other.west), max(grid.north, other.north)
    east = max(grid.west + grid.shape[1] * res, other.west + other.shape[1] * res)
    south = min(grid.north - grid.shape[0] * res, other.north - other.shape[0] * res)
    shape = (round((north - south) / res), round((east - west) / res))
    return EventGrid(grid.epsg, west, north, shape, grid.region, res)


def remap(old: EventGrid, new: EventGrid, indices: Iterable[int]) -> tuple[int, ...]:
    """Region indices of ``old`` as indices of ``new`` (a grown grid on the same lattice).

    Regions of another lattice map to nothing (they were not swept on this one).
    """
    if not new.offset_ok(old):
        return ()
    dr, dc = new.offset_of(old)
    cols_new = new.shape[1] // new.region
    cols_old = old.shape[1] // old.region
    out = []
    for i in indices:
        r, c = divmod(int(i), cols_old)
        out.append((r + dr // new.region) * cols_new + (c + dc // new.region))
    return tuple(sorted(out))
