"""Bad input: every case ends in one ``landslide: error:`` line, a non-zero status and no store.

These fail before any cluster starts, so they call the CLI entry point in-process (one case also
as a subprocess, to see exactly what a shell sees). Planning tests check that a continent-sized
area is cut into regions without building any graph, and that one region's graph is bounded.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from pipeline import catalog, cube, geo
from pipeline.cli import main
from pipeline.demo import scene
from pipeline.errors import UserError
from pipeline.models.ref import ModelRef
from pipeline.store import RunMeta, mark_region_done, open_result, prepare, template
from pipeline.sweep import REGION_MARGIN, Region, area_geobox, plan_regions, region_probability, window_geobox
from pipeline.tiling import ChipGrid


def _args(out: Path, ckpt: Path, catalog_path: Path = scene.DEMO_CATALOG, *extra: str) -> list[str]:
    return [
        "sweep", "--bbox", *map(str, scene.DEMO_BBOX), "--start", str(scene.DEMO_START),
        "--end", str(scene.DEMO_END), "--catalog", str(catalog_path), "--checkpoint", str(ckpt),
        "--out", str(out), "--no-progress", "--device", "cpu", *extra,
    ]  # fmt: skip


def _one_line_error(capsys: pytest.CaptureFixture[str], args: list[str], pattern: str) -> str:
    code = main(args)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0 and len(lines) == 1, err
    assert lines[0].startswith("landslide: error:"), lines[0]
    import re

    assert re.search(pattern, lines[0], re.IGNORECASE), lines[0]
    return lines[0]


def _catalog_with(tmp_path: Path, edit: object) -> Path:
    """The demo catalog, absolute hrefs, with ``edit(s2_item_dict)`` applied."""
    doc = json.loads(scene.DEMO_CATALOG.read_text())
    for f in doc["features"]:
        for a in f["assets"].values():
            a["href"] = str((scene.DEMO_DIR / a["href"]).resolve())
    s2 = next(f for f in doc["features"] if f["collection"] == scene.DEMO_S2_COLLECTION)
    edit(s2)  # type: ignore[operator]
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(doc))
    return path


def _write_variant(src: Path, dest: Path, **changes: object) -> Path:
    """A copy of a COG with another dtype and/or CRS (same pixels)."""
    with rasterio.open(src) as s:
        profile, data = s.profile, s.read(1)
    profile.update(changes)
    with rasterio.open(dest, "w", **profile) as d:
        d.write(data.astype(profile["dtype"]), 1)
    return dest


ITEM_EDITS = [
    ("malformed", lambda it: it.pop("properties"), r"malformed STAC item .*properties"),
    ("missing band", lambda it: it["assets"].pop("B04"), r"asset 'B04' missing"),
    ("declared CRS", lambda it: it["properties"].update({"proj:epsg": 4326}), r"unexpected CRS EPSG:4326"),
    (
        "declared dtype",
        lambda it: it["assets"]["B03"]["raster:bands"][0].update(data_type="float64"),
        r"unexpected data type 'float64'",
    ),
]


@pytest.mark.parametrize(("case", "edit", "pattern"), ITEM_EDITS, ids=[c[0] for c in ITEM_EDITS])
def test_bad_items(
    tmp_path: Path, tiny_unet_checkpoint: Path, capsys: pytest.CaptureFixture[str],
    case: str, edit: object, pattern: str,
) -> None:  # fmt: skip
    out = tmp_path / "out.zarr"
    _one_line_error(capsys, _args(out, tiny_unet_checkpoint, _catalog_with(tmp_path, edit)), pattern)
    assert not out.exists()


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [({"dtype": "float32"}, r"B04' file has unexpected data type 'float32'"),
     ({"crs": "EPSG:3857"}, r"B04' file has unexpected CRS EPSG:3857")],
    ids=["file dtype", "file CRS"],
)  # fmt: skip
def test_a_cog_whose_file_differs_from_its_item_is_refused_in_preflight(
    tmp_path: Path, tiny_unet_checkpoint: Path, capsys: pytest.CaptureFixture[str],
    changes: dict[str, object], pattern: str,
) -> None:  # fmt: skip
    variant = _write_variant(scene.DEMO_DIR / "B04.tif", tmp_path / "B04-variant.tif", **changes)
    cat = _catalog_with(tmp_path, lambda it: it["assets"]["B04"].update(href=str(variant)))
    out = tmp_path / "out.zarr"
    _one_line_error(capsys, _args(out, tiny_unet_checkpoint, cat), pattern)
    assert not out.exists()


def _pickle_checkpoint(path: Path) -> Path:
    path.write_bytes(pickle.dumps({"state_dict": {"w": np.zeros(3)}}))
    return path


def _truncated(path: Path, good: Path) -> Path:
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _no_metadata(path: Path) -> Path:
    import torch

    save_file({"w": torch.zeros(3)}, str(path))
    return path


def test_a_checkpoint_with_overwritten_weights_is_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """50 kB of the shipped checkpoint's tensor bytes overwritten, header intact: refused up front."""
    from pipeline.models.checkpoint import shipped_checkpoint

    data = bytearray(shipped_checkpoint().read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    data[start + 100_000 : start + 150_000] = np.random.default_rng(0).bytes(50_000)
    flip = tmp_path / "flip.safetensors"
    flip.write_bytes(bytes(data))
    out = tmp_path / "out.zarr"
    line = _one_line_error(capsys, _args(out, flip), "is corrupt: its tensor data does not match")
    assert "flip.safetensors" in line
    assert not out.exists() and not (tmp_path / ".out.zarr.lock").exists()


@pytest.mark.parametrize(
    ("make", "pattern"),
    [(lambda p, g: _pickle_checkpoint(p), "not a readable safetensors file"),
     (_truncated, "not a readable safetensors file"),
     (lambda p, g: _no_metadata(p), "no 'landslide' metadata")],
    ids=["pickle renamed", "truncated", "no metadata"],
)  # fmt: skip
def test_bad_checkpoints_are_refused_without_unpickling(
    tmp_path: Path, tiny_unet_checkpoint: Path, capsys: pytest.CaptureFixture[str], make: object, pattern: str
) -> None:
    bad = make(tmp_path / "model.safetensors", tiny_unet_checkpoint)  # type: ignore[operator]
    out = tmp_path / "out.zarr"
    _one_line_error(capsys, _args(out, bad), pattern)
    assert not out.exists()


def test_antimeridian_is_rejected_with_a_split_hint_from_a_shell(
    tmp_path: Path, tiny_unet_checkpoint: Path
) -> None:
    out = tmp_path / "am.zarr"
    args = _args(out, tiny_unet_checkpoint)
    args[args.index("--bbox") + 1 : args.index("--bbox") + 5] = ["179.5", "-17", "-179.5", "-16"]
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "split it into (179.5, -17, 180, -16) and (-180, -17, -179.5, -16)" in proc.stderr
    assert not out.exists()


def test_an_area_across_a_utm_zone_boundary_uses_the_centre_zone() -> None:
    bbox = (143.9, 42.7, 144.2, 42.9)  # zone 54 | zone 55 at 144 E; centre 144.05 -> zone 55
    gbox = area_geobox(bbox)
    assert gbox.crs.epsg == 32655
    west, south, east, north = gbox.extent.to_crs("EPSG:4326").boundingbox
    assert west <= bbox[0] and south <= bbox[1] and east >= bbox[2] and north >= bbox[3]
    assert east - west < 0.5 and north - south < 0.3  # padded by at most one chip, not a zone
    assert gbox.shape[0] % 128 == 0 and gbox.shape[1] % 128 == 0


def test_a_continent_is_planned_in_regions_without_building_graphs() -> None:
    bbox = (100.0, 20.0, 120.0, 38.0)  # about 2,000 x 2,000 km
    tracemalloc.start()
    t0 = time.perf_counter()
    gbox = area_geobox(bbox)
    regions = plan_regions((int(gbox.shape[0]), int(gbox.shape[1])), 2048, 4)
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(regions) > 500 and elapsed < 2.0 and peak < 50e6, (len(regions), elapsed, peak)


def _region_tasks(shape: tuple[int, int], region: Region, block: int) -> int:
    m = REGION_MARGIN
    rows, cols = region.rows[1] - region.rows[0], region.cols[1] - region.cols[0]
    stack = da.zeros((14, rows + 2 * m, cols + 2 * m), dtype=np.float32, chunks=(14, block, block))
    ref = ModelRef("x", "0" * 64, "cpu", 8)
    return len(region_probability(stack, ChipGrid(overlap=8), region, shape, block, ref).__dask_graph__())


def test_one_region_graph_is_bounded_whatever_the_area() -> None:
    small = plan_regions((8192, 8192), 2048, 4)[0]
    huge_shape = (220_000, 200_000)
    huge = plan_regions(huge_shape, 2048, 4)
    middle = huge[len(huge) // 2]
    assert _region_tasks((8192, 8192), small, 2048) == _region_tasks(huge_shape, middle, 2048) < 1000
    # The cube of one region is lazy and bounded too (demo items; nothing is read).
    cat = catalog.open_catalog(str(scene.DEMO_CATALOG))
    s2 = cat.search("sentinel-2-l2a", scene.DEMO_BBOX, scene.DEMO_START, scene.DEMO_END)
    dem = cat.search("cop-dem-glo-30", scene.DEMO_BBOX, scene.DEMO_DEM_START, scene.DEMO_DEM_END)
    box = window_geobox(area_geobox(scene.DEMO_BBOX), (0, 8192), (0, 8192), REGION_MARGIN)
    cb = cube.build_cube(s2, dem, box, chunk=2048)
    assert len(cb.__dask_graph__()) < 20_000


def test_output_paths_that_exist(
    tmp_path: Path, tiny_unet_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A plain file.
    f = tmp_path / "file.zarr"
    f.write_text("not a store")
    _one_line_error(capsys, _args(f, tiny_unet_checkpoint), "not a landslide store")
    assert f.read_text() == "not a store"
    # A partial store of other parameters: refused, untouched; and never opened as complete.
    gbox = area_geobox(scene.DEMO_BBOX)
    part = tmp_path / "partial.zarr"
    tmpl = template(gbox.crs.proj, gbox.transform, (384, 640), 128, _meta(15))
    prepare(part, tmpl, "another-fingerprint", 2, overwrite=False)
    mark_region_done(part, 3)
    _one_line_error(
        capsys, _args(part, tiny_unet_checkpoint), r"partial sweep with different parameters \(1/15"
    )
    with pytest.raises(UserError, match="not a complete sweep"):
        open_result(part)
    assert open_result(part, allow_partial=True).attrs["landslide:status"] == "in_progress"


def test_a_killed_store_creation_leaves_nothing_in_the_way(tmp_path: Path) -> None:
    gbox = area_geobox(scene.DEMO_BBOX)
    out = tmp_path / "out.zarr"
    leftover = tmp_path / ".out.zarr.creating-deadbeef"
    leftover.mkdir()
    (leftover / ".zgroup").write_text("{}")
    prepare(out, template(gbox.crs.proj, gbox.transform, (384, 640), 128, _meta(15)), "fp", 2, False)
    assert out.is_dir() and not leftover.exists()
    shutil.rmtree(out)


def _meta(regions: int) -> RunMeta:
    return RunMeta(
        model="unet", checkpoint="x.safetensors", checkpoint_sha256="0" * 64, threshold=0.5, bands=("B02",),
        start="2018-09-07", end="2018-09-30", bbox=scene.DEMO_BBOX, event_id=None, block=128, overlap=8,
        composite="median", software_version="0", regions_total=regions,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("bbox", "pattern"),
    [
        (["141.9", "42.8", "142.0", "42.7"], r"south 42\.8 is north of north 42\.7.*did you mean \(141\.9"),
        (
            ["142.0", "42.8", "141.9", "42.7"],
            r"42\.8 is north of north 42\.7.*did you mean \(141\.9, 42\.7, 142, 42",
        ),
        (
            ["142.1", "42.7", "141.9", "42.8"],
            r"west 142\.1 is east of east 141\.9.*mean \(141\.9, 42\.7, 142\.1, 42\.8\)\?$",
        ),
        (["141.9", "42.7", "142.0", "90"], r"north latitude 90 outside \[-84, 84\]"),
        (["141.9", "-90", "142.0", "42.7"], r"south latitude -90 outside \[-84, 84\]"),
    ],
    ids=["south > north", "both inverted", "west > east", "north = 90", "south = -90"],
)
def test_a_bad_bbox_is_named_up_front_with_a_valid_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bbox: list[str], pattern: str
) -> None:
    # A checkpoint that does not exist: the bbox is checked first, before anything is read.
    out = tmp_path / "out.zarr"
    args = _args(out, tmp_path / "absent.safetensors")
    args[args.index("--bbox") + 1 : args.index("--bbox") + 5] = bbox
    line = _one_line_error(capsys, args, pattern)
    assert not out.exists()
    # Every box the message suggests is itself a valid bbox.
    import re

    parts = re.split(r"did you mean|split it into", line)
    for box in re.findall(r"\(([-0-9., ]+)\)", parts[-1]) if len(parts) > 1 else []:
        geo.BBox(*(float(v) for v in box.split(",")))


def test_an_empty_existing_directory_is_accepted_as_out(tmp_path: Path) -> None:
    gbox = area_geobox(scene.DEMO_BBOX)
    out = tmp_path / "out.zarr"
    out.mkdir()
    prog = prepare(out, template(gbox.crs.proj, gbox.transform, (384, 640), 128, _meta(15)), "fp", 2, False)
    assert prog.status == "in_progress" and prog.done == () and prog.total == 15
    attrs = open_result(out, allow_partial=True).attrs
    assert attrs["Conventions"].startswith("CF-1.")
    # ... and a directory holding anything is not.
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("keep")
    with pytest.raises(UserError, match="not a landslide store"):
        prepare(other, template(gbox.crs.proj, gbox.transform, (384, 640), 128, _meta(15)), "fp", 2, False)
    assert (other / "x").read_text() == "keep"


@given(
    st.integers(1, 40_000), st.integers(1, 40_000), st.sampled_from([128, 256, 512, 2048]), st.integers(1, 6)
)
@settings(max_examples=200, deadline=None)
def test_regions_tile_the_area_once_in_whole_blocks(
    rows: int, cols: int, block: int, region_blocks: int
) -> None:
    regions = plan_regions((rows, cols), block, region_blocks)
    assert [r.index for r in regions] == list(range(len(regions)))
    area = sum((r.rows[1] - r.rows[0]) * (r.cols[1] - r.cols[0]) for r in regions)
    assert area == rows * cols  # disjoint and covering (with the bounds below)
    step = block * region_blocks
    for r in regions:
        assert 0 <= r.rows[0] < r.rows[1] <= rows and 0 <= r.cols[0] < r.cols[1] <= cols
        # Every region starts on a block boundary, so each store chunk belongs to one region.
        assert r.rows[0] % step == 0 and r.cols[0] % step == 0
        assert r.rows[1] - r.rows[0] == min(step, rows - r.rows[0])
    assert len(regions) == -(-rows // step) * -(-cols // step)


def test_the_plan_is_pure_and_sends_auto_to_the_workers(tiny_unet_checkpoint: Path) -> None:
    from pipeline.models.checkpoint import read_meta, sha256_file
    from pipeline.sweep import Checkpoint, Scenes, SweepConfig, plan_sweep

    cat = catalog.open_catalog(str(scene.DEMO_CATALOG))
    scenes = Scenes(
        tuple(cat.search("sentinel-2-l2a", scene.DEMO_BBOX, scene.DEMO_START, scene.DEMO_END)),
        tuple(cat.search("cop-dem-glo-30", scene.DEMO_BBOX, scene.DEMO_DEM_START, scene.DEMO_DEM_END)),
    )
    path = tiny_unet_checkpoint
    ckpt = Checkpoint(path, read_meta(path), sha256_file(path))
    cfg = SweepConfig(bbox=scene.DEMO_BBOX, start=scene.DEMO_START, end=scene.DEMO_END,
                      out=Path("nowhere.zarr"), block=512, region_blocks=1)  # fmt: skip
    a, b = plan_sweep(cfg, ckpt, scenes), plan_sweep(cfg, ckpt, scenes)
    assert a.fingerprint == b.fingerprint and a.regions == b.regions and a.shape == (384, 640)
    assert len(a.regions) == 1 * 2
    # "auto" travels to the workers unresolved: each resolves it where the model runs.
    assert a.model.device == "auto" and a.model.sha256 == ckpt.sha256
    meta = a.run_meta().to_attrs()
    assert meta["landslide:regions_total"] == 2 and meta["landslide:bbox"] == list(scene.DEMO_BBOX)
    assert not Path("nowhere.zarr").exists()
    other = plan_sweep(SweepConfig(**{**cfg.__dict__, "block": 1024}), ckpt, scenes)
    assert other.fingerprint != a.fingerprint


def test_each_command_states_its_own_block_default(capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.sweep.config import DEFAULT_BLOCK, DEMO_BLOCK

    for command, block in (("sweep", DEFAULT_BLOCK), ("demo", DEMO_BLOCK)):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert f"a multiple of 512 (default {block})" in text, text
    assert (DEFAULT_BLOCK, DEMO_BLOCK) == (2048, 512)
