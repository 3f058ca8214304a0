"""The shipped-checkpoint command, smoke variant (what CI runs): CV, calibration, final model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.models.checkpoint import load_checkpoint
from pipeline.train import ship

from .conftest import SAMPLE

POOL = (3, 16, 28, 72, 512)


@pytest.mark.timeout(1500)  # six 1-epoch trainings + calibration fits; 12.7 min on the shared box at load 24
def test_ship_smoke_writes_a_calibrated_checkpoint(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    for sub, name in (("img", "image"), ("mask", "mask")):
        (pool / sub).mkdir(parents=True)
        for i in POOL:
            shutil.copy(SAMPLE / sub / f"{name}_{i}.h5", pool / sub / f"{name}_{i}.h5")
    dest, png = tmp_path / "ship.safetensors", tmp_path / "reliability.png"
    assert (
        ship.main(
            [
                "--smoke",
                "--data",
                str(pool),
                "--out",
                str(tmp_path / "run"),
                "--dest",
                str(dest),
                "--png",
                str(png),
            ]
        )
        == 0
    )
    _, meta = load_checkpoint(dest)
    assert meta.calibration is not None and meta.calibration.method in ("temperature", "platt")
    assert meta.training["terrain"] == "sweep" and meta.training["split_ids"]["train"] == list(POOL)
    report = json.loads(dest.with_suffix(".json").read_text())
    cv = report["cv"]
    assert sorted(i for f in cv["folds"] for i in f) == list(POOL)
    assert cv["threshold"] == meta.threshold
    for key in ("raw", "calibrated", "cross_fitted", "l2a_shifted"):
        assert {"ece", "brier", "brier_skill"} <= set(cv[key])
    assert {"f1", "precision", "recall", "iou"} <= set(cv["rule"])
    oof = np.load(tmp_path / "run" / "oof.npz")
    assert sorted(oof["chip_ids"].tolist()) == list(POOL) and oof["logits"].shape == (5, 128, 128)
    assert png.read_bytes()[:4] == b"\x89PNG"
    # the diagram names the checkpoint it shows, and the OOF logits to redraw it stay beside it
    from pipeline.figures import CHECKPOINT_KEY, read_stamp
    from pipeline.models.checkpoint import sha256_file
    from pipeline.train.shipped_oof import load_shipped_oof

    assert read_stamp(png)[CHECKPOINT_KEY] == sha256_file(dest)
    np.testing.assert_array_equal(load_shipped_oof(dest)["labels"].astype(bool), oof["labels"].astype(bool))
