from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import UserError
from pipeline.products.export import FILE_NAMES, export_products, export_summary

from .stac_validation import assert_valid
from .store_fixture import X0, Y0, make_store


def test_every_product_written(exported) -> None:
    for key in FILE_NAMES:
        assert exported.paths[key].exists(), key
    leftovers = [p.name for p in exported.paths["item"].parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temporary files left behind


def test_refuses_incomplete_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "partial.zarr", status="in_progress")
    with pytest.raises(UserError, match="not a complete sweep"):
        export_products(store.path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["export", str(store.path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("landslide: error:") and "\n" not in err


def test_refuses_missing_store_and_bad_args(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no result store"):
        export_products(tmp_path / "nope.zarr", tmp_path / "out")
    (tmp_path / "not.zarr").mkdir()
    with pytest.raises(UserError):
        export_products(tmp_path / "not.zarr", tmp_path / "out")


def test_cli_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "s.zarr", event_id=None)
    rc = main(
        [
            "export",
            str(store.path),
            "--out",
            str(tmp_path / "out"),
            "--min-area",
            "1000",
            "--threshold",
            "0.7",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    n = len([b for b in store.blobs if b.pixels * 100 >= 1000])
    assert out.startswith(f"{n} landslide polygon(s), ")
    assert "km2 at threshold 0.7" in out
    assert str(tmp_path / "out" / "probability.tif") in out
    item = json.loads((tmp_path / "out" / "item.json").read_text())
    assert item["id"].startswith("sweep-") and item["id"].endswith("_2018-09-01_2018-09-30")
    assert item["properties"]["landslide:threshold"] == 0.7


def test_series_collection_two_sweeps_idempotent(tmp_path: Path) -> None:
    """Two sweeps of the same area (the second after later images, and a bit wider) -> one collection."""
    coll = tmp_path / "series" / "collection.json"
    a = make_store(tmp_path / "a.zarr", start="2018-09-01", end="2018-09-15")
    b = make_store(
        tmp_path / "b.zarr", start="2018-09-16", end="2018-10-15", seed=1, x0=X0 + 2000, y0=Y0 + 1000
    )
    # export the later one first: the collection orders by end date regardless
    sb = export_summary(b.path, tmp_path / "out-b", collection_path=coll)
    sa = export_summary(a.path, tmp_path / "out-a", collection_path=coll)
    first = coll.read_text()
    c = json.loads(first)
    assert_valid(c)
    items = [lk for lk in c["links"] if lk["rel"] == "item"]
    assert [lk["title"] for lk in items] == [sa.item_id, sb.item_id]
    assert c["extent"]["temporal"]["interval"] == [["2018-09-01T00:00:00Z", "2018-10-15T23:59:59Z"]]
    ia = json.loads((tmp_path / "out-a" / "item.json").read_text())
    ib = json.loads((tmp_path / "out-b" / "item.json").read_text())
    union = c["extent"]["spatial"]["bbox"][0]
    for item in (ia, ib):
        assert_valid(item)
        assert item["collection"] == c["id"]
        w, s, e, n = item["bbox"]
        assert union[0] <= w and union[1] <= s and union[2] >= e and union[3] >= n
    assert union[0] == ia["bbox"][0] and union[2] == ib["bbox"][2]
    # re-exporting a sweep changes nothing in the collection
    export_summary(a.path, tmp_path / "out-a", collection_path=coll)
    assert coll.read_text() == first
    assert json.loads((tmp_path / "out-a" / "item.json").read_text()) == ia


def test_reexport_replaces_products_atomically(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.zarr")
    out = tmp_path / "out"
    paths = export_products(store.path, out)
    before = {k: os.stat(p).st_ino for k, p in paths.items() if k in FILE_NAMES and p.is_file()}
    paths = export_products(store.path, out, threshold=0.9)
    after = {k: os.stat(p).st_ino for k, p in paths.items() if k in FILE_NAMES and p.is_file()}
    assert set(before) == set(after)
    assert all(before[k] != after[k] for k in before)  # new files renamed into place
    assert sorted(p.name for p in out.iterdir()) == sorted(FILE_NAMES.values())


def _tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (a product or a directory of them), by relative path."""
    if root.is_file():
        return {root.name: root.read_bytes()}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_geojson_layer_is_named_landslides(exported) -> None:
    import pyogrio

    path = exported.paths["polygons_geojson"]
    assert json.loads(path.read_text())["name"] == "landslides"  # not the temporary file name
    assert [str(name) for name, _ in pyogrio.list_layers(path)] == ["landslides"]  # what ogrinfo/QGIS show
    # GeoParquet stores no layer name: GDAL names the layer after the (final) file, landslides.parquet.


def test_reexport_is_byte_identical(tmp_path: Path) -> None:
    """Exporting the same store again, here or elsewhere, writes the same bytes in every product."""
    store = make_store(tmp_path / "s.zarr")
    first = export_products(store.path, tmp_path / "a")
    before = {key: _tree_bytes(first[key]) for key in FILE_NAMES}
    again = export_products(store.path, tmp_path / "a")
    elsewhere = export_products(store.path, tmp_path / "b")
    for key in FILE_NAMES:
        assert _tree_bytes(again[key]) == before[key], key
        assert _tree_bytes(elsewhere[key]) == before[key], key
    assert sum(len(b) for b in before["pyramid"].values()) > 0


def test_readme_snippet_to_open_the_outputs_runs_as_written(exported, tmp_path: Path) -> None:
    """README's "Open the outputs" block, in a fresh interpreter, gives ds.rio.crs and ds.odc.geobox."""
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Open the outputs") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    snippet = code.group(1)
    snippet = snippet.replace("out/demo.zarr", str(exported.paths["zarr"]))
    snippet = snippet.replace("out/demo-products/landslides.parquet", str(exported.paths["polygons"]))
    check = "\nprint(ds.rio.crs.to_epsg(), ds.odc.geobox.crs.epsg, len(slides))\n"
    cmd = [sys.executable, "-c", snippet + check]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:2] == ["32654", "32654"]
