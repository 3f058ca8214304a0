from __future__ import annotations

import numpy as np
import xarray as xr

from pipeline.products.pyramid import TILE, zoom_range
from pipeline.store import open_result

from .store_fixture import FixtureStore


def test_pyramid_levels_shapes_crs_values(exported, store: FixtureStore) -> None:
    tree = xr.open_datatree(exported.paths["pyramid"], engine="zarr", decode_coords="all")
    meta = tree.attrs["multiscales"][0]["datasets"]
    min_zoom, max_zoom = zoom_range(open_result(store.path))
    assert (min_zoom, max_zoom) == (10, 14)  # 10 m at 42.7 N -> zoom 14 (7 m ground pixels)
    assert [d["path"] for d in meta] == [str(k) for k in range(max_zoom - min_zoom + 1)]
    assert tree.attrs["proj:code"] == "EPSG:3857"
    prev_res = None
    for d in meta:
        level = tree[d["path"]].ds
        assert level.attrs["zoom"] == d["zoom"] == min_zoom + d["level"]
        p = level["probability"]
        assert p.rio.crs.to_epsg() == 3857
        ny, nx = p.shape
        assert ny % TILE == 0 and nx % TILE == 0
        assert ny <= TILE * 2 ** d["level"] * 2 and nx <= TILE * 2 ** d["level"] * 2
        res = p.rio.resolution()[0]
        assert np.isclose(res, 2 * 20037508.342789244 / (TILE * 2 ** d["zoom"]))
        # tile aligned: the left/top edge is a whole number of tiles from the world origin
        t = p.rio.transform()
        assert np.isclose((t.c + 20037508.342789244) / (res * TILE), level.attrs["tile_x0"])
        assert np.isclose((20037508.342789244 - t.f) / (res * TILE), level.attrs["tile_y0"])
        v = p.values
        finite = v[np.isfinite(v)]
        assert finite.size > 0 and finite.min() >= 0.0 and finite.max() <= 1.0
        assert np.isnan(v).any()  # outside the mosaic
        if prev_res is not None:
            assert np.isclose(prev_res / res, 2.0)
        prev_res = res
    assert tree["0"].ds["probability"].shape == (TILE, TILE)  # the top level is one tile
    finest = tree[meta[-1]["path"]].ds["probability"].values
    assert np.nanmax(finest) > 0.9  # the blobs survive at full resolution
