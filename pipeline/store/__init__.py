"""The result store: one package for its schema, conventions, write protocol, lock and reader.

* :mod:`~pipeline.store.schema`: the names and types of the ``landslide:*`` attributes (light);
* :mod:`~pipeline.store.conventions`: CF grid mapping, ``Conventions``, ``proj:`` attributes;
* :mod:`~pipeline.store.writer`: the kill-safe write protocol (creation, region writes, region
  checksums, completion record);
* :mod:`~pipeline.store.lock`: one writer per store;
* :mod:`~pipeline.store.reader`: the one reader (:func:`open_result` and the ``store_*`` helpers);
* :mod:`~pipeline.store.atomic`: the one atomic temp-and-rename writer for everything else.

Layout (documented for consumers in docs/products.md): dims ``(y, x)``, 1-D coordinates of
pixel centres in the sweep's UTM CRS (metres, ``y`` decreasing); ``probability`` float32 in
[0, 1], NaN where not valid; ``valid`` uint8 flags; ``slope`` float32 degrees; chunks of the
sweep's block size; a CF ``spatial_ref`` grid mapping; ``proj:*`` and ``landslide:*`` group
attributes. Zarr format 2 is the default: GDAL 3.10 reads v2 arrays but not zarr-python 3's v3.

Names are loaded on first use, so importing this package (or its schema) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.store.schema import COMPLETE, IN_PROGRESS, KEYS, Keys, Outcome, Progress, RunMeta

if TYPE_CHECKING:
    from pipeline.store.atomic import atomic_output, write_atomic
    from pipeline.store.lock import LockedError, StoreLock
    from pipeline.store.reader import (
        StoreError,
        describe_progress,
        is_complete,
        open_result,
        progress,
        read_attrs,
        store_crs,
        store_meta,
        store_threshold,
        store_transform,
    )
    from pipeline.store.writer import (
        damaged_regions,
        finalise,
        forget_regions,
        mark_region_done,
        prepare,
        record_missing_checksums,
        record_plan,
        region_checksum,
        region_write,
        template,
    )

_LAZY = {
    "atomic_output": "atomic", "write_atomic": "atomic",
    "LockedError": "lock", "StoreLock": "lock",
    "StoreError": "reader", "describe_progress": "reader", "is_complete": "reader",
    "open_result": "reader", "progress": "reader", "read_attrs": "reader", "store_crs": "reader",
    "store_meta": "reader", "store_threshold": "reader", "store_transform": "reader",
    "damaged_regions": "writer", "finalise": "writer", "forget_regions": "writer",
    "record_missing_checksums": "writer",
    "mark_region_done": "writer", "prepare": "writer", "record_plan": "writer",
    "region_checksum": "writer", "region_write": "writer", "template": "writer",
}  # fmt: skip

#: Kept for readers written against the first layout: the completion record's key.
STATUS = KEYS.status

__all__ = [
    "COMPLETE",
    "IN_PROGRESS",
    "KEYS",
    "STATUS",
    "Keys",
    "LockedError",
    "Outcome",
    "Progress",
    "RunMeta",
    "StoreError",
    "StoreLock",
    "atomic_output",
    "damaged_regions",
    "describe_progress",
    "finalise",
    "forget_regions",
    "is_complete",
    "mark_region_done",
    "open_result",
    "prepare",
    "progress",
    "read_attrs",
    "record_missing_checksums",
    "record_plan",
    "region_checksum",
    "region_write",
    "store_crs",
    "store_meta",
    "store_threshold",
    "store_transform",
    "template",
    "write_atomic",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"pipeline.store.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'pipeline.store' has no attribute {name!r}")
