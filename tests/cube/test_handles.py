"""Files kept open per thread for one cube (pipeline/cube/handles.py), on the real sample tile."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
from rasterio.env import get_gdal_config

from pipeline.cube import build_cube, handles
from pipeline.cube.fused import SPECTRAL
from pipeline.cube.items import SCL_ASSET
from tests.cube_fixtures import S2_DIR, dem_item, s2_item
from tests.test_cube import ALIGNED, _plane_dem


@pytest.fixture(scope="module")
def dem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    west, south, east, north = ALIGNED.geographic_extent.boundingbox
    bbox = (west - 0.02, south - 0.02, east + 0.02, north + 0.02)
    return _plane_dem(tmp_path_factory.mktemp("dem") / "plane.tif", bbox, 0.2, 0.1, 32629)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hrefs the cube really opens (rasterio.open, called through)."""
    calls: list[str] = []
    real = rasterio.open

    def counting(href, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(str(href))
        return real(href, *args, **kwargs)

    monkeypatch.setattr(handles.rasterio, "open", counting)
    handles.close_all()
    yield calls
    handles.close_all()


def test_a_cube_opens_each_file_once_per_region_not_per_block(opened, dem) -> None:
    """36 blocks of 14 x 14 pixels, 12 files read directly: 12 opens (one thread), values as one block."""
    items, dems = [s2_item()], [dem_item(dem)]  # (making the items opens the files once)
    opened.clear()
    cube = build_cube(items, dems, ALIGNED, 14)
    with dask.config.set(scheduler="synchronous"):
        values = cube["layers"].values
    s2_opens = [href for href in opened if href.startswith(str(S2_DIR))]  # (the DEM: odc-stac, once)
    read = set(s2_opens)
    assert len(read) == len(SPECTRAL) + 1  # the bands and SCL
    assert len(s2_opens) == len(read)  # each once, though every block reads all of them
    assert handles.open_count() == len(read)
    handles.close_all()
    with dask.config.set(scheduler="synchronous"):
        one_block = build_cube(items, dems, ALIGNED, 80)["layers"].values  # each file read once anyway
    assert np.isfinite(values).any()
    assert np.array_equal(values, one_block, equal_nan=True)


def test_the_next_cube_opens_its_own_files(opened, dem) -> None:
    """A second cube over the same files opens them again: kept files belong to one cube's reads."""
    items, dems = [s2_item()], [dem_item(dem)]
    opened.clear()
    with dask.config.set(scheduler="synchronous"):
        build_cube(items, dems, ALIGNED, 40)["layers"].values  # noqa: B018
        first = len(opened)
        build_cube(items, dems, ALIGNED, 40)["layers"].values  # noqa: B018
    assert first > len(SPECTRAL) and len(opened) == 2 * first


def _use(plan: int, href: str):  # type: ignore[no-untyped-def]
    """The dataset a read of ``href`` gets (and whether it stays open after the read)."""
    with handles.opened(plan, href, lambda: href) as src:
        pass
    return src


def test_kept_files_their_bound_age_and_discard(opened, monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted(str(p) for p in S2_DIR.glob("*.tif"))[:4]
    a = _use(1, files[0])
    assert _use(1, files[0]) is a and len(opened) == 1 and not a.closed
    handles.discard(1, files[0])  # after a failed read
    assert a.closed
    b = _use(1, files[0])
    assert b is not a and len(opened) == 2
    monkeypatch.setattr(handles, "MAX_OPEN", 2)
    c = _use(1, files[1])
    d = _use(1, files[2])  # a third file of the same cube: opened for its read only
    assert d.closed and not b.closed and not c.closed and handles.open_count() == 2
    assert _use(1, files[0]) is b  # the files opened first stay open (not closed cyclically)
    e = _use(2, files[3])  # the next cube: the other cube's least recently used makes room
    assert not e.closed and c.closed and not b.closed
    monkeypatch.setattr(handles, "MAX_AGE_S", -1.0)
    assert _use(2, files[3]) is not e and e.closed  # too old: opened again
    assert _use(handles.NO_PLAN, files[0]).closed  # reads outside a plan keep nothing


def test_kept_files_fit_the_processs_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1024-descriptor limit keeps 64 per thread; a generous one the cap; an odd one at least one."""
    for soft, want in ((1024, 64), (20000, handles.MAX_OPEN), (8, 1)):
        monkeypatch.setattr(handles.resource, "getrlimit", lambda _, s=soft: (s, 1 << 20))
        assert handles.max_open() == want
    monkeypatch.setattr(handles.resource, "getrlimit", lambda _: (handles.resource.RLIM_INFINITY,) * 2)
    assert handles.max_open() == handles.MAX_OPEN


def test_reads_run_with_gdals_block_cache_bounded() -> None:
    before = get_gdal_config("GDAL_CACHEMAX")
    with handles.read_env({"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}):
        assert get_gdal_config("GDAL_CACHEMAX") == handles.BLOCK_CACHE_MB
        assert get_gdal_config("GDAL_DISABLE_READDIR_ON_OPEN") == "EMPTY_DIR"
    assert get_gdal_config("GDAL_CACHEMAX") == before


def test_an_unreadable_file_is_not_kept(opened, dem, tmp_path) -> None:
    item = s2_item()
    item.assets[SCL_ASSET].href = str(tmp_path / "gone.tif")
    with dask.config.set(scheduler="synchronous"):
        build_cube([item], [dem_item(dem)], ALIGNED, 20, fail_on_error=False)["layers"].values  # noqa: B018
    tries = [h for h in opened if h.endswith("gone.tif")]
    assert len(tries) > 1  # tried again by the next block, not remembered as open
    assert all(not src.closed for _, src in handles._open_files().values())
