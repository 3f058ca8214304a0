"""The one reader of result stores, used by the sweep, the products, the flows and the tests.

:func:`open_result` opens a store lazily with its CRS decoded and refuses anything that is not
a complete landslide store, with one line saying what it is instead. The ``store_*`` helpers
read the grid and threshold out of an opened store.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import xarray as xr
from affine import Affine
from pyproj import CRS

from pipeline.errors import UserError
from pipeline.store.schema import COMPLETE, KEYS, Progress

VARIABLES = ("probability", "valid", "slope")


class StoreError(UserError):
    """An output store that cannot be read, written or resumed as asked."""


class CompleteStoreError(StoreError):
    """The output already holds a complete sweep (and ``--overwrite`` was not given).

    Attributes:
        same_sweep: The complete sweep is the one asked for (same parameters), so only its
            products may be missing.
    """

    def __init__(self, message: str, same_sweep: bool) -> None:
        super().__init__(message)
        self.same_sweep = same_sweep


def read_attrs(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Group attributes of an existing Zarr store, or None if ``path`` is not a Zarr group.

    Consolidated metadata is used when present (what xarray and the products see), else the
    group's own attributes (a store still being written has no consolidated metadata).
    """
    import zarr

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError, KeyError, OSError):
        return None
    return dict(group.attrs)


def progress(path: str | os.PathLike[str]) -> Progress:
    """The progress record of a store (empty when ``path`` holds none)."""
    return Progress.from_attrs(read_attrs(path) or {})


def is_complete(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a complete sweep (as a consolidated-metadata reader sees it)."""
    return progress(path).status == COMPLETE


def describe_progress(path: str | os.PathLike[str]) -> str:
    """One line on how far a store got."""
    prog = progress(path)
    return (
        f"{path}: {prog.status or 'not a landslide store'}, "
        f"{len(prog.done)}/{prog.total if prog.total is not None else '?'} regions written"
    )


def open_result(path: str | os.PathLike[str], *, allow_partial: bool = False) -> xr.Dataset:
    """Open a result store lazily, with the CRS and transform decoded (``decode_coords="all"``).

    Args:
        path: The store (a directory).
        allow_partial: Open an unfinished sweep too (its missing regions read as not valid).

    Returns:
        The dataset (dask-backed) with ``spatial_ref`` as a coordinate.

    Raises:
        StoreError: The path does not exist, is not a landslide store, lacks a variable, or the
            sweep is not complete and ``allow_partial`` is False.
    """
    p = Path(path)
    if not p.exists():
        raise StoreError(f"no result store at {p}")
    attrs = read_attrs(p)
    if attrs is None:
        raise StoreError(f"{p} is not a landslide result store (not a Zarr group)")
    if KEYS.status not in attrs:
        raise StoreError(f"{p} is not a landslide result store (no {KEYS.status} attribute)")
    complete = attrs[KEYS.status] == COMPLETE
    if not complete and not allow_partial:
        raise StoreError(
            f"{describe_progress(p)}: not a complete sweep; re-run the same 'landslide sweep' "
            "command to finish it"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ds = xr.open_zarr(str(p), decode_coords="all", consolidated=complete)
    missing = [v for v in VARIABLES if v not in ds.data_vars]
    if missing:
        raise StoreError(f"{p} is not a landslide result store: missing variable(s) {', '.join(missing)}")
    return ds


def store_crs(ds: xr.Dataset) -> CRS:
    """The store's CRS: ``proj:code`` if present, else the CF grid mapping."""
    code = ds.attrs.get("proj:code")
    if code:
        return CRS.from_user_input(code)
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    crs = ds.rio.crs
    if crs is None:
        raise StoreError("the result store has no CRS (neither proj:code nor spatial_ref)")
    return CRS.from_user_input(crs.to_wkt())


def store_transform(ds: xr.Dataset) -> Affine:
    """The store's affine transform: ``proj:transform`` if present, else from the coordinates."""
    t = ds.attrs.get("proj:transform")
    if t is not None and len(t) >= 6:
        return Affine(*[float(v) for v in t[:6]])
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    transform: Affine = ds.rio.transform(recalc=True)
    return transform


def store_threshold(ds: xr.Dataset, threshold: float | None = None) -> float:
    """The probability threshold to use: ``threshold`` if given, else the store's."""
    if threshold is None:
        value = ds.attrs.get(KEYS.threshold)
        if value is None:
            raise StoreError(f"the store records no {KEYS.threshold}; pass --threshold")
        threshold = float(value)
    if not 0.0 < threshold < 1.0:
        raise StoreError(f"threshold must be between 0 and 1, got {threshold}")
    return threshold


def store_meta(ds: xr.Dataset) -> dict[str, Any]:
    """The store attributes (plain JSON values)."""
    return dict(ds.attrs)
