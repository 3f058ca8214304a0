"""The one atomic writer: write next to the target, then rename into place.

Everything the project writes as a whole (product files, a Zarr tree, JSON records, checkpoints)
goes through :func:`atomic_output` or :func:`write_atomic`, so a reader (or a kill) sees the
old file or the new one, never a torn one. The temporary sibling is hidden (``.NAME.tmp-XXXX``)
and keeps ``NAME``'s suffix, so a writer that looks at the extension (GDAL, pyogrio) still picks
the right driver; a writer that records its file name inside the file (a GeoJSON layer name)
should be given the final name (see :func:`atomic_output`'s ``keep_name``).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".tmp-"


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


def replace(tmp: Path, final: Path) -> None:
    """Move ``tmp`` (a file or a directory) onto ``final`` atomically.

    A file replaces ``final`` with one :func:`os.replace`. A directory replaces an existing one in
    two renames: the old one is moved aside first and removed after, so a reader sees either the
    old or the new tree, never a half-written one.
    """
    if tmp.is_dir():
        old = None
        if final.exists():
            old = temp_sibling(final)
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            remove(old)
        return
    if final.is_dir() and not final.is_symlink():
        remove(final)
    os.replace(tmp, final)


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
    tmp = temp_sibling(final, keep_name=keep_name)
    try:
        yield tmp
        replace(tmp, final)
    finally:
        remove(tmp)
        if keep_name:
            remove(tmp.parent)


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to ``path`` atomically; return the path."""
    final = Path(path)
    with atomic_output(final) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return final
