"""Bench measurements in a child process: the numbers come back, the memory stays there."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import psutil
import pytest

from bench.checkpoints import bench_config
from bench.child import in_child
from bench.e2e import Timing, time_model_in_child
from bench.model_speed import ModelSpeed

#: What the child allocates and touches (MiB): far above the parent's noise.
CHILD_MB = 512


def touch_and_sum(mib: int) -> float:
    """Allocate and fill ``mib`` MiB in this process, keep it alive, return its sum."""
    block = np.ones(mib * 2**20 // 8)
    return float(block.sum())


def fail(message: str) -> None:
    """Raise in the child."""
    raise ValueError(message)


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_in_child_returns_the_figure_and_keeps_the_memory_there() -> None:
    before = _rss_mb()
    # children of earlier tests in this session (a cluster, a browser) are not this call's
    earlier = {c.pid for c in psutil.Process().children(recursive=True)}
    assert in_child(touch_and_sum, CHILD_MB) == CHILD_MB * 2**20 / 8
    # the same call in this process would add CHILD_MB; run in the child it adds (almost) nothing
    assert _rss_mb() - before < CHILD_MB / 8
    # the child has exited (multiprocessing's small resource tracker may stay)
    new = [c for c in psutil.Process().children(recursive=True) if c.pid not in earlier]
    assert all(_rss_or_zero(c) < CHILD_MB * 2**20 / 4 for c in new)


def _rss_or_zero(proc: psutil.Process) -> int:
    """Resident bytes of ``proc``, 0 once it has exited."""
    try:
        return int(proc.memory_info().rss)
    except psutil.NoSuchProcess:
        return 0


def test_in_child_raises_the_childs_exception() -> None:
    with pytest.raises(ValueError, match="bad input"):
        in_child(fail, "bad input")


def test_in_child_sets_torch_threads() -> None:
    assert in_child(_torch_threads, torch_threads=1) == 1


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def test_model_timed_in_child_writes_its_checkpoint_and_returns_its_speed(tmp_path: Path) -> None:
    ckpt = tmp_path / "unet.safetensors"
    before = _rss_mb()
    timing = Timing(ceiling_gflops=10.0, batches=(1, 2), min_s=0.0, max_iters=1, threads=1)
    speed = time_model_in_child("unet", bench_config("unet", True), ckpt, timing, tile=256)
    assert isinstance(speed, ModelSpeed) and ckpt.stat().st_size > 0
    assert speed.batch in (1, 2) and set(speed.by_batch) == {1, 2}
    assert all(math.isfinite(v) and v > 0 for v in (speed.chips_per_s, speed.tile_chips_per_s, speed.mfu))
    assert speed.tile == 256 and speed.mfu == pytest.approx(speed.chips_per_s * speed.gflop_per_chip / 10.0)
    assert _rss_mb() - before < 64  # neither the model nor its graph came back with the figures
