"""Remote reads: transient HTTP errors, a scene that stays unreadable, expiring tokens, all cloud.

The demo COGs are served by a real HTTP server on 127.0.0.1 (``tests.servers.blob_server``:
Range requests, injected 503s, ``?token=&exp=`` checks) standing in for blob storage; GDAL reads
them over ``/vsicurl/`` in real Dask worker processes. Two Sentinel-2 items point at two copies of
the demo scene (a day apart), so skipping one leaves the other and the mosaic is unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from distributed import Client, LocalCluster

from pipeline.demo import scene
from pipeline.errors import UserError
from pipeline.store import open_result
from pipeline.sweep import SweepConfig, run_sweep
from tests.servers import BlobRules, blob_server, store_bytes

pytestmark = pytest.mark.slow

W, S, E, N = scene.DEMO_BBOX
#: The west 55 % of the demo (384 x 384 px once padded to whole chips).
BBOX = (W, S, W + 0.55 * (E - W), N)
SECOND_ID = "S2_MSIL2A_20180912_T54TWN_L4S-DEMO-COPY"
#: Totals of this module (``tests/reliability_report.py`` prints them).
FIGURES: dict[str, int] = {"bytes": 0, "http_503_absorbed": 0, "tokens": 0}


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as c:  # fmt: skip
        yield c


@pytest.fixture(scope="module")
def blob_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two copies of the demo scene files: ``a/`` and ``b/``."""
    root = tmp_path_factory.mktemp("blobs")
    for sub in ("a", "b"):
        shutil.copytree(scene.DEMO_DIR, root / sub)
    return root


def write_catalog(dest: Path, base: str, scenes: tuple[str, ...] = ("a", "b")) -> Path:
    """The demo ItemCollection with asset hrefs on ``base``: one S2 item per copy, DEM from ``a/``."""
    doc = json.loads(scene.DEMO_CATALOG.read_text())
    s2 = next(f for f in doc["features"] if f["collection"] == scene.DEMO_S2_COLLECTION)
    dem = next(f for f in doc["features"] if f["collection"] == scene.DEMO_DEM_COLLECTION)
    features = []
    for n, sub in enumerate(scenes):
        item = json.loads(json.dumps(s2))
        if n:
            item["id"] = SECOND_ID
            when = dt.datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
            item["properties"]["datetime"] = (when + dt.timedelta(days=1)).isoformat().replace("+00:00", "Z")
        for asset in item["assets"].values():
            asset["href"] = f"{base}/{sub}/{asset['href'].removeprefix('./')}"
        features.append(item)
    for asset in dem["assets"].values():
        asset["href"] = f"{base}/a/{asset['href'].removeprefix('./')}"
    doc["features"] = [*features, dem]
    dest.write_text(json.dumps(doc))
    return dest


def _cfg(out: Path, catalog: Path, ckpt: Path, **kw: object) -> SweepConfig:
    base: dict[str, object] = dict(
        bbox=BBOX, start=scene.DEMO_START, end=scene.DEMO_END, out=out, catalog=str(catalog),
        checkpoint=ckpt, block=512, region_blocks=1, progress=False, device="cpu",
        read_retries=4, retry_delay_s=0.1,
    )  # fmt: skip
    base.update(kw)
    return SweepConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, client: Client, tiny_unet_checkpoint: Path) -> Path:
    """The same area swept from the local files (one scene, no HTTP)."""
    out = tmp_path_factory.mktemp("io") / "reference.zarr"
    run_sweep(_cfg(out, scene.DEMO_CATALOG, tiny_unet_checkpoint), client=client)
    return out


def test_transient_503s_are_retried_and_change_nothing(
    tmp_path: Path, blob_root: Path, client: Client, reference: Path, tiny_unet_checkpoint: Path
) -> None:
    rules = BlobRules(fail_every=5, fail_first={"a/B04.tif": 3, "a/SCL.tif": 2, "a/dem.tif": 2})
    with blob_server(blob_root, rules) as (url, rules):
        cat = write_catalog(tmp_path / "cat.json", url)
        summary = run_sweep(_cfg(tmp_path / "flaky.zarr", cat, tiny_unet_checkpoint), client=client)
    assert rules.failures >= 10, rules.failures
    assert summary.skipped_scenes == [] and len(summary.scenes) == 2
    assert store_bytes(tmp_path / "flaky.zarr") == store_bytes(reference)
    FIGURES["http_503_absorbed"] += rules.failures
    FIGURES["bytes"] += sum(len(v) for v in store_bytes(reference).values())


def test_a_scene_that_stays_unreadable_is_skipped_and_named(
    tmp_path: Path, blob_root: Path, client: Client, reference: Path, tiny_unet_checkpoint: Path
) -> None:
    with blob_server(blob_root, BlobRules(always_fail={"b/"})) as (url, _rules):
        cat = write_catalog(tmp_path / "cat.json", url)
        summary = run_sweep(_cfg(tmp_path / "skip.zarr", cat, tiny_unet_checkpoint), client=client)
    assert summary.skipped_scenes == [SECOND_ID]
    assert summary.scenes == [scene.DEMO_S2_ITEM_ID]
    assert any(SECOND_ID in line and line.startswith("warning:") for line in summary.lines())
    attrs = open_result(tmp_path / "skip.zarr").attrs
    assert attrs["landslide:skipped_scenes"] == [SECOND_ID]
    assert "503" in attrs["landslide:skipped_reasons"][SECOND_ID]
    assert SECOND_ID not in [s["id"] for s in attrs["landslide:scenes"]]
    assert store_bytes(tmp_path / "skip.zarr") == store_bytes(reference)
    FIGURES["bytes"] += sum(len(v) for v in store_bytes(reference).values())


def test_the_only_scene_unreadable_is_one_line_and_no_store(
    tmp_path: Path, blob_root: Path, client: Client, tiny_unet_checkpoint: Path
) -> None:
    out = tmp_path / "none.zarr"
    with blob_server(blob_root, BlobRules(always_fail={"a/B0"})) as (url, _):
        cat = write_catalog(tmp_path / "cat.json", url, scenes=("a",))
        with pytest.raises(UserError, match=r"no readable Sentinel-2 L2A scene .*503") as err:
            run_sweep(_cfg(out, cat, tiny_unet_checkpoint), client=client)
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_tokens_expire_but_each_region_signs_afresh(
    tmp_path: Path, blob_root: Path, client: Client, reference: Path, tiny_unet_checkpoint: Path
) -> None:
    life_s = 20.0  # long enough for one region's reads on a loaded machine
    issued: list[str] = []
    expires: list[float] = []

    def signer(item: pystac.Item) -> pystac.Item:
        # Each signing round (the pre-flight, then each region: Sentinel-2 first, then the DEM)
        # waits until every token signed before has expired, so a sweep that reused the
        # pre-flight's tokens for its region would be refused.
        if item.collection_id == "sentinel-2-l2a" and expires:
            time.sleep(max(0.0, expires[-1] - time.time() + 0.05))
        token, exp = uuid.uuid4().hex, time.time() + life_s
        issued.append(token)
        expires.append(exp)
        for asset in item.assets.values():
            asset.href = f"{asset.href}?token={token}&exp={exp:.3f}"
        return item

    out = tmp_path / "tokens.zarr"
    with blob_server(blob_root, BlobRules(require_token=True)) as (url, rules):
        cat = write_catalog(tmp_path / "cat.json", url, scenes=("a",))
        t0 = time.monotonic()
        summary = run_sweep(_cfg(out, cat, tiny_unet_checkpoint), client=client, signer=signer)
        wall = time.monotonic() - t0
        # The first token has expired: a sweep signed once at the start would have been refused.
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(f"{url}/a/B02.tif?token={issued[0]}&exp={time.time() - 1}")
    assert summary.regions_total == 1 and wall > life_s
    assert len(rules.tokens_seen) >= summary.regions_total, len(rules.tokens_seen)
    FIGURES["tokens"] += len(rules.tokens_seen)
    text = (out / ".zattrs").read_text() + (out / ".zmetadata").read_text() + "\n".join(summary.lines())
    assert "token=" not in text and not any(t in text for t in issued)
    ref = store_bytes(reference)
    got = store_bytes(out)
    for name in ref:
        a = np.frombuffer(got[name], dtype=np.uint8 if name == "valid" else np.float32)
        b = np.frombuffer(ref[name], dtype=np.uint8 if name == "valid" else np.float32)
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_all_cloud_gives_a_complete_store_with_no_valid_pixel_and_a_warning(
    tmp_path: Path, client: Client, tiny_unet_checkpoint: Path
) -> None:
    scene_dir = tmp_path / "scene"
    shutil.copytree(scene.DEMO_DIR, scene_dir)
    with rasterio.open(scene_dir / "SCL.tif") as src:
        profile, scl = src.profile, src.read(1)
    with rasterio.open(scene_dir / "SCL.tif", "w", **profile) as dst:
        dst.write(np.full_like(scl, 9), 1)  # cloud, high probability
    summary = run_sweep(_cfg(tmp_path / "cloud.zarr", scene_dir / "catalog.json", tiny_unet_checkpoint),
                        client=client)  # fmt: skip
    assert summary.valid_fraction == 0.0
    assert any(line.startswith("warning: no clear pixels") for line in summary.lines())
    ds = open_result(tmp_path / "cloud.zarr")
    assert ds.attrs["landslide:status"] == "complete"
    assert int(ds["valid"].sum()) == 0 and bool(np.isnan(ds["probability"].values).all())
    assert any("no clear pixels" in w for w in ds.attrs["landslide:warnings"])


def test_an_area_smaller_than_one_chip_is_padded_and_swept(
    tmp_path: Path, client: Client, tiny_unet_checkpoint: Path
) -> None:
    bbox = (W + 0.3 * (E - W), S + 0.4 * (N - S), W + 0.3 * (E - W) + 0.005, S + 0.4 * (N - S) + 0.004)
    summary = run_sweep(_cfg(tmp_path / "tiny.zarr", scene.DEMO_CATALOG, tiny_unet_checkpoint, bbox=bbox),
                        client=client)  # fmt: skip
    ds = open_result(tmp_path / "tiny.zarr")
    assert ds.sizes == {"y": 128, "x": 128} and summary.regions_total == 1
    assert summary.valid_fraction > 0.5 and summary.chips >= 1
