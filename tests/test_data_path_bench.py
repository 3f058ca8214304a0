"""The data-path bench (bench/data_path.py) runs end to end on small scenes and reports a split."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from bench import data_path
from bench.data_path import STAGES, measure_data_path, stage_split, timed_stages
from bench.scene import MULTI_BASELINES, build_multi_scene


def test_quick_figure_has_rates_a_split_and_verdicts(tmp_path: Path) -> None:
    fig = measure_data_path(tmp_path, quick=True, repeats=1)
    out = json.loads(json.dumps(fig.as_dict()))  # JSON-ready
    for key, acquisitions in (("one", 1), ("four", 4), ("native", 1), ("native_four", 4)):
        run = out[key]
        assert run["acquisitions"] == acquisitions
        assert run["chips"] == pytest.approx(run["shape"][0] * run["shape"][1] / 128**2)
        assert run["chips_per_s_per_core"] == pytest.approx(run["chips"] / run["cpu_s"])
        assert set(run["split_s"]) == {*STAGES, "other"}
        assert sum(run["split_fraction"].values()) == pytest.approx(1.0)
        assert run["split_s"]["read_decode"] > 0 and run["split_s"]["composite"] > 0
    assert set(out["met"]) == {
        *(k for key in ("one", "four", "native", "native_four") for k in (key, f"decode_fraction_{key}")),
        "native_over_ten_one",
        "native_over_ten_four",
    }
    assert out["four"]["split_s"]["composite"] > out["one"]["split_s"]["composite"]
    # The PC-shaped scene upsamples 20 m / 60 m bands and warps the other zone's tile.
    for key in ("native", "native_four"):
        assert out[key]["split_s"]["upsample"] > 0 and out[key]["split_s"]["warp"] > 0
    assert set(out["native_over_ten"]) == {"one", "four"}


def test_stage_split_puts_time_outside_stage_functions_in_other() -> None:
    split = stage_split(lambda: sum(range(10_000)))
    assert all(v >= 0 for v in split.values())
    assert split["other"] > 0 and sum(v for k, v in split.items() if k != "other") == 0


def _outer_stage() -> None:
    time.sleep(0.01)
    _inner_stage()


def _inner_stage() -> None:
    time.sleep(0.1)


def test_a_stage_inside_another_counts_for_the_inner_one(monkeypatch: pytest.MonkeyPatch) -> None:
    stages = {"stack": (f"{__name__}:_outer_stage",), "composite": (f"{__name__}:_inner_stage",)}
    monkeypatch.setattr(data_path, "STAGES", stages)
    split = stage_split(lambda: _outer_stage())  # looked up when called: the timed one
    assert split["composite"] >= 0.1
    assert 0.01 <= split["stack"] < 0.1  # its own sleep, not the inner stage's too
    assert split["other"] < 0.05


def test_stage_functions_are_timed_where_they_are_imported_and_put_back() -> None:
    """``fused`` imported ``composite_block`` by name: its calls there count, and both come back."""
    import pipeline.cube.fused as fused
    import pipeline.cube.s2 as s2

    original = (fused.cube_block, s2.composite_block, fused.composite_block)
    dn = np.random.default_rng(0).integers(1, 5000, (3, 400, 400), dtype=np.uint16)
    clear = np.ones(dn.shape, dtype=bool)
    out = np.empty((400, 400), dtype=np.float32)
    with timed_stages() as split:
        assert fused.composite_block is not original[2] and s2.composite_block is not original[1]
        for _ in range(10):
            fused.composite_block(dn, clear, (0, 0, 0), out)
    assert (fused.cube_block, s2.composite_block, fused.composite_block) == original
    assert split["composite"] > 0 and split["stack"] == 0


def test_multi_scene_acquisitions_differ_as_described(tmp_path: Path) -> None:
    scene = build_multi_scene(tmp_path, 1, 1, acquisitions=4, level=1)
    items = json.loads(scene.catalog.read_text())["features"]
    s2 = [it for it in items if it["collection"] == "sentinel-2-l2a"]
    assert [it["properties"]["s2:processing_baseline"] for it in s2] == list(MULTI_BASELINES)
    assert len({it["properties"]["datetime"][:10] for it in s2}) == 4
    scl, b04 = [], []
    for k in range(4):
        with rasterio.open(tmp_path / f"a{k}" / "SCL.tif") as f:
            scl.append(f.read(1))
        with rasterio.open(tmp_path / f"a{k}" / "B04.tif") as f:
            b04.append(f.read(1).astype(np.float64))
    clouds = [np.isin(s, (8, 9, 10)) for s in scl]
    assert all(0.05 < c.mean() < 0.6 for c in clouds)
    assert not np.array_equal(clouds[0], clouds[1])  # shifted
    assert all((s == 3).any() for s in scl)  # shadows
    clear = ~np.isin(scl[0], (0, 3, 8, 9, 10)) & ~np.isin(scl[2], (0, 3, 8, 9, 10))
    # Baseline 04.00 adds 1000 DN; the jitter keeps the rest within a few percent.
    delta = b04[2][clear] - b04[0][clear]
    assert 900 < np.median(delta) < 1100


@pytest.mark.parametrize("settle", [True, False])
def test_each_timed_run_follows_a_run_of_its_own_scene(monkeypatch: pytest.MonkeyPatch, settle: bool) -> None:
    """With ``settle`` every timed direct run comes right after a direct run of the same scene."""
    calls: list[tuple[str, bool]] = []

    def recorder(catalog: Path, bbox: object, window: object = None) -> object:
        def run_once(chunk: int, direct_reads: bool = True) -> tuple[int, int, int]:
            calls.append((catalog.name, direct_reads))
            return (14, 8, 8)

        return run_once

    monkeypatch.setattr(data_path, "_scene_inputs", recorder)
    specs = [data_path.SceneSpec(name, Path(name), (0, 0, 1, 1), 1) for name in ("a", "b")]
    runs = data_path.measure_scenes(specs, chunk=8, repeats=2, settle=settle)
    assert set(runs) == {"a", "b"} and runs["a"].shape == (8, 8)
    warm, rounds = calls[:4], calls[4 : 4 + 2 * (3 if settle else 2) * 2]
    assert warm == [("a", True), ("a", False), ("b", True), ("b", False)]
    per_scene = [("a", True), ("a", True), ("a", False), ("b", True), ("b", True), ("b", False)]
    if not settle:
        per_scene = [("a", True), ("a", False), ("b", True), ("b", False)]
    assert rounds == per_scene * 2
