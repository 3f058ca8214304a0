from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import rasterio

from .store_fixture import FixtureStore


def _ifd_offsets(path: Path) -> list[int]:
    """Offsets of every IFD in a (Big)TIFF, in chain order."""
    with open(path, "rb") as f:
        head = f.read(16)
        endian = "<" if head[:2] == b"II" else ">"
        version = struct.unpack(endian + "H", head[2:4])[0]
        big = version == 43
        offset = struct.unpack(endian + ("Q" if big else "I"), head[8:16] if big else head[4:8])[0]
        out = []
        while offset:
            out.append(offset)
            f.seek(offset)
            n = struct.unpack(endian + ("Q" if big else "H"), f.read(8 if big else 2))[0]
            f.seek(offset + (8 if big else 2) + n * (20 if big else 12))
            offset = struct.unpack(endian + ("Q" if big else "I"), f.read(8 if big else 4))[0]
        return out


def test_cog_georeferencing_and_values(exported, store: FixtureStore) -> None:
    with rasterio.open(exported.paths["cog"]) as src:
        assert src.crs.to_epsg() == 32654
        assert src.transform.almost_equals(store.transform)
        assert src.shape == store.probability.shape
        assert src.dtypes == ("float32",)
        assert np.isnan(src.nodata)
        data = src.read(1)
    np.testing.assert_array_equal(np.isnan(data), np.isnan(store.probability))
    np.testing.assert_array_equal(data[~np.isnan(data)], store.probability[~np.isnan(store.probability)])


def test_cog_layout(exported) -> None:
    path = exported.paths["cog"]
    with rasterio.open(path) as src:
        assert src.overviews(1) == [2]  # 640 px wide: one overview gets under a 512 tile
        assert src.block_shapes == [(512, 512)]
        assert src.profile["tiled"]
        assert src.compression.name.upper() == "DEFLATE"
        image = src.tags(ns="IMAGE_STRUCTURE")
        assert image.get("LAYOUT") == "COG"  # GDAL saw the COG ghost header
        main_ifd = int(src.get_tag_item("IFD_OFFSET", "TIFF", bidx=1))
        main_data = int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
    with rasterio.open(path, overview_level=0) as ovr:
        assert ovr.shape == (192, 320)
        ovr_ifd = int(ovr.get_tag_item("IFD_OFFSET", "TIFF", bidx=1))
        ovr_data = int(ovr.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        ovr_mean = np.nanmean(ovr.read(1))
    # COG order: all IFDs first (main, then overviews), then overview tiles, then full-resolution tiles
    ifds = _ifd_offsets(path)
    assert ifds[0] == main_ifd and ovr_ifd in ifds
    assert ifds == sorted(ifds)
    assert max(ifds) < ovr_data < main_data
    with rasterio.open(path) as src:
        full_mean = np.nanmean(src.read(1))
    assert abs(ovr_mean - full_mean) < 0.01  # averaged, not sampled
