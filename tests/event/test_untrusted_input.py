"""Untrusted input (a feed, a detail document, a ShakeMap) never reaches outside OUT, one test per fault.

The remote documents are served from 127.0.0.1 (:func:`tests.servers.blob_server`): the only
thing stood in for is the internet.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.demo.scene import DEMO_CATALOG
from pipeline.errors import UserError
from pipeline.event.config import MAX_DOCUMENT_BYTES, MAX_GRID_BYTES, PlanOptions
from pipeline.event.plan import event_dir, plan_event
from pipeline.event.state import EventRecord, event_lock
from pipeline.event.usgs import FeedError, parse_feed, read_bytes, read_detail, shakemap_ref

from ..servers import blob_server
from . import shakemap_fixtures as fx
from .conftest import FEED_DEMO, TEST_RADIUS_KM

LOMA = "usgs/shakemap/lomaprieta1989_19891018000415_atlas_grid.xml"
HOKKAIDO_DETAIL = "usgs/detail/us2000h8ty_hokkaido2018_detail_20181116.geojson"
LOG = logging.getLogger("test")


def _quake(detail: str | None, event_id: str = fx.EVENT) -> EventRecord:
    return EventRecord(
        id=event_id, kind="earthquake", status="pending", bbox=[0, 0, 1, 1],
        event_time="2018-09-06T18:07:59+00:00", first_seen="x", updated="x", magnitude=6.6,
        lon=141.968, lat=42.782, detail=detail,
    )  # fmt: skip


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _plan(rec: EventRecord, out: Path) -> None:
    plan_event(rec, str(out), PlanOptions(max_radius_km=TEST_RADIUS_KM), str(DEMO_CATALOG), LOG)


# ---------------------------------------------------------------------------------------------
# ids, sources and versions


@pytest.mark.parametrize("bad", ["../../evil", "a/b", "..", ".hidden", "", "x" * 129, "a\nb", "/abs"])
def test_an_unsafe_event_id_never_names_a_path(tmp_path: Path, bad: str) -> None:
    doc = json.loads(FEED_DEMO.read_text())
    doc["features"][0]["id"] = bad
    ids = [q.id for q in parse_feed(doc)]
    assert bad not in ids and "us2000ocean" in ids  # the rest of the feed still counts
    with pytest.raises(UserError, match="event id"):
        event_dir(tmp_path / "out", bad)
    with pytest.raises(UserError, match="event id"):
        event_lock(tmp_path / "out", bad)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="event id"):
        _plan(_quake(None, bad), out)
    assert _files(tmp_path) == set()  # nothing written, inside OUT or beside it


@pytest.mark.parametrize(("field", "bad"), [("source", "../../../x"), ("version", "1/../../x")])
def test_an_unsafe_shakemap_source_or_version_is_refused(
    tmp_path: Path, shared_data: Path, field: str, bad: str
) -> None:
    grid = fx.write_grid(shared_data / LOMA, tmp_path / "grid.xml")
    detail = fx.write_detail(shared_data / HOKKAIDO_DETAIL, tmp_path / "detail.json", str(grid))
    doc = json.loads(detail.read_text())
    product = doc["properties"]["products"]["shakemap"][0]
    if field == "source":
        product["source"] = bad
    else:
        product["properties"]["version"] = bad
    detail.write_text(json.dumps(doc))
    with pytest.raises(FeedError, match=f"ShakeMap {field}"):
        shakemap_ref(read_detail(str(detail)), str(detail))
    before = _files(tmp_path)
    out = tmp_path / "out"
    rec = _quake(str(detail))
    _plan(rec, out)  # the plan falls back to the Keefer disc and says why
    assert rec.area_source == "keefer" and f"ShakeMap {field}" in rec.area_note
    assert {p for p in _files(tmp_path) - before if not p.is_relative_to(out)} == set()
    assert not (out / fx.EVENT / "shakemap").exists()


# ---------------------------------------------------------------------------------------------
# a remote document may only point to http(s)


@pytest.mark.parametrize("scheme", ["path", "file"])
def test_a_remote_detail_document_cannot_point_to_a_local_grid(
    tmp_path: Path, shared_data: Path, scheme: str
) -> None:
    (tmp_path / "private").mkdir()
    secret = fx.write_grid(shared_data / LOMA, tmp_path / "private" / "grid.xml")  # a file of this machine
    link = str(secret) if scheme == "path" else f"file://{secret}"
    served = tmp_path / "served"
    served.mkdir()
    fx.write_detail(shared_data / HOKKAIDO_DETAIL, served / "detail.json", link)
    with blob_server(served) as (base, _):
        url = f"{base}/detail.json"
        with pytest.raises(FeedError, match="refused: a remote document may only point to http"):
            shakemap_ref(read_detail(url), url)
        out = tmp_path / "out"
        rec = _quake(url)
        _plan(rec, out)
    assert rec.area_source == "keefer" and "refused" in rec.area_note
    assert not (out / fx.EVENT / "shakemap").exists()  # the local grid was neither read nor published


def test_a_local_detail_document_may_point_to_a_local_grid(tmp_path: Path, shared_data: Path) -> None:
    """The user's own files: a detail document given as a file may name a grid file."""
    grid = fx.write_grid(shared_data / LOMA, tmp_path / "grid.xml")
    detail = fx.write_detail(shared_data / HOKKAIDO_DETAIL, tmp_path / "detail.json", f"file://{grid}")
    ref = shakemap_ref(read_detail(str(detail)), str(detail))
    assert ref is not None and ref.grid_url == f"file://{grid}"


def test_a_remote_feed_cannot_point_to_a_local_detail_document() -> None:
    doc = json.loads(FEED_DEMO.read_text())
    ocean = next(f for f in doc["features"] if f["id"] == "us2000ocean")
    ocean["properties"]["detail"] = "/etc/passwd"
    remote = {q.id: q.detail for q in parse_feed(doc, "https://earthquake.usgs.gov/feed.geojson")}
    local = {q.id: q.detail for q in parse_feed(doc, str(FEED_DEMO))}
    assert remote["us2000ocean"] == "" and local["us2000ocean"] == "/etc/passwd"
    assert remote["us2000demo"].startswith("https://")  # http(s) links are kept


# ---------------------------------------------------------------------------------------------
# size limits


class _NoLengthHandler(http.server.BaseHTTPRequestHandler):
    """Streams 4 kB without a Content-Length (the size is known only by reading)."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        for _ in range(4):
            self.wfile.write(b" " * 1024)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def no_length_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoLengthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/big.json"
    server.shutdown()
    server.server_close()


def test_downloads_larger_than_their_limit_are_refused(tmp_path: Path, no_length_url: str) -> None:
    (tmp_path / "doc.json").write_bytes(b" " * 4096)
    with blob_server(tmp_path) as (base, _):
        assert len(read_bytes(f"{base}/doc.json", max_bytes=4096)) == 4096
        with pytest.raises(FeedError, match="larger than 4,000 bytes"):  # said by its Content-Length
            read_bytes(f"{base}/doc.json", max_bytes=4000)
    assert len(read_bytes(no_length_url, max_bytes=4096)) == 4096
    with pytest.raises(FeedError, match="larger than 4,000 bytes"):  # found while reading
        read_bytes(no_length_url, max_bytes=4000)
    with pytest.raises(FeedError, match="larger than 4,000 bytes"):  # a file
        read_bytes(str(tmp_path / "doc.json"), max_bytes=4000)


def test_documents_and_grids_have_their_own_limits(tmp_path: Path, shared_data: Path) -> None:
    """A detail document over MAX_DOCUMENT_BYTES and a grid over MAX_GRID_BYTES are not read."""
    huge_doc = tmp_path / "detail.json"
    with huge_doc.open("wb") as f:  # sparse: no disk used
        f.truncate(MAX_DOCUMENT_BYTES + 1)
    with pytest.raises(FeedError, match=f"larger than {MAX_DOCUMENT_BYTES:,} bytes"):
        read_detail(str(huge_doc))
    huge_grid = tmp_path / "grid.xml"
    with huge_grid.open("wb") as f:
        f.truncate(MAX_GRID_BYTES + 1)
    detail = fx.write_detail(shared_data / HOKKAIDO_DETAIL, tmp_path / "d.json", str(huge_grid))
    rec = _quake(str(detail))
    _plan(rec, tmp_path / "out")
    assert rec.area_source == "keefer" and f"larger than {MAX_GRID_BYTES:,} bytes" in rec.area_note
    assert not any((tmp_path / "out" / fx.EVENT / "shakemap").glob("*.xml"))
