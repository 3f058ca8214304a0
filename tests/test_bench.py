"""The bench: a quick run writes every figure and target; README and docs show the committed result.

Timings are printed by the bench, never asserted here: only the presence and sanity of every
figure the bench promises is checked.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from bench import report
from bench.run import main
from bench.targets import TARGETS

MODEL_KEYS = ("batch", "chips_per_s", "gflop_per_chip", "mfu")
END_TO_END_KEYS = ("km2_per_s", "chips_per_s", "overlap_factor", "end_to_end_over_model")
PEER_KEYS = ("chips_per_s", "km2_per_s", "overlap_factor")
VERSION_KEYS = ("torch", "dask", "odc-stac", "numpy", "python")
MACHINE_KEYS = ("cpu_model", "cores", "memory_gb")


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.slow
@pytest.mark.timeout(1800)  # every phase with tiny models: ~3-4 min quiet, much longer on a shared machine
def test_quick_bench_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert main(["--quick", "--out-dir", str(out), "--host-kind", "test-host", "--skip-map-blocks",
                 "--work-dir", str(tmp_path / "work")]) == 0  # fmt: skip
    result = json.loads((out / "test-host.json").read_text())
    assert (out / "test-host.md").read_text().startswith("# Bench: test-host")

    assert _positive(result["ceiling_gflops"])
    for name in ("unet", "hybrid", "clay"):
        for key in MODEL_KEYS:
            assert _positive(result["models"][name][key]), (name, key)
    assert result["models"]["unet"]["tile"] > 128 and _positive(result["models"]["unet"]["tile_chips_per_s"])
    for key in END_TO_END_KEYS:
        assert _positive(result["end_to_end"][key]), key
        assert _positive(result["end_to_end_models"]["hybrid"][key]), key
    assert result["end_to_end"]["overlap_factor"] >= 1.0
    for key in PEER_KEYS:
        assert _positive(result["peers"]["loop"][key]), key
    assert _positive(result["speedup_vs_loop"])
    wo = result["worker_overhead"]
    assert all(_positive(v) for v in wo["chips_per_s"].values())
    assert wo["worker_malloc_trim_threshold"] == {"dask_default": "65536", "landslide": None}
    assert wo["client_env_after"] is None  # neither cluster left its malloc setting in this process
    assert _positive(result["memory"]["growth"]) and len(result["memory"]["runs"]) == 3
    assert [t["id"] for t in result["targets"]] == list(TARGETS)
    for t in result["targets"]:
        assert t["met"] in (True, False, None) and (t["met"] is not False or t["cause"]), t
    assert result["command"].startswith("python -m bench.run")
    assert all(result["versions"][k] for k in VERSION_KEYS)
    assert all(result["machine"][k] for k in MACHINE_KEYS)
    # The table renders, and the docs block can be made from it.
    assert report.docs_block(result).startswith(report.BEGIN)


def test_readme_and_performance_doc_show_the_committed_bench_result() -> None:
    """The figures in README.md and docs/performance.md are exactly the committed result's."""
    want = report.docs_block(json.loads(report.DOC_RESULT.read_text()))
    for path in report.DOC_FILES:
        assert report.current_block(path.read_text()) == want, (
            f"{path.name} is out of date: run python -m bench.report --update-docs"
        )


def test_replace_block_keeps_the_text_around_it() -> None:
    text = f"before\n{report.BEGIN}\nold\n{report.END}\nafter\n"
    assert report.replace_block(text, "NEW") == "before\nNEW\nafter\n"
    with pytest.raises(ValueError):
        report.replace_block("no block here", "NEW")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_gpu_script_dry_run(tmp_path: Path) -> None:
    """``bench/gpu`` on the CPU with tiny sizes: the GPU run's code path cannot rot."""
    from bench.gpu.measure import main as gpu_main

    assert gpu_main(["--dry-run", "--out", str(tmp_path), "--host-kind", "dry"]) == 0
    result = json.loads((tmp_path / "dry.json").read_text())
    assert result["dry_run"] and result["device"] == "cpu"
    for name in ("unet", "hybrid"):
        m = result["models"][name]
        assert {k.split("/")[0] for k in m["raw"]} == {"fp32", "bf16"}
        assert _positive(m["best"]["chips_per_s"]) and _positive(m["production"]["chips_per_s"])
        e = result["end_to_end"][name]
        assert _positive(e["chips_per_s"]) and e["overlap_factor"] >= 1.0
    assert _positive(result["data_path"]["chips_per_s_per_core"])


def test_gpu_wheel_list_names_what_the_gpu_image_lacks() -> None:
    """Every package the sweep imports and the GPU image does not hold is in the wheel list."""
    wanted = {"dask", "distributed", "dask-cuda", "odc-stac", "odc-geo", "rasterio", "zarr", "pyproj",
              "shapely", "rioxarray", "pystac", "tornado", "zict", "tblib", "numcodecs"}  # fmt: skip
    names = set()
    for line in (
        (Path(__file__).resolve().parents[1] / "bench" / "gpu" / "wheels.txt").read_text().splitlines()
    ):
        line = line.split("#")[0].strip()
        if line:
            names.add(line.split("==")[0].lower())
    assert wanted <= names


def test_peak_rss_records_each_process_at_the_peak() -> None:
    import numpy as np

    from bench.memory import PeakTreeRSS

    with PeakTreeRSS(interval_s=0.01) as rss:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB touched
        time.sleep(0.05)
        del block
    assert "main" in rss.at_peak and sum(rss.at_peak.values()) == rss.peak_bytes
    assert rss.at_peak_mb["main"] >= 64
