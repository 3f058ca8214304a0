"""The event grid and its regions: lattice alignment, tiles -> regions, no overlap, full coverage."""

from __future__ import annotations

import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.event.mosaic import EventGrid, event_grid, footprint, regions_for, remap, tile_regions

BBox = tuple[float, float, float, float]


@st.composite
def events(draw: st.DrawFn) -> tuple[tuple[float, float], dict[str, BBox], int]:
    """An epicentre, some tiles of a global tile_deg grid near it (parts of their cells), a region side."""
    lon = draw(st.floats(-178.0, 178.0))
    lat = draw(st.floats(-60.0, 70.0))
    tile_deg = draw(st.sampled_from([0.02, 0.05, 0.2]))
    region = draw(st.sampled_from([128, 256, 512, 2048]))
    i0, j0 = int(lon // tile_deg), int(lat // tile_deg)
    cells = draw(st.sets(st.tuples(st.integers(-2, 2), st.integers(-2, 2)), min_size=1, max_size=6))
    tiles: dict[str, BBox] = {}
    for di, dj in sorted(cells):
        i, j = i0 + di, j0 + dj
        f = draw(st.tuples(*[st.floats(0.0, 0.45)] * 4))  # the area's part of the cell
        w, s = i * tile_deg, j * tile_deg
        tiles[f"x{i}y{j}"] = (
            w + f[0] * tile_deg,
            s + f[1] * tile_deg,
            w + (1 - f[2]) * tile_deg,
            s + (1 - f[3]) * tile_deg,
        )
    return (lon, lat), tiles, region


@settings(max_examples=30, deadline=None)
@given(events())
def test_grid_is_on_the_region_lattice_and_covers_every_tile(
    ev: tuple[tuple[float, float], dict[str, BBox], int],
) -> None:
    epi, tiles, region = ev
    grid = event_grid(tiles.values(), epi, region)
    step = region * grid.resolution
    assert grid.west % step == 0 and grid.north % step == 0
    assert grid.shape[0] % region == 0 and grid.shape[1] % region == 0
    assert grid.transform.a == -grid.transform.e == 10.0
    outline = grid.region_box(grid.regions()[0]).union(grid.region_box(grid.regions()[-1])).envelope
    for b in tiles.values():
        assert outline.buffer(1e-6).contains(footprint(b, grid.epsg))


@settings(max_examples=30, deadline=None)
@given(events())
def test_tiles_map_to_disjoint_region_sets_that_cover_them(
    ev: tuple[tuple[float, float], dict[str, BBox], int],
) -> None:
    epi, tiles, region = ev
    grid = event_grid(tiles.values(), epi, region)
    owned = tile_regions(grid, tiles)
    assert set(owned) == set(tiles)
    flat = [i for v in owned.values() for i in v]
    assert len(flat) == len(set(flat))  # no region belongs to two tiles
    by_index = {r.index: r for r in grid.regions()}
    for tid, idx in owned.items():  # a tile's regions meet it
        f = footprint(tiles[tid], grid.epsg)
        assert all(grid.region_box(by_index[i]).intersection(f).area > 0 for i in idx)
    every = shapely.union_all([grid.region_box(by_index[i]) for i in flat])
    for b in tiles.values():  # together the regions cover every tile
        assert every.buffer(1e-6).contains(footprint(b, grid.epsg))
    meeting = {
        r.index
        for r in grid.regions()
        if any(grid.region_box(r).intersection(footprint(b, grid.epsg)).area > 0 for b in tiles.values())
    }
    assert set(flat) == meeting  # and only the regions that meet a tile
    assert regions_for(owned, tiles) == tuple(sorted(flat))


@settings(max_examples=20, deadline=None)
@given(events())
def test_a_grown_grid_shares_the_smaller_grids_chunks(
    ev: tuple[tuple[float, float], dict[str, BBox], int],
) -> None:
    epi, tiles, region = ev
    first = dict(list(tiles.items())[:1])
    small, big = event_grid(first.values(), epi, region), event_grid(tiles.values(), epi, region)
    rows, cols = big.offset_of(small)
    assert rows % region == 0 and cols % region == 0 and rows >= 0 and cols >= 0
    assert rows + small.shape[0] <= big.shape[0] and cols + small.shape[1] <= big.shape[1]
    assert big.transform * (cols, rows) == small.transform * (0, 0)


def test_hokkaido_tiles_on_one_grid() -> None:
    """Four 0.2-degree tiles around the Iburi epicentre: one UTM 54N grid, each tile its own regions."""
    tiles = {
        f"x{i}y{j}": (i * 0.2, j * 0.2, (i + 1) * 0.2, (j + 1) * 0.2) for i in (709, 710) for j in (213, 214)
    }
    grid = event_grid(tiles.values(), (142.007, 42.686), 512)
    assert isinstance(grid, EventGrid) and grid.epsg == 32654
    owned = tile_regions(grid, tiles)
    assert all(len(v) >= 6 for v in owned.values())  # 0.2 degree ~ 16 x 22 km; a region 5.1 km
    assert sum(len(v) for v in owned.values()) == len(set().union(*map(set, owned.values())))


@settings(max_examples=20, deadline=None)
@given(events())
def test_region_indices_follow_a_grown_grid(ev: tuple[tuple[float, float], dict[str, BBox], int]) -> None:
    epi, tiles, region = ev
    first = dict(list(tiles.items())[:1])
    small, big = event_grid(first.values(), epi, region), event_grid(tiles.values(), epi, region)
    old = [r.index for r in small.regions()]
    new = remap(small, big, old)
    by_new = {r.index: r for r in big.regions()}
    for i, j in zip(old, new, strict=True):  # the same ground, under its new index
        assert small.region_box(small.regions()[i]).equals(big.region_box(by_new[j]))
