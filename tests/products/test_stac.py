from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema.exceptions import ValidationError

from pipeline.products.stac_item import strip_query

from .stac_validation import assert_valid, stac_errors
from .store_fixture import make_store


def _item(exported) -> dict:
    return json.loads(exported.paths["item"].read_text())


def test_item_validates_offline(exported) -> None:
    assert_valid(_item(exported))


def test_collection_validates_offline(exported) -> None:
    assert_valid(json.loads(exported.paths["collection"].read_text()))


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d.pop("bbox"),
        lambda d: d["properties"].pop("datetime"),
        lambda d: d["properties"].__setitem__("proj:shape", [384]),
        lambda d: d["properties"].__setitem__("proj:epsg", 32654),  # removed in projection v2
        lambda d: d["assets"]["cog"]["raster:bands"][0].__setitem__("nodata", "none"),
        lambda d: d["assets"]["cog"]["raster:bands"][0].__setitem__("data_type", "float"),
        lambda d: d["stac_extensions"].append("https://example.invalid/unknown/v1.0.0/schema.json"),
    ],
)
def test_broken_items_fail(exported, breakage) -> None:
    broken = copy.deepcopy(_item(exported))
    breakage(broken)
    assert stac_errors(broken)
    with pytest.raises(ValidationError):
        assert_valid(broken)


def test_broken_collection_fails(exported) -> None:
    coll = json.loads(exported.paths["collection"].read_text())
    coll["extent"]["temporal"]["interval"] = ["2018-09-01"]
    assert stac_errors(coll)


def test_item_content(exported, store) -> None:
    item = _item(exported)
    props = item["properties"]
    assert props["datetime"] == props["end_datetime"] == "2018-09-30T23:59:59Z"
    assert props["start_datetime"] == "2018-09-01T00:00:00Z"
    assert props["proj:code"] == "EPSG:32654"
    assert props["proj:shape"] == [384, 640]
    assert props["proj:transform"] == list(store.transform)[:6]
    assert props["proj:bbox"] == [570000.0, 4731160.0, 576400.0, 4735000.0]
    assert props["landslide:polygon_count"] == exported.polygon_count
    west, south, east, north = item["bbox"]
    assert 141.8 < west < east < 142.0 and 42.7 < south < north < 42.8
    assets = item["assets"]
    assert set(assets) == {"zarr", "cog", "polygons", "polygons_geojson", "pyramid", "quicklook"}
    assert assets["cog"]["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert assets["cog"]["raster:bands"][0]["nodata"] == "nan"
    assert assets["cog"]["raster:bands"][0]["data_type"] == "float32"
    assert assets["polygons_geojson"]["proj:code"] == "EPSG:4326"
    assert assets["pyramid"]["proj:code"] == "EPSG:3857"
    assert assets["quicklook"]["roles"] == ["overview"]
    base = exported.paths["item"].parent
    for asset in assets.values():  # relative hrefs that resolve to the written products
        assert not Path(asset["href"]).is_absolute()
        assert (base / asset["href"]).exists()
    derived = [lk["href"] for lk in item["links"] if lk["rel"] == "derived_from"]
    assert len(derived) == 2 and all("?" not in h for h in derived)
    assert item["collection"] == "iburi-2018"


def test_strip_query() -> None:
    assert (
        strip_query("https://x.blob.core.windows.net/a/b.tif?st=1&sig=abc")
        == "https://x.blob.core.windows.net/a/b.tif"
    )
    assert strip_query("https://h/p#frag") == "https://h/p"
    assert strip_query("/data/item.json") == "/data/item.json"
    assert strip_query("/data/item.json?sig=1#x") == "/data/item.json"
    assert strip_query("https://u:p@h:81/p?q#f") == "https://h:81/p"


def test_rustac_validates_core_offline(exported, tmp_path: Path) -> None:
    """rustac has the core schemas built in; extensions it would download, so strip them here."""
    # The venv's scripts directory need not be on PATH (make test calls .venv/bin/python).
    rustac = shutil.which("rustac", path=str(Path(sys.executable).parent)) or shutil.which("rustac")
    assert rustac is not None, "rustac is a test dependency (pip install -e '.[test]')"
    core_only = _item(exported)
    core_only["stac_extensions"] = []
    path = tmp_path / "item.json"
    path.write_text(json.dumps(core_only))
    ok = subprocess.run([rustac, "validate", str(path)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    core_only.pop("bbox")
    path.write_text(json.dumps(core_only))
    bad = subprocess.run([rustac, "validate", str(path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0


_PC_ITEMS = "https://planetarycomputer.microsoft.com/api/stac/v1/collections"
_SAS = (
    "st=2026-11-30T00%3A00%3A00Z&se=2026-12-01T00%3A00%3A00Z&sp=rl&sv=2024-05-04&sr=c&skoid=abc"
    "&sig=SECRETsig%3D"
)


def test_derived_from_links_are_canonical_and_unsigned(tmp_path: Path) -> None:
    """Each input scene links its own STAC Item URL; no signature or credential reaches the Item."""
    from pipeline.products.export import export_products

    static_item = tmp_path / "catalog" / "s2" / "item-b.json"
    scenes = [
        {  # a STAC API item whose recorded URL came back signed
            "id": "S2A_a",
            "collection": "sentinel-2-l2a",
            "href": f"{_PC_ITEMS}/sentinel-2-l2a/items/S2A_a?{_SAS}",
        },
        {  # credentials in the user info and a token in the fragment
            "id": "dem_a",
            "collection": "cop-dem-glo-30",
            "href": "https://user:SECRETpw@stac.example.org:8443/collections/dem/items/dem_a#token=SECRETfrag",
        },
        {"id": "S2A_b", "collection": "sentinel-2-l2a", "href": f"{static_item}?token=SECRETtok"},
        {"id": "S2A_c", "collection": "sentinel-2-l2a", "href": "S2A_c"},  # item of an ItemCollection file
    ]
    store = make_store(tmp_path / "s.zarr", scenes=scenes)
    paths = export_products(store.path, tmp_path / "out")
    text = paths["item"].read_text()
    for secret in ("SECRET", "sig=", "se=", "st=", "skoid", "token", "user:"):
        assert secret not in text, secret
    item = json.loads(text)
    derived = {lk["title"]: lk["href"] for lk in item["links"] if lk["rel"] == "derived_from"}
    assert derived == {
        "S2A_a": f"{_PC_ITEMS}/sentinel-2-l2a/items/S2A_a",
        "dem_a": "https://stac.example.org:8443/collections/dem/items/dem_a",
        "S2A_b": str(static_item),
    }  # a bare id would resolve to nothing beside item.json: no link
    assert item["properties"]["landslide:source_items"] == [
        {"id": s["id"], "collection": s["collection"]} for s in scenes
    ]
    assert_valid(item)
