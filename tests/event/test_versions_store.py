"""A version is one mosaic: counted once across tile borders, unchanged chunks shared, atomic publish.

The stores here are real result stores written by the store writer (no model: the probability
is drawn), on an event grid of 128-px regions; polygons come from the products' vectoriser.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from pyproj import CRS

from pipeline import store
from pipeline.event import versions_store as vs
from pipeline.event.mosaic import EventGrid, event_grid, footprint, regions_for, tile_regions
from pipeline.event.summary import alert_level, observed
from pipeline.store.links import link_regions, mark_regions_reused
from pipeline.store.schema import Outcome, RunMeta

REGION = 128
#: Four tiles of 0.02 degree in a row near the Iburi epicentre (Hokkaido 2018).
TILES = {f"x{i}y2134": (i * 0.02, 42.68, (i + 1) * 0.02, 42.70) for i in (7100, 7101)}
META = RunMeta("unet", "tiny", "0" * 64, 0.5, ("B02",), "2018-09-07", "2018-10-06",
               (141.9, 42.6, 142.1, 42.8), "test", REGION, 8, "test", "0", 0)  # fmt: skip


def _grid() -> EventGrid:
    return event_grid(TILES.values(), (142.01, 42.69), REGION)


def _write(
    path: Path, grid: EventGrid, prob: np.ndarray, regions: list[int] | None, base: Path | None
) -> None:
    """A complete store of ``grid``: ``regions`` written from ``prob``, the others linked from ``base``."""
    tmpl = store.template(CRS.from_epsg(grid.epsg), grid.transform, grid.shape, REGION, META)
    store.prepare(path, tmpl, "test", 2, False)
    all_regions = grid.regions()
    todo = [r for r in all_regions if regions is None or r.index in regions]
    if base is not None:
        link_regions(base, path, [r.window for r in all_regions if r not in todo])
    mark_regions_reused(path, [r.index for r in all_regions if r not in todo])
    for r in todo:
        (r0, r1), (c0, c1) = r.window
        p = da.from_array(prob[r0:r1, c0:c1], chunks=REGION)
        store.region_write(
            path, p, da.isfinite(p).astype(np.uint8), da.full_like(p, 30.0), r.window, 2
        ).compute()
        store.mark_region_done(path, r.index, r.window)
    store.finalise(path, Outcome((), (), {}, (), 0, "now", 0.0, 0.0, 1.0, 0.0))


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def _border_col(grid: EventGrid, owned: dict[str, tuple[int, ...]]) -> tuple[int, int]:
    """A row inside the grid and the column where the first tile's regions meet the second's."""
    by = {r.index: r for r in grid.regions()}
    a, b = (sorted(owned[t]) for t in sorted(TILES))
    for i in a:
        for j in b:
            if by[i].rows == by[j].rows and by[i].cols[1] == by[j].cols[0]:
                return (by[i].rows[0] + REGION // 2, by[i].cols[1])
    raise AssertionError("the two tiles' regions do not touch")


@pytest.fixture()
def v1(tmp_path: Path) -> tuple[Path, EventGrid, np.ndarray]:
    grid = _grid()
    owned = tile_regions(grid, TILES)
    prob = np.full(grid.shape, 0.1, dtype=np.float32)
    row, col = _border_col(grid, owned)
    prob[row - 5 : row + 5, col - 8 : col + 8] = 0.9  # one landslide across the tile border
    path = vs.building_path(tmp_path, 1)
    _write(path, grid, prob, None, None)
    vs.publish(path, vs.version_path(tmp_path, 1))
    return tmp_path, grid, prob


def test_a_landslide_on_a_tile_border_is_one_polygon_counted_once(
    v1: tuple[Path, EventGrid, np.ndarray],
) -> None:
    edir, grid, _ = v1
    polys = vs.version_polygons(vs.version_path(edir, 1))
    assert len(polys) == 1 and polys["area_m2"].iloc[0] == pytest.approx(10 * 16 * 100.0)
    obs = observed(polys, None)
    assert obs["count"] == 1
    union_km2 = polys.to_crs(grid.epsg).union_all().area / 1e6
    assert obs["landslide_km2"] == pytest.approx(union_km2, rel=1e-6) == pytest.approx(0.016)


def test_overlapping_tile_strips_are_swept_and_counted_once(tmp_path: Path) -> None:
    """Two tiles whose boxes overlap by a strip: the strip's regions belong to one tile only."""
    tiles = {"a": (142.00, 42.68, 142.025, 42.70), "b": (142.015, 42.68, 142.04, 42.70)}
    grid = event_grid(tiles.values(), (142.01, 42.69), REGION)
    owned = tile_regions(grid, tiles)
    both = regions_for(owned, ["a", "b"])
    assert len(both) == len(owned["a"]) + len(owned["b"])  # no region swept twice
    by = {r.index: r for r in grid.regions()}
    b_foot = footprint(tiles["b"], grid.epsg)
    strip = [i for i in owned["a"] if grid.region_box(by[i]).intersection(b_foot).area > 0]
    assert strip  # the overlap strip lies in regions of tile a only
    r = by[strip[0]]
    prob = np.full(grid.shape, 0.1, dtype=np.float32)
    prob[r.rows[0] + 20 : r.rows[0] + 30, r.cols[0] + 20 : r.cols[0] + 30] = 0.95
    path = tmp_path / "v.zarr"
    _write(path, grid, prob, list(both), None)
    obs = observed(vs.version_polygons(path), None)
    assert obs["count"] == 1 and obs["landslide_km2"] == pytest.approx(0.01)
    assert alert_level(obs["landslide_km2"]) == "green"


def test_version_2_shares_unchanged_chunks_and_leaves_version_1_as_it_was(
    v1: tuple[Path, EventGrid, np.ndarray],
) -> None:
    edir, grid, prob = v1
    v1_path = vs.version_path(edir, 1)
    before = _digest(v1_path)
    owned = tile_regions(grid, TILES)
    changed = list(owned[sorted(TILES)[1]])  # new imagery over the second tile only
    new = prob.copy()
    for r in grid.regions():
        if r.index in changed:
            (r0, r1), (c0, c1) = r.window
            new[r0:r1, c0:c1] = 0.2
    building = vs.building_path(edir, 2)
    _write(building, grid, new, changed, v1_path)
    with pytest.raises((FileNotFoundError, KeyError)):  # not visible before it is published
        xr.open_zarr(str(edir / vs.MOSAIC), group="v2", consolidated=False)
    v2_path = vs.publish(building, vs.version_path(edir, 2))
    assert _digest(v1_path) == before  # version 1 exactly as it was
    for r in grid.regions():
        for var in ("probability", "valid", "slope"):
            key = f"{r.rows[0] // REGION}.{r.cols[0] // REGION}"
            a, b = v1_path / var / key, v2_path / var / key
            if r.index in changed:
                assert b.stat().st_ino != a.stat().st_ino
            else:
                assert b.stat().st_ino == a.stat().st_ino  # the same file, not a copy
    cost = vs.storage(v2_path, [v1_path])
    full = vs.storage(v1_path)
    assert cost.new_bytes < full.total_bytes and cost.shared_files == 3 * (len(grid.regions()) - len(changed))
    ds1, ds2 = (
        xr.open_zarr(str(edir / vs.MOSAIC), group="v1"),
        xr.open_zarr(str(edir / vs.MOSAIC), group="v2"),
    )
    np.testing.assert_array_equal(ds1["probability"].values, prob)
    np.testing.assert_array_equal(ds2["probability"].values, new)


def test_an_incomplete_version_is_never_published(tmp_path: Path) -> None:
    grid = _grid()
    building = vs.building_path(tmp_path, 1)
    tmpl = store.template(CRS.from_epsg(grid.epsg), grid.transform, grid.shape, REGION, META)
    store.prepare(building, tmpl, "test", 2, False)  # a sweep killed after it started
    with pytest.raises(ValueError, match="not a complete store"):
        vs.publish(building, vs.version_path(tmp_path, 1))
    assert not vs.version_path(tmp_path, 1).exists() and not vs.published(tmp_path, 1)
