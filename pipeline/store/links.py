"""Reuse an earlier store's chunks in a new one by hard links: no byte is copied.

A new map version of an event is a new store on the same lattice as the previous one
(:mod:`pipeline.event.mosaic`). The regions it does not recompute are taken over from the
previous store: each chunk file of those regions is **hard-linked** into the new store, so the
two stores share the file (same inode) and the new version costs only the chunks it writes.

This is safe because nothing rewrites a chunk file in place: zarr-python's local store writes
every key to a temporary file and renames it over the old name, which replaces the link in
the new store and leaves the earlier store's file as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import zarr

from pipeline.store.schema import KEYS, Progress
from pipeline.store.writer import VARIABLES, Window


def link_regions(base: Path, out: Path, windows: Iterable[Window], offset: tuple[int, int] = (0, 0)) -> int:
    """Hard-link the chunk files of some regions of ``base`` into the store ``out``.

    Args:
        base: A complete store on the same lattice and with the same chunks.
        out: The new store (its metadata written, the regions' chunks absent).
        windows: ``(rows, cols)`` windows of the regions in ``out``'s pixels (whole chunks).
        offset: ``(rows, cols)`` of ``base``'s north-west corner in ``out``'s pixels (whole
            chunks; zero when the grids are the same).

    Returns:
        How many chunk files were linked (a chunk ``base`` never wrote stays absent: missing).

    Raises:
        ValueError: The stores' chunks differ, or the offset is not whole chunks.
    """
    src = zarr.open_group(str(base), mode="r", use_consolidated=False)
    dst = zarr.open_group(str(out), mode="r", use_consolidated=False)
    wins = list(windows)
    linked = 0
    for name in VARIABLES:
        a, b = src[name], dst[name]
        assert isinstance(a, zarr.Array) and isinstance(b, zarr.Array)
        ch, cw = b.chunks
        if a.chunks != b.chunks or offset[0] % ch or offset[1] % cw:
            raise ValueError(
                f"{base} and {out} do not share chunks ({a.chunks} vs {b.chunks}, offset {offset})"
            )
        oi, oj = offset[0] // ch, offset[1] // cw
        gi, gj = -(-a.shape[0] // ch), -(-a.shape[1] // cw)
        for (r0, r1), (c0, c1) in wins:
            for i in range(r0 // ch, -(-r1 // ch)):
                for j in range(c0 // cw, -(-c1 // cw)):
                    si, sj = i - oi, j - oj
                    if not (0 <= si < gi and 0 <= sj < gj):
                        continue
                    source = base / name / a.metadata.encode_chunk_key((si, sj))
                    if not source.is_file():
                        continue
                    target = out / name / b.metadata.encode_chunk_key((i, j))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.unlink(missing_ok=True)
                    os.link(source, target)
                    linked += 1
    return linked


def mark_regions_reused(path: Path, regions: Iterable[int]) -> None:
    """Record regions taken over (linked or left empty) as done, in one attribute write.

    Their checksums are not recorded: the chunks are the earlier store's, checked there.
    """
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    prog = Progress.from_attrs(group.attrs)
    group.attrs.update({KEYS.regions_done: sorted({*prog.done, *regions})})
