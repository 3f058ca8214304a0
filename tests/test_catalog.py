"""Catalog tests against a real STAC API (``rustac serve`` on loopback) and static files.

The API serves the demo items (hrefs made absolute) and the real Planetary Computer items in
/work/shared/data/stac; no mocks.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pystac
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.catalog import (
    PLANETARY_COMPUTER_URL,
    Catalog,
    CatalogError,
    StacApiCatalog,
    StaticCatalog,
    is_signed,
    open_catalog,
    sign_items,
    strip_signature,
)
from pipeline.demo.scene import (
    DEMO_BBOX,
    DEMO_CATALOG,
    DEMO_DEM_END,
    DEMO_DEM_ITEM_ID,
    DEMO_DEM_START,
    DEMO_END,
    DEMO_S2_ITEM_ID,
    DEMO_START,
)
from pipeline.errors import UserError
from pipeline.geo import MAX_ABS_LAT, BBox, BBoxError, bbox_area_km2, bbox_suggestions, validate_bbox

S2 = "sentinel-2-l2a"
DEM = "cop-dem-glo-30"
D = dt.date
WORLD = (-180.0, -90.0, 180.0, 90.0)


def _rustac() -> str | None:
    found = shutil.which("rustac")
    if found:
        return found
    candidate = Path(sys.executable).parent / "rustac"
    return str(candidate) if candidate.exists() else None


def _pc_features(stac_dir: Path) -> list[dict[str, Any]]:
    """Real PC items from the shared data, one per id (a raster-ext variant repeats an id)."""
    feats: dict[str, dict[str, Any]] = {}
    for path in sorted(stac_dir.glob("*/*.json")):
        data = json.loads(path.read_text())
        docs = data if isinstance(data, list) else [data]
        for d in docs:
            if d.get("type") == "Feature":
                feats.setdefault(d["id"], d)
    return list(feats.values())


@pytest.fixture(scope="module")
def items_file(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    demo = [it.to_dict(transform_hrefs=False) for it in StaticCatalog(DEMO_CATALOG).items]
    path = tmp_path_factory.mktemp("stac") / "items.json"
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": demo + _pc_features(shared_data / "stac")})
    )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def api_url(items_file: Path) -> Iterator[str]:
    exe = _rustac()
    if exe is None:
        pytest.skip("rustac CLI not installed (pip install rustac)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [exe, "serve", str(items_file), "--addr", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/collections", timeout=1) as resp:
                    if resp.status == 200 and len(json.load(resp)["collections"]) >= 2:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(
                    f"rustac serve exited: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError("rustac serve did not answer within 30 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def api(api_url: str) -> StacApiCatalog:
    return StacApiCatalog(api_url, timeout=10)


@pytest.fixture(scope="module")
def static(items_file: Path) -> StaticCatalog:
    return StaticCatalog(items_file)


def ids(items: list[pystac.Item]) -> list[str]:
    return [it.id for it in items]


# (collection, bbox, start, end, max_cloud) -> expected ids, in order
CASES: list[
    tuple[tuple[str, tuple[float, float, float, float], dt.date, dt.date, float | None], list[str]]
] = [
    # a small box inside one Kamchatka tile
    (
        (S2, (171.2, 55.3, 171.4, 55.5), D(2019, 1, 1), D(2019, 1, 1), None),
        ["S2A_MSIL2A_20190101T000001_R116_T59UNB_20201007T214702"],
    ),
    # datetime: the Alaska scene (21:25 UTC) is inside an inclusive one-day window
    (
        (S2, WORLD, D(2019, 6, 29), D(2019, 6, 29), None),
        ["S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531"],
    ),
    ((S2, WORLD, D(2019, 6, 27), D(2019, 6, 28), None), []),
    # the Arctic scenes, then with a cloud limit
    (
        (S2, (90.0, 80.0, 100.0, 85.0), D(2024, 4, 1), D(2024, 4, 30), None),
        [
            "S2B_MSIL2A_20240419T095549_R122_T46XER_20240419T124342",
            "S2B_MSIL2A_20240419T095549_R122_T46XES_20240419T123824",
            "S2B_MSIL2A_20240419T095549_R122_T47XMJ_20240419T122756",
            "S2B_MSIL2A_20240419T095549_R122_T47XML_20240419T123458",
        ],
    ),
    (
        (S2, (90.0, 80.0, 100.0, 85.0), D(2024, 4, 1), D(2024, 4, 30), 0.5),
        [
            "S2B_MSIL2A_20240419T095549_R122_T46XER_20240419T124342",
            "S2B_MSIL2A_20240419T095549_R122_T47XML_20240419T123458",
        ],
    ),
    (
        (S2, (166.0, 53.0, 175.0, 60.0), D(2019, 1, 1), D(2019, 1, 1), 30.0),
        [
            "S2A_MSIL2A_20190101T000001_R116_T58UGE_20201007T214656",
            "S2A_MSIL2A_20190101T000001_R116_T59UMA_20201007T214658",
        ],
    ),
    # DEM tiles (no eo:cloud_cover: kept under a cloud limit)
    (
        (DEM, (-178.5, -90.0, -177.5, -89.5), D(2000, 1, 1), D(2030, 1, 1), 10.0),
        ["Copernicus_DSM_COG_10_S90_00_W178_00_DEM", "Copernicus_DSM_COG_10_S90_00_W179_00_DEM"],
    ),
    # the demo scene
    ((S2, DEMO_BBOX, DEMO_START, DEMO_END, 20.0), [DEMO_S2_ITEM_ID]),
    ((S2, DEMO_BBOX, D(2018, 9, 1), D(2018, 9, 5), None), []),
    ((DEM, DEMO_BBOX, DEMO_DEM_START, DEMO_DEM_END, None), [DEMO_DEM_ITEM_ID]),
]


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_api_search_returns_expected_ids(api: StacApiCatalog, query: Any, expected: list[str]) -> None:
    assert ids(api.search(*query)) == expected


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_static_file_matches_api(
    api: StacApiCatalog, static: StaticCatalog, query: Any, expected: list[str]
) -> None:
    from_file = static.search(*query)
    assert ids(from_file) == ids(api.search(*query)) == expected


def test_cloud_filter_without_server_query_extension(api: StacApiCatalog) -> None:
    # rustac's in-memory backend does not conform to the query extension: filtering is client-side
    assert not api.supports_query()
    everything = api.search(S2, (166.0, 53.0, 175.0, 60.0), D(2019, 1, 1), D(2019, 1, 1))
    limited = api.search(S2, (166.0, 53.0, 175.0, 60.0), D(2019, 1, 1), D(2019, 1, 1), max_cloud=50.0)
    assert len(everything) == 33
    assert ids(limited) == [it.id for it in everything if it.properties["eo:cloud_cover"] <= 50.0]
    assert 0 < len(limited) < len(everything)


def test_pagination_small_pages(api_url: str, api: StacApiCatalog) -> None:
    paged = StacApiCatalog(api_url, page_size=4, timeout=10)
    query = (S2, (166.0, 53.0, 175.0, 60.0), D(2019, 1, 1), D(2019, 1, 1))
    assert ids(paged.search(*query)) == ids(api.search(*query))


def test_results_sorted_by_datetime_then_id(api: StacApiCatalog) -> None:
    items = api.search(S2, WORLD, D(2018, 1, 1), D(2024, 12, 31))
    keys = [(it.datetime, it.id) for it in items]
    assert keys == sorted(keys)
    assert len(items) == 39  # 38 real items + the demo


def test_api_demo_hrefs_are_absolute_files(api: StacApiCatalog) -> None:
    (item,) = api.search(S2, DEMO_BBOX, DEMO_START, DEMO_END)
    for key in ("B02", "B12", "SCL"):
        assert Path(item.assets[key].href).is_absolute()
        assert Path(item.assets[key].href).is_file()


def test_unknown_collection(api: StacApiCatalog, static: StaticCatalog) -> None:
    for cat in (api, static):
        with pytest.raises(CatalogError, match="unknown collection 'landsat-c2-l2'"):
            cat.search("landsat-c2-l2", DEMO_BBOX, DEMO_START, DEMO_END)


def test_unreachable_api_fails_fast_with_one_line() -> None:
    port = _free_port()  # nothing listens there once the probe socket is closed
    cat = open_catalog(f"http://127.0.0.1:{port}/")
    t0 = time.monotonic()
    with pytest.raises(CatalogError) as info:
        cat.search(S2, DEMO_BBOX, DEMO_START, DEMO_END)
    assert time.monotonic() - t0 < 5
    message = str(info.value)
    assert message.startswith(f"cannot reach STAC API at http://127.0.0.1:{port}/: ")
    assert "\n" not in message
    assert isinstance(info.value, UserError)


def test_bad_window_and_bbox_are_user_errors(static: StaticCatalog) -> None:
    with pytest.raises(CatalogError, match="before start"):
        static.search(S2, DEMO_BBOX, D(2020, 1, 2), D(2020, 1, 1))
    with pytest.raises(BBoxError, match="split it"):
        static.search(S2, (179.0, 50.0, -179.0, 51.0), D(2020, 1, 1), D(2020, 1, 2))


# --- signing -------------------------------------------------------------------------------


class CountingSigner:
    """Appends ``?token=<n>`` to every asset href, n counting calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, item: pystac.Item) -> None:
        self.calls += 1
        for asset in item.assets.values():
            sep = "&" if "?" in asset.href else "?"
            asset.href = f"{asset.href}{sep}token=t{self.calls}"


def test_sign_items_returns_fresh_copies_and_resigns(static: StaticCatalog) -> None:
    items = static.search(S2, DEMO_BBOX, DEMO_START, DEMO_END)
    original = items[0].assets["B02"].href
    signer = CountingSigner()
    first = sign_items(items, signer)
    second = sign_items(first, signer)
    assert signer.calls == 2
    assert items[0].assets["B02"].href == original  # inputs untouched
    assert first[0].assets["B02"].href == f"{original}?token=t1"
    assert second[0].assets["B02"].href == f"{original}?token=t2"  # old token replaced, not stacked
    assert first[0] is not items[0] and second[0] is not first[0]
    assert is_signed(second[0].assets["B02"].href) and not is_signed(original)
    assert strip_signature(second[0].assets["B02"].href) == original


def test_api_catalog_applies_signer_per_search(api_url: str) -> None:
    signer = CountingSigner()
    cat = StacApiCatalog(api_url, signer=signer, timeout=10)
    a = cat.search(S2, DEMO_BBOX, DEMO_START, DEMO_END)
    b = cat.search(S2, DEMO_BBOX, DEMO_START, DEMO_END)
    assert a[0].assets["B02"].href.endswith("?token=t1")
    assert b[0].assets["B02"].href.endswith("?token=t2")


def test_strip_signature_examples() -> None:
    sas = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/x/B02_10m.tif?st=2026-01-01&se=2026-01-02&sp=rl&sig=abc%3D"
    assert strip_signature(sas) == "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/x/B02_10m.tif"
    assert strip_signature("/data/B02.tif") == "/data/B02.tif"
    # non-signature query parameters survive re-signing (tile JSON links), signatures do not
    tilejson = "https://planetarycomputer.microsoft.com/api/data/v1/item/tilejson.json?collection=c&item=i"
    item = pystac.Item("x", None, None, dt.datetime(2020, 1, 1, tzinfo=dt.UTC), {})
    item.add_asset("tilejson", pystac.Asset(tilejson))
    item.add_asset("data", pystac.Asset(sas))
    (unsigned,) = sign_items([item], None)
    assert unsigned.assets["tilejson"].href == tilejson
    assert unsigned.assets["data"].href == strip_signature(sas)


# --- open_catalog and static files ---------------------------------------------------------


def test_open_catalog_dispatch(items_file: Path) -> None:
    import planetary_computer

    pc = open_catalog(None)
    assert isinstance(pc, StacApiCatalog)
    assert pc.url == PLANETARY_COMPUTER_URL and pc.signer is planetary_computer.sign_inplace
    other = open_catalog("https://earth-search.aws.element84.com/v1")
    assert isinstance(other, StacApiCatalog) and other.signer is None
    assert isinstance(open_catalog(str(items_file)), StaticCatalog)
    assert isinstance(open_catalog(str(DEMO_CATALOG)), Catalog)
    with pytest.raises(CatalogError, match="neither an http"):
        open_catalog("/no/such/catalog.json")


def test_static_catalog_resolves_relative_hrefs() -> None:
    cat = StaticCatalog(DEMO_CATALOG)
    (item,) = cat.search(S2, DEMO_BBOX, DEMO_START, DEMO_END)
    assert item.assets["B04"].href == str(DEMO_CATALOG.parent / "B04.tif")


def test_static_catalog_json_is_walked(tmp_path: Path) -> None:
    root = pystac.Catalog("root", "test catalog")
    sub = pystac.Catalog("sub", "child catalog")
    root.add_child(sub)
    for i, day in enumerate((3, 10)):
        item = pystac.Item(
            f"item-{i}",
            {"type": "Polygon", "coordinates": [[[10, 10], [11, 10], [11, 11], [10, 11], [10, 10]]]},
            [10, 10, 11, 11],
            dt.datetime(2021, 5, day, tzinfo=dt.UTC),
            {"eo:cloud_cover": 10.0 * i},
            collection="demo-col",
        )
        item.add_asset("data", pystac.Asset(f"./item-{i}.tif"))
        sub.add_item(item)
    root.normalize_hrefs(str(tmp_path / "cat"))
    root.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    cat = open_catalog(str(tmp_path / "cat" / "catalog.json"))
    found = cat.search("demo-col", (10.5, 10.5, 12, 12), D(2021, 5, 1), D(2021, 5, 31))
    assert ids(found) == ["item-0", "item-1"]
    href = found[1].assets["data"].href
    assert Path(href).is_absolute() and href == str(tmp_path / "cat" / "sub" / "item-1" / "item-1.tif")
    assert ids(cat.search("demo-col", (10.5, 10.5, 12, 12), D(2021, 5, 1), D(2021, 5, 31), 5.0)) == ["item-0"]
    assert cat.search("demo-col", (20, 20, 21, 21), D(2021, 5, 1), D(2021, 5, 31)) == []


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda d: d["properties"].pop("datetime"), "'BROKEN-1'.*no datetime"),
        (lambda d: d.pop("assets"), "'BROKEN-1'.*missing 'assets'"),
        (lambda d: d.update(type="Catalog"), "'BROKEN-1'.*not 'Feature'"),
    ],
)
def test_malformed_item_names_item_and_file(tmp_path: Path, mutate: Any, pattern: str) -> None:
    good = json.loads(DEMO_CATALOG.read_text())["features"][0]
    bad = json.loads(json.dumps(good))
    bad["id"] = "BROKEN-1"
    mutate(bad)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [good, bad]}))
    with pytest.raises(CatalogError, match=pattern) as info:
        StaticCatalog(path)
    assert str(path) in str(info.value)


def test_not_json_is_a_catalog_error(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(CatalogError, match="cannot read STAC file"):
        open_catalog(str(path))


# --- validate_bbox -------------------------------------------------------------------------

lons = st.floats(-180, 180, allow_nan=False)
lats = st.floats(-90, 90, allow_nan=False)


@given(lons, lons, lats, lats)
def test_validate_bbox_property(x0: float, x1: float, y0: float, y1: float) -> None:
    bbox = (x0, y0, x1, y1)
    if x0 < x1 and y0 < y1:
        assert validate_bbox(bbox) == bbox
        if abs(y0) <= MAX_ABS_LAT and abs(y1) <= MAX_ABS_LAT:
            assert BBox.parse(bbox) == bbox and BBox.parse(BBox.parse(bbox)) == bbox
        else:
            with pytest.raises(BBoxError, match="outside \\[-84, 84\\]"):
                BBox.parse(bbox)
    else:
        with pytest.raises(BBoxError, match="bad bbox"):
            validate_bbox(bbox)


@given(lons, lons, st.floats(-MAX_ABS_LAT, MAX_ABS_LAT), st.floats(-MAX_ABS_LAT, MAX_ABS_LAT))
def test_inverted_bbox_hints_are_valid_boxes_covering_the_intended_area(
    x0: float, x1: float, y0: float, y1: float
) -> None:
    """South > north is named; every suggested box is valid; together they span what was meant."""
    hints = bbox_suggestions((x0, y0, x1, y1))
    for hint in hints:
        assert BBox(*hint) == hint
    if x0 == x1 or y0 == y1:
        assert hints == []
        return
    lo, hi = min(y0, y1), max(y0, y1)
    assert all((h[1], h[3]) == (lo, hi) for h in hints)
    width = sum(h[2] - h[0] for h in hints)
    # West > east: the narrower reading, across 180 (two boxes) or with west and east swapped.
    assert width == pytest.approx(min(abs(x1 - x0), 360.0 - abs(x1 - x0)) if x0 > x1 else x1 - x0, abs=1e-9)
    assert len(hints) == (2 if x0 - x1 > 180.0 and x0 != 180.0 and x1 != -180.0 else 1)
    if y0 > y1:
        with pytest.raises(BBoxError, match="is north of north"):
            BBox(x0, y0, x1, y1)


def test_swapped_west_east_suggests_the_swap_not_a_split() -> None:
    with pytest.raises(BBoxError) as info:
        BBox(10.2, 40.0, 10.0, 41.0)
    message = str(info.value)
    assert "did you mean (10, 40, 10.2, 41)?" in message and "antimeridian" not in message
    with pytest.raises(BBoxError) as info:
        BBox(179.5, -17.0, -179.5, -16.0)
    split = "crosses the antimeridian; split it into (179.5, -17, 180, -16) and (-180, -17, -179.5, -16)"
    assert split in str(info.value)


def test_south_north_of_north_is_reported_with_a_valid_box() -> None:
    with pytest.raises(BBoxError) as info:
        BBox(141.9, 42.85, 142.1, 42.7)
    assert "south 42.85 is north of north 42.7" in str(info.value)
    assert "did you mean (141.9, 42.7, 142.1, 42.85)?" in str(info.value)
    with pytest.raises(BBoxError, match=r"north latitude 90 outside \[-84, 84\]"):
        BBox(0, 0, 1, 90)


@given(
    st.tuples(lons, lats, lons, lats),
    st.sampled_from(range(4)),
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not -90 <= v <= 90),
        st.just(float("nan")),
    ),
)
def test_validate_bbox_rejects_out_of_range(
    bbox: tuple[float, float, float, float], index: int, bad: float
) -> None:
    values = list(bbox)
    values[index] = bad
    if index in (0, 2) and -180 <= bad <= 180:
        return  # a valid longitude
    with pytest.raises(BBoxError):
        validate_bbox(values)


@pytest.mark.parametrize(
    "bbox", [(1, 2, 3), (1, 2, 3, 4, 5), ("a", 0, 1, 1), (179, 0, -179, 1), (0, 5, 1, 5), (0, 0, 0, 1)]
)
def test_validate_bbox_examples(bbox: Any) -> None:
    with pytest.raises(BBoxError, match="bad bbox"):
        validate_bbox(bbox)


def test_catalogs_satisfy_protocol(items_file: Path) -> None:
    for cat in itertools.chain([StaticCatalog(items_file)], [StacApiCatalog("http://127.0.0.1:9")]):
        assert isinstance(cat, Catalog)


def test_the_old_catalog_names_still_import() -> None:
    """The split kept ``from pipeline.catalog import ...`` working for the bbox names."""
    import pipeline.catalog as catalog
    import pipeline.geo as geo

    for name in ("BBox", "validate_bbox", "MAX_ABS_LAT", "bbox_suggestions", "Bounds"):
        assert getattr(catalog, name) is getattr(geo, name)


def test_bbox_area_is_geodesic() -> None:
    # One degree square at the equator: 111.32 km x 110.57 km on WGS84.
    assert bbox_area_km2((0.0, 0.0, 1.0, 1.0)) == pytest.approx(12308.8, rel=1e-3)
