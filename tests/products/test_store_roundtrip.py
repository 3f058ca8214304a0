from __future__ import annotations

import odc.geo.xr  # noqa: F401
import rasterio
import rioxarray  # noqa: F401
import xarray as xr

from .store_fixture import EPSG, FixtureStore


def test_crs_and_transform_round_trip(store: FixtureStore) -> None:
    ds = xr.open_zarr(store.path, decode_coords="all")
    assert ds.rio.crs.to_epsg() == EPSG
    assert ds.rio.transform().almost_equals(store.transform)
    assert ds["probability"].rio.crs.to_epsg() == EPSG
    gbox = ds.odc.geobox
    assert gbox.crs.epsg == EPSG
    assert gbox.shape == store.probability.shape
    assert gbox.transform.almost_equals(store.transform)
    assert ds.attrs["proj:transform"] == list(store.transform)[:6]
    assert ds.attrs["proj:shape"] == list(store.probability.shape)
    with rasterio.open(f'ZARR:"{store.path}":/probability') as src:
        assert src.crs.to_epsg() == EPSG
        assert src.transform.almost_equals(store.transform)
        assert src.shape == store.probability.shape
