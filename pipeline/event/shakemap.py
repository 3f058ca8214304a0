"""Read a ShakeMap ``grid.xml`` (ShakeMap 3.5 and 4 field layouts) into PGA and MMI grids.

ShakeMap 3.5 writes the fields ``LON LAT PGA PGV MMI PSA03 PSA10 PSA30 STDPGA URAT SVEL`` with
PGA in ``pctg`` and SVEL in ``ms``; ShakeMap 4 (its ``gridxml`` module through mapio's
``ShakeGrid``) writes the IMTs in another order (``MMI`` before ``PGA``), PGA/PSA in ``%g``,
PGV in ``cm/s``, SVEL in ``m/s``, more ``event`` attributes and ``event_specific_uncertainty``
elements. Fields are found by their ``grid_field`` name and index, never by position; rows are
placed by their LON/LAT, not by their order. The XML is read incrementally (``iterparse``,
elements cleared as they end) and only PGA (converted to g) and MMI are kept, as float32.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import shapely
from affine import Affine
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from pipeline.errors import UserError
from pipeline.event.config import DEFAULT_PGA_G, PGA_BINS_G

_NS = re.compile(r"^\{[^}]*\}")
#: Units of PGA in the two layouts, and the factor to g.
_PGA_UNITS = {"pctg": 0.01, "%g": 0.01, "g": 1.0}


class ShakeMapError(UserError):
    """The file is not a ShakeMap grid.xml this parser understands."""


@dataclass(frozen=True)
class ShakeGrid:
    """The parts of a ShakeMap grid the planning needs.

    Attributes:
        event_id: ``shakemap_grid/@event_id``.
        version: ``shakemap_version`` (an integer; 0 when absent).
        layout: ``"3.5"`` or ``"4"`` (from the PGA/SVEL units and ``code_version``).
        code_version: ShakeMap software version that wrote the grid.
        magnitude: ``event/@magnitude``.
        lon: Epicentre longitude.
        lat: Epicentre latitude.
        event_time: ``event/@event_timestamp`` as written.
        description: ``event/@event_description``.
        lon_min: Longitude of the first grid column (cell centre).
        lat_max: Latitude of the first grid row (cell centre).
        dx: Column spacing (degrees).
        dy: Row spacing (degrees).
        pga_g: PGA in g, ``[nlat, nlon]``, north row first (NaN where a cell was missing).
        mmi: Macroseismic intensity, same grid.
    """

    event_id: str
    version: int
    layout: str
    code_version: str
    magnitude: float
    lon: float
    lat: float
    event_time: str
    description: str
    lon_min: float
    lat_max: float
    dx: float
    dy: float
    pga_g: np.ndarray
    mmi: np.ndarray

    @property
    def transform(self) -> Affine:
        """Affine transform of the cells (edges half a spacing outside the centres)."""
        return Affine(self.dx, 0.0, self.lon_min - self.dx / 2, 0.0, -self.dy, self.lat_max + self.dy / 2)

    def value_at(self, field: np.ndarray, lon: float, lat: float) -> float:
        """Value of ``field`` in the cell containing ``(lon, lat)`` (NaN outside the grid)."""
        col = round((lon - self.lon_min) / self.dx)
        row = round((self.lat_max - lat) / self.dy)
        if 0 <= row < field.shape[0] and 0 <= col < field.shape[1]:
            return float(field[row, col])
        return math.nan


def _local(tag: str) -> str:
    return _NS.sub("", tag)


def parse_grid(source: str | Path | IO[bytes]) -> ShakeGrid:
    """Read a ShakeMap ``grid.xml`` (3.5 or 4 layout) incrementally.

    Args:
        source: A path or a binary file object.

    Raises:
        ShakeMapError: Not a ShakeMap grid, no PGA/MMI field, unknown PGA units, or rows missing.
    """
    head: dict[str, str] = {}
    event: dict[str, str] = {}
    spec: dict[str, str] = {}
    fields: dict[str, tuple[int, str]] = {}
    values: np.ndarray | None = None
    try:
        for _, elem in ET.iterparse(source, events=("end",)):
            tag = _local(elem.tag)
            if tag == "event":
                event = dict(elem.attrib)
            elif tag == "grid_specification":
                spec = dict(elem.attrib)
            elif tag == "grid_field":
                fields[elem.attrib["name"].upper()] = (
                    int(elem.attrib["index"]),
                    elem.attrib.get("units", ""),
                )
            elif tag == "grid_data":
                values = np.fromstring(elem.text or "", dtype=np.float64, sep=" ")
            elif tag == "shakemap_grid":
                head = dict(elem.attrib)
            elem.clear()
    except (ET.ParseError, OSError, KeyError, ValueError) as exc:
        raise ShakeMapError(f"cannot read ShakeMap grid {_name(source)}: {exc}") from exc
    if not head or not spec or values is None:
        raise ShakeMapError(f"{_name(source)} is not a ShakeMap grid.xml (<shakemap_grid> with grid_data)")
    return _build(head, event, spec, fields, values, _name(source))


def _name(source: object) -> str:
    return str(getattr(source, "name", source))


def _build(
    head: dict[str, str],
    event: dict[str, str],
    spec: dict[str, str],
    fields: dict[str, tuple[int, str]],
    values: np.ndarray,
    name: str,
) -> ShakeGrid:
    for need in ("LON", "LAT", "PGA", "MMI"):
        if need not in fields:
            raise ShakeMapError(f"ShakeMap grid {name} has no {need} field (fields: {', '.join(fields)})")
    pga_units = fields["PGA"][1]
    if pga_units not in _PGA_UNITS:
        raise ShakeMapError(f"ShakeMap grid {name}: PGA in unknown units {pga_units!r}")
    nlon, nlat = int(spec["nlon"]), int(spec["nlat"])
    lon_min, lon_max = float(spec["lon_min"]), float(spec["lon_max"])
    lat_min, lat_max = float(spec["lat_min"]), float(spec["lat_max"])
    n_fields = len(fields)
    if values.size % n_fields or values.size // n_fields != nlon * nlat:
        raise ShakeMapError(
            f"ShakeMap grid {name}: {values.size} numbers are not {nlon} x {nlat} rows of {n_fields} fields"
        )
    rows = values.reshape(-1, n_fields)
    dx = (lon_max - lon_min) / max(nlon - 1, 1)
    dy = (lat_max - lat_min) / max(nlat - 1, 1)
    col = np.rint((rows[:, fields["LON"][0] - 1] - lon_min) / dx).astype(np.int64)
    row = np.rint((lat_max - rows[:, fields["LAT"][0] - 1]) / dy).astype(np.int64)
    ok = (col >= 0) & (col < nlon) & (row >= 0) & (row < nlat)
    pga = np.full((nlat, nlon), np.nan, dtype=np.float32)
    mmi = np.full((nlat, nlon), np.nan, dtype=np.float32)
    pga[row[ok], col[ok]] = rows[ok, fields["PGA"][0] - 1] * _PGA_UNITS[pga_units]
    mmi[row[ok], col[ok]] = rows[ok, fields["MMI"][0] - 1]
    code = head.get("code_version", "")
    svel_units = fields.get("SVEL", (0, ""))[1]
    layout = "4" if code.startswith("4") or pga_units == "%g" or svel_units == "m/s" else "3.5"
    return ShakeGrid(
        event_id=head.get("event_id", ""),
        version=int(float(head.get("shakemap_version", "0") or 0)),
        layout=layout,
        code_version=code,
        magnitude=float(event.get("magnitude", "nan")),
        lon=float(event.get("lon", "nan")),
        lat=float(event.get("lat", "nan")),
        event_time=event.get("event_timestamp", ""),
        description=event.get("event_description", ""),
        lon_min=lon_min,
        lat_max=lat_max,
        dx=dx,
        dy=dy,
        pga_g=pga,
        mmi=mmi,
    )


def _cells_to_polygons(grid: ShakeGrid, mask: np.ndarray) -> BaseGeometry:
    from rasterio import features

    if not mask.any():
        return shapely.MultiPolygon()
    parts = [
        shape(geom)
        for geom, value in features.shapes(mask.astype(np.uint8), mask=mask, transform=grid.transform)
        if value
    ]
    return shapely.union_all(parts)


def shaken_area(
    grid: ShakeGrid, *, pga_g: float | None = DEFAULT_PGA_G, mmi: float | None = None
) -> BaseGeometry:
    """The grid cells at or above the threshold, as one WGS84 (multi)polygon.

    Args:
        grid: A parsed grid.
        pga_g: PGA threshold in g (ignored when ``mmi`` is given).
        mmi: MMI threshold instead of PGA.
    """
    if mmi is not None:
        mask = np.nan_to_num(grid.mmi, nan=-1.0) >= mmi
    else:
        mask = np.nan_to_num(grid.pga_g, nan=-1.0) >= (DEFAULT_PGA_G if pga_g is None else pga_g)
    return _cells_to_polygons(grid, mask)


def pga_contours(grid: ShakeGrid, levels: Sequence[float] = PGA_BINS_G) -> list[tuple[float, BaseGeometry]]:
    """Areas of PGA >= each level (g), nested, for maps (empty levels left out)."""
    out = []
    for level in levels:
        geom = _cells_to_polygons(grid, np.nan_to_num(grid.pga_g, nan=-1.0) >= level)
        if not geom.is_empty:
            out.append((float(level), geom))
    return out
