"""Atomic replacement of files and directory trees, including a kill between two renames, and the
durability of completion records."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.store import atomic
from pipeline.store.atomic import atomic_output, recover, write_atomic


def _tree(path: Path, text: str) -> None:
    path.mkdir(parents=True)
    (path / "a.txt").write_text(text)
    (path / "sub").mkdir()
    (path / "sub" / "b.txt").write_text(text)


def _kill_between_renames(final: Path, exchange: bool) -> subprocess.CompletedProcess[str]:
    """Replace ``final`` by a new tree in a child that SIGKILLs itself right after the first rename."""
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from pipeline.store import atomic
        if not {exchange}:
            atomic._exchange = lambda a, b: False
        real_replace, real_remove = os.replace, atomic.remove
        def replace(src, dst):
            real_replace(src, dst)
            os.kill(os.getpid(), signal.SIGKILL)
        def remove(path):
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace, atomic.remove = replace, remove
        final = Path({str(final)!r})
        with atomic.atomic_output(final) as tmp:
            tmp.mkdir()
            (tmp / "a.txt").write_text("new")
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-c", script]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return proc


def test_a_kill_between_the_two_renames_leaves_the_old_tree_recoverable(tmp_path: Path) -> None:
    """Where names cannot be exchanged: the old tree is moved aside under a name recover() knows."""
    final = tmp_path / "pyramid.zarr"
    _tree(final, "old")
    _kill_between_renames(final, exchange=False)
    assert not final.exists()  # killed after moving the old tree aside
    recover(final)
    assert (final / "a.txt").read_text() == "old" and (final / "sub" / "b.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir() if atomic.ASIDE_MARK in p.name] == []
    # The next write of the target recovers by itself, too.
    _kill_between_renames(final, exchange=False)
    with pytest.raises(RuntimeError), atomic_output(final):
        assert (final / "a.txt").read_text() == "old"
        raise RuntimeError("writer failed")
    assert (final / "a.txt").read_text() == "old"


@pytest.fixture
def replace_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    calls: list[tuple[str, str]] = []
    real = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append((str(src), str(dst)))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    yield calls


def test_a_directory_is_replaced_without_a_moment_without_target(
    tmp_path: Path, replace_calls: list[tuple[str, str]]
) -> None:
    if not atomic._exchange(tmp_path, tmp_path):  # probe: exchanging a name with itself
        pytest.skip("this file system cannot exchange names (renameat2 RENAME_EXCHANGE)")
    final = tmp_path / "pyramid.zarr"
    _tree(final, "old")
    with atomic_output(final) as tmp:
        _tree(tmp, "new")
    assert (final / "a.txt").read_text() == "new"
    assert not any(src == str(final) for src, _ in replace_calls)  # never renamed away
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pyramid.zarr"]
    # A kill right after the exchange: the new tree is in place, the old one a hidden temporary.
    _kill_between_renames(final, exchange=True)
    assert (final / "a.txt").read_text() == "new"


def _fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


def test_records_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fsynced(monkeypatch)
    write_atomic(tmp_path / "state.json", "{}")
    assert any(".state.json.tmp-" in p for p in seen)  # the file, before it takes its name
    assert str(tmp_path) in seen  # then the directory entry


def test_the_store_completion_record_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.store.schema import Outcome
    from pipeline.store.writer import finalise
    from tests.products.store_fixture import make_store

    store = make_store(tmp_path / "s.zarr", status="in_progress").path
    seen = _fsynced(monkeypatch)
    outcome = Outcome(scenes=(), skipped_scenes=(), skipped_reasons={}, warnings=(), chips_run=0,
                      completed_at="2026-01-01T00:00:00Z", area_km2=1.0, requested_area_km2=1.0,
                      valid_fraction=1.0, landslide_km2=0.0)  # fmt: skip
    finalise(store, outcome)
    records = [n for n in ("zarr.json", ".zattrs", ".zmetadata") if (store / n).is_file()]
    assert records and all(str(store / n) in seen for n in records)
    assert str(store) in seen
