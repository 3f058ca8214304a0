"""Open COGs kept per thread for one cube's reads, so each is opened once per region, not per block.

Opening a COG is not free: GDAL parses its header and rasterio its CRS, ~0.8 ms per local file
(timed by hand on the bench scenes; a remote file adds a request unless GDAL's cache holds its
header), and a cube block reads every band of every item that meets it. A sweep cuts a region
into many blocks, so the same files are opened again and again. Here a thread keeps the files it
opened for a cube (a :class:`~pipeline.cube.direct.BandReads` plan) open, up to
:func:`max_open` (another cube's least recently used first out; past that, a cube's further
files are opened per read), none older than :data:`MAX_AGE_S` (a signed URL expires). A block
of a four-date Planetary Computer cube reads 144 files (4 days x 3 tiles x 12 assets).

Open files keep their decoded tiles in GDAL's block cache, which GDAL bounds at 5 % of the
machine's memory by default (1.2 GB on a 24 GB machine; by a hand measurement, 13 kept-open bench
files grew a process by 108 MB). The cube's reads therefore run with the cache bounded to
:data:`BLOCK_CACHE_MB` (:func:`read_env`); a tile shared by two blocks is then decoded once when
it is still in the cache.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Final

import rasterio
from rasterio.io import DatasetReader

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None  # type: ignore[assignment]

#: Files a thread keeps open at most (fewer where the process may open few files: :func:`max_open`).
MAX_OPEN: Final[int] = 256
#: One thread's kept files take at most this share of the process's file-descriptor limit.
FD_SHARE: Final[int] = 16
#: A file opened longer ago than this is opened again (signed URLs expire).
MAX_AGE_S: Final[float] = 600.0
#: GDAL's block cache while the cube reads (MB; process-wide while a read runs).
BLOCK_CACHE_MB: Final[int] = 64
#: The plan of reads made outside :func:`~pipeline.cube.direct.plan_bands`: their files are not kept.
NO_PLAN: Final[int] = 0

_local = threading.local()


def _open_files() -> OrderedDict[tuple[int, str], tuple[float, DatasetReader]]:
    files: OrderedDict[tuple[int, str], tuple[float, DatasetReader]] | None = getattr(_local, "files", None)
    if files is None:
        files = _local.files = OrderedDict()
    return files


def _keep(plan: int) -> bool:
    """Make room for one more file of ``plan``: another cube's least recently used goes first.

    Returns False when every kept file is ``plan``'s own: a block reads its files in the same
    order every time, and a least-recently-used rule would then close each file just before the
    next block needs it (a four-date PC cube reads 144), so the files opened first stay open
    and the rest are opened for each read.
    """
    files = _open_files()
    if len(files) < max_open():
        return True
    other = next((key for key in files if key[0] != plan), None)
    if other is None:
        return False
    _, src = files.pop(other)
    src.close()
    return True


def max_open() -> int:
    """Files one thread keeps open: :data:`MAX_OPEN`, or ``1 / FD_SHARE`` of the soft ``RLIMIT_NOFILE``.

    A 1024-descriptor limit (a common default) leaves 64 per thread, so sixteen threads keeping
    their files still leave the process room for its sockets and other files.
    """
    if resource is None:  # pragma: no cover - not POSIX
        return min(MAX_OPEN, 64)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_OPEN
    return max(1, min(MAX_OPEN, soft // FD_SHARE))


@contextmanager
def opened(plan: int, href: str, open_href: Callable[[], str]) -> Iterator[DatasetReader]:
    """The thread's open file of ``href`` for cube ``plan``, opened (``open_href()``, signed) if needed.

    Kept open for the cube's next reads (:func:`max_open`, :data:`MAX_AGE_S`); for
    :data:`NO_PLAN`, or when the thread already keeps :func:`max_open` of this cube's files, it
    is opened for this read only.

    Raises:
        rasterio.errors.RasterioError: When it cannot be opened.
    """
    files = _open_files()
    key = (plan, href)
    found = files.get(key)
    now = time.monotonic()
    if found is not None and now - found[0] <= MAX_AGE_S and not found[1].closed:
        files.move_to_end(key)
        yield found[1]
        return
    if found is not None:
        discard(plan, href)
    if plan == NO_PLAN or not _keep(plan):
        with rasterio.open(open_href(), "r", sharing=False) as src:
            yield src
        return
    src = rasterio.open(open_href(), "r", sharing=False)
    files[key] = (now, src)
    yield src


def discard(plan: int, href: str) -> None:
    """Close and forget the thread's file of ``href`` (after a failed read: the next read reopens it)."""
    found = _open_files().pop((plan, href), None)
    if found is not None:
        found[1].close()


def close_all() -> None:
    """Close every file this thread keeps open."""
    files = _open_files()
    while files:
        _, (_, src) = files.popitem()
        src.close()


def open_count() -> int:
    """Files this thread keeps open."""
    return len(_open_files())


def read_env(gdal_options: Mapping[str, str]) -> rasterio.Env:
    """The GDAL environment of the cube's reads: ``gdal_options`` and the bounded block cache."""
    options: dict[str, str | int] = dict(gdal_options)
    options["GDAL_CACHEMAX"] = BLOCK_CACHE_MB  # rasterio wants an int here
    return rasterio.Env(**options)
