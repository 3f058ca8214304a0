from __future__ import annotations

import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pipeline.bands import L4S_BANDS, SWEEP_BANDS
from pipeline.errors import UserError
from pipeline.train.data import (
    BandStatistics,
    ChipSet,
    augment,
    band_statistics,
    detect_layout,
    normalise,
    read_image,
    split_pool,
)

from .conftest import TEST_IDS, TRAIN_IDS, VAL_IDS


def test_official_layout_detected(official_tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        layout = detect_layout(official_tree)
    assert layout.kind == "official"
    assert {k: len(v) for k, v in layout.splits.items()} == {
        "train": len(TRAIN_IDS), "validation": len(VAL_IDS), "test": len(TEST_IDS)}
    assert all(c.mask is not None and c.mask.is_file() for c in layout.chips("train"))
    assert "official layout" in caplog.text


def test_mirror_layout_detected(mirror_tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        layout = detect_layout(mirror_tree)
    assert layout.kind == "mirror"
    assert [c.chip_id for c in layout.chips("validation")] == [1, 2]
    assert layout.chips("test")[0].image.parent == mirror_tree / "images" / "test"
    assert "mirror layout" in caplog.text


def test_flat_layout_split_is_deterministic_and_disjoint(sample_dir: Path) -> None:
    layout = detect_layout(sample_dir)
    assert layout.kind == "flat"
    ids = layout.split_ids()
    assert ids == detect_layout(sample_dir).split_ids()
    assert {k: len(v) for k, v in ids.items()} == {"train": 9, "validation": 3, "test": 3}
    together = ids["train"] + ids["validation"] + ids["test"]
    assert len(set(together)) == 15
    assert split_pool(list(reversed(together))) == ids  # order of discovery does not matter


def test_missing_and_unknown_directories(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        detect_layout(tmp_path / "nope")
    with pytest.raises(UserError, match="holds no Landslide4Sense data"):
        detect_layout(tmp_path)


def test_corrupt_h5_names_the_file(official_tree: Path) -> None:
    bad = official_tree / "TrainData" / "img" / "image_2.h5"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])  # truncated download
    layout = detect_layout(official_tree)
    with pytest.raises(UserError, match=r"image_2\.h5"):
        band_statistics(layout.chips("train"), SWEEP_BANDS)


def test_wrong_key_and_shape_name_the_file(tmp_path: Path, official_tree: Path) -> None:
    path = official_tree / "ValidData" / "mask" / "mask_1.h5"
    path.unlink()
    with h5py.File(path, "w") as fh:
        fh["mask"] = np.zeros((64, 64), np.uint8)
    layout = detect_layout(official_tree)
    with pytest.raises(UserError, match=r"mask_1\.h5.*shape"):
        ChipSet(layout.chips("validation"), SWEEP_BANDS,
                BandStatistics(SWEEP_BANDS, (0.0,) * 13, (1.0,) * 13))
    other = official_tree / "ValidData" / "img" / "image_1.h5"
    other.unlink()
    with h5py.File(other, "w") as fh:
        fh["image"] = np.zeros((128, 128, 14))
    with pytest.raises(UserError, match=r"image_1\.h5.*no 'img'"):
        read_image(detect_layout(official_tree).chips("validation")[0])


def test_statistics_use_train_split_and_finite_values_only(tmp_path: Path, official_tree: Path) -> None:
    layout = detect_layout(official_tree)
    stats = band_statistics(layout.chips("train"), SWEEP_BANDS)
    stack = np.stack([read_image(c) for c in layout.chips("train")])
    idx = [L4S_BANDS.index(b) for b in SWEEP_BANDS]
    np.testing.assert_allclose(stats.mean, stack[..., idx].mean(axis=(0, 1, 2)), rtol=1e-9)
    np.testing.assert_allclose(stats.std, stack[..., idx].std(axis=(0, 1, 2)), rtol=1e-6)
    # NaNs are excluded from the statistics and become 0 (the train mean) after z-scoring.
    image = read_image(layout.chips("train")[0]).copy()
    image[0, 0, L4S_BANDS.index("B04")] = np.nan
    image[0, 1, L4S_BANDS.index("dem")] = np.inf
    x = normalise(image, SWEEP_BANDS, stats)
    assert x.dtype == np.float32 and x.shape == (13, 128, 128)
    assert x[SWEEP_BANDS.index("B04"), 0, 0] == 0.0
    assert x[SWEEP_BANDS.index("dem"), 0, 1] == 0.0
    assert np.isfinite(x).all()


def test_band_selection_by_name_follows_the_contract(official_tree: Path) -> None:
    layout = detect_layout(official_tree)
    bands = ("dem", "B08", "B04")
    stats = band_statistics(layout.chips("train"), bands)
    chip = layout.chips("train")[0]
    x = ChipSet([chip], bands, stats).images[0].numpy()
    raw = read_image(chip)
    for c, band in enumerate(bands):
        expected = (raw[..., L4S_BANDS.index(band)] - stats.mean[c]) / stats.std[c]
        np.testing.assert_allclose(x[c], expected, rtol=1e-5, atol=1e-5)


def test_augmentation_moves_image_and_mask_together() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    y = x[:, :1].clone()
    xa, ya = augment(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(xa[:, :1], ya)
    xb, _ = augment(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(xa, xb)  # same seed, same augmentation
    seen = {augment(x, y, torch.Generator().manual_seed(s))[0][0, 0, 0, 0].item() for s in range(30)}
    assert len(seen) >= 4  # corners move: flips and rotations happen


def test_copying_layout_helpers_use_real_files(tmp_path: Path, sample_dir: Path) -> None:
    target = tmp_path / "flat"
    (target / "img").mkdir(parents=True)
    (target / "mask").mkdir()
    for chip_id in (1, 3, 16):
        shutil.copy(sample_dir / "img" / f"image_{chip_id}.h5", target / "img")
        shutil.copy(sample_dir / "mask" / f"mask_{chip_id}.h5", target / "mask")
    layout = detect_layout(target)
    assert sum(len(v) for v in layout.splits.values()) == 3
    assert len(layout.chips("train")) == 1
