"""Small pure geography: the one bbox rule set (:class:`BBox`), its limits, and geodesic areas.

* :class:`BBox` is a WGS84 ``(west, south, east, north)`` tuple that can only be built valid
  (four finite numbers, longitudes in [-180, 180], latitudes within :data:`MAX_ABS_LAT`,
  ``south < north``, ``west < east``); a bad box is refused with one line naming the first rule
  broken and the box the user probably meant (:func:`bbox_suggestions`).
* :func:`validate_bbox` checks a box to *search* with the same rules, latitudes up to the poles.
* :func:`bbox_area_km2` is the area of a box on the WGS84 ellipsoid.

Imports nothing heavier than pyproj, and nothing of the pipeline but its error type.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from pyproj import Geod

from pipeline.errors import UserError

#: Plain WGS84 ``(west, south, east, north)`` bounds (not validated; e.g. a region's footprint).
Bounds = tuple[float, float, float, float]

_GEOD = Geod(ellps="WGS84")


class BBoxError(UserError):
    """A bounding box that breaks the rules of :class:`BBox` (one line, with the box meant)."""


#: Latitude limit of every bbox (degrees): sweeps map on UTM grids, which end at 84° N, and
#: the same limit is used in the south; beyond it a UTM grid is not a sensible metric grid.
MAX_ABS_LAT = 84.0


class _Corners(NamedTuple):
    west: float
    south: float
    east: float
    north: float


class BBox(_Corners):
    """A WGS84 ``(west, south, east, north)`` box that passed the one rule set of this pipeline.

    Constructing one validates it, so a ``BBox`` value is always valid; it is a tuple, so it
    unpacks, compares and serialises like ``(west, south, east, north)``. The rules: four finite
    numbers, longitudes in ``[-180, 180]``, latitudes in ``[-MAX_ABS_LAT, MAX_ABS_LAT]``,
    ``south < north`` and ``west < east``. A box with ``west > east`` is rejected with the box
    the user probably meant: its longitudes swapped, or, when it is narrower across the
    antimeridian, the two boxes to sweep instead; ``south > north`` is reported as such, with the
    box the user probably meant. Every suggested box is itself valid.
    """

    def __new__(cls, west: float, south: float, east: float, north: float) -> BBox:
        """Validate and build (raises :class:`BBoxError` naming the first rule broken)."""
        values = _finite_floats((west, south, east, north))
        problem = _problem(values, MAX_ABS_LAT)
        if problem:
            raise BBoxError(f"bad bbox {values}: {problem}")
        return super().__new__(cls, *values)

    @property
    def corners(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)`` as a plain tuple."""
        return (self.west, self.south, self.east, self.north)

    @classmethod
    def parse(cls, values: Sequence[float] | BBox) -> BBox:
        """Validate any sequence of four numbers as a bbox (a ``BBox`` is returned as is).

        Raises:
            BBoxError: Naming what is wrong (one line).

        """
        if isinstance(values, BBox):
            return values
        return cls(*validate_bbox(values))


def _finite_floats(values: Sequence[float]) -> tuple[float, float, float, float]:
    w, s, e, n = (float(v) for v in values)
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise BBoxError(f"bad bbox {(w, s, e, n)}: values must be finite")
    return (w, s, e, n)


def _num(v: float) -> str:
    return str(int(v)) if v.is_integer() else repr(v)


def _fmt(box_: tuple[float, ...]) -> str:
    return "(" + ", ".join(_num(v) for v in box_) + ")"


def crosses_antimeridian(west: float, east: float) -> bool:
    """Whether ``west > east`` more likely means a box across 180° than swapped longitudes.

    Read across the antimeridian, the box is ``360 - (west - east)`` degrees wide; read as
    swapped, ``west - east``. The narrower reading is taken (a box from 179.5 to -179.5 is 1°
    across 180; one from 10.2 to 10.0 is 0.2° with west and east swapped, not 359.8°).
    """
    return west > east and west - east > 180.0


def bbox_suggestions(
    values: Sequence[float], max_lat: float = MAX_ABS_LAT
) -> list[tuple[float, float, float, float]]:
    """The valid box(es) a user most likely meant by an inverted one (empty if none is clear).

    ``south > north`` is read as swapped latitudes. ``west > east`` is read as swapped
    longitudes, unless the box is narrower across the antimeridian (:func:`crosses_antimeridian`):
    then it is split in two at 180°. Each returned box passes :class:`BBox`.
    """
    w, s, e, n = _finite_floats(values)
    if not all(-180.0 <= v <= 180.0 for v in (w, e)) or not all(abs(v) <= max_lat for v in (s, n)):
        return []
    s, n = min(s, n), max(s, n)
    if s == n or w == e:
        return []
    if crosses_antimeridian(w, e):
        parts = [(w, s, 180.0, n), (-180.0, s, e, n)]
    else:
        parts = [(min(w, e), s, max(w, e), n)]
    return [p for p in parts if p[0] < p[2]]


def _problem(values: tuple[float, float, float, float], max_lat: float) -> str | None:
    """What is wrong with a bbox, or None; the first rule broken, hints included."""
    west, south, east, north = values
    for name, lon in (("west", west), ("east", east)):
        if not -180.0 <= lon <= 180.0:
            return f"{name} longitude {_num(lon)} outside [-180, 180]"
    for name, lat in (("south", south), ("north", north)):
        if not -max_lat <= lat <= max_lat:
            why = " (sweeps map on UTM grids, which end at 84 degrees)" if max_lat < 90 else ""
            return f"{name} latitude {_num(lat)} outside [-{max_lat:g}, {max_lat:g}]{why}"
    hints = [_fmt(b) for b in bbox_suggestions(values, max_lat)]
    split = f"split it into {' and '.join(hints)}"
    crossing = crosses_antimeridian(west, east)
    if south > north:
        text = f"south {_num(south)} is north of north {_num(north)} (expected W S E N)"
        if crossing and hints:
            return f"{text}; swapped, it also crosses the antimeridian: {split}"
        if west > east and hints:
            return f"{text}, and west {_num(west)} is east of east {_num(east)}; did you mean {hints[0]}?"
        return f"{text}; did you mean {hints[0]}?" if hints else text
    if south == north:
        return "south must be less than north"
    if crossing:
        return "west > east: the box crosses the antimeridian" + (f"; {split}" if hints else "")
    if west > east:
        text = f"west {_num(west)} is east of east {_num(east)} (expected W S E N)"
        return f"{text}; did you mean {hints[0]}?" if hints else text
    if west == east:
        return "west must be less than east"
    return None


def validate_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """Check a WGS84 box to *search*: the rules of :class:`BBox`, with latitudes up to the poles.

    A search may look anywhere (DEM tiles reach 90° S); an area to *map* must be a
    :class:`BBox` (latitudes within ``MAX_ABS_LAT``), which a sweep checks up front.

    Raises:
        BBoxError: Naming what is wrong.

    """
    if isinstance(bbox, BBox):
        return bbox.corners
    try:
        floats = tuple(float(v) for v in bbox)
    except (TypeError, ValueError) as exc:
        raise BBoxError(f"bad bbox {bbox!r}: expected four numbers west,south,east,north") from exc
    if len(floats) != 4:
        raise BBoxError(f"bad bbox {bbox!r}: expected four numbers west,south,east,north")
    values = _finite_floats(floats)
    problem = _problem(values, 90.0)
    if problem:
        raise BBoxError(f"bad bbox {values}: {problem}")
    return values


def bbox_area_km2(bbox: Sequence[float]) -> float:
    """Area of a WGS84 ``(west, south, east, north)`` box on the WGS84 ellipsoid, in km²."""
    w, s, e, n = (float(v) for v in bbox)
    area, _ = _GEOD.polygon_area_perimeter([w, e, e, w], [s, s, n, n])
    return abs(area) / 1e6
