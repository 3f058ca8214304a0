"""Smoke test of the bench code at tiny sizes: ``python -m bench.run --quick`` and its schema.

Timings are printed by the bench, never asserted here: only the presence and sanity of every
figure the bench promises is checked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.run import main

pytestmark = pytest.mark.slow

MODEL_KEYS = ("batch", "chips_per_s", "gflop_per_chip", "mfu")
END_TO_END_KEYS = ("km2_per_s", "chips_per_s", "overlap_factor", "end_to_end_over_model")
PEER_KEYS = ("chips_per_s", "km2_per_s", "overlap_factor")
VERSION_KEYS = ("torch", "dask", "odc-stac", "numpy", "python")
MACHINE_KEYS = ("cpu_model", "cores", "memory_gb")


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_quick_bench_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert main(["--quick", "--out-dir", str(out), "--host-kind", "test-host",
                 "--work-dir", str(tmp_path / "work")]) == 0  # fmt: skip
    result = json.loads((out / "test-host.json").read_text())
    assert (out / "test-host.md").read_text().startswith("# Bench: test-host")

    assert _positive(result["ceiling_gflops"])
    for name in ("unet", "hybrid", "clay"):
        for key in MODEL_KEYS:
            assert _positive(result["models"][name][key]), (name, key)
    for key in END_TO_END_KEYS:
        assert _positive(result["end_to_end"][key]), key
        assert _positive(result["end_to_end_models"]["hybrid"][key]), key
    assert result["end_to_end"]["overlap_factor"] >= 1.0
    for peer in ("loop", "map_blocks"):
        for key in PEER_KEYS:
            assert _positive(result["peers"][peer][key]), (peer, key)
        assert result["peers"][peer]["overlap_factor"] == 1.0
    for key in ("speedup_vs_loop", "speedup_vs_map_blocks", "memory_growth_16x"):
        assert _positive(result[key]), key
    for scale in ("x1", "x4", "x16"):
        assert _positive(result["scaling"][scale]["s_per_km2"])
        assert _positive(result["scaling"][scale]["peak_rss_mb"])
    for workers in ("1", "2"):
        assert _positive(result["workers"][workers]["chips_per_s"])
    assert result["command"].startswith("python -m bench.run")
    assert all(result["versions"][k] for k in VERSION_KEYS)
    assert all(result["machine"][k] for k in MACHINE_KEYS)
