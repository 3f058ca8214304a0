"""One writer per store: an advisory lock beside ``--out`` (``.NAME.lock``).

The lock is an ``flock`` on the lock file, so the kernel releases it when its holder dies,
however it dies (SIGKILL, power loss of a local machine): a lock left by a killed sweep is
*stale* by construction and the next sweep takes it over, saying whose it was. The file holds
the holder's pid, host and start time, so a second sweep started on the same ``--out`` while
the first runs is refused with one line naming the holder. A clean release deletes the file;
finding it there on acquiring means the previous holder was killed.

``flock`` works on local file systems and on NFS (Linux emulates it with POSIX locks).
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from pipeline.errors import UserError


class LockedError(UserError):
    """Another live process holds the store's lock."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a lock."""

    pid: int
    host: str
    started: str

    def describe(self) -> str:
        """``pid 123 on host, since 2026-...``."""
        return f"pid {self.pid} on {self.host}, since {self.started}"

    @classmethod
    def me(cls) -> Holder:
        """This process."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return cls(pid=os.getpid(), host=socket.gethostname(), started=now)

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder recorded in a lock file, or None when it is empty or unreadable."""
        try:
            d = json.loads(text)
            return cls(pid=int(d["pid"]), host=str(d["host"]), started=str(d["started"]))
        except (ValueError, KeyError, TypeError):
            return None


def lock_path(store: Path) -> Path:
    """The lock file of a store: a hidden sibling ``.NAME.lock``."""
    return store.with_name(f".{store.name}.lock")


class StoreLock:
    """Exclusive lock of one store path, as a context manager.

    Attributes:
        path: The lock file.
        stale: The holder of a lock left by a killed process that this one took over, or None.
    """

    def __init__(self, store: Path) -> None:
        self.store = Path(store)
        self.path = lock_path(self.store)
        self.stale: Holder | None = None
        self._fd: int | None = None

    def acquire(self) -> StoreLock:
        """Take the lock.

        Raises:
            LockedError: Another live process holds it (the message names it).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = Holder.parse(_read(self.path))
                who = holder.describe() if holder else "another process"
                raise LockedError(
                    f"{self.store} is being written by {who} "
                    f"(lock {self.path}); wait for it to finish, or choose another --out"
                ) from None
            # The file may have been released and deleted between open and flock: retry then.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            break
        self.stale = Holder.parse(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        me = json.dumps(asdict(Holder.me())).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, me, 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Delete the lock file and let go (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
