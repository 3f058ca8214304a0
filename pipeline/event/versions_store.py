"""The versioned mosaic of an event: one Zarr store per version, sharing unchanged chunks.

Layout, for event ``E`` in ``OUT``::

    OUT/E/mosaic.zarr/            a Zarr group (format 2)
        v1/                       version 1: a complete result store of the event's grid
        v2/                       version 2: the same grid; chunks of unchanged regions are
                                  hard links to v1's files, the changed regions' chunks new
    OUT/E/.mosaic-v3.building/    a version being written (hidden; resumable; never read)

A user opens a version with one call: ``xr.open_zarr("OUT/E/mosaic.zarr/v2")`` or
``xr.open_zarr("OUT/E/mosaic.zarr", group="v2")`` (the group's consolidated metadata lists every
version; it is rewritten right after each publish) (rioxarray and GDAL read it too: it is the
sweep's own store layout, Zarr format 2, CF grid mapping).

The guarantees, and what gives each:

* **storage grows with what changed**: a version is one :func:`pipeline.sweep.run_sweep` over the
  event grid restricted to the changed regions (``only_regions``), with the previous version
  as ``base``: the other regions' chunk files are hard-linked (:mod:`pipeline.store.links`),
  never copied. :func:`storage` measures it (bytes in files no earlier version holds);
* **earlier versions stay as they were**: no chunk file is ever rewritten in place (zarr writes
  a temporary file and renames it), so a new version's write cannot reach a linked file;
* **an interrupted write is never visible**: the version is built under a hidden name outside
  the group and published by one ``rename`` (:func:`publish`) only once the sweep marked it
  ``complete``; a killed build is resumed by the next call (the sweep's own resume protocol).

Why not Icechunk: its repositories are not readable by GDAL/rasterio (the COG and web map
writers and GDAL users read the store directly), and hard-linked Zarr v2 gives the same three
guarantees with the store writer the sweep already has. See docs/flows.md.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.event.mosaic import EventGrid
from pipeline.store.atomic import write_atomic
from pipeline.store.reader import is_complete

#: The event's version group, inside the event directory.
MOSAIC = "mosaic.zarr"


def version_path(edir: Path, n: int) -> Path:
    """Where version ``n`` of an event is published: ``E/mosaic.zarr/v<n>``."""
    return edir / MOSAIC / f"v{n}"


def building_path(edir: Path, n: int, key: str = "") -> Path:
    """Where version ``n`` is built before it is published (hidden, outside the group).

    Args:
        edir: The event's directory.
        n: The version.
        key: What the build is (its window and regions, hashed by the caller), so that a new
            attempt at the same number with other inputs does not meet an old partial build.
    """
    return edir / f".mosaic-v{n}{'-' + key if key else ''}.building"


def remove_builds(edir: Path, n: int) -> None:
    """Delete what earlier attempts at version ``n`` left (after it is published)."""
    import shutil

    for left in edir.glob(f".mosaic-v{n}.building"):
        shutil.rmtree(left, ignore_errors=True)
    for left in edir.glob(f".mosaic-v{n}-*.building"):
        shutil.rmtree(left, ignore_errors=True)


def _ensure_group(root: Path) -> None:
    """Make ``root`` a Zarr format 2 group (its children are the versions)."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".zgroup").exists():
        write_atomic(root / ".zgroup", json.dumps({"zarr_format": 2}))
    if not (root / ".zattrs").exists():
        write_atomic(
            root / ".zattrs", json.dumps({"landslide:layout": "one group per map version (v1, v2, ...)"})
        )


def publish(building: Path, final: Path) -> Path:
    """Move a complete built version into its group with one rename.

    Raises:
        ValueError: The built store is not complete.
        FileExistsError: The version is already published.
    """
    if not is_complete(building):
        raise ValueError(f"{building} is not a complete store; not published")
    _ensure_group(final.parent)
    if final.exists():
        raise FileExistsError(f"version {final} is already published")
    os.rename(building, final)
    _consolidate(final.parent)
    return final


def _consolidate(root: Path) -> None:
    """Rewrite the group's consolidated metadata (every version), so ``group="vN"`` opens fast.

    Only ``root/.zmetadata`` is written (atomically, by zarr's temp-and-rename); the versions'
    own files are not touched.
    """
    import warnings

    import zarr

    with warnings.catch_warnings():  # zarr: "consolidated metadata is not part of the v3 spec"
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        zarr.consolidate_metadata(str(root), zarr_format=2)


def published(edir: Path, n: int) -> bool:
    """Whether version ``n`` is published (a complete store at its final path)."""
    return is_complete(version_path(edir, n))


@dataclass(frozen=True)
class Storage:
    """What a version costs on disk.

    Attributes:
        total_bytes: Bytes of every file of the version (what a copy would cost).
        new_bytes: Bytes in files no earlier version holds (what this version wrote).
        files: Files of the version.
        shared_files: Files shared with an earlier version (hard links).
    """

    total_bytes: int
    new_bytes: int
    files: int
    shared_files: int


def storage(version: Path, earlier: Iterable[Path] = ()) -> Storage:
    """Bytes of ``version``, and the part of them in files (inodes) no ``earlier`` version holds."""
    seen = {(st.st_dev, st.st_ino) for d in earlier for f in d.rglob("*") if f.is_file() for st in [f.stat()]}
    total = new = files = shared = 0
    for f in version.rglob("*"):
        if not f.is_file():
            continue
        st = f.stat()
        files += 1
        total += st.st_size
        if (st.st_dev, st.st_ino) in seen:
            shared += 1
        else:
            new += st.st_size
    return Storage(total, new, files, shared)


def tile_coverage(store_path: Path, part: Any) -> float:
    """Share of ``part`` (a WGS84 geometry) with clear data in a store's ``valid``.

    Only the window of the part's bounds is read (an event's mosaic is large, a tile small).
    """
    import numpy as np
    import shapely
    from pyproj import Transformer
    from rasterio.features import geometry_mask

    from pipeline.store import open_result, store_crs, store_transform

    ds = open_result(store_path)
    crs, transform = store_crs(ds), store_transform(ds)
    fwd = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    geom = shapely.transform(
        shapely.segmentize(part, 0.001), lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1]))
    )
    w, so, e, n = geom.bounds
    (c_lo, r_lo), (c_hi, r_hi) = ~transform * (w, n), ~transform * (e, so)
    r0, c0 = max(math.floor(min(r_lo, r_hi)), 0), max(math.floor(min(c_lo, c_hi)), 0)
    r1 = min(math.ceil(max(r_lo, r_hi)), ds.sizes["y"])
    c1 = min(math.ceil(max(c_lo, c_hi)), ds.sizes["x"])
    if r1 <= r0 or c1 <= c0:
        return 0.0
    sub = transform * transform.translation(c0, r0)
    inside = geometry_mask([geom], out_shape=(r1 - r0, c1 - c0), transform=sub, invert=True)
    if not inside.any():
        return 0.0
    valid = np.asarray(ds["valid"].isel(y=slice(r0, r1), x=slice(c0, c1)).values, dtype=bool)
    return float(valid[inside].mean())


def version_polygons(store_path: Path) -> Any:
    """The version's landslide polygons, from its whole mosaic (never cut at a tile border), WGS84.

    One vectorisation of one raster: the polygons are disjoint, so their summed area is the
    area of their union, and a landslide is one polygon wherever it lies.
    """
    from pipeline.products.polygons import landslide_polygons
    from pipeline.store import open_result

    return landslide_polygons(open_result(store_path)).to_crs(4326)


def swept_outline(grid: EventGrid, regions: Iterable[int]) -> Any:
    """The WGS84 outline of the regions swept so far: the area the map draws and counts."""
    import shapely

    by_index = {r.index: r for r in grid.regions()}
    boxes = [grid.region_box(by_index[i]) for i in sorted(set(regions)) if i in by_index]
    return grid.to_wgs84(shapely.union_all(boxes)) if boxes else shapely.MultiPolygon()
