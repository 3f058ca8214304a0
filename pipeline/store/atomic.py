"""The one atomic writer: write next to the target, then rename into place.

Everything the project writes as a whole (product files, a Zarr tree, JSON records, checkpoints)
goes through :func:`atomic_output` or :func:`write_atomic`, so a reader (or a kill) sees the
old file or the new one, never a torn one. The temporary sibling is hidden (``.NAME.tmp-XXXX``)
and keeps ``NAME``'s suffix, so a writer that looks at the extension (GDAL, pyogrio) still picks
the right driver; a writer that records its file name inside the file (a GeoJSON layer name)
should be given the final name (see :func:`atomic_output`'s ``keep_name``).

A directory replaces an existing one with one ``renameat2(RENAME_EXCHANGE)`` where the kernel and
file system offer it (Linux): the two trees swap names in one step, so there is no moment without
a target. Elsewhere the old tree is first renamed aside to ``.NAME.aside-XXXXXXXX``; a kill
between the two renames leaves the target absent and the old tree there, and :func:`recover`
(which every :func:`atomic_output` of that target runs first, and a reader may run) puts it back.
Small records written with :func:`write_atomic` are fsynced (file, then its directory), so a
completion record survives a power cut once it is in place.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".tmp-"
#: Mark of an old directory moved aside while a new one takes its name (see :func:`recover`).
ASIDE_MARK = ".aside-"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def temp_sibling(path: Path, *, keep_name: bool = False) -> Path:
    """A fresh hidden path beside ``path`` (``.NAME.tmp-XXXXXXXX``, or ``.tmp-XXXXXXXX/NAME``).

    Args:
        path: The final path.
        keep_name: Return ``NAME`` inside a fresh hidden directory instead (created here), for
            writers that record the file name in the file.
    """
    tag = uuid.uuid4().hex[:8]
    if keep_name:
        folder = path.with_name(f"{TEMP_MARK}{tag}")
        folder.mkdir(parents=True)
        return folder / path.name
    return path.with_name(f".{path.name}{TEMP_MARK}{tag}{path.suffix}")


def remove(path: Path) -> None:
    """Delete a file, link or directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names of ``a`` and ``b`` atomically (``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not glibc >= 2.28 / not Linux
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False  # the file system cannot exchange: rename aside instead
    raise OSError(err, os.strerror(err), str(b))


def _asides(path: Path) -> list[Path]:
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f".{path.name}{ASIDE_MARK}*"), key=lambda p: p.stat().st_mtime_ns)


def recover(path: str | os.PathLike[str]) -> None:
    """Finish a directory replacement a kill interrupted between its two renames.

    A target that is missing while an old tree lies aside (``.NAME.aside-XXXXXXXX``) gets the
    newest such tree back; trees aside of a target that exists are removed.
    """
    final = Path(path)
    asides = _asides(final)
    if asides and not final.exists():
        os.replace(asides.pop(), final)
    for old in asides:
        remove(old)


def replace(tmp: Path, final: Path) -> None:
    """Move ``tmp`` (a file or a directory) onto ``final`` atomically.

    A file replaces ``final`` with one :func:`os.replace`. A directory replaces an existing one
    by exchanging the two names in one step where the system allows it, else by moving the old
    one aside first (recoverable by :func:`recover`); the old tree is removed after. A reader
    sees the old or the new tree, never a half-written one.
    """
    if tmp.is_dir():
        recover(final)
        if final.exists() and not final.is_symlink() and _exchange(tmp, final):
            remove(tmp)  # now the old tree
            return
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}{ASIDE_MARK}{uuid.uuid4().hex[:8]}")
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            remove(old)
        return
    if final.is_dir() and not final.is_symlink():
        remove(final)
    os.replace(tmp, final)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, keep_name: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place, else remove it.

    Args:
        path: The final file or directory.
        keep_name: The temporary path has ``path``'s own name (inside a hidden directory), for
            writers that store the file name in the file (a GeoJSON layer, ...).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover(final)
    tmp = temp_sibling(final, keep_name=keep_name)
    try:
        yield tmp
        replace(tmp, final)
    finally:
        remove(tmp)
        if keep_name:
            remove(tmp.parent)


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to ``path`` atomically and durably (fsynced); return the path."""
    final = Path(path)
    with atomic_output(final) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
    fsync_path(final.parent)
    return final
