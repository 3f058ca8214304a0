"""Fixtures: tiny L4S directory trees built from the real sample chips."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import SHARED

SAMPLE = SHARED / "l4s-sample"
#: Real sample chip ids used to build small layouts (mixture of empty and landslide chips).
TRAIN_IDS = (1, 28, 300, 512, 45)
VAL_IDS = (16, 41)
TEST_IDS = (600, 72)
TINY_UNET = {"in_channels": 13, "widths": [4, 8, 16, 32], "dropout": 0.1}


def _copy(chip_id: int, image_dir: Path, mask_dir: Path, new_id: int | None = None) -> None:
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    out_id = chip_id if new_id is None else new_id
    shutil.copy(SAMPLE / "img" / f"image_{chip_id}.h5", image_dir / f"image_{out_id}.h5")
    shutil.copy(SAMPLE / "mask" / f"mask_{chip_id}.h5", mask_dir / f"mask_{out_id}.h5")


def build_official(root: Path) -> Path:
    """TrainData/ValidData/TestData with img/ and mask/ (ids renumbered from 1 per split)."""
    for folder, ids in (("TrainData", TRAIN_IDS), ("ValidData", VAL_IDS), ("TestData", TEST_IDS)):
        for n, chip_id in enumerate(ids, start=1):
            _copy(chip_id, root / folder / "img", root / folder / "mask", n)
    return root


def build_mirror(root: Path) -> Path:
    """images/{split} + annotations/{split}."""
    for split, ids in (("train", TRAIN_IDS), ("validation", VAL_IDS), ("test", TEST_IDS)):
        for n, chip_id in enumerate(ids, start=1):
            _copy(chip_id, root / "images" / split, root / "annotations" / split, n)
    return root


@pytest.fixture
def official_tree(tmp_path: Path) -> Path:
    return build_official(tmp_path / "official")


@pytest.fixture
def mirror_tree(tmp_path: Path) -> Path:
    return build_mirror(tmp_path / "mirror")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not SAMPLE.is_dir():
        pytest.skip("the L4S sample data is not available")
    return SAMPLE
