from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from rasterio.features import rasterize

from pipeline.products.polygons import landslide_polygons
from pipeline.store import open_result

from .store_fixture import RES, FixtureStore


def _match(gdf: gpd.GeoDataFrame, store: FixtureStore) -> dict[str, int]:
    """Blob name -> row index of the polygon that covers it."""
    out = {}
    for blob in store.kept():
        rr, cc = np.nonzero(blob.mask)
        x, y = store.transform @ (cc[0] + 0.5, rr[0] + 0.5)
        hits = gdf.index[gdf.contains(shapely.Point(x, y))].tolist()
        assert len(hits) == 1, blob.name
        out[blob.name] = hits[0]
    return out


@pytest.mark.parametrize("window", [128, 100, 4096])
def test_polygons_match_the_mask_whatever_the_window(store: FixtureStore, window: int) -> None:
    ds = open_result(store.path)
    gdf = landslide_polygons(ds, window=window)
    kept = store.kept()
    assert len(gdf) == len(kept)
    assert (gdf.geom_type == "Polygon").all()  # one piece each, also across window borders
    rows = _match(gdf, store)
    for blob in kept:
        row = gdf.loc[rows[blob.name]]
        assert row["n_pixels"] == blob.pixels
        assert row["area_m2"] == pytest.approx(blob.pixels * RES * RES)
        assert row.geometry.area == pytest.approx(blob.pixels * RES * RES)
        assert row["mean_probability"] == pytest.approx(float(store.probability[blob.mask].mean()), rel=1e-6)
        assert row["max_probability"] == pytest.approx(float(store.probability[blob.mask].max()), rel=1e-6)
        assert row["mean_slope_deg"] == pytest.approx(float(store.slope[blob.mask].mean()), rel=1e-5)
    # rasterising the polygons gives back exactly the thresholded valid mask, less the small blobs
    expected = np.zeros(store.probability.shape, bool)
    for blob in kept:
        expected |= blob.mask
    burned = rasterize(gdf.geometry, out_shape=expected.shape, transform=store.transform).astype(bool)
    assert (burned == expected).all()


def test_cross_border_blob_is_one_polygon(store: FixtureStore) -> None:
    gdf = landslide_polygons(open_result(store.path), window=128)
    rows = _match(gdf, store)
    for name in ("cross_256_128", "big_cross_256", "ell_cross_128"):
        geom = gdf.loc[rows[name]].geometry
        assert geom.geom_type == "Polygon"
        assert len(geom.interiors) == 0
    assert len(gdf.loc[rows["holed"]].geometry.interiors) == 1


def test_invalid_pixels_excluded_and_corner_touching_kept_apart(store: FixtureStore) -> None:
    gdf = landslide_polygons(open_result(store.path), window=128)
    rows = _match(gdf, store)
    assert gdf.loc[rows["cut_by_invalid"], "n_pixels"] == 8 * 16
    assert rows["corner_a"] != rows["corner_b"]
    assert "tiny" not in rows  # 100 m2 < 200 m2


def test_min_area_and_threshold_options(store: FixtureStore) -> None:
    ds = open_result(store.path)
    assert len(landslide_polygons(ds, min_area_m2=0)) == len(store.blobs)
    assert len(landslide_polygons(ds, min_area_m2=50_000)) == len(store.kept(50_000))
    assert len(landslide_polygons(ds, threshold=0.995)) == 0
    low = landslide_polygons(ds, threshold=0.01, min_area_m2=0)  # one big web of pixels
    assert low["n_pixels"].sum() == int(((store.valid == 1) & (store.probability >= 0.01)).sum())


def test_files_parquet_native_crs_geojson_wgs84(exported, store: FixtureStore) -> None:
    pq = gpd.read_parquet(exported.paths["polygons"])
    gj = gpd.read_file(exported.paths["polygons_geojson"])
    assert pq.crs.to_epsg() == 32654
    assert gj.crs.to_epsg() == 4326
    assert len(pq) == len(gj) == len(store.kept()) == exported.polygon_count
    for col in ("area_m2", "mean_probability", "max_probability", "mean_slope_deg"):
        assert col in pq.columns and col in gj.columns
        np.testing.assert_allclose(pq[col], gj[col], rtol=1e-9)
    minx, miny, maxx, maxy = gj.total_bounds
    assert 141.8 < minx < maxx < 142.0 and 42.7 < miny < maxy < 42.8
    back = gj.to_crs(32654)
    np.testing.assert_allclose(back.area, pq.area, rtol=1e-3)
    assert exported.area_km2 == pytest.approx(pq["area_m2"].sum() / 1e6)
