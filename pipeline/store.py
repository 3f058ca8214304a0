"""The result store: Zarr layout, CRS conventions and the completion record.

Layout (documented for consumers in the README):

* dims ``(y, x)``; 1-D coordinates ``y`` and ``x`` hold pixel centres in the sweep's UTM CRS
  (metres, ``y`` decreasing);
* ``probability`` float32 in [0, 1], NaN where not valid; ``valid`` uint8 (1 valid);
  ``slope`` float32 degrees; chunks of the sweep's block size;
* ``spatial_ref``: a CF grid-mapping variable (``crs_wkt``, ``spatial_ref``, ``GeoTransform``),
  named by every data variable's ``grid_mapping`` attribute, so that
  ``xr.open_zarr(path, decode_coords="all")`` gives rioxarray the CRS and transform and GDAL's
  Zarr driver reads the georeferencing;
* group attributes ``proj:code``, ``proj:wkt2``, ``proj:transform``, ``proj:shape`` (the
  ``proj:`` convention of GeoZarr / STAC projection) and the run metadata ``landslide:*``;
* ``landslide:status`` is the completion record: ``in_progress`` while regions are written
  (``landslide:regions_done`` lists them), ``complete`` only after every region is written and
  the metadata consolidated. Consolidated metadata is written only at completion, so a reader
  of a partial store cannot be served a stale consolidated view.

Write protocol (what makes a kill at any moment safe, see docs/reliability.md):

1. the template is written into a hidden sibling directory and renamed into place, so ``out``
   either does not exist or is a whole in-progress store;
2. a region's chunks are written (zarr-python 3's local store writes every key to a temporary
   file and renames it, so a chunk is either old or new, never torn); a region killed mid-write
   is not recorded, and a re-run recomputes and overwrites all of its chunks;
3. only after its write returns is the region added to ``landslide:regions_done`` (an
   attribute rewrite, again temp + rename);
4. at the end: final metadata with ``in_progress``; consolidate; ``complete``; consolidate
   again. Readers that use consolidated metadata (xarray, zarr, products) see ``complete``
   only after the last step; a kill between the steps leaves ``in_progress`` and a re-run with
   no region left to compute simply finalises.

Zarr format 2 is the default: GDAL 3.10 reads v2 arrays but not zarr-python 3's v3 arrays.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
import zarr
from affine import Affine
from pyproj import CRS

from pipeline.errors import UserError

STATUS = "landslide:status"
REGIONS_DONE = "landslide:regions_done"
REGIONS_TOTAL = "landslide:regions_total"
FINGERPRINT = "landslide:fingerprint"
SKIPPED = "landslide:skipped_scenes"
SKIPPED_REASONS = "landslide:skipped_reasons"
PLANNED = "landslide:planned_scenes"
#: Temporary files zarr-python's local store leaves behind when killed mid-write.
_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")
VARIABLES = ("probability", "valid", "slope")


class StoreError(UserError):
    """An output store that cannot be written or resumed as asked."""


def proj_attrs(crs: CRS, transform: Affine, shape: tuple[int, int]) -> dict[str, Any]:
    """The Zarr ``proj:`` attributes of a grid (GeoZarr / STAC projection convention)."""
    epsg = crs.to_epsg()
    return {
        "proj:code": f"EPSG:{epsg}" if epsg else None,
        "proj:wkt2": crs.to_wkt(),
        "proj:transform": [transform.a, transform.b, transform.c, transform.d, transform.e, transform.f],
        "proj:shape": [int(shape[0]), int(shape[1])],
    }


def grid_coords(transform: Affine, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Pixel-centre coordinates ``y`` (decreasing) and ``x`` of a north-up grid."""
    rows, cols = shape
    x = transform.c + transform.a * (np.arange(cols) + 0.5)
    y = transform.f + transform.e * (np.arange(rows) + 0.5)
    return {"y": y, "x": x}


def template(
    crs: CRS, transform: Affine, shape: tuple[int, int], block: int, attrs: Mapping[str, Any]
) -> xr.Dataset:
    """A lazy, all-missing Dataset with the store's layout (written once with ``compute=False``)."""
    chunks = (block, block)
    coords = grid_coords(transform, shape)
    ds = xr.Dataset(
        {
            "probability": (("y", "x"), da.full(shape, np.nan, dtype=np.float32, chunks=chunks)),
            "valid": (("y", "x"), da.zeros(shape, dtype=np.uint8, chunks=chunks)),
            "slope": (("y", "x"), da.full(shape, np.nan, dtype=np.float32, chunks=chunks)),
        },
        coords=coords,
    )
    ds["probability"].attrs.update(long_name="landslide probability", units="1", valid_min=0.0, valid_max=1.0)
    ds["valid"].attrs.update(long_name="valid input (clear observation and DEM)", flag_values=[0, 1])
    ds["slope"].attrs.update(long_name="terrain slope", units="degree")
    ds["x"].attrs.update(standard_name="projection_x_coordinate", units="m", axis="X")
    ds["y"].attrs.update(standard_name="projection_y_coordinate", units="m", axis="Y")
    ds = ds.rio.write_crs(crs).rio.write_transform(transform)
    for name in VARIABLES:
        ds[name].attrs["grid_mapping"] = "spatial_ref"
    ds.attrs.update(proj_attrs(crs, transform, shape))
    ds.attrs.update(attrs)
    return ds


def encoding(zarr_format: int) -> dict[str, dict[str, Any]]:
    """Per-variable encoding: explicit fill values so missing chunks read as not valid."""
    enc: dict[str, dict[str, Any]] = {
        "probability": {"_FillValue": np.float32(np.nan), "dtype": "float32"},
        "valid": {"_FillValue": None, "dtype": "uint8"},
        "slope": {"_FillValue": np.float32(np.nan), "dtype": "float32"},
    }
    return enc


def read_attrs(path: Path) -> dict[str, Any] | None:
    """Group attributes of an existing Zarr store, or None if ``path`` is not a Zarr group."""
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError, KeyError, OSError):
        return None
    return dict(group.attrs)


def prepare(path: Path, ds: xr.Dataset, fingerprint: str, zarr_format: int, overwrite: bool) -> list[int]:
    """Create the store, or find what a previous run of the same sweep already wrote.

    Returns:
        Indices of regions already written (empty for a new store).

    Raises:
        StoreError: The path exists and holds a complete store (without ``overwrite``), a store
            of a different sweep, or something that is not a landslide store.
    """
    _remove_our_temporaries(path)
    old: Path | None = None
    if path.exists():
        attrs = read_attrs(path)
        if attrs is None or STATUS not in attrs:
            raise StoreError(
                f"{path} exists and is not a landslide store; choose another --out (nothing was changed)"
            )
        if overwrite:
            old = path.with_name(f".{path.name}.replaced-{uuid.uuid4().hex[:8]}")
            path.rename(old)
        elif attrs[STATUS] == "complete":
            raise StoreError(f"{path} already holds a complete sweep; pass --overwrite to replace it")
        elif attrs.get(FINGERPRINT) != fingerprint:
            raise StoreError(
                f"{path} holds a partial sweep with different parameters "
                f"({len(attrs.get(REGIONS_DONE, []))}/{attrs.get(REGIONS_TOTAL)} regions); "
                "re-run its original command to resume, or pass --overwrite"
            )
        else:
            _remove_partial_files(path)
            return sorted(int(i) for i in attrs.get(REGIONS_DONE, []))
    ds = ds.copy()
    ds.attrs.update({STATUS: "in_progress", FINGERPRINT: fingerprint, REGIONS_DONE: [], SKIPPED: []})
    tmp = path.with_name(f".{path.name}.creating-{uuid.uuid4().hex[:8]}")
    ds.to_zarr(
        str(tmp), mode="w", compute=False, zarr_format=zarr_format, consolidated=False,
        encoding=encoding(zarr_format),
    )  # fmt: skip
    tmp.rename(path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return []


def _remove_our_temporaries(path: Path) -> None:
    """Delete hidden siblings a killed :func:`prepare` left (``.NAME.creating-*``, ``.NAME.replaced-*``)."""
    if not path.parent.is_dir():
        return
    for pattern in (f".{path.name}.creating-*", f".{path.name}.replaced-*"):
        for leftover in path.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def _remove_partial_files(path: Path) -> None:
    """Delete zarr's ``*.<uuid>.partial`` temporaries a killed write left inside the store."""
    for f in path.rglob("*.partial"):
        if _PARTIAL.search(f.name) and f.is_file():
            f.unlink(missing_ok=True)


def progress(path: Path) -> dict[str, Any]:
    """What an in-progress store records: regions done and total, skipped scenes, planned scenes."""
    attrs = read_attrs(path) or {}
    return {
        "status": attrs.get(STATUS),
        "fingerprint": attrs.get(FINGERPRINT),
        "done": sorted(int(i) for i in attrs.get(REGIONS_DONE, [])),
        "total": attrs.get(REGIONS_TOTAL),
        "skipped": {str(k): str(v) for k, v in dict(attrs.get(SKIPPED_REASONS, {})).items()},
        "planned": list(attrs.get(PLANNED, [])),
    }


def mark_region_done(path: Path, region: int, skipped: Mapping[str, str] | None = None) -> None:
    """Record that a region's chunks are fully written (called after its write returns).

    Args:
        path: The store.
        region: Index of the region.
        skipped: Scenes left out so far (id -> reason), recorded with the region so that a
            resumed run leaves out the same scenes.
    """
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    attrs: dict[str, Any] = dict(group.attrs)
    update: dict[str, Any] = {REGIONS_DONE: sorted({*map(int, attrs.get(REGIONS_DONE, [])), region})}
    if skipped:
        reasons = {**dict(attrs.get(SKIPPED_REASONS, {})), **dict(skipped)}
        update[SKIPPED_REASONS] = reasons
        update[SKIPPED] = sorted(reasons)
    group.attrs.update(update)


def record_plan(path: Path, scene_ids: list[str]) -> None:
    """Record the scenes a new sweep uses, so a resumed run uses exactly the same ones."""
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    group.attrs[PLANNED] = list(scene_ids)


def finalise(path: Path, extra: Mapping[str, Any]) -> None:
    """Final metadata, consolidate, then the completion record, then consolidate again.

    A reader using consolidated metadata sees ``complete`` only once everything else is there.
    """
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    group.attrs.update({**dict(extra), STATUS: "in_progress"})
    zarr.consolidate_metadata(str(path))
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    group.attrs[STATUS] = "complete"
    zarr.consolidate_metadata(str(path))


def is_complete(path: Path) -> bool:
    """Whether ``path`` holds a complete sweep (as a consolidated-metadata reader sees it)."""
    attrs = read_attrs(path)
    return attrs is not None and attrs.get(STATUS) == "complete"


def open_result(path: str | Path, *, allow_partial: bool = False) -> xr.Dataset:
    """Open a result store with its CRS decoded (``decode_coords="all"``).

    Args:
        path: The store.
        allow_partial: Open an unfinished sweep too (its missing regions read as not valid).

    Raises:
        StoreError: If the path is not a landslide store, or the sweep is not complete and
            ``allow_partial`` is False.
    """
    path = Path(path)
    attrs = read_attrs(path)
    if attrs is None or STATUS not in attrs:
        raise StoreError(f"{path} is not a landslide store")
    complete = attrs[STATUS] == "complete"
    if not complete and not allow_partial:
        raise StoreError(
            f"{describe_progress(path)}: not a complete sweep; re-run the same 'landslide sweep' "
            "command to finish it"
        )
    return xr.open_zarr(str(path), decode_coords="all", consolidated=complete)


def describe_progress(path: Path) -> str:
    """One line on how far a store got."""
    attrs = read_attrs(path) or {}
    return (
        f"{path}: {attrs.get(STATUS, 'not a landslide store')}, "
        f"{len(attrs.get(REGIONS_DONE, []))}/{attrs.get(REGIONS_TOTAL, '?')} regions written"
    )


def dumps_attr(value: Any) -> Any:
    """Make a value JSON-safe for Zarr attributes (tuples -> lists, numpy -> Python)."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
