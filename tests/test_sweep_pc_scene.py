"""A sweep of the Planetary-Computer-shaped scene does not depend on the block size.

Native 10/20/60 m bands upsampled on the lattice, the neighbouring zone's tile warped on fixed
tiles of the CRS's pixel lattice, GLO-30 DEM tiles in EPSG:4326 with a seam inside the area, a
swath edge: sweeps with 512- and 1024-px blocks (different regions, different region grids) give
the same mosaic. Real COGs, a LocalCluster of 2 worker processes over TCP, a small U-Net with
seeded random weights (plumbing, not skill).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from distributed import Client, LocalCluster

from pipeline.demo.pc_scene import PCScene, build_pc_scene
from pipeline.store import open_result
from pipeline.sweep import SweepConfig, run_sweep

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")]


@pytest.fixture(scope="module")
def pc(tmp_path_factory: pytest.TempPathFactory) -> PCScene:
    return build_pc_scene(tmp_path_factory.mktemp("pc"), acquisitions=1, size_px=(384, 640), level=1)


def _sweep(pc: PCScene, out: Path, ckpt: Path, block: int, client: Client) -> tuple[np.ndarray, np.ndarray]:
    cfg = SweepConfig(
        bbox=pc.bbox, start=pc.start, end=pc.end, out=out, catalog=str(pc.catalog), checkpoint=ckpt,
        block=block, progress=False, device="cpu",
    )  # fmt: skip
    summary = run_sweep(cfg, client=client)
    assert summary.chips > 0 and summary.regions_computed == summary.regions_total
    ds = open_result(out)
    return ds["probability"].values, ds["valid"].values


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as c:  # fmt: skip
        yield c


def test_realistic_scene_mosaic_does_not_depend_on_the_block_size(
    pc: PCScene, tmp_path: Path, client: Client, tiny_unet_checkpoint: Path
) -> None:
    p512, v512 = _sweep(pc, tmp_path / "b512.zarr", tiny_unet_checkpoint, 512, client)
    p1024, v1024 = _sweep(pc, tmp_path / "b1024.zarr", tiny_unet_checkpoint, 1024, client)
    np.testing.assert_array_equal(v512, v1024)
    assert 0.5 < v512.mean() < 0.95  # the swath edge and the area's padding are not valid
    np.testing.assert_allclose(p512, p1024, atol=1e-5, rtol=0)
