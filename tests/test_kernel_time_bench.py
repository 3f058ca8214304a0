"""The compiled loops' bench (bench/kernel_time.py) times every loop the PC-shaped data path runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench import kernel_time
from pipeline.cube import kernels


def test_every_loop_of_the_pc_path_is_timed_and_the_layouts_agree(tmp_path: Path) -> None:
    before = kernel_time._loops()
    out = tmp_path / "kt.json"
    assert kernel_time.main(["--work-dir", str(tmp_path), "--size", "256", "320", "--repeats", "1",
                             "--json", str(out)]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert kernel_time._loops() == before  # the loops are put back
    loops = result["loops_s"]
    for name in ("reproject_bilinear", "upsample_bilinear", "sample_bilinear", "cast_scaled", "fill_empty"):
        assert loops[name] > 0, name
    assert sum(loops.values()) < result["cpu_s"]
    assert set(result["layouts"]) == set(kernel_time.OLD_LAYOUTS)
    for d in result["layouts"].values():
        assert d["calls"] > 0 and d["contiguous_s"] > 0 and d["old_layout_s"] > 0


def test_old_layouts_are_the_same_values_not_contiguous() -> None:
    rng = np.random.default_rng(0)
    args: list[object] = [np.asarray(rng.random((4, 9))) for _ in range(15)]
    old = kernel_time._old_layout("reproject_bilinear", args)
    for i in (0, 1, 14):
        a = old[i]
        assert isinstance(a, np.ndarray) and not a.flags.c_contiguous and np.array_equal(a, args[i])
    assert all(old[i] is args[i] for i in range(2, 14))
    with kernels.contiguous(old[14]) as work:
        assert work is not old[14] and work.flags.c_contiguous and np.array_equal(work, old[14])
        work[...] = 0
    assert not old[14].any()  # written back
    with kernels.contiguous(args[14]) as work:
        assert work is args[14]
