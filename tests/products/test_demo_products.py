"""Every product of the real demo run: written by ``landslide demo``, reopened and checked.

The demo sweeps the embedded scene with the shipped checkpoint through the real path (local STAC
catalog, odc-stac, a LocalCluster, Zarr), then exports. Polygons are checked against the mask of
the store itself (valid pixels at or above the threshold, 4-connected components of at least the
minimum area), the COG against the store's grid, the STAC item against the schemas, the pyramid's
levels against its multiscales metadata.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr
from scipy import ndimage

from pipeline.demo import scene
from pipeline.store import open_result

from ..test_cli import run_cli
from .stac_validation import assert_valid

pytestmark = pytest.mark.slow

MIN_AREA_M2 = 200.0


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``landslide demo`` run as a user runs it: a fresh process, whose stderr is kept."""
    out = tmp_path_factory.mktemp("demo") / "demo.zarr"
    proc = run_cli("demo", "--out", str(out), "--no-progress", "--workers", "2", timeout=900)
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture(scope="module")
def demo(demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> tuple[Path, Path]:
    out = demo_run[0]
    return out, out.with_name("demo-products")


def test_demo_prints_its_report_and_nothing_on_stderr(
    demo_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """No library warning, no Dask log line (workers included): stdout is the report, stderr empty."""
    _out, proc = demo_run
    assert proc.stderr == ""
    assert "landslide area" in proc.stdout and "quicklook" in proc.stdout


def test_demo_store_is_complete_and_uses_the_shipped_model(demo: tuple[Path, Path]) -> None:
    ds = open_result(demo[0])
    assert ds.attrs["landslide:status"] == "complete"
    assert ds.attrs["landslide:model"] == "unet"
    assert ds.attrs["landslide:checkpoint"] == "unet-l4s-sample.safetensors"
    assert ds.attrs["landslide:event_id"] == "demo-l4s"


def test_polygons_match_the_thresholded_mask(demo: tuple[Path, Path]) -> None:
    store, products = demo
    ds = open_result(store)
    thr = float(ds.attrs["landslide:threshold"])
    mask = (ds["valid"].values == 1) & (ds["probability"].values >= thr)
    labels, _n = ndimage.label(mask)  # 4-connected, as the polygons
    sizes = np.bincount(labels.ravel())[1:]
    kept = np.sort(sizes[sizes * 100.0 >= MIN_AREA_M2])[::-1]
    gdf = gpd.read_parquet(products / "landslides.parquet")
    assert len(gdf) == len(kept) > 0
    np.testing.assert_allclose(np.sort(gdf["area_m2"].to_numpy())[::-1], kept * 100.0)
    np.testing.assert_allclose(gdf.geometry.area.to_numpy(), gdf["area_m2"].to_numpy(), rtol=1e-9)
    assert gdf.crs.to_epsg() == 32654
    assert (gdf["max_probability"] >= thr).all() and (gdf["mean_probability"] <= gdf["max_probability"]).all()
    assert gdf["mean_slope_deg"].between(0, 90).all()
    gj = gpd.read_file(products / "landslides.geojson")
    assert len(gj) == len(gdf) and gj.crs.to_epsg() == 4326
    w, s, e, n_ = gj.total_bounds
    assert 141.9 < w < e < 142.1 and 42.7 < s < n_ < 42.85


def test_cog_has_overviews_and_the_store_grid(demo: tuple[Path, Path]) -> None:
    store, products = demo
    ds = xr.open_zarr(store, decode_coords="all")
    with rasterio.open(products / "probability.tif") as src:
        assert src.crs.to_epsg() == 32654
        assert src.transform.almost_equals(ds.rio.transform())
        assert src.overviews(1), "no overviews"
        assert src.profile["tiled"]
        np.testing.assert_array_equal(src.read(1), ds["probability"].values)


def test_stac_item_validates_and_links_the_inputs(demo: tuple[Path, Path]) -> None:
    item = json.loads((demo[1] / "item.json").read_text())
    assert_valid(item)
    # The demo catalog is an ItemCollection file: its items have no URL of their own, so they are
    # listed by id and get no derived_from link (a bare id would resolve to nothing).
    derived = [ln["href"] for ln in item["links"] if ln["rel"] == "derived_from"]
    assert derived == []
    sources = item["properties"]["landslide:source_items"]
    catalog = json.loads(scene.DEMO_CATALOG.read_text())["features"]
    assert sorted((s["collection"], s["id"]) for s in sources) == sorted(
        (f["collection"], f["id"]) for f in catalog
    )
    assert item["properties"]["proj:code"] == "EPSG:32654"


def test_pyramid_levels(demo: tuple[Path, Path]) -> None:
    group = zarr.open_group(str(demo[1] / "pyramid.zarr"), mode="r")
    levels = group.attrs["multiscales"][0]["datasets"]
    assert len(levels) >= 2
    shapes = []
    for level in levels:
        arr = xr.open_zarr(demo[1] / "pyramid.zarr", group=level["path"])
        prob = arr["probability"].values
        finite = prob[np.isfinite(prob)]
        assert finite.size and finite.min() >= 0 and finite.max() <= 1
        shapes.append(prob.shape)
    # Each finer level doubles the resolution.
    assert all(b[0] >= 2 * a[0] - 256 for a, b in itertools.pairwise(shapes))


def test_quicklook_exists(demo: tuple[Path, Path]) -> None:
    from PIL import Image

    with Image.open(demo[1] / "quicklook.png") as im:
        assert im.size[0] > 600 and im.size[1] > 300
