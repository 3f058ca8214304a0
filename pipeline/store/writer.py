"""The kill-safe write protocol of a result store (see docs/reliability.md).

1. **Creation.** The template is written into a hidden sibling (``.NAME.creating-XXXX``) and
   renamed into place, so ``out`` either does not exist or is a whole in-progress store. An
   empty directory at ``out`` counts as absent.
2. **Regions.** A region's chunks are written (zarr-python 3's local store writes every key to a
   temporary file and renames it, so a chunk is old or new, never torn); a region killed
   mid-write is not recorded, and a re-run recomputes and overwrites all of its chunks.
3. **Record.** Only after its write returns is the region added to ``landslide:regions_done``,
   together with the checksum of its chunk files (one attribute rewrite, again temp + rename).
   A resume recomputes every recorded region whose chunk files no longer match (truncated,
   overwritten, deleted).
4. **Completion.** Final metadata with ``in_progress``; consolidate; ``complete``; consolidate
   again. Readers that use consolidated metadata (xarray, zarr, products) see ``complete`` only
   after the last step; a kill between the steps leaves ``in_progress`` and a re-run with no
   region left to compute simply finalises. The files holding the record are fsynced.

One writer at a time: the sweep holds :class:`pipeline.store.lock.StoreLock` from before
:func:`prepare` to after :func:`finalise`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from affine import Affine
from pyproj import CRS

from pipeline.store import conventions
from pipeline.store.atomic import fsync_path
from pipeline.store.reader import CompleteStoreError, StoreError, read_attrs
from pipeline.store.schema import COMPLETE, IN_PROGRESS, KEYS, Outcome, Progress, RunMeta

#: Temporary files zarr-python's local store leaves behind when killed mid-write.
_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")
VARIABLES = ("probability", "valid", "slope")
#: Files that hold a store's completion record (group attributes, consolidated metadata), v2 and v3.
COMPLETION_FILES = ("zarr.json", ".zattrs", ".zmetadata")
Window = tuple[tuple[int, int], tuple[int, int]]


def template(crs: CRS, transform: Affine, shape: tuple[int, int], block: int, meta: RunMeta) -> xr.Dataset:
    """A lazy, all-missing Dataset with the store's layout (written once with ``compute=False``)."""
    chunks = (block, block)
    ds = xr.Dataset(
        {
            "probability": (("y", "x"), da.full(shape, np.nan, dtype=np.float32, chunks=chunks)),
            "valid": (("y", "x"), da.zeros(shape, dtype=np.uint8, chunks=chunks)),
            "slope": (("y", "x"), da.full(shape, np.nan, dtype=np.float32, chunks=chunks)),
        },
        coords=conventions.grid_coords(transform, shape),
    )
    ds = conventions.apply(ds, crs, transform)
    ds.attrs.update(meta.to_attrs())
    return ds


def encoding() -> dict[str, dict[str, Any]]:
    """Per-variable encoding: explicit fill values so missing chunks read as not valid."""
    return {
        "probability": {"_FillValue": np.float32(np.nan), "dtype": "float32"},
        "valid": {"_FillValue": None, "dtype": "uint8"},
        "slope": {"_FillValue": np.float32(np.nan), "dtype": "float32"},
    }


def prepare(path: Path, ds: xr.Dataset, fingerprint: str, zarr_format: int, overwrite: bool) -> Progress:
    """Create the store, or find what a previous run of the same sweep already wrote.

    Returns:
        The store's progress record (nothing done for a new store).

    Raises:
        StoreError: The path exists and holds a complete store (without ``overwrite``), a store
            of a different sweep, or something that is not a landslide store.
    """
    _remove_our_temporaries(path)
    old: Path | None = None
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()  # an empty directory is as good as nothing
    if path.exists():
        attrs = read_attrs(path)
        if attrs is None or KEYS.status not in attrs:
            raise StoreError(
                f"{path} exists and is not a landslide store; choose another --out (nothing was changed)"
            )
        prog = Progress.from_attrs(attrs)
        if overwrite:
            old = path.with_name(f".{path.name}.replaced-{uuid.uuid4().hex[:8]}")
            path.rename(old)
        elif prog.status == COMPLETE and prog.fingerprint == fingerprint:
            raise CompleteStoreError(
                f"{path} already holds this sweep, complete; add --export DIR to write its products, "
                "or pass --overwrite to compute it again",
                same_sweep=True,
            )
        elif prog.status == COMPLETE:
            raise CompleteStoreError(
                f"{path} already holds a complete sweep; pass --overwrite to replace it", same_sweep=False
            )
        elif prog.fingerprint != fingerprint:
            raise StoreError(
                f"{path} holds a partial sweep with different parameters "
                f"({len(prog.done)}/{prog.total} regions); re-run its original command to resume, "
                "or pass --overwrite"
            )
        else:
            _remove_partial_files(path)
            return prog
    ds = ds.copy()
    ds.attrs.update({KEYS.status: IN_PROGRESS, KEYS.fingerprint: fingerprint, KEYS.regions_done: [],
                     KEYS.region_checksums: {}, KEYS.skipped_scenes: []})  # fmt: skip
    tmp = path.with_name(f".{path.name}.creating-{uuid.uuid4().hex[:8]}")
    ds.to_zarr(
        str(tmp), mode="w", compute=False, zarr_format=zarr_format, consolidated=False, encoding=encoding()
    )
    tmp.rename(path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return Progress.from_attrs(read_attrs(path) or {})


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


def region_write(
    path: Path, probability: da.Array, valid: da.Array, slope: da.Array, window: Window, zarr_format: int
) -> Any:
    """The lazy write of one region's arrays into its window of the store (a Dask delayed)."""
    out = xr.Dataset(
        {"probability": (("y", "x"), probability), "valid": (("y", "x"), valid), "slope": (("y", "x"), slope)}
    )
    rows, cols = window
    return out.to_zarr(
        str(path), region={"y": slice(*rows), "x": slice(*cols)}, compute=False, consolidated=False,
        zarr_format=zarr_format,
    )  # fmt: skip


def region_checksum(path: Path, window: Window) -> str:
    """Checksum of the chunk files a region owns (absent chunks included), over every variable.

    Regions are made of whole chunks, so each chunk belongs to one region. The bytes hashed are
    those on disk (compressed), so checking costs a read of the region's compressed chunks.
    """
    group = zarr.open_group(str(path), mode="r", use_consolidated=False)
    h = hashlib.sha256()
    (r0, r1), (c0, c1) = window
    for name in VARIABLES:
        arr = group[name]
        assert isinstance(arr, zarr.Array)
        ch, cw = arr.chunks
        for i in range(r0 // ch, -(-r1 // ch)):
            for j in range(c0 // cw, -(-c1 // cw)):
                key = f"{name}/{arr.metadata.encode_chunk_key((i, j))}"
                try:
                    data = (path / key).read_bytes()
                except FileNotFoundError:
                    data = None
                h.update(f"{key}:{'-' if data is None else len(data)}:".encode())
                h.update(data or b"")
    return h.hexdigest()[:32]


def damaged_regions(path: Path, prog: Progress, windows: Mapping[int, Window]) -> list[int]:
    """Recorded regions whose chunk files no longer match their recorded checksum."""
    bad = []
    for index in prog.done:
        want = prog.checksums.get(index)
        if want is not None and index in windows and region_checksum(path, windows[index]) != want:
            bad.append(index)
    return bad


def _group(path: Path) -> zarr.Group:
    return zarr.open_group(str(path), mode="r+", use_consolidated=False)


def mark_region_done(
    path: Path, region: int, window: Window | None = None, skipped: Mapping[str, str] | None = None
) -> None:
    """Record that a region's chunks are fully written (called after its write returns).

    Args:
        path: The store.
        region: Index of the region.
        window: Its ``(rows, cols)``; given, the checksum of its chunk files is recorded too.
        skipped: Scenes left out so far (id -> reason), recorded with the region so that a
            resumed run leaves out the same scenes.
    """
    group = _group(path)
    prog = Progress.from_attrs(group.attrs)
    update: dict[str, Any] = {KEYS.regions_done: sorted({*prog.done, region})}
    if window is not None:
        sums = {str(k): v for k, v in prog.checksums.items()}
        update[KEYS.region_checksums] = {**sums, str(region): region_checksum(path, window)}
    if skipped:
        reasons = {**dict(prog.skipped), **dict(skipped)}
        update[KEYS.skipped_reasons] = reasons
        update[KEYS.skipped_scenes] = sorted(reasons)
    group.attrs.update(update)


def forget_regions(path: Path, regions: list[int]) -> None:
    """Take regions out of the record (their data is damaged; they will be recomputed)."""
    if not regions:
        return
    group = _group(path)
    prog = Progress.from_attrs(group.attrs)
    group.attrs.update({
        KEYS.regions_done: [i for i in prog.done if i not in regions],
        KEYS.region_checksums: {str(k): v for k, v in prog.checksums.items() if k not in regions},
    })  # fmt: skip


def record_missing_checksums(path: Path, windows: Mapping[int, Window]) -> None:
    """Record the checksum of recorded regions that have none (a kill between two attribute writes).

    Args:
        path: The store.
        windows: The windows of the regions to check, by index.
    """
    group = _group(path)
    prog = Progress.from_attrs(group.attrs)
    missing = [i for i in prog.done if i not in prog.checksums and i in windows]
    if missing:
        sums = {str(k): v for k, v in prog.checksums.items()}
        sums.update({str(i): region_checksum(path, windows[i]) for i in missing})
        group.attrs.update({KEYS.region_checksums: sums})


def record_plan(path: Path, scene_ids: list[str]) -> None:
    """Record the scenes a new sweep uses, so a resumed run uses exactly the same ones."""
    _group(path).attrs[KEYS.planned_scenes] = list(scene_ids)


def finalise(path: Path, outcome: Outcome) -> None:
    """Final metadata, consolidate, then the completion record, then consolidate again.

    A reader using consolidated metadata sees ``complete`` only once everything else is there.
    """
    with warnings.catch_warnings():  # zarr: "consolidated metadata is not part of the v3 spec"
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        _group(path).attrs.update({**outcome.to_attrs(), KEYS.status: IN_PROGRESS})
        zarr.consolidate_metadata(str(path))
        _group(path).attrs[KEYS.status] = COMPLETE
        zarr.consolidate_metadata(str(path))
    for name in COMPLETION_FILES:  # the completion record survives a power cut once reported
        if (path / name).is_file():
            fsync_path(path / name)
    fsync_path(path)
