"""Reading the result store for the product writers, and writing outputs atomically.

The store layout is the contract in ``docs/architecture.md`` (section "Result store"). This module
only reads it; ``pipeline/store.py`` owns writing it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from pyproj import CRS

from pipeline.errors import UserError
from pipeline.store import STATUS

#: The attribute carrying the completion record, and its value once a sweep has finished.
STATUS_ATTR = STATUS  # the completion record of pipeline.store
COMPLETE = "complete"


def open_store(path: str | os.PathLike[str], *, require_complete: bool = True) -> xr.Dataset:
    """Open a result store lazily, with the CRS and transform decoded.

    Args:
        path: The Zarr store (a directory).
        require_complete: Refuse a store whose ``landslide:status`` is not ``complete``.

    Returns:
        The dataset (dask-backed) with ``spatial_ref`` as a coordinate.

    Raises:
        UserError: The path is not a readable result store, or the sweep has not completed.

    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"no result store at {p}")
    try:
        ds: xr.Dataset = xr.open_zarr(p, decode_coords="all")
    except Exception as exc:  # zarr raises several types for "not a store"
        raise UserError(f"{p} is not a readable Zarr result store ({type(exc).__name__})") from exc
    missing = [v for v in ("probability", "valid", "slope") if v not in ds.data_vars]
    if missing:
        raise UserError(f"{p} is not a result store: missing variable(s) {', '.join(missing)}")
    status = ds.attrs.get(STATUS_ATTR)
    if require_complete and status != COMPLETE:
        raise UserError(
            f"{p} is not a complete sweep ({STATUS_ATTR} = {status!r}); finish or resume the sweep first"
        )
    return ds


def store_crs(ds: xr.Dataset) -> CRS:
    """Return the store's CRS: ``proj:code`` if present, else the CF grid mapping."""
    code = ds.attrs.get("proj:code")
    if code:
        return CRS.from_user_input(code)
    crs = ds.rio.crs
    if crs is None:
        raise UserError("the result store has no CRS (neither proj:code nor spatial_ref)")
    return CRS.from_user_input(crs.to_wkt())


def store_transform(ds: xr.Dataset) -> Affine:
    """Return the store's affine transform: ``proj:transform`` if present, else from the coords."""
    t = ds.attrs.get("proj:transform")
    if t is not None and len(t) >= 6:
        return Affine(*[float(v) for v in t[:6]])
    transform: Affine = ds.rio.transform(recalc=True)
    return transform


def store_threshold(ds: xr.Dataset, threshold: float | None = None) -> float:
    """Return the probability threshold to use: ``threshold`` if given, else the store's."""
    if threshold is None:
        value = ds.attrs.get("landslide:threshold")
        if value is None:
            raise UserError("the store records no landslide:threshold; pass --threshold")
        threshold = float(value)
    if not 0.0 < threshold < 1.0:
        raise UserError(f"threshold must be between 0 and 1, got {threshold}")
    return threshold


def store_meta(ds: xr.Dataset) -> dict[str, Any]:
    """Return the store attributes (plain JSON values)."""
    return dict(ds.attrs)


def _temp_sibling(path: Path) -> Path:
    # keep the suffix so drivers that look at it still see the right one
    return path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it into place, else remove it.

    Files are moved with :func:`os.replace` (atomic on one filesystem). A directory (a Zarr
    store) replaces an existing one in two renames: the old one is moved aside first and removed
    after, so a reader sees either the old or the new tree, never a half-written one.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(final)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if tmp.is_dir():
        old = None
        if final.exists():
            old = _temp_sibling(final)
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            _remove(old)
    else:
        if final.is_dir():
            _remove(final)
        os.replace(tmp, final)
