"""The shipped demo scene: real COGs and a local STAC ItemCollection, checked against the L4S chips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import odc.stac
import pystac
import pytest
import rasterio
from shapely.geometry import box, shape

from pipeline.bands import L4S_BANDS, L4S_DIVISORS
from pipeline.catalog import StaticCatalog, open_catalog
from pipeline.demo import scene
from pipeline.demo.build_scene import build_scene, derive_scl
from pipeline.demo.scene import (
    DEMO_BBOX,
    DEMO_CATALOG,
    DEMO_CHIP_IDS,
    DEMO_DEM_COLLECTION,
    DEMO_DEM_END,
    DEMO_DEM_START,
    DEMO_DIR,
    DEMO_END,
    DEMO_GRID,
    DEMO_LABELS,
    DEMO_S2_ASSETS,
    DEMO_S2_COLLECTION,
    DEMO_SCENE_BBOX,
    DEMO_START,
)

H, W = 384, 640
EPSG = 32654


@pytest.fixture(scope="module")
def chips(shared_data: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    src = shared_data / "l4s-sample"
    out = {}
    for cid in DEMO_CHIP_IDS:
        with h5py.File(src / "img" / f"image_{cid}.h5", "r") as f:
            img = f["img"][()]
        with h5py.File(src / "mask" / f"mask_{cid}.h5", "r") as f:
            mask = f["mask"][()]
        out[cid] = (img, mask)
    return out


@pytest.fixture(scope="module")
def items() -> tuple[pystac.Item, pystac.Item]:
    cat = StaticCatalog(DEMO_CATALOG)
    (s2,) = cat.search(DEMO_S2_COLLECTION, DEMO_BBOX, DEMO_START, DEMO_END)
    (dem,) = cat.search(DEMO_DEM_COLLECTION, DEMO_BBOX, DEMO_DEM_START, DEMO_DEM_END)
    return s2, dem


@pytest.fixture(scope="module")
def loaded(items: tuple[pystac.Item, pystac.Item]) -> Any:
    s2, _ = items
    return odc.stac.load([s2], bands=[*DEMO_S2_ASSETS, "SCL"]).isel(time=0)


def chip_slices(index: int) -> tuple[slice, slice]:
    r, c = DEMO_GRID.chip_window(index)
    return slice(r, r + 128), slice(c, c + 128)


def test_grid_constants() -> None:
    assert DEMO_GRID.shape == (H, W)
    assert DEMO_GRID.transform == (10.0, 0.0, 576000.0, 0.0, -10.0, 4739000.0)
    assert DEMO_GRID.origin_x % 10 == 0 and DEMO_GRID.origin_y % 10 == 0
    assert scene.demo_bbox() == DEMO_BBOX and scene.demo_window() == (DEMO_START, DEMO_END)
    assert DEMO_START <= scene.DEMO_DATETIME.date() <= DEMO_END
    assert scene.DEMO_EVENT_DATE < DEMO_START


def test_odc_stac_load_grid(loaded: Any) -> None:
    gbox = loaded.odc.geobox
    assert gbox.crs.epsg == EPSG
    assert gbox.shape == (H, W)
    assert gbox.resolution.x == 10 and gbox.resolution.y == -10
    assert tuple(gbox.transform)[:6] == DEMO_GRID.transform
    assert loaded["B02"].dtype == np.uint16 and loaded["SCL"].dtype == np.uint8


def test_dn_round_trip_to_l4s(loaded: Any, chips: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
    for index, cid in enumerate(DEMO_CHIP_IDS):
        rows, cols = chip_slices(index)
        img = chips[cid][0]
        for band in DEMO_S2_ASSETS:
            dn = loaded[band].values[rows, cols].astype(np.float64)
            assert (dn > 0).all(), f"chip {cid} {band}: nodata inside the scene"
            back = dn / L4S_DIVISORS[band]
            err = np.abs(back - img[..., L4S_BANDS.index(band)])
            assert err.max() <= 0.5 / L4S_DIVISORS[band] + 1e-12, (cid, band, err.max())


def test_dem_and_labels_align_with_chips(
    items: tuple[pystac.Item, pystac.Item], chips: dict[int, tuple[np.ndarray, np.ndarray]], loaded: Any
) -> None:
    _, dem_item = items
    dem = odc.stac.load([dem_item], bands=["data"], like=loaded).isel(time=0)["data"].values
    with rasterio.open(DEMO_LABELS) as src:
        assert src.crs.to_epsg() == EPSG and tuple(src.transform)[:6] == DEMO_GRID.transform
        labels = src.read(1)
    assert labels.dtype == np.uint8 and labels.shape == (H, W)
    for index, cid in enumerate(DEMO_CHIP_IDS):
        rows, cols = chip_slices(index)
        img, mask = chips[cid]
        np.testing.assert_array_equal(labels[rows, cols], mask)
        expected = (img[..., L4S_BANDS.index("dem")] * L4S_DIVISORS["dem"]).astype(np.float32)
        np.testing.assert_array_equal(dem[rows, cols], expected)
    assert 0.01 < labels.mean() < 0.1


def test_scl_is_the_documented_derivation(loaded: Any) -> None:
    scl = loaded["SCL"].values
    assert set(np.unique(scl)) <= {4, 5, 6}
    np.testing.assert_array_equal(
        scl, derive_scl(loaded["B03"].values, loaded["B04"].values, loaded["B08"].values)
    )


def _pc_item(shared_data: Path, collection: str) -> dict[str, Any]:
    name = {
        "sentinel-2-l2a": "pystac-client__S2A_MSIL2A_20190101T000001_R116_T58UFE_20201007T214651.json",
        "cop-dem-glo-30": "stac-geoparquet__Copernicus_DSM_COG_10_S90_00_W177_00_DEM.json",
    }[collection]
    return json.loads((shared_data / "stac" / collection / name).read_text())


def test_items_mirror_planetary_computer_structure(shared_data: Path) -> None:
    raw = json.loads(DEMO_CATALOG.read_text())
    assert raw["type"] == "FeatureCollection"
    by_collection = {f["collection"]: f for f in raw["features"]}
    assert set(by_collection) == {"sentinel-2-l2a", "cop-dem-glo-30"}

    s2, pc_s2 = by_collection["sentinel-2-l2a"], _pc_item(shared_data, "sentinel-2-l2a")
    for key in ("type", "stac_version", "id", "bbox", "geometry", "collection", "properties", "assets"):
        assert key in s2
    for prop in ("datetime", "platform", "constellation", "proj:epsg", "s2:mgrs_tile", "eo:cloud_cover",
                 "s2:processing_baseline", "instruments", "s2:product_type"):  # fmt: skip
        assert prop in pc_s2["properties"] and prop in s2["properties"], prop
    assert s2["properties"]["proj:epsg"] == EPSG
    assert s2["properties"]["s2:processing_baseline"] < "04.00"  # no +1000 offset
    pc_bands = {k for k, a in pc_s2["assets"].items() if k.startswith("B")}
    assert set(DEMO_S2_ASSETS) == pc_bands - {"B8A"}
    assert set(s2["assets"]) == set(DEMO_S2_ASSETS) | {"SCL"}
    for key, asset in s2["assets"].items():
        pc_asset = pc_s2["assets"][key]
        for field in ("href", "type", "roles", "gsd", "proj:bbox", "proj:shape", "proj:transform", "title"):
            assert field in pc_asset and field in asset, (key, field)
        assert asset["type"] == pc_asset["type"]
        assert asset["roles"] == ["data"]
        assert asset["href"] == f"./{key}.tif"  # relative to catalog.json
        assert asset["proj:shape"] == [H, W] and asset["proj:transform"] == list(DEMO_GRID.transform)
        if key != "SCL":
            assert asset["eo:bands"][0]["name"] == key
            assert set(asset["eo:bands"][0]) <= set(pc_asset["eo:bands"][0]) | {"common_name"}

    dem, pc_dem = by_collection["cop-dem-glo-30"], _pc_item(shared_data, "cop-dem-glo-30")
    assert set(pc_dem["properties"]) <= set(dem["properties"])
    assert set(dem["assets"]) == {"data"} and dem["assets"]["data"]["href"] == "./dem.tif"
    assert dem["assets"]["data"]["type"] == pc_dem["assets"]["data"]["type"]
    assert dem["properties"]["gsd"] == 10 and dem["properties"]["proj:epsg"] == EPSG

    for feature in raw["features"]:
        item = pystac.Item.from_dict(feature)
        assert item.datetime is not None and item.datetime.tzinfo is not None
        footprint = shape(feature["geometry"])
        assert footprint.is_valid
        assert footprint.contains(box(*DEMO_BBOX))
        assert box(*DEMO_SCENE_BBOX).contains(footprint)


def test_open_catalog_on_shipped_file() -> None:
    cat = open_catalog(str(DEMO_CATALOG))
    (item,) = cat.search(DEMO_S2_COLLECTION, DEMO_BBOX, DEMO_START, DEMO_END, max_cloud=10)
    assert all(Path(a.href).is_file() for a in item.assets.values())


@pytest.mark.parametrize("name", [*DEMO_S2_ASSETS, "SCL", "dem", "labels"])
def test_files_are_cogs(name: str) -> None:
    with rasterio.open(scene.asset_path(name)) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
        assert src.compression.name.lower() == "deflate"
        assert src.overviews(1) == [2, 4]
        assert src.crs.to_epsg() == EPSG and src.shape == (H, W)
        expected = {"dem": "float32", "SCL": "uint8", "labels": "uint8"}.get(name, "uint16")
        assert src.dtypes[0] == expected
        if name.startswith("B") or name == "SCL":
            assert src.nodata == 0


def test_summary_records_slope_consistency() -> None:
    summary = json.loads(scene.DEMO_SUMMARY.read_text())
    assert summary["crs"] == f"EPSG:{EPSG}" and summary["shape"] == [H, W]
    assert [c["chip_id"] for c in summary["layout"]] == list(DEMO_CHIP_IDS)
    cd = summary["slope_consistency"]["central_diff_10m"]
    assert 0.5 < cd["pearson_r"] <= 1 and cd["mae_deg"] > 0


def test_shipped_files_are_what_the_builder_makes(shared_data: Path, tmp_path: Path) -> None:
    build_scene(shared_data / "l4s-sample", tmp_path)
    shipped = sorted(p.name for p in DEMO_DIR.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == shipped
    for name in ("catalog.json", "scene.json"):
        assert (tmp_path / name).read_text() == (DEMO_DIR / name).read_text(), name
    for name in shipped:
        if name.endswith(".tif"):
            with rasterio.open(tmp_path / name) as a, rasterio.open(DEMO_DIR / name) as b:
                np.testing.assert_array_equal(a.read(), b.read(), err_msg=name)


def test_size_budget() -> None:
    data = DEMO_DIR.parent
    total = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    scene_bytes = sum(p.stat().st_size for p in DEMO_DIR.rglob("*") if p.is_file())
    assert scene_bytes <= 8 * 1024**2, scene_bytes
    assert total <= 10 * 1024**2, total


def test_the_demo_sweep_grid_is_the_scene_grid() -> None:
    """The demo's bbox gives the scene's own grid: no shift, no no-data strip, no label cut off."""
    from pipeline.sweep.plan import area_geobox

    gbox = area_geobox(DEMO_BBOX)
    with rasterio.open(scene.DEMO_LABELS) as src:
        assert gbox.crs is not None and gbox.crs.epsg == src.crs.to_epsg()
        assert tuple(gbox.transform)[:6] == tuple(src.transform)[:6]
        assert tuple(gbox.shape) == src.shape
