"""End-to-end sweeps on the embedded demo scene with real parts.

Real COGs read through odc-stac, a LocalCluster of 2 worker processes over TCP, a separately
started ``dask scheduler`` with two ``dask worker`` processes, a STAC API served by
``rustac serve`` on loopback, and Zarr stores read back by rioxarray and GDAL. The model is a
small U-Net with seeded random weights: these tests check the plumbing, not the skill.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from distributed import Client, LocalCluster

from pipeline.cli import main
from pipeline.demo import scene
from pipeline.models.checkpoint import (
    Calibration,
    read_meta,
    read_state_dict,
    save_checkpoint,
    shift_probability,
)
from pipeline.products.export import products_complete
from pipeline.store import open_result
from pipeline.sweep import SweepConfig, run_sweep
from tests.servers import absolute_items, dask_cluster_processes, stac_api

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as c:  # fmt: skip
        assert all(addr.startswith("tcp://127.0.0.1") for addr in c.scheduler_info()["workers"])
        yield c


def _cfg(out: Path, ckpt: Path, block: int, **kw: object) -> SweepConfig:
    base = dict(
        bbox=scene.DEMO_BBOX, start=scene.DEMO_START, end=scene.DEMO_END, out=out,
        catalog=str(scene.DEMO_CATALOG), checkpoint=ckpt, block=block, progress=False, device="cpu",
    )  # fmt: skip
    base.update(kw)
    return SweepConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, client: Client, tiny_unet_checkpoint: Path) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "ref.zarr"
    summary = run_sweep(_cfg(out, tiny_unet_checkpoint, 512), client=client)
    assert summary.chips > 0 and summary.regions_computed == summary.regions_total
    return out


def _arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    ds = open_result(path)
    return ds["probability"].values, ds["valid"].values


def test_block_size_does_not_change_the_mosaic(
    reference: Path, tmp_path: Path, client: Client, tiny_unet_checkpoint: Path
) -> None:
    # U-Net tiles have 512-px cores for every block that is a multiple of 512 (pipeline.tiling).
    out = tmp_path / "b1024.zarr"
    run_sweep(_cfg(out, tiny_unet_checkpoint, 1024), client=client)
    p512, v512 = _arrays(reference)
    p1024, v1024 = _arrays(out)
    np.testing.assert_array_equal(v512, v1024)
    assert v512.mean() > 0.9
    np.testing.assert_allclose(p512, p1024, atol=1e-5, rtol=0)


def test_sweep_applies_the_checkpoint_calibration(
    reference: Path, tmp_path: Path, client: Client, tiny_unet_checkpoint: Path
) -> None:
    """A Platt(2, -3) checkpoint stores sigmoid(2 z - 3), z the raw logits of the same weights.

    ``reference`` is the same weights with the identity calibration, so its store holds
    sigmoid(z) (overlapping tiles agree on z to float error, so their blend is sigmoid(z) too)
    and z = logit(p) there.
    """
    from dataclasses import replace

    from safetensors.torch import load_file

    from pipeline.models.checkpoint import Calibration, read_meta, save_checkpoint

    platt = tmp_path / "platt.safetensors"
    meta = replace(read_meta(tiny_unet_checkpoint), calibration=Calibration("platt", 2.0, -3.0))
    save_checkpoint(platt, load_file(str(tiny_unet_checkpoint)), meta)
    out = tmp_path / "platt.zarr"
    run_sweep(_cfg(out, platt, 512), client=client)
    p_raw, valid = _arrays(reference)
    p_cal, valid_cal = _arrays(out)
    np.testing.assert_array_equal(valid, valid_cal)
    valid = valid.astype(bool)
    raw = p_raw[valid].astype(np.float64)
    # z is recoverable where sigmoid(z) is not rounded to 0 or 1 in float32
    usable = (raw > 1e-6) & (raw < 1 - 1e-6)
    assert usable.mean() > 0.5, (usable.mean(), np.nanmin(raw), np.nanmax(raw))
    z = np.log(raw[usable]) - np.log1p(-raw[usable])
    expected = 1.0 / (1.0 + np.exp(-(2.0 * z - 3.0)))
    got = p_cal[valid][usable]
    assert float(np.abs(expected - raw[usable]).max()) > 0.1  # the calibration is far from the identity
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    # where z is out of reach, sigmoid(2z - 3) is as saturated as sigmoid(z)
    np.testing.assert_allclose(p_cal[valid][~usable], np.round(raw[~usable]), atol=1e-3, rtol=0)


def test_shipped_checkpoint_gives_one_mosaic_for_every_accepted_block_size(
    tmp_path: Path, client: Client
) -> None:
    """The shipped model on the demo scene: blocks of 512, 1024 and 1536 px give one mosaic.

    Blocks that are not a multiple of 512 are refused (they would change the U-Net's tiles and
    its output by up to 0.06: the earlier ``--block 256`` vs ``512`` difference).
    """
    arrays = []
    for block in (512, 1024, 1536):
        out = tmp_path / f"b{block}.zarr"
        run_sweep(_cfg(out, None, block), client=client)  # type: ignore[arg-type]
        arrays.append(_arrays(out))
    for prob, valid in arrays[1:]:
        np.testing.assert_array_equal(valid, arrays[0][1])
        np.testing.assert_allclose(prob, arrays[0][0], atol=1e-5, rtol=0)
    assert arrays[0][1].mean() > 0.9


@pytest.mark.parametrize("command", ["demo", "sweep"])
def test_a_block_size_that_would_change_the_mosaic_is_refused_in_one_line(
    tmp_path: Path, command: str
) -> None:
    out = tmp_path / "b256.zarr"
    where = [] if command == "demo" else [
        "--bbox", *map(str, scene.DEMO_BBOX), "--start", str(scene.DEMO_START), "--end", str(scene.DEMO_END),
        "--catalog", str(scene.DEMO_CATALOG),
    ]  # fmt: skip
    cmd = [sys.executable, "-m", "pipeline.cli", command, *where, "--block", "256", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert lines == [
        "landslide: error: --block 256 is not a multiple of 512: use 512, 1024, 2048, ... "
        "(every multiple of 512 gives the same mosaic)"
    ], proc.stderr
    assert not out.exists()


def test_store_layout_and_georeferencing(reference: Path) -> None:
    ds = xr.open_zarr(reference, decode_coords="all")
    assert ds.attrs["landslide:status"] == "complete"
    assert ds.attrs["proj:code"] == "EPSG:32654"
    # CF: the conventions are declared, and the flags of `valid` are named.
    assert ds.attrs["Conventions"].startswith("CF-1.")
    flags = ds["valid"].attrs
    assert list(flags["flag_values"]) == [0, 1] and flags["flag_meanings"].split() == ["not_valid", "valid"]
    # One checksum per region, recorded with it.
    assert len(ds.attrs["landslide:region_checksums"]) == ds.attrs["landslide:regions_total"]
    assert ds["probability"].dtype == np.float32 and ds["valid"].dtype == np.uint8
    assert ds.rio.crs.to_epsg() == 32654
    t = ds.rio.transform()
    assert (t.a, t.e) == (10.0, -10.0)
    assert list(ds.attrs["proj:transform"]) == [t.a, t.b, t.c, t.d, t.e, t.f]
    p = ds["probability"].values
    assert np.nanmin(p) >= 0 and np.nanmax(p) <= 1
    assert np.isnan(p[ds["valid"].values == 0]).all()
    assert ds.attrs["landslide:scenes"][0]["id"] == scene.DEMO_S2_ITEM_ID
    assert len(ds.attrs["landslide:checkpoint_sha256"]) == 64
    # GDAL reads the georeferencing of the Zarr v2 array directly.
    with rasterio.open(f'ZARR:"{reference}":/probability') as src:
        assert src.crs.to_epsg() == 32654
        assert src.transform.almost_equals(t)
        np.testing.assert_array_equal(src.read(1), p)


def test_sweep_through_a_scheduler_address_with_two_dask_workers(
    reference: Path, tmp_path: Path, tiny_unet_checkpoint: Path
) -> None:
    out = tmp_path / "remote.zarr"
    with dask_cluster_processes(2) as (addr, _workers):
        code = main([
            "sweep", "--bbox", *map(str, scene.DEMO_BBOX), "--start", str(scene.DEMO_START),
            "--end", str(scene.DEMO_END), "--catalog", str(scene.DEMO_CATALOG),
            "--checkpoint", str(tiny_unet_checkpoint), "--out", str(out), "--block", "512",
            "--scheduler", addr, "--no-progress", "--device", "cpu",
        ])  # fmt: skip
        assert code == 0
        with Client(addr) as c:
            assert len(c.scheduler_info()["workers"]) == 2
    np.testing.assert_allclose(_arrays(out)[0], _arrays(reference)[0], atol=1e-5)


def test_sweep_searches_a_stac_api(
    reference: Path, tmp_path: Path, client: Client, tiny_unet_checkpoint: Path
) -> None:
    items = absolute_items(scene.DEMO_CATALOG, tmp_path / "items.json")
    with stac_api(items) as url:
        out = tmp_path / "api.zarr"
        run_sweep(_cfg(out, tiny_unet_checkpoint, 512, catalog=url), client=client)
    np.testing.assert_array_equal(_arrays(out)[0], _arrays(reference)[0])


def test_cli_summary_and_json(
    tmp_path: Path, tiny_unet_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.zarr"
    args = [
        "sweep", "--bbox", *map(str, scene.DEMO_BBOX), "--start", str(scene.DEMO_START), "--end",
        str(scene.DEMO_END), "--catalog", str(scene.DEMO_CATALOG), "--checkpoint", str(tiny_unet_checkpoint),
        "--out", str(out), "--block", "512", "--no-progress", "--workers", "1",
        "--json", str(tmp_path / "s.json"),
    ]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "km2" in text and "chips/s" in text
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["area_km2"] == pytest.approx(384 * 640 * 100 / 1e6, rel=0.05)
    # The swept area is the padded grid, and says so; the requested box is reported beside it.
    assert 0 < summary["requested_area_km2"] <= summary["area_km2"]
    assert f"the requested {summary['requested_area_km2']:,.2f} km2 on the UTM grid, padded to whole" in text
    # Why `landslide export` may report less landslide area.
    assert "leaving out those under --min-area" in text
    # Same command again: the store is complete, so it refuses and leaves it as it was.
    assert main(args) == 2
    assert "already holds this sweep, complete; add --export DIR" in capsys.readouterr().err
    assert open_result(out).attrs["landslide:status"] == "complete"
    # With --export, the same command writes the products of the complete store (no sweep again).
    mtime = (out / "probability").stat().st_mtime_ns
    assert main([*args, "--export", str(tmp_path / "products")]) == 0
    assert "already holds this sweep, complete; writing its products" in capsys.readouterr().err
    assert products_complete(tmp_path / "products") and (out / "probability").stat().st_mtime_ns == mtime


BAD = [
    (["--bbox", "142", "42.7", "141.9", "42.8"], "antimeridian|west"),
    (["--bbox", "141.9", "95", "142", "96"], "latitude|range|bbox"),
    (["--bbox", "141.9", "42.85", "142.1", "42.7"], "south 42.85 is north of north 42.7"),
    (["--start", "2018-09-30", "--end", "2018-09-07"], "before"),
    (["--start", "2019-01-01", "--end", "2019-01-31"], "no sentinel-2-l2a scenes"),
    (["--catalog", "http://127.0.0.1:9"], "cannot reach"),
    (["--base-rate", "1.5"], "--base-rate must be a fraction between 0 and 1"),
    (["--base-rate", "0.005"], "records no training base rate"),  # the tiny checkpoint has none
]


@pytest.mark.parametrize(("override", "pattern"), BAD)
def test_bad_input_one_line_error_and_no_store(
    tmp_path: Path, tiny_unet_checkpoint: Path, override: list[str], pattern: str
) -> None:
    args = {
        "--bbox": [*map(str, scene.DEMO_BBOX)], "--start": [str(scene.DEMO_START)],
        "--end": [str(scene.DEMO_END)], "--catalog": [str(scene.DEMO_CATALOG)],
    }  # fmt: skip
    i = 0
    while i < len(override):
        key = override[i]
        n = 4 if key == "--bbox" else 1
        args[key] = override[i + 1 : i + 1 + n]
        i += 1 + n
    out = tmp_path / "bad.zarr"
    cmd = [sys.executable, "-m", "pipeline.cli", "sweep", *[x for k, v in args.items() for x in (k, *v)],
           "--checkpoint", str(tiny_unet_checkpoint), "--out", str(out), "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("landslide: error:")
    import re

    assert re.search(pattern, lines[0], re.IGNORECASE), lines[0]
    assert not out.exists()


def test_existing_non_store_output_is_never_touched(tmp_path: Path, tiny_unet_checkpoint: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("a user's file")
    for extra in ([], ["--overwrite"]):
        code = main([
            "sweep", "--bbox", *map(str, scene.DEMO_BBOX), "--start", str(scene.DEMO_START),
            "--end", str(scene.DEMO_END), "--catalog", str(scene.DEMO_CATALOG), "--checkpoint",
            str(tiny_unet_checkpoint), "--out", str(out), "--no-progress", *extra,
        ])  # fmt: skip
        assert code == 2
    assert (out / "notes.txt").read_text() == "a user's file"


def test_base_rate_moves_every_probability_and_the_threshold_by_one_logit_offset(
    reference: Path, tmp_path: Path, client: Client, tiny_unet_checkpoint: Path
) -> None:
    # the same weights, with a calibration that records the base rate it was fitted at
    meta = read_meta(tiny_unet_checkpoint)
    ckpt = tmp_path / "rated.safetensors"
    save_checkpoint(ckpt, read_state_dict(tiny_unet_checkpoint),
                    replace(meta, calibration=Calibration(base_rate=0.04)))  # fmt: skip
    out = tmp_path / "rate.zarr"
    summary = run_sweep(_cfg(out, ckpt, 512, base_rate=0.005), client=client)
    shift = np.log(0.005 / 0.995) - np.log(0.04 / 0.96)
    p_ref, v_ref = _arrays(reference)
    p, v = _arrays(out)
    np.testing.assert_array_equal(v, v_ref)
    np.testing.assert_allclose(p, shift_probability(p_ref, shift), atol=2e-6, rtol=1e-5)
    assert np.nanmean(p) < np.nanmean(p_ref) / 4  # an 8x lower prior: far lower probabilities
    attrs = open_result(out).attrs
    assert attrs["landslide:base_rate"] == 0.005 and attrs["landslide:training_base_rate"] == 0.04
    threshold = float(shift_probability(np.asarray(0.5), shift))
    assert attrs["landslide:threshold"] == pytest.approx(threshold)
    assert summary.threshold == pytest.approx(threshold)
    # the same pixels stay above the (moved) threshold: polygons and area do not change
    ref_attrs = open_result(reference).attrs
    assert attrs["landslide:landslide_km2"] == pytest.approx(ref_attrs["landslide:landslide_km2"], abs=1e-3)
    assert summary.base_rate == 0.005 and any("--base-rate" in line for line in summary.lines())
    assert attrs["landslide:fingerprint"] != ref_attrs["landslide:fingerprint"]
