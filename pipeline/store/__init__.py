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

from typing import TYPE_CHECKING

from pipeline.lazy import lazy_face
from pipeline.store.schema import COMPLETE as COMPLETE
from pipeline.store.schema import IN_PROGRESS as IN_PROGRESS
from pipeline.store.schema import KEYS as KEYS
from pipeline.store.schema import Keys as Keys
from pipeline.store.schema import Outcome as Outcome
from pipeline.store.schema import Progress as Progress
from pipeline.store.schema import RunMeta as RunMeta

if TYPE_CHECKING:
    from pipeline.store.atomic import atomic_output as atomic_output
    from pipeline.store.atomic import write_atomic as write_atomic
    from pipeline.store.lock import LockedError as LockedError
    from pipeline.store.lock import StoreLock as StoreLock
    from pipeline.store.reader import StoreError as StoreError
    from pipeline.store.reader import describe_progress as describe_progress
    from pipeline.store.reader import is_complete as is_complete
    from pipeline.store.reader import open_result as open_result
    from pipeline.store.reader import progress as progress
    from pipeline.store.reader import read_attrs as read_attrs
    from pipeline.store.reader import store_crs as store_crs
    from pipeline.store.reader import store_meta as store_meta
    from pipeline.store.reader import store_threshold as store_threshold
    from pipeline.store.reader import store_transform as store_transform
    from pipeline.store.writer import damaged_regions as damaged_regions
    from pipeline.store.writer import finalise as finalise
    from pipeline.store.writer import forget_regions as forget_regions
    from pipeline.store.writer import mark_region_done as mark_region_done
    from pipeline.store.writer import prepare as prepare
    from pipeline.store.writer import record_missing_checksums as record_missing_checksums
    from pipeline.store.writer import record_plan as record_plan
    from pipeline.store.writer import region_checksum as region_checksum
    from pipeline.store.writer import region_write as region_write
    from pipeline.store.writer import template as template

#: Kept for readers written against the first layout: the completion record's key.
STATUS = KEYS.status

#: The names above, each written once (see :mod:`pipeline.lazy`); the lazy ones load on first use.
__all__, __getattr__ = lazy_face(__name__, __file__, extra=("STATUS",))
